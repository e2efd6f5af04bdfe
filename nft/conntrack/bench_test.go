//go:build linux

package conntrack

// IP plan: 110 local pods 10.244.1.1-110, each isolated for ingress and
// admitting 100 remote peers 10.244.2.1-100 on TCP 80 (11,000 elements,
// like a node of the 150k-pod benchmark); conntrack entries are TCP
// connections from those peers to those pods, all still allowed, so every
// cleanup examines the whole table and deletes nothing.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/kernel"
)

const (
	benchPods  = 110
	benchPeers = 100
)

func benchRuleset() *nft.Ruleset {
	rs := nft.NewSkeleton()
	for p := range benchPods {
		var allow nft.AllowList
		for q := range benchPeers {
			allow.Ports = append(allow.Ports, nft.PortAllow{Peer: nft.Addr(benchPeer(q)), Proto: nft.ProtoTCP, Ports: nft.Port(80)})
		}
		rs.AddIsolatedEndpoint(nft.Ingress, fmt.Sprintf("bench/p%d", p), []netip.Addr{benchPod(p)}, allow)
	}
	return rs
}

func benchPod(p int) netip.Addr  { return netip.AddrFrom4([4]byte{10, 244, 1, byte(p + 1)}) }
func benchPeer(q int) netip.Addr { return netip.AddrFrom4([4]byte{10, 244, 2, byte(q + 1)}) }

// fillConntrack creates n established TCP entries in ns, peer → pod:80.
func fillConntrack(b *testing.B, ns netns.NsHandle, n int) {
	b.Helper()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	for i := range n {
		peer, pod := benchPeer(i%benchPeers), benchPod((i/benchPeers)%benchPods)
		sport := uint16(10000 + i/(benchPeers*benchPods))
		flow := &netlink.ConntrackFlow{
			FamilyType: unix.AF_INET,
			Forward:    netlink.IPTuple{Protocol: unix.IPPROTO_TCP, SrcIP: net.IP(peer.AsSlice()), DstIP: net.IP(pod.AsSlice()), SrcPort: sport, DstPort: 80},
			Reverse:    netlink.IPTuple{Protocol: unix.IPPROTO_TCP, SrcIP: net.IP(pod.AsSlice()), DstIP: net.IP(peer.AsSlice()), SrcPort: 80, DstPort: sport},
			TimeOut:    3600,
			ProtoInfo:  &netlink.ProtoInfoTCP{State: 3}, // ESTABLISHED
		}
		if err := h.ConntrackCreate(netlink.ConntrackTable, netlink.FAMILY_V4, flow); err != nil {
			b.Fatalf("create conntrack entry %d: %v", i, err)
		}
	}
}

// BenchmarkSyncAndClean measures one policy change (one element added or
// removed, the commonest sync) without and with the conntrack cleanup
// that follows it, at several conntrack table sizes; the ratio of the two
// is the cleanup's price.
func BenchmarkSyncAndClean(b *testing.B) {
	requireRoot(b)
	for _, entries := range []int{1000, 10000, 50000} {
		name := newNetns(b, "bench")
		ns, err := netns.GetFromName(name)
		if err != nil {
			b.Fatal(err)
		}
		defer ns.Close()
		syncer, err := kernel.NewSyncer(kernel.WithNetNSFd(int(ns)))
		if err != nil {
			b.Fatal(err)
		}
		cleaner, err := New(WithNetNS(ns))
		if err != nil {
			b.Fatal(err)
		}
		defer cleaner.Close()
		base, more := benchRuleset(), benchRuleset()
		set := nft.NamesFor(nft.Ingress, "bench/p0").ExactV4 // one address on one port
		more.Sets[set].Elements = append(more.Sets[set].Elements,
			nft.Element{Key: []nft.Range{nft.Addr(netip.MustParseAddr("10.244.9.9")), nft.Proto(nft.ProtoTCP), nft.Port(80)}})
		ctx := context.Background()
		if err := syncer.Sync(ctx, base); err != nil {
			b.Fatal(err)
		}
		fillConntrack(b, ns, entries)
		for _, clean := range []bool{false, true} {
			b.Run(fmt.Sprintf("entries=%d/clean=%v", entries, clean), func(b *testing.B) {
				i := 0
				for b.Loop() {
					next := base
					if i%2 == 0 {
						next = more
					}
					i++
					if err := syncer.Sync(ctx, next); err != nil {
						b.Fatal(err)
					}
					if !clean {
						continue
					}
					res, err := cleaner.Clean(ctx, next)
					if err != nil {
						b.Fatal(err)
					}
					if res.Examined != entries || res.Deleted != 0 {
						b.Fatalf("Clean = %+v, want %d examined and none deleted", res, entries)
					}
				}
			})
		}
	}
}

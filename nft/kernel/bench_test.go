//go:build linux

package kernel

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/nftpolicy/nftpolicy/nft"
)

// benchRuleset isolates `pods` local pods (10.244.1.x) for ingress, each
// admitting `peers` remote peers (10.244.2.y and up) on TCP 80.
func benchRuleset(pods, peers int) *nft.Ruleset {
	r := nft.NewSkeleton()
	for p := 0; p < pods; p++ {
		var allow nft.AllowList
		for q := 0; q < peers; q++ {
			peer := nft.Addr(netip.AddrFrom4([4]byte{10, 244, 2 + byte(q/250), byte(q%250 + 1)}))
			allow.Ports = append(allow.Ports, nft.PortAllow{Peer: peer, Proto: nft.ProtoTCP, Ports: nft.Port(80)})
		}
		r.AddIsolatedEndpoint(nft.Ingress, fmt.Sprintf("bench/p%d", p),
			[]netip.Addr{netip.AddrFrom4([4]byte{10, 244, 1, byte(p + 1)})}, allow)
	}
	return r
}

func BenchmarkSyncFull(b *testing.B) {
	requirePrivileges(b)
	_, fd := newNetns(b, "bench")
	r := benchRuleset(50, 100)
	for b.Loop() {
		s, err := NewSyncer(WithNetNSFd(fd))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Sync(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSyncOneElement(b *testing.B) {
	requirePrivileges(b)
	_, fd := newNetns(b, "bench")
	s, err := NewSyncer(WithNetNSFd(fd))
	if err != nil {
		b.Fatal(err)
	}
	base, more := benchRuleset(50, 100), benchRuleset(50, 100)
	name := nft.NamesFor(nft.Ingress, "bench/p0").PortsV4
	extra := nft.Element{Key: []nft.Range{nft.Addr(netip.MustParseAddr("10.244.9.9")), nft.Proto(nft.ProtoTCP), nft.Port(80)}}
	more.Sets[name].Elements = append(more.Sets[name].Elements, extra)
	if err := s.Sync(context.Background(), base); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		next := base
		if i%2 == 0 {
			next = more
		}
		i++
		if err := s.Sync(context.Background(), next); err != nil {
			b.Fatal(err)
		}
	}
}

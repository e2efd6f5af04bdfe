//go:build linux

package kernel

// Sets larger than one netlink message (elementsPerMessage): the elements
// are rendered a message at a time into reused buffers, so every message
// boundary, and the end elements of a single-field interval map that
// double a message's count, must still read back exactly as dumped, on a
// full sync, a restart's full replace and an incremental sync that deletes
// across boundaries. IP plan: pod 10.244.1.2 (ingress isolated); peers
// 10.250.0.0/16 and fd00:250::/64, one address in every other; unknown
// local addresses 10.244.1.0/24's neighbours in 10.245.0.0/16.

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/nftpolicy/nftpolicy/nft"
)

// rulesetLarge has n peers in each of the four allow-list sets and n
// unknown-local intervals; keep is every keep-th of them (1: all).
func rulesetLarge(n, keep int) *nft.Ruleset {
	r := nft.NewSkeleton()
	var allow nft.AllowList
	var unknown []nft.Range
	for i := 0; i < n; i += keep {
		v4 := netip.AddrFrom4([4]byte{10, 250, byte(i >> 7), byte(i<<1) & 0xfe})
		v6 := netip.MustParseAddr(fmt.Sprintf("fd00:250::%x", 2*i))
		allow.AnyPort = append(allow.AnyPort, nft.Addr(v4), nft.Addr(v6))
		for _, a := range []netip.Addr{v4, v6} {
			allow.Ports = append(allow.Ports, nft.PortAllow{Peer: nft.Addr(a), Proto: nft.ProtoTCP, Ports: nft.PortRange(uint16(1000+i), uint16(2000+i)), Comment: fmt.Sprintf("peer %d", i)})
		}
		from := netip.AddrFrom4([4]byte{10, 245, byte(i >> 6), byte(i<<2) & 0xfc})
		unknown = append(unknown, nft.AddrRange(from, from.Next()))
	}
	r.AddIsolatedEndpoint(nft.Ingress, "default/web", addrs("10.244.1.2"), allow)
	r.SetUnknownLocal(unknown)
	return r
}

func TestSync_SetsLargerThanAMessage(t *testing.T) {
	requirePrivileges(t)
	ns, fd := newNetns(t, "chunks")
	n := 5*elementsPerMessage/2 + 7 // boundaries inside sets, not at their ends
	full, half := rulesetLarge(n, 1), rulesetLarge(n, 2)

	s := newSyncer(t, fd)
	sync(t, s, full)
	assertReadback(t, ns, full)
	if err := s.Verify(context.Background()); err != nil {
		t.Errorf("Verify after full sync: %v", err)
	}

	sync(t, s, half) // incremental: deletes every other element of each set
	assertReadback(t, ns, half)
	if err := s.Verify(context.Background()); err != nil {
		t.Errorf("Verify after incremental sync: %v", err)
	}

	s2 := newSyncer(t, fd) // a restart: full replace over half
	sync(t, s2, full)
	assertReadback(t, ns, full)
	if err := s2.Verify(context.Background()); err != nil {
		t.Errorf("Verify after full replace: %v", err)
	}
}

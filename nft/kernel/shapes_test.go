//go:build linux

package kernel

// IP plan: the topology of packets_test.go (pods a 10.244.1.2 and
// fd00:244:1::2, b 10.244.1.3 and fd00:244:1::3 on the node's bridge; c
// 10.244.9.2 routed). 240.0.0.0/4 and ffff::/16 are no pod: they only
// give the any-port sets an interval that runs to the family's last
// address; fd00:244:1::99 is no pod either.

import (
	"context"
	"net/netip"
	"testing"

	"github.com/nftpolicy/nftpolicy/nft"
)

// shapesPolicy isolates b for ingress with an allow-list that fills each
// of its four kinds of set (nft.NewIsolatedEndpoint). Before: a's IPv4
// address, in 10.244.1.0/27 (too many addresses to spell out one by one),
// on everything (any4, rbtree); c on
// everything (addr4, hash); a's IPv6 address on TCP 80 (exact6, hash).
// After, every box has changed shape: a's IPv4 address on TCP 80 alone
// (exact4), c's /24 on UDP 53-54 (ports4, pipapo), a's IPv6 address on TCP
// 80-81 (ports6).
func shapesPolicy(after bool) *nft.Ruleset {
	r := nft.NewSkeleton()
	allow := nft.AllowList{
		AnyPort: []nft.Range{
			mustPrefix("10.244.1.0/27"), nft.Addr(podC4), mustPrefix("240.0.0.0/4"),
			mustAddr("fd00:244:1::99"), mustPrefix("ffff::/16"),
		},
		Ports: []nft.PortAllow{{Peer: nft.Addr(podA6), Proto: nft.ProtoTCP, Ports: nft.Port(80), Comment: "a"}},
	}
	if after {
		allow = nft.AllowList{
			AnyPort: []nft.Range{mustPrefix("240.0.0.0/4"), mustPrefix("ffff::/16")},
			Ports: []nft.PortAllow{
				{Peer: nft.Addr(podA4), Proto: nft.ProtoTCP, Ports: nft.Port(80), Comment: "a"},
				{Peer: mustPrefix("10.244.9.0/24"), Proto: nft.ProtoUDP, Ports: nft.PortRange(53, 54), Comment: "c's subnet"},
				{Peer: nft.Addr(podA6), Proto: nft.ProtoTCP, Ports: nft.PortRange(80, 81), Comment: "a"},
			},
		}
	}
	r.AddIsolatedEndpoint(nft.Ingress, "test/b", []netip.Addr{podB4, podB6}, allow)
	return r
}

// TestSync_AllowListShapesRealPackets sends real packets through each of
// the allow-list's backends, then syncs a change that moves every element
// to a set of another shape (element operations only) and sends them
// again; at each step the kernel's listing must read back as Dump and
// Verify must find no drift.
func TestSync_AllowListShapesRealPackets(t *testing.T) {
	requirePrivileges(t)
	tp := buildTopology(t)
	serve(t, tp.b, []int{80, 81}, []int{53, 54})
	n := nft.NamesFor(nft.Ingress, "test/b")

	steps := []struct {
		name  string
		after bool
		sets  map[string]int // elements per allow-list set
		flows []flow
	}{
		{
			name: "before",
			sets: map[string]int{n.AnyV4: 2, n.AddrV4: 1, n.AddrV6: 1, n.AnyV6: 1, n.ExactV6: 1},
			flows: []flow{
				{"a to b tcp/81: a's range on everything (any4)", tp.a, "tcp", netip.AddrPortFrom(podB4, 81), true},
				{"a to b udp/54: a's range on everything (any4)", tp.a, "udp", netip.AddrPortFrom(podB4, 54), true},
				{"c to b tcp/80: c on everything (addr4)", tp.c, "tcp", netip.AddrPortFrom(podB4, 80), true},
				{"c to b udp/54: c on everything (addr4)", tp.c, "udp", netip.AddrPortFrom(podB4, 54), true},
				{"a to b tcp/80 over IPv6 (exact6)", tp.a, "tcp", netip.AddrPortFrom(podB6, 80), true},
				{"a to b tcp/81 over IPv6: not its port", tp.a, "tcp", netip.AddrPortFrom(podB6, 81), false},
			},
		},
		{
			name:  "after every element changed shape",
			after: true,
			sets:  map[string]int{n.AnyV4: 1, n.AnyV6: 1, n.ExactV4: 1, n.PortsV4: 1, n.PortsV6: 1},
			flows: []flow{
				{"a to b tcp/80: one port (exact4)", tp.a, "tcp", netip.AddrPortFrom(podB4, 80), true},
				{"a to b tcp/81: no longer admitted", tp.a, "tcp", netip.AddrPortFrom(podB4, 81), false},
				{"c to b udp/54: c's subnet on a port range (ports4)", tp.c, "udp", netip.AddrPortFrom(podB4, 54), true},
				{"c to b tcp/80: not its protocol", tp.c, "tcp", netip.AddrPortFrom(podB4, 80), false},
				{"a to b tcp/81 over IPv6: now a port range (ports6)", tp.a, "tcp", netip.AddrPortFrom(podB6, 81), true},
			},
		},
	}
	s := newSyncer(t, tp.nodeFd)
	for _, st := range steps {
		r := shapesPolicy(st.after)
		for _, name := range []string{n.ExactV4, n.ExactV6, n.AddrV4, n.AddrV6, n.AnyV4, n.AnyV6, n.PortsV4, n.PortsV6} {
			if got := len(r.Sets[name].Elements); got != st.sets[name] {
				t.Fatalf("%s: set %s has %d elements, want %d", st.name, name, got, st.sets[name])
			}
		}
		if st.after {
			for _, op := range nft.Diff(shapesPolicy(false), r) {
				if op.Kind != nft.OpAddElements && op.Kind != nft.OpDeleteElements {
					t.Errorf("%s: op %v, want element operations only", st.name, op)
				}
			}
		}
		sync(t, s, r)
		assertReadback(t, tp.node, r)
		if err := s.Verify(context.Background()); err != nil {
			t.Errorf("%s: Verify: %v", st.name, err)
		}
		t.Run(st.name, func(t *testing.T) { checkFlows(t, st.flows) })
	}
}

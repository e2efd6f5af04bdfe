//go:build linux

package kernel

// IP plan: packets_test.go's topology (pods a and b bridged on the node,
// c routed), rulesets built directly in the model:
//
//   b (10.244.1.3, fd00:244:1::3), ingress: Admin denies a on TCP 81 and
//     accepts c on UDP 54, and passes a on TCP 80 (no element); a
//     NetworkPolicy allow-list admits a on TCP 80-81 and c on UDP 53.
//   a (10.244.1.2, fd00:244:1::2), ingress, no NetworkPolicy: Admin passes
//     c on TCP 80; Baseline denies c on every protocol.
//   c (10.244.9.2), egress: Admin accepts b on every protocol (returns, so
//     b's ingress still judges).

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

// tierPolicy is the ruleset of the IP plan with b81 (Drop) the Admin
// verdict for a to b on TCP 81; without aAdmin, a has no Admin maps and
// an empty Baseline.
func tierPolicy(b81 nft.Verdict, aAdmin bool) *nft.Ruleset {
	r := nft.NewSkeleton()
	bAdmin := nft.NewTierMaps(nft.TierAdmin, nft.Ingress, "b-admin", "Admin ingress rules of b-admin", nft.TierVerdicts{
		// Shapes the compiler produces and no test packet meets: ranges
		// from the first address and to the family's last one, no
		// prefixes, protocol ranges around the port protocols.
		AnyPort: []nft.ProtoVerdict{
			{Peer: nft.AddrRange(netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("10.243.255.255")), Protos: nft.ProtoRange(0, 16), Verdict: nft.Drop},
			{Peer: nft.AddrRange(netip.MustParseAddr("198.18.0.13"), netip.MustParseAddr("255.255.255.255")), Protos: nft.ProtoRange(18, 255), Verdict: nft.Drop},
			{Peer: nft.AddrRange(netip.MustParseAddr("ff00::"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), Protos: nft.ProtoRange(0, 255), Verdict: nft.Drop},
		},
		Ports: []nft.PortVerdict{
			{Peer: nft.Addr(podA4), Proto: nft.ProtoTCP, Ports: nft.Port(81), Verdict: b81},
			{Peer: nft.Addr(podA6), Proto: nft.ProtoTCP, Ports: nft.Port(81), Verdict: b81},
			{Peer: nft.Addr(podC4), Proto: nft.ProtoUDP, Ports: nft.Port(54), Verdict: nft.Return},
		},
	})
	bAllow := nft.NewIsolatedEndpoint(nft.Ingress, "test/b", []netip.Addr{podB4, podB6}, nft.AllowList{Ports: []nft.PortAllow{
		{Peer: nft.Addr(podA4), Proto: nft.ProtoTCP, Ports: nft.PortRange(80, 81)},
		{Peer: nft.Addr(podA6), Proto: nft.ProtoTCP, Ports: nft.PortRange(80, 81)},
		{Peer: nft.Addr(podC4), Proto: nft.ProtoUDP, Ports: nft.Port(53)},
	}}, nil)
	r.AddTieredEndpoint(nft.NewTieredEndpoint(nft.Ingress, "test/b", []netip.Addr{podB4, podB6}, bAdmin, bAllow, nil))

	var aAdm *nft.TierMaps
	var aBase nft.TierVerdicts
	if aAdmin {
		aAdm = nft.NewTierMaps(nft.TierAdmin, nft.Ingress, "a-admin", "Admin ingress rules of a-admin", nft.TierVerdicts{})
		aBase.AnyPort = []nft.ProtoVerdict{{Peer: nft.Addr(podC4), Protos: nft.ProtoRange(0, 255), Verdict: nft.Drop}}
	}
	r.AddTieredEndpoint(nft.NewTieredEndpoint(nft.Ingress, "test/a", []netip.Addr{podA4, podA6}, aAdm, nil,
		nft.NewTierMaps(nft.TierBaseline, nft.Ingress, "a-base", "Baseline ingress rules of a-base", aBase)))

	cAdmin := nft.NewTierMaps(nft.TierAdmin, nft.Egress, "c-admin", "Admin egress rules of c-admin", nft.TierVerdicts{
		AnyPort: []nft.ProtoVerdict{{Peer: nft.Addr(podB4), Protos: nft.ProtoRange(0, 255), Verdict: nft.Return}},
	})
	r.AddTieredEndpoint(nft.NewTieredEndpoint(nft.Egress, "test/c", []netip.Addr{podC4}, cAdmin, nil, nil))
	return r
}

// TestSync_TiersReadBackAsDump: interval verdict maps on concatenations,
// written through netlink, read back by nft as the text Dump prints, after
// a full sync, an incremental one and a restart.
func TestSync_TiersReadBackAsDump(t *testing.T) {
	requirePrivileges(t)
	ns, fd := newNetns(t, "tiers")
	s := newSyncer(t, fd)
	verify := func(what string) {
		t.Helper()
		if err := s.Verify(context.Background()); err != nil {
			t.Errorf("Verify after %s: %v", what, err)
		}
	}

	first := tierPolicy(nft.Drop, true)
	if err := nfttest.Validate(first); err != nil {
		t.Fatal(err)
	}
	sync(t, s, first)
	assertReadback(t, ns, first)
	verify("full sync")

	// Incremental: one verdict flips (elements only), and a changes tiers
	// (its Admin maps go, so its tier chain is rewritten and they are
	// deleted after the rewrite in the same batch).
	second := tierPolicy(nft.Return, false)
	if err := nfttest.Validate(second); err != nil {
		t.Fatal(err)
	}
	sync(t, s, second)
	assertReadback(t, ns, second)
	verify("incremental sync")

	s2 := newSyncer(t, fd) // a restart: full replace
	sync(t, s2, first)
	assertReadback(t, ns, first)
	if err := s2.Verify(context.Background()); err != nil {
		t.Errorf("Verify after full replace: %v", err)
	}
}

// TestSync_TiersRealPackets sends real packets through the tiers: Deny
// drops what the allow-list admits, Accept admits what it does not, Pass
// hands over to it (or to the Baseline tier without one), and an egress
// Accept leaves the destination's ingress to judge. Then one Admin verdict
// flips with an element-only sync.
func TestSync_TiersRealPackets(t *testing.T) {
	requirePrivileges(t)
	tp := buildTopology(t)
	serve(t, tp.a, []int{80}, nil)
	serve(t, tp.b, []int{80, 81}, []int{53, 54})

	flows := []flow{
		{"a to b tcp/80: Admin Pass, the allow-list admits", tp.a, "tcp", netip.AddrPortFrom(podB4, 80), true},
		{"a to b tcp/81: Admin Deny over the allow-list", tp.a, "tcp", netip.AddrPortFrom(podB4, 81), false},
		{"a to b tcp/81 over IPv6: Admin Deny", tp.a, "tcp", netip.AddrPortFrom(podB6, 81), false},
		{"a to b tcp/80 over IPv6: Admin Pass", tp.a, "tcp", netip.AddrPortFrom(podB6, 80), true},
		{"c to b udp/54: Admin Accept over isolation", tp.c, "udp", netip.AddrPortFrom(podB4, 54), true},
		{"c to b udp/53: egress Accept, ingress allow-list admits", tp.c, "udp", netip.AddrPortFrom(podB4, 53), true},
		{"c to b tcp/80: egress Accept, ingress allow-list drops", tp.c, "tcp", netip.AddrPortFrom(podB4, 80), false},
		{"c to a tcp/80: no Admin rule, Baseline Deny", tp.c, "tcp", netip.AddrPortFrom(podA4, 80), false},
		{"b to a tcp/80: no tier decides", tp.b, "tcp", netip.AddrPortFrom(podA4, 80), true},
	}
	for _, f := range flows {
		if err := probe(f.from, f.proto, f.dst); err != nil {
			t.Fatalf("without policy, %s: %v", f.name, err)
		}
	}
	s := newSyncer(t, tp.nodeFd)
	before := tierPolicy(nft.Drop, true)
	sync(t, s, before)
	checkFlows(t, flows)

	after := tierPolicy(nft.Return, true)
	ops := nft.Diff(before, after)
	kinds := map[nft.OpKind]int{}
	for _, op := range ops {
		kinds[op.Kind]++
	}
	// One element each in the v4 and v6 port maps: deleted and added
	// again with the other verdict; no chain or set is touched.
	if diff := cmp.Diff(map[nft.OpKind]int{nft.OpDeleteElements: 2, nft.OpAddElements: 2}, kinds); diff != "" {
		t.Errorf("flipping one Admin verdict: ops (-want +got):\n%s", diff)
	}
	sync(t, s, after)
	checkFlows(t, []flow{
		{"a to b tcp/81: now Admin Accept", tp.a, "tcp", netip.AddrPortFrom(podB4, 81), true},
		{"a to b tcp/81 over IPv6: now Admin Accept", tp.a, "tcp", netip.AddrPortFrom(podB6, 81), true},
		{"c to a tcp/80: still Baseline Deny", tp.c, "tcp", netip.AddrPortFrom(podA4, 80), false},
	})
}

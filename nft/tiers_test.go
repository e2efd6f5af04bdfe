package nft_test

// IP plan: local pods x/a 10.244.1.10 (fd00::10), x/b 10.244.1.11 and x/c
// 10.244.1.12; remote peers in 10.244.2.0/24 and 10.1.0.0/16; 192.0.2.1
// is outside the cluster.
//
// Admin ingress maps (x/a and x/b share them): 10.244.2.0/24 denied on
// every protocol but TCP, where port 80 is accepted and every other port
// denied; 10.244.2.7 passes (a hole: no element). x/a is also isolated by
// a NetworkPolicy admitting 10.244.2.0/24 on any port. x/b is not
// isolated: its Baseline maps deny 10.244.2.7 and 192.0.2.0/24. x/c has an
// egress Baseline that accepts 10.244.1.0/24 on any protocol.

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

func tierFixture() (*nft.Ruleset, *nft.TierMaps) {
	remote := nft.PrefixRange(netip.MustParsePrefix("10.244.2.0/24"))
	below := nft.AddrRange(ip("10.244.2.0"), ip("10.244.2.6"))
	above := nft.AddrRange(ip("10.244.2.8"), ip("10.244.2.255"))
	admin := nft.NewTierMaps(nft.TierAdmin, nft.Ingress, "deny-remote", "Admin ingress rules of pass-7, deny-remote", nft.TierVerdicts{
		AnyPort: []nft.ProtoVerdict{
			{Peer: below, Protos: nft.ProtoRange(0, 5), Verdict: nft.Drop},
			{Peer: above, Protos: nft.ProtoRange(0, 5), Verdict: nft.Drop},
			{Peer: below, Protos: nft.ProtoRange(7, 255), Verdict: nft.Drop},
			{Peer: above, Protos: nft.ProtoRange(7, 255), Verdict: nft.Drop},
		},
		Ports: []nft.PortVerdict{
			{Peer: below, Proto: nft.ProtoTCP, Ports: nft.PortRange(0, 79), Verdict: nft.Drop},
			{Peer: above, Proto: nft.ProtoTCP, Ports: nft.PortRange(0, 79), Verdict: nft.Drop},
			{Peer: below, Proto: nft.ProtoTCP, Ports: nft.Port(80), Verdict: nft.Return},
			{Peer: above, Proto: nft.ProtoTCP, Ports: nft.Port(80), Verdict: nft.Return},
			{Peer: below, Proto: nft.ProtoTCP, Ports: nft.PortRange(81, 65535), Verdict: nft.Drop},
			{Peer: above, Proto: nft.ProtoTCP, Ports: nft.PortRange(81, 65535), Verdict: nft.Drop},
		},
	})
	baseB := nft.NewTierMaps(nft.TierBaseline, nft.Ingress, "deny-7", "Baseline ingress rules of deny-7", nft.TierVerdicts{
		AnyPort: []nft.ProtoVerdict{
			{Peer: nft.Addr(ip("10.244.2.7")), Protos: nft.ProtoRange(0, 255), Verdict: nft.Drop},
			{Peer: nft.PrefixRange(netip.MustParsePrefix("192.0.2.0/24")), Protos: nft.ProtoRange(0, 255), Verdict: nft.Drop},
		},
	})
	baseC := nft.NewTierMaps(nft.TierBaseline, nft.Egress, "local", "Baseline egress rules of local", nft.TierVerdicts{
		AnyPort: []nft.ProtoVerdict{{Peer: nft.PrefixRange(netip.MustParsePrefix("10.244.1.0/24")), Protos: nft.ProtoRange(0, 255), Verdict: nft.Return}},
	})
	r := nft.NewSkeleton()
	allowA := nft.NewIsolatedEndpoint(nft.Ingress, "x/a", []netip.Addr{ip("10.244.1.10"), ip("fd00::10")}, nft.AllowList{AnyPort: []nft.Range{remote}}, nil)
	r.AddTieredEndpoint(nft.NewTieredEndpoint(nft.Ingress, "x/a", []netip.Addr{ip("10.244.1.10"), ip("fd00::10")}, admin, allowA, nil))
	r.AddTieredEndpoint(nft.NewTieredEndpoint(nft.Ingress, "x/b", []netip.Addr{ip("10.244.1.11")}, admin, nil, baseB))
	r.AddTieredEndpoint(nft.NewTieredEndpoint(nft.Egress, "x/c", []netip.Addr{ip("10.244.1.12")}, nil, nil, baseC))
	return r, admin
}

func TestTrace_Tiers(t *testing.T) {
	a, b, c := nft.NamesFor(nft.Ingress, "x/a"), nft.NamesFor(nft.Ingress, "x/b"), nft.NamesFor(nft.Egress, "x/c")
	r, admin := tierFixture()
	if err := nfttest.Validate(r); err != nil {
		t.Fatal(err)
	}
	adm := admin.Names
	cases := []struct {
		name  string
		pkt   nft.Packet
		want  nft.VerdictKind
		steps []string
	}{
		{
			name: "Admin Deny drops before the NetworkPolicy allow-list that admits the peer",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.2.9"), Dst: ip("10.244.1.10"), Proto: nft.ProtoUDP, DstPort: 53, CtState: nft.CtStateNew},
			want: nft.VerdictDrop,
			steps: []string{
				"forward#10 ip daddr vmap @ingress-v4 => jump " + a.Tiers,
				a.Tiers + "#1 ip saddr . meta l4proto vmap @" + adm.AnyV4 + " => drop",
			},
		},
		{
			name: "Admin Accept on a port returns: the allow-list is not consulted",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.2.9"), Dst: ip("10.244.1.10"), Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateNew},
			want: nft.VerdictAccept,
			steps: []string{
				"forward#10 ip daddr vmap @ingress-v4 => jump " + a.Tiers,
				a.Tiers + "#3 ip saddr . meta l4proto . th dport vmap @" + adm.PortsV4 + " => return",
				"forward: policy accept",
			},
		},
		{
			name: "Pass (a hole in the Admin maps) goes on to the NetworkPolicy allow-list",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.2.7"), Dst: ip("10.244.1.10"), Proto: nft.ProtoTCP, DstPort: 22, CtState: nft.CtStateNew},
			want: nft.VerdictAccept,
			steps: []string{
				"forward#10 ip daddr vmap @ingress-v4 => jump " + a.Tiers,
				a.Tiers + "#5 jump " + a.Chain + " => jump " + a.Chain,
				a.Chain + "#5 ip saddr @" + a.AnyV4 + " return => return",
				"forward: policy accept",
			},
		},
		{
			name: "no Admin rule, the allow-list does not admit: dropped",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("192.0.2.1"), Dst: ip("10.244.1.10"), Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateNew},
			want: nft.VerdictDrop,
		},
		{
			name: "IPv6 of the same pod: no Admin element, the allow-list has none either",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("2001:db8::1"), Dst: ip("fd00::10"), Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateNew},
			want: nft.VerdictDrop,
		},
		{
			name: "shared Admin maps judge x/b alike",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.2.9"), Dst: ip("10.244.1.11"), Proto: nft.ProtoTCP, DstPort: 81, CtState: nft.CtStateNew},
			want: nft.VerdictDrop,
			steps: []string{
				"forward#10 ip daddr vmap @ingress-v4 => jump " + b.Tiers,
				b.Tiers + "#3 ip saddr . meta l4proto . th dport vmap @" + adm.PortsV4 + " => drop",
			},
		},
		{
			name: "not isolated: after an Admin Pass, the Baseline tier decides",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.2.7"), Dst: ip("10.244.1.11"), Proto: nft.ProtoTCP, DstPort: 22, CtState: nft.CtStateNew},
			want: nft.VerdictDrop,
			steps: []string{
				"forward#10 ip daddr vmap @ingress-v4 => jump " + b.Tiers,
				b.Tiers + "#5 ip saddr . meta l4proto vmap @" + nft.NewTierMaps(nft.TierBaseline, nft.Ingress, "deny-7", "", nft.TierVerdicts{}).Names.AnyV4 + " => drop",
			},
		},
		{
			name: "not isolated, no tier decides: allowed",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.1.0.1"), Dst: ip("10.244.1.11"), Proto: nft.ProtoICMP, CtState: nft.CtStateNew},
			want: nft.VerdictAccept,
		},
		{
			name: "an egress Accept returns, so the destination's ingress is still judged",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.1.12"), Dst: ip("10.244.1.10"), Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateNew},
			want: nft.VerdictDrop,
			steps: []string{
				"forward#8 ip saddr vmap @egress-v4 => jump " + c.Tiers,
				c.Tiers + "#1 ip daddr . meta l4proto vmap @" + nft.NewTierMaps(nft.TierBaseline, nft.Egress, "local", "", nft.TierVerdicts{}).Names.AnyV4 + " => return",
				"forward#10 ip daddr vmap @ingress-v4 => jump " + a.Tiers,
				a.Tiers + "#5 jump " + a.Chain + " => jump " + a.Chain,
				a.Chain + "#9 counter drop => drop",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := r.Trace(tc.pkt)
			if v := r.Verdict(tc.pkt); v != got.Verdict {
				t.Errorf("%v: Verdict %v, Trace %v", tc.pkt, nft.Verdict{Kind: v}, nft.Verdict{Kind: got.Verdict})
			}
			if got.Verdict != tc.want {
				t.Errorf("%v: verdict %v, want %v; trace:\n\t%s", tc.pkt, nft.Verdict{Kind: got.Verdict}, nft.Verdict{Kind: tc.want}, strings.Join(got.Steps, "\n\t"))
			}
			if tc.steps != nil {
				if diff := cmp.Diff(tc.steps, got.Steps); diff != "" {
					t.Errorf("trace mismatch (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestNewTieredEndpoint_Shapes(t *testing.T) {
	addrs := []netip.Addr{ip("10.244.1.10")}
	allow := nft.NewIsolatedEndpoint(nft.Ingress, "x/a", addrs, nft.AllowList{}, nil)
	admin := nft.NewTierMaps(nft.TierAdmin, nft.Ingress, "k", "", nft.TierVerdicts{})
	base := nft.NewTierMaps(nft.TierBaseline, nft.Ingress, "k", "", nft.TierVerdicts{})
	if e := nft.NewTieredEndpoint(nft.Ingress, "x/a", addrs, nil, nil, nil); e != nil {
		t.Errorf("no tier: got %+v, want nil", e)
	}
	if e := nft.NewTieredEndpoint(nft.Ingress, "x/a", addrs, nil, allow, base); e.Chain != nil || e.Baseline != nil || e.Allow != allow ||
		e.MapElements4[0].Verdict != nft.Jump(allow.Chain.Name) {
		t.Errorf("allow-list only (Baseline under isolation): got %+v, want the allow-list dispatched directly", e)
	}
	e := nft.NewTieredEndpoint(nft.Ingress, "x/a", addrs, admin, nil, base)
	if e.Chain == nil || len(e.Chain.Rules) != 8 || e.MapElements4[0].Verdict != nft.Jump(e.Names.Tiers) {
		t.Errorf("Admin and Baseline: got %+v", e)
	}
	if admin.Names == base.Names {
		t.Errorf("Admin and Baseline maps of one key share names %+v", admin.Names)
	}
}

// TestDiff_TierMapsShared: a second pod with the same Admin maps adds its
// chain and dispatch element only; a change of the shared maps' elements is
// element operations only, whatever the number of pods sharing them.
func TestDiff_TierMapsShared(t *testing.T) {
	mk := func(pods int, deny string) *nft.Ruleset {
		admin := nft.NewTierMaps(nft.TierAdmin, nft.Ingress, "deny", "Admin ingress rules of deny", nft.TierVerdicts{
			AnyPort: []nft.ProtoVerdict{{Peer: nft.PrefixRange(netip.MustParsePrefix(deny)), Protos: nft.ProtoRange(0, 255), Verdict: nft.Drop}},
		})
		r := nft.NewSkeleton()
		for i := 1; i <= pods; i++ {
			id := "ns/p" + string(rune('0'+i))
			r.AddTieredEndpoint(nft.NewTieredEndpoint(nft.Ingress, id, podAddrs(i), admin, nil, nil))
		}
		return r
	}
	one, two := mk(1, "10.244.2.0/24"), mk(2, "10.244.2.0/24")
	if err := nfttest.Validate(two); err != nil {
		t.Fatal(err)
	}
	ops := nft.Diff(one, two)
	if got, want := countOps(ops), map[nft.OpKind]int{nft.OpAddChain: 1, nft.OpReplaceRules: 1, nft.OpAddElements: 2}; !cmp.Equal(got, want) {
		t.Errorf("second pod sharing the maps: ops %v, want %v", got, want)
	}
	ops = nft.Diff(two, mk(2, "10.244.3.0/24"))
	if got, want := countOps(ops), map[nft.OpKind]int{nft.OpDeleteElements: 1, nft.OpAddElements: 1}; !cmp.Equal(got, want) {
		t.Errorf("shared maps change: ops %v, want %v", got, want)
	}
	after, err := nfttest.Apply(two, ops)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(mk(2, "10.244.3.0/24"), after, normalise); diff != "" {
		t.Errorf("applied diff differs (-want +got):\n%s", diff)
	}
	// The last pod going takes the maps and its chains with it.
	if _, err := nfttest.Apply(two, nft.Diff(two, nft.NewSkeleton())); err != nil {
		t.Errorf("removing every pod: %v", err)
	}
}

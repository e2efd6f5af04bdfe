package nft

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
)

func tierFixture() (*Ruleset, *TierMaps) {
	remote := PrefixRange(netip.MustParsePrefix("10.244.2.0/24"))
	below := AddrRange(ip("10.244.2.0"), ip("10.244.2.6"))
	above := AddrRange(ip("10.244.2.8"), ip("10.244.2.255"))
	admin := NewTierMaps(TierAdmin, Ingress, "deny-remote", "Admin ingress rules of pass-7, deny-remote", TierVerdicts{
		AnyPort: []ProtoVerdict{
			{Peer: below, Protos: ProtoRange(0, 5), Verdict: Drop},
			{Peer: above, Protos: ProtoRange(0, 5), Verdict: Drop},
			{Peer: below, Protos: ProtoRange(7, 255), Verdict: Drop},
			{Peer: above, Protos: ProtoRange(7, 255), Verdict: Drop},
		},
		Ports: []PortVerdict{
			{Peer: below, Proto: ProtoTCP, Ports: PortRange(0, 79), Verdict: Drop},
			{Peer: above, Proto: ProtoTCP, Ports: PortRange(0, 79), Verdict: Drop},
			{Peer: below, Proto: ProtoTCP, Ports: Port(80), Verdict: Return},
			{Peer: above, Proto: ProtoTCP, Ports: Port(80), Verdict: Return},
			{Peer: below, Proto: ProtoTCP, Ports: PortRange(81, 65535), Verdict: Drop},
			{Peer: above, Proto: ProtoTCP, Ports: PortRange(81, 65535), Verdict: Drop},
		},
	})
	baseB := NewTierMaps(TierBaseline, Ingress, "deny-7", "Baseline ingress rules of deny-7", TierVerdicts{
		AnyPort: []ProtoVerdict{
			{Peer: Addr(ip("10.244.2.7")), Protos: ProtoRange(0, 255), Verdict: Drop},
			{Peer: PrefixRange(netip.MustParsePrefix("192.0.2.0/24")), Protos: ProtoRange(0, 255), Verdict: Drop},
		},
	})
	baseC := NewTierMaps(TierBaseline, Egress, "local", "Baseline egress rules of local", TierVerdicts{
		AnyPort: []ProtoVerdict{{Peer: PrefixRange(netip.MustParsePrefix("10.244.1.0/24")), Protos: ProtoRange(0, 255), Verdict: Return}},
	})
	r := NewSkeleton()
	allowA := NewIsolatedEndpoint(Ingress, "x/a", []netip.Addr{ip("10.244.1.10"), ip("fd00::10")}, AllowList{AnyPort: []Range{remote}})
	r.AddTieredEndpoint(NewTieredEndpoint(Ingress, "x/a", []netip.Addr{ip("10.244.1.10"), ip("fd00::10")}, admin, allowA, nil))
	r.AddTieredEndpoint(NewTieredEndpoint(Ingress, "x/b", []netip.Addr{ip("10.244.1.11")}, admin, nil, baseB))
	r.AddTieredEndpoint(NewTieredEndpoint(Egress, "x/c", []netip.Addr{ip("10.244.1.12")}, nil, nil, baseC))
	return r, admin
}

func TestTrace_Tiers(t *testing.T) {
	a, b, c := NamesFor(Ingress, "x/a"), NamesFor(Ingress, "x/b"), NamesFor(Egress, "x/c")
	r, admin := tierFixture()
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	adm := admin.Names
	cases := []struct {
		name  string
		pkt   Packet
		want  VerdictKind
		steps []string
	}{
		{
			name: "Admin Deny drops before the NetworkPolicy allow-list that admits the peer",
			pkt:  Packet{Hook: HookForward, Src: ip("10.244.2.9"), Dst: ip("10.244.1.10"), Proto: ProtoUDP, DstPort: 53, CtState: CtStateNew},
			want: VerdictDrop,
			steps: []string{
				"forward#6 ip daddr vmap @ingress-v4 => jump " + a.Tiers,
				a.Tiers + "#1 ip saddr . meta l4proto vmap @" + adm.AnyV4 + " => drop",
			},
		},
		{
			name: "Admin Accept on a port returns: the allow-list is not consulted",
			pkt:  Packet{Hook: HookForward, Src: ip("10.244.2.9"), Dst: ip("10.244.1.10"), Proto: ProtoTCP, DstPort: 80, CtState: CtStateNew},
			want: VerdictAccept,
			steps: []string{
				"forward#6 ip daddr vmap @ingress-v4 => jump " + a.Tiers,
				a.Tiers + "#3 ip saddr . meta l4proto . th dport vmap @" + adm.PortsV4 + " => return",
				"forward: policy accept",
			},
		},
		{
			name: "Pass (a hole in the Admin maps) goes on to the NetworkPolicy allow-list",
			pkt:  Packet{Hook: HookForward, Src: ip("10.244.2.7"), Dst: ip("10.244.1.10"), Proto: ProtoTCP, DstPort: 22, CtState: CtStateNew},
			want: VerdictAccept,
			steps: []string{
				"forward#6 ip daddr vmap @ingress-v4 => jump " + a.Tiers,
				a.Tiers + "#5 jump " + a.Chain + " => jump " + a.Chain,
				a.Chain + "#1 ip saddr . meta l4proto @" + a.AnyV4 + " return => return",
				"forward: policy accept",
			},
		},
		{
			name: "no Admin rule, the allow-list does not admit: dropped",
			pkt:  Packet{Hook: HookForward, Src: ip("192.0.2.1"), Dst: ip("10.244.1.10"), Proto: ProtoTCP, DstPort: 80, CtState: CtStateNew},
			want: VerdictDrop,
		},
		{
			name: "IPv6 of the same pod: no Admin element, the allow-list has none either",
			pkt:  Packet{Hook: HookForward, Src: ip("2001:db8::1"), Dst: ip("fd00::10"), Proto: ProtoTCP, DstPort: 80, CtState: CtStateNew},
			want: VerdictDrop,
		},
		{
			name: "shared Admin maps judge x/b alike",
			pkt:  Packet{Hook: HookForward, Src: ip("10.244.2.9"), Dst: ip("10.244.1.11"), Proto: ProtoTCP, DstPort: 81, CtState: CtStateNew},
			want: VerdictDrop,
			steps: []string{
				"forward#6 ip daddr vmap @ingress-v4 => jump " + b.Tiers,
				b.Tiers + "#3 ip saddr . meta l4proto . th dport vmap @" + adm.PortsV4 + " => drop",
			},
		},
		{
			name: "not isolated: after an Admin Pass, the Baseline tier decides",
			pkt:  Packet{Hook: HookForward, Src: ip("10.244.2.7"), Dst: ip("10.244.1.11"), Proto: ProtoTCP, DstPort: 22, CtState: CtStateNew},
			want: VerdictDrop,
			steps: []string{
				"forward#6 ip daddr vmap @ingress-v4 => jump " + b.Tiers,
				b.Tiers + "#5 ip saddr . meta l4proto vmap @" + NewTierMaps(TierBaseline, Ingress, "deny-7", "", TierVerdicts{}).Names.AnyV4 + " => drop",
			},
		},
		{
			name: "not isolated, no tier decides: allowed",
			pkt:  Packet{Hook: HookForward, Src: ip("10.1.0.1"), Dst: ip("10.244.1.11"), Proto: ProtoICMP, CtState: CtStateNew},
			want: VerdictAccept,
		},
		{
			name: "an egress Accept returns, so the destination's ingress is still judged",
			pkt:  Packet{Hook: HookForward, Src: ip("10.244.1.12"), Dst: ip("10.244.1.10"), Proto: ProtoTCP, DstPort: 80, CtState: CtStateNew},
			want: VerdictDrop,
			steps: []string{
				"forward#4 ip saddr vmap @egress-v4 => jump " + c.Tiers,
				c.Tiers + "#1 ip daddr . meta l4proto vmap @" + NewTierMaps(TierBaseline, Egress, "local", "", TierVerdicts{}).Names.AnyV4 + " => return",
				"forward#6 ip daddr vmap @ingress-v4 => jump " + a.Tiers,
				a.Tiers + "#5 jump " + a.Chain + " => jump " + a.Chain,
				a.Chain + "#5 drop => drop",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := r.Trace(tc.pkt)
			if got.Verdict != tc.want {
				t.Errorf("%v: verdict %v, want %v; trace:\n\t%s", tc.pkt, Verdict{Kind: got.Verdict}, Verdict{Kind: tc.want}, strings.Join(got.Steps, "\n\t"))
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
	allow := NewIsolatedEndpoint(Ingress, "x/a", addrs, AllowList{})
	admin := NewTierMaps(TierAdmin, Ingress, "k", "", TierVerdicts{})
	base := NewTierMaps(TierBaseline, Ingress, "k", "", TierVerdicts{})
	if e := NewTieredEndpoint(Ingress, "x/a", addrs, nil, nil, nil); e != nil {
		t.Errorf("no tier: got %+v, want nil", e)
	}
	if e := NewTieredEndpoint(Ingress, "x/a", addrs, nil, allow, base); e.Chain != nil || e.Baseline != nil || e.Allow != allow ||
		e.MapElements4[0].Verdict != Jump(allow.Chain.Name) {
		t.Errorf("allow-list only (Baseline under isolation): got %+v, want the allow-list dispatched directly", e)
	}
	e := NewTieredEndpoint(Ingress, "x/a", addrs, admin, nil, base)
	if e.Chain == nil || len(e.Chain.Rules) != 8 || e.MapElements4[0].Verdict != Jump(e.Names.Tiers) {
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
	mk := func(pods int, deny string) *Ruleset {
		admin := NewTierMaps(TierAdmin, Ingress, "deny", "Admin ingress rules of deny", TierVerdicts{
			AnyPort: []ProtoVerdict{{Peer: PrefixRange(netip.MustParsePrefix(deny)), Protos: ProtoRange(0, 255), Verdict: Drop}},
		})
		r := NewSkeleton()
		for i := 1; i <= pods; i++ {
			id := "ns/p" + string(rune('0'+i))
			r.AddTieredEndpoint(NewTieredEndpoint(Ingress, id, podAddrs(i), admin, nil, nil))
		}
		return r
	}
	one, two := mk(1, "10.244.2.0/24"), mk(2, "10.244.2.0/24")
	if err := two.Validate(); err != nil {
		t.Fatal(err)
	}
	ops := Diff(one, two)
	if got, want := countOps(ops), map[OpKind]int{OpAddChain: 1, OpReplaceRules: 1, OpAddElements: 2}; !cmp.Equal(got, want) {
		t.Errorf("second pod sharing the maps: ops %v, want %v", got, want)
	}
	ops = Diff(two, mk(2, "10.244.3.0/24"))
	if got, want := countOps(ops), map[OpKind]int{OpDeleteElements: 1, OpAddElements: 1}; !cmp.Equal(got, want) {
		t.Errorf("shared maps change: ops %v, want %v", got, want)
	}
	after, err := Apply(two, ops)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(mk(2, "10.244.3.0/24"), after, normalise); diff != "" {
		t.Errorf("applied diff differs (-want +got):\n%s", diff)
	}
	// The last pod going takes the maps and its chains with it.
	if _, err := Apply(two, Diff(two, NewSkeleton())); err != nil {
		t.Errorf("removing every pod: %v", err)
	}
}

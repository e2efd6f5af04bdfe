package nft_test

// IP plan: local pod 10.244.1.10 (fd00::10) isolated for ingress, admitting
// 10.244.2.0/24, 10.244.4.4 and fd00:2::/64 on any port, 10.244.3.7 on tcp/80-81 and
// 10.244.3.8 and fd00:3::8 on tcp/443; 192.0.2.1 is outside the cluster.

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

func traceFixture() *nft.Ruleset {
	r := nft.NewSkeleton()
	r.AddIsolatedEndpoint(nft.Ingress, "x/a",
		[]netip.Addr{netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("fd00::10")},
		nft.AllowList{
			AnyPort: []nft.Range{
				nft.PrefixRange(netip.MustParsePrefix("10.244.2.0/24")),
				nft.Addr(netip.MustParseAddr("10.244.4.4")),
				nft.PrefixRange(netip.MustParsePrefix("fd00:2::/64")),
			},
			Ports: []nft.PortAllow{
				{Peer: nft.Addr(netip.MustParseAddr("10.244.3.7")), Proto: nft.ProtoTCP, Ports: nft.PortRange(80, 81)},
				{Peer: nft.Addr(netip.MustParseAddr("10.244.3.8")), Proto: nft.ProtoTCP, Ports: nft.Port(443)},
				{Peer: nft.Addr(netip.MustParseAddr("fd00:3::8")), Proto: nft.ProtoTCP, Ports: nft.Port(443)},
			},
		})
	return r
}

func TestTrace_PacketPaths(t *testing.T) {
	chain := nft.NamesFor(nft.Ingress, "x/a").Chain
	cases := []struct {
		name  string
		pkt   nft.Packet
		want  nft.VerdictKind
		steps []string
	}{
		{
			name:  "established traffic is accepted before any pod chain",
			pkt:   nft.Packet{Hook: nft.HookForward, Src: ip("192.0.2.1"), Dst: ip("10.244.1.10"), Proto: nft.ProtoTCP, DstPort: 22, CtState: nft.CtStateEstablished},
			want:  nft.VerdictAccept,
			steps: []string{"forward#1 ct state established,related accept => accept"},
		},
		{
			name: "any-port peer returns, then the base chain's policy accepts",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.2.9"), Dst: ip("10.244.1.10"), Proto: nft.ProtoUDP, DstPort: 53, CtState: nft.CtStateNew},
			want: nft.VerdictAccept,
			steps: []string{
				"forward#10 ip daddr vmap @ingress-v4 => jump " + chain,
				chain + "#5 ip saddr @" + chain + ".cidr4 return => return",
				"forward: policy accept",
			},
		},
		{
			name: "port peer on a port outside its range is dropped",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.3.7"), Dst: ip("10.244.1.10"), Proto: nft.ProtoTCP, DstPort: 82, CtState: nft.CtStateNew},
			want: nft.VerdictDrop,
			steps: []string{
				"forward#10 ip daddr vmap @ingress-v4 => jump " + chain,
				chain + "#9 counter drop => drop",
			},
		},
		{
			name: "one peer on one port is found in the exact (hash) set first",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.3.8"), Dst: ip("10.244.1.10"), Proto: nft.ProtoTCP, DstPort: 443, CtState: nft.CtStateNew},
			want: nft.VerdictAccept,
			steps: []string{
				"forward#10 ip daddr vmap @ingress-v4 => jump " + chain,
				chain + "#1 ip saddr . meta l4proto . th dport @" + chain + ".exact4 return => return",
				"forward: policy accept",
			},
		},
		{
			name: "one any-port peer address is found in the addr (hash) set",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.4.4"), Dst: ip("10.244.1.10"), Proto: nft.ProtoICMP, CtState: nft.CtStateNew},
			want: nft.VerdictAccept,
			steps: []string{
				"forward#10 ip daddr vmap @ingress-v4 => jump " + chain,
				chain + "#3 ip saddr @" + chain + ".addr4 return => return",
				"forward: policy accept",
			},
		},
		{
			name: "its neighbour is not",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.4.5"), Dst: ip("10.244.1.10"), Proto: nft.ProtoICMP, CtState: nft.CtStateNew},
			want: nft.VerdictDrop,
		},
		{
			name: "an exact element admits its one port only",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.3.8"), Dst: ip("10.244.1.10"), Proto: nft.ProtoTCP, DstPort: 444, CtState: nft.CtStateNew},
			want: nft.VerdictDrop,
		},
		{
			name: "an exact element admits its one protocol only",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.3.8"), Dst: ip("10.244.1.10"), Proto: nft.ProtoUDP, DstPort: 443, CtState: nft.CtStateNew},
			want: nft.VerdictDrop,
		},
		{
			name: "IPv6 exact element",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("fd00:3::8"), Dst: ip("fd00::10"), Proto: nft.ProtoTCP, DstPort: 443, CtState: nft.CtStateNew},
			want: nft.VerdictAccept,
			steps: []string{
				"forward#11 ip6 daddr vmap @ingress-v6 => jump " + chain,
				chain + "#2 ip6 saddr . meta l4proto . th dport @" + chain + ".exact6 return => return",
				"forward: policy accept",
			},
		},
		{
			name: "IPv6 any-port peer, on a protocol without ports",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("fd00:2::9"), Dst: ip("fd00::10"), Proto: nft.ProtoICMPv6, ICMPType: 128, CtState: nft.CtStateNew},
			want: nft.VerdictAccept,
			steps: []string{
				"forward#11 ip6 daddr vmap @ingress-v6 => jump " + chain,
				chain + "#6 ip6 saddr @" + chain + ".cidr6 return => return",
				"forward: policy accept",
			},
		},
		{
			name: "port peer on its range is admitted",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.3.7"), Dst: ip("10.244.1.10"), Proto: nft.ProtoTCP, DstPort: 81, CtState: nft.CtStateNew},
			want: nft.VerdictAccept,
		},
		{
			name: "ICMP has no port: only any-port peers admit it",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.3.7"), Dst: ip("10.244.1.10"), Proto: nft.ProtoICMP, CtState: nft.CtStateNew},
			want: nft.VerdictDrop,
		},
		{
			name: "IPv6 address of the same pod dispatches to the same chain",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("fd00::99"), Dst: ip("fd00::10"), Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateNew},
			want: nft.VerdictDrop,
		},
		{
			name:  "neighbour discovery is never dropped",
			pkt:   nft.Packet{Hook: nft.HookForward, Src: ip("fd00::99"), Dst: ip("fd00::10"), Proto: nft.ProtoICMPv6, ICMPType: 135, CtState: nft.CtStateNew},
			want:  nft.VerdictAccept,
			steps: []string{"forward#3 icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } accept => accept"},
		},
		{
			name:  "invalid packets are dropped",
			pkt:   nft.Packet{Hook: nft.HookInput, Src: ip("10.244.2.9"), Dst: ip("10.244.1.1"), Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateInvalid},
			want:  nft.VerdictDrop,
			steps: []string{"input#2 ct state invalid drop => drop"},
		},
		{
			name: "input hook judges egress only: ingress maps are not consulted",
			pkt:  nft.Packet{Hook: nft.HookInput, Src: ip("10.244.2.9"), Dst: ip("10.244.1.10"), Proto: nft.ProtoTCP, DstPort: 9, CtState: nft.CtStateNew},
			want: nft.VerdictAccept,
		},
	}
	r := traceFixture()
	if err := nfttest.Validate(r); err != nil {
		t.Fatal(err)
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

func TestFormatRange(t *testing.T) {
	cases := []struct {
		name string
		typ  nft.KeyType
		r    nft.Range
		want string
	}{
		{"single address", nft.TypeIPv4Addr, nft.Addr(ip("10.0.0.1")), "10.0.0.1"},
		{"prefix", nft.TypeIPv4Addr, nft.PrefixRange(netip.MustParsePrefix("10.0.0.0/25")), "10.0.0.0/25"},
		{"everything", nft.TypeIPv4Addr, nft.PrefixRange(netip.MustParsePrefix("0.0.0.0/0")), "0.0.0.0/0"},
		{"range that is no prefix", nft.TypeIPv4Addr, nft.AddrRange(ip("10.0.0.5"), ip("10.0.0.9")), "10.0.0.5-10.0.0.9"},
		{"range that ends past a prefix", nft.TypeIPv4Addr, nft.AddrRange(ip("10.0.0.0"), ip("10.0.1.0")), "10.0.0.0-10.0.1.0"},
		{"v6 prefix", nft.TypeIPv6Addr, nft.PrefixRange(netip.MustParsePrefix("fd00::/64")), "fd00::/64"},
		{"protocol name", nft.TypeInetProto, nft.Proto(nft.ProtoSCTP), "sctp"},
		{"every protocol", nft.TypeInetProto, nft.ProtoRange(0, 255), "0-255"},
		{"port", nft.TypeInetService, nft.Port(443), "443"},
		{"port range", nft.TypeInetService, nft.PortRange(8000, 8100), "8000-8100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := nft.FormatRange(tc.typ, tc.r); got != tc.want {
				t.Errorf("FormatRange = %q, want %q", got, tc.want)
			}
		})
	}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// IP plan of TestTrace_UnknownLocalGuard: the node's pod CIDR is
// 10.244.1.0/24; 10.244.1.10 is the known pod x/a (isolated as in
// traceFixture) and 10.244.1.11 a known pod no policy selects; 10.244.1.0
// and 10.244.1.1 are the node's own (flannel.1, cni0); 10.244.1.20 is a
// pod the agent does not know yet. 10.244.2.9 is a remote pod.
func TestTrace_UnknownLocalGuard(t *testing.T) {
	r := traceFixture()
	r.SetUnknownLocal([]nft.Range{
		nft.AddrRange(ip("10.244.1.2"), ip("10.244.1.9")),
		nft.AddrRange(ip("10.244.1.12"), ip("10.244.1.255")),
	})
	if err := nfttest.Validate(r); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		pkt   nft.Packet
		want  nft.VerdictKind
		steps []string
	}{
		{
			name:  "an unknown local pod cannot send",
			pkt:   nft.Packet{Hook: nft.HookForward, Src: ip("10.244.1.20"), Dst: ip("10.244.2.9"), Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateNew},
			want:  nft.VerdictDrop,
			steps: []string{"forward#4 ip saddr vmap @unknown-local-v4 => drop"},
		},
		{
			name:  "an unknown local pod cannot be reached",
			pkt:   nft.Packet{Hook: nft.HookForward, Src: ip("10.244.2.9"), Dst: ip("10.244.1.20"), Proto: nft.ProtoUDP, DstPort: 53, CtState: nft.CtStateNew},
			want:  nft.VerdictDrop,
			steps: []string{"forward#6 ip daddr vmap @unknown-local-v4 => drop"},
		},
		{
			name:  "an unknown local pod cannot reach its own node",
			pkt:   nft.Packet{Hook: nft.HookInput, Src: ip("10.244.1.20"), Dst: ip("10.244.1.1"), Proto: nft.ProtoTCP, DstPort: 10250, CtState: nft.CtStateNew},
			want:  nft.VerdictDrop,
			steps: []string{"input#4 ip saddr vmap @unknown-local-v4 => drop"},
		},
		{
			name: "a known pod no policy selects is not affected",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.1.11"), Dst: ip("10.244.2.9"), Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateNew},
			want: nft.VerdictAccept,
		},
		{
			name: "the node's own bridge address (masqueraded hairpin) passes the guard",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.1.1"), Dst: ip("10.244.1.11"), Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateNew},
			want: nft.VerdictAccept,
		},
		{
			name: "a known isolated pod is still judged by its allow-list",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.2.9"), Dst: ip("10.244.1.10"), Proto: nft.ProtoUDP, DstPort: 53, CtState: nft.CtStateNew},
			want: nft.VerdictAccept,
		},
		{
			name:  "established flows of an address are not cut by the guard",
			pkt:   nft.Packet{Hook: nft.HookForward, Src: ip("10.244.1.20"), Dst: ip("10.244.2.9"), Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateEstablished},
			want:  nft.VerdictAccept,
			steps: []string{"forward#1 ct state established,related accept => accept"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := r.Trace(tc.pkt)
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

// A goto's target returns to the chain that called the goto's chain, not
// to the rule after the goto: the audit chain that an Accept's element
// goes to ends the tier chain as a return would.
func TestTrace_GotoReturnsToTheCaller(t *testing.T) {
	r := nft.NewRuleset()
	r.AddChain(&nft.Chain{Name: "base", Hook: &nft.Hook{Name: nft.HookForward, Policy: nft.VerdictAccept}, Rules: []nft.Rule{
		{Verdict: nft.Jump("middle")},
		{Verdict: nft.Drop},
	}})
	r.AddChain(&nft.Chain{Name: "middle", Rules: []nft.Rule{
		{Verdict: nft.Goto("target")},
		{Verdict: nft.Accept}, // never: the goto does not come back here
	}})
	r.AddChain(&nft.Chain{Name: "target", Rules: []nft.Rule{{Verdict: nft.Return}}})
	res := r.Trace(nft.Packet{Hook: nft.HookForward, Src: ip("10.244.2.9"), Dst: ip("10.244.1.10"), Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateNew})
	want := []string{"base#1 jump middle => jump middle", "middle#1 goto target => goto target", "target#1 return => return", "base#2 drop => drop"}
	if diff := cmp.Diff(want, res.Steps); diff != "" || res.Verdict != nft.VerdictDrop {
		t.Errorf("verdict %v, steps (-want +got):\n%s", res.Verdict, diff)
	}
	if !strings.Contains(r.Dump(), "goto target") {
		t.Errorf("Dump has no goto:\n%s", r.Dump())
	}
}

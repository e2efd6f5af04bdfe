package nft_test

// IP plan: as traceFixture (local pod x/a 10.244.1.10, fd00::10, isolated
// for ingress, admitting 10.244.2.0/24 on any port and 10.244.3.7 on
// tcp/80-81), plus local pod x/b 10.244.1.11 isolated for egress (it may
// reach 10.244.2.0/24 only) and local pod x/c 10.244.1.12 isolated in no
// direction. 10.244.2.9 and 10.244.3.7 are remote pods, 10.244.1.1 the
// node's cni0 address.

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

// TestTrace_MidStreamPickups: a TCP packet that conntrack picks up as a new
// connection without a SYN is dropped when it leaves a pod judged for
// ingress or enters a pod judged for egress, and judged as-is otherwise;
// a SYN never reaches the mid-stream check.
func TestTrace_MidStreamPickups(t *testing.T) {
	r := traceFixture()
	r.AddIsolatedEndpoint(nft.Egress, "x/b", []netip.Addr{ip("10.244.1.11")}, nft.AllowList{
		AnyPort: []nft.Range{nft.PrefixRange(netip.MustParsePrefix("10.244.2.0/24"))},
	})
	if err := nfttest.Validate(r); err != nil {
		t.Fatal(err)
	}
	const (
		ack    = nft.TCPFlagACK
		pshAck = nft.TCPFlagPSH | nft.TCPFlagACK
		finAck = nft.TCPFlagFIN | nft.TCPFlagACK
		ecnSyn = nft.TCPFlagSYN | nft.TCPFlagECE | nft.TCPFlagCWR
	)
	tcp := func(src, dst string, dport uint16, flags nft.TCPFlag) nft.Packet {
		return nft.Packet{Hook: nft.HookForward, Src: ip(src), Dst: ip(dst), Proto: nft.ProtoTCP, DstPort: dport,
			CtState: nft.CtStateNew, TCPFlags: flags}
	}
	const jumpStep = "forward#12 ct state new tcp flags != syn / fin,syn,rst,ack jump mid-stream => jump mid-stream"
	egressB := nft.NamesFor(nft.Egress, "x/b").Chain
	cases := []struct {
		name  string
		pkt   nft.Packet
		want  nft.VerdictKind
		steps []string // checked when not nil
	}{
		{
			name: "a server's answer from a pod judged for ingress is dropped",
			pkt:  tcp("10.244.1.10", "10.244.2.9", 40000, pshAck),
			want: nft.VerdictDrop,
			steps: []string{
				jumpStep,
				"mid-stream#1 ip saddr @ingress-v4 drop => drop",
			},
		},
		{
			name: "over IPv6 too",
			pkt:  tcp("fd00::10", "fd00::99", 40000, ack),
			want: nft.VerdictDrop,
			steps: []string{
				jumpStep,
				"mid-stream#2 ip6 saddr @ingress-v6 drop => drop",
			},
		},
		{
			name: "an answer to a pod judged for egress is dropped",
			pkt:  tcp("10.244.2.9", "10.244.1.11", 40000, ack),
			want: nft.VerdictDrop,
			steps: []string{
				jumpStep,
				"mid-stream#3 ip daddr @egress-v4 drop => drop",
			},
		},
		{
			name: "a FIN-ACK is no lone SYN either",
			pkt:  tcp("10.244.1.10", "10.244.2.9", 40000, finAck),
			want: nft.VerdictDrop,
		},
		{
			name: "a client's packet to a pod judged for ingress is judged as-is: admitted peer",
			pkt:  tcp("10.244.2.9", "10.244.1.10", 80, ack),
			want: nft.VerdictAccept,
		},
		{
			name: "a client's packet to a pod judged for ingress is judged as-is: port not admitted",
			pkt:  tcp("10.244.3.7", "10.244.1.10", 90, ack),
			want: nft.VerdictDrop,
			steps: []string{
				"forward#10 ip daddr vmap @ingress-v4 => jump " + nft.NamesFor(nft.Ingress, "x/a").Chain,
				nft.NamesFor(nft.Ingress, "x/a").Chain + "#9 counter drop => drop",
			},
		},
		{
			name: "a packet from a pod judged for egress only is judged as-is",
			pkt:  tcp("10.244.1.11", "10.244.2.9", 80, ack),
			want: nft.VerdictAccept,
			steps: []string{
				"forward#8 ip saddr vmap @egress-v4 => jump " + egressB,
				egressB + "#5 ip daddr @" + egressB + ".cidr4 return => return",
				jumpStep,
				"forward: policy accept",
			},
		},
		{
			name: "a pod judged in no direction keeps the kernel's pickups",
			pkt:  tcp("10.244.1.12", "10.244.2.9", 40000, ack),
			want: nft.VerdictAccept,
		},
		{
			name: "an established packet never meets the check",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.1.10"), Dst: ip("10.244.2.9"), Proto: nft.ProtoTCP, DstPort: 40000, CtState: nft.CtStateEstablished, TCPFlags: ack},
			want: nft.VerdictAccept,
		},
		{
			name: "UDP has no flags: a new flow from a pod not judged for egress passes",
			pkt:  nft.Packet{Hook: nft.HookForward, Src: ip("10.244.1.10"), Dst: ip("10.244.2.9"), Proto: nft.ProtoUDP, DstPort: 53, CtState: nft.CtStateNew},
			want: nft.VerdictAccept,
		},
		{
			name: "input has no check: the node's answers leave through output",
			pkt:  nft.Packet{Hook: nft.HookInput, Src: ip("10.244.1.10"), Dst: ip("10.244.1.1"), Proto: nft.ProtoTCP, DstPort: 40000, CtState: nft.CtStateNew, TCPFlags: ack},
			want: nft.VerdictAccept,
		},
		// SYNs: the check is not met, whatever else the packet is.
		{
			name:  "a SYN from a pod judged for ingress opens a connection",
			pkt:   tcp("10.244.1.10", "10.244.2.9", 443, nft.TCPFlagSYN),
			want:  nft.VerdictAccept,
			steps: []string{"forward: policy accept"},
		},
		{
			name:  "an ECN SYN (ECE, CWR) is a lone SYN",
			pkt:   tcp("10.244.1.10", "10.244.2.9", 443, ecnSyn),
			want:  nft.VerdictAccept,
			steps: []string{"forward: policy accept"},
		},
		{
			name:  "no flags given stands for a SYN",
			pkt:   tcp("10.244.2.9", "10.244.1.11", 8080, 0),
			want:  nft.VerdictAccept,
			steps: []string{"forward: policy accept"},
		},
		{
			name: "a SYN to a pod judged for egress is judged by its peers only",
			pkt:  tcp("10.244.1.11", "10.244.3.7", 80, nft.TCPFlagSYN),
			want: nft.VerdictDrop,
			steps: []string{
				"forward#8 ip saddr vmap @egress-v4 => jump " + egressB,
				egressB + "#9 counter drop => drop",
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

func TestTCPFlagsMatch_String(t *testing.T) {
	cases := []struct {
		name string
		m    nft.TCPFlagsMatch
		want string
	}{
		{"not a lone SYN", nft.TCPFlagsMatch{Mask: nft.TCPFlagFIN | nft.TCPFlagSYN | nft.TCPFlagRST | nft.TCPFlagACK, Unless: nft.TCPFlagSYN},
			"tcp flags != syn / fin,syn,rst,ack"},
		{"not a SYN-ACK", nft.TCPFlagsMatch{Mask: nft.TCPFlagSYN | nft.TCPFlagACK, Unless: nft.TCPFlagSYN | nft.TCPFlagACK},
			"tcp flags != syn,ack / syn,ack"},
		{"nft's order and names", nft.TCPFlagsMatch{Mask: nft.TCPFlagCWR | nft.TCPFlagECE | nft.TCPFlagURG | nft.TCPFlagPSH, Unless: nft.TCPFlagPSH},
			"tcp flags != psh / psh,urg,ecn,cwr"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := (nft.Match{TCPFlags: &tc.m}).String(); got != tc.want {
				t.Errorf("String = %q, want %q", got, tc.want)
			}
		})
	}
}

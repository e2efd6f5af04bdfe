package conntrack

// IP plan: node addresses 10.244.1.1 (cni0) and 198.18.0.11; server pod s
// 10.244.1.10 isolated for ingress (TCP 8080 and UDP 53 from client pod c
// 10.244.2.20, everything from pod a 10.244.2.21); pod e 10.244.1.11
// isolated for egress (only to 10.244.2.20 on TCP 80); Service ClusterIP
// 10.96.0.10 port 80 → s:8080; pod u 10.244.3.30 is isolated nowhere.

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftpolicy/nftpolicy/nft"
)

var (
	nodeCNI   = netip.MustParseAddr("10.244.1.1")
	nodeIP    = netip.MustParseAddr("198.18.0.11")
	server    = netip.MustParseAddr("10.244.1.10")
	egressPod = netip.MustParseAddr("10.244.1.11")
	client    = netip.MustParseAddr("10.244.2.20")
	allowAll  = netip.MustParseAddr("10.244.2.21")
	other     = netip.MustParseAddr("10.244.3.30")
)

func isLocal(a netip.Addr) bool { return a == nodeCNI || a == nodeIP }

func testRuleset() *nft.Ruleset {
	rs := nft.NewSkeleton()
	rs.AddIsolatedEndpoint(nft.Ingress, "x/s", []netip.Addr{server}, nft.AllowList{
		AnyPort: []nft.Range{nft.Addr(allowAll)},
		Ports: []nft.PortAllow{
			{Peer: nft.Addr(client), Proto: nft.ProtoTCP, Ports: nft.Port(8080)},
			{Peer: nft.Addr(client), Proto: nft.ProtoUDP, Ports: nft.Port(53)},
		},
	})
	rs.AddIsolatedEndpoint(nft.Egress, "x/e", []netip.Addr{egressPod}, nft.AllowList{
		Ports: []nft.PortAllow{{Peer: nft.Addr(client), Proto: nft.ProtoTCP, Ports: nft.Port(80)}},
	})
	return rs
}

func TestJudge_Flows(t *testing.T) {
	tests := []struct {
		name       string
		flow       Flow
		wantPacket *nft.Packet // nil: not judged
		wantDeny   bool
	}{
		{
			name:       "allowed port, straight to the pod",
			flow:       Flow{Proto: nft.ProtoTCP, OrigSrc: client, ReplySrc: server, ReplySrcPort: 8080},
			wantPacket: &nft.Packet{Hook: nft.HookForward, Src: client, Dst: server, Proto: nft.ProtoTCP, DstPort: 8080, CtState: nft.CtStateNew},
		},
		{
			name:       "denied port",
			flow:       Flow{Proto: nft.ProtoTCP, OrigSrc: client, ReplySrc: server, ReplySrcPort: 9090},
			wantPacket: &nft.Packet{Hook: nft.HookForward, Src: client, Dst: server, Proto: nft.ProtoTCP, DstPort: 9090, CtState: nft.CtStateNew},
			wantDeny:   true,
		},
		{
			// Original tuple client → 10.96.0.10:80, reply s:8080 → client:
			// the forward hook saw the packet after DNAT.
			name:       "through a Service: judged by endpoint and target port",
			flow:       Flow{Proto: nft.ProtoTCP, OrigSrc: client, ReplySrc: server, ReplySrcPort: 8080},
			wantPacket: &nft.Packet{Hook: nft.HookForward, Src: client, Dst: server, Proto: nft.ProtoTCP, DstPort: 8080, CtState: nft.CtStateNew},
		},
		{
			name:       "through a Service to a pod that denies the caller",
			flow:       Flow{Proto: nft.ProtoUDP, OrigSrc: other, ReplySrc: server, ReplySrcPort: 53},
			wantPacket: &nft.Packet{Hook: nft.HookForward, Src: other, Dst: server, Proto: nft.ProtoUDP, DstPort: 53, CtState: nft.CtStateNew},
			wantDeny:   true,
		},
		{
			name:       "UDP allowed",
			flow:       Flow{Proto: nft.ProtoUDP, OrigSrc: client, ReplySrc: server, ReplySrcPort: 53},
			wantPacket: &nft.Packet{Hook: nft.HookForward, Src: client, Dst: server, Proto: nft.ProtoUDP, DstPort: 53, CtState: nft.CtStateNew},
		},
		{
			name:       "ICMP from a peer allowed on every port",
			flow:       Flow{Proto: nft.ProtoICMP, OrigSrc: allowAll, ReplySrc: server},
			wantPacket: &nft.Packet{Hook: nft.HookForward, Src: allowAll, Dst: server, Proto: nft.ProtoICMP, CtState: nft.CtStateNew},
		},
		{
			name:       "ICMP from a peer allowed on ports only",
			flow:       Flow{Proto: nft.ProtoICMP, OrigSrc: client, ReplySrc: server},
			wantPacket: &nft.Packet{Hook: nft.HookForward, Src: client, Dst: server, Proto: nft.ProtoICMP, CtState: nft.CtStateNew},
			wantDeny:   true,
		},
		{
			name:       "egress-isolated pod to its own node: input hook",
			flow:       Flow{Proto: nft.ProtoTCP, OrigSrc: egressPod, ReplySrc: nodeIP, ReplySrcPort: 10250},
			wantPacket: &nft.Packet{Hook: nft.HookInput, Src: egressPod, Dst: nodeIP, Proto: nft.ProtoTCP, DstPort: 10250, CtState: nft.CtStateNew},
			wantDeny:   true,
		},
		{
			name:       "egress-isolated pod to its allowed peer",
			flow:       Flow{Proto: nft.ProtoTCP, OrigSrc: egressPod, ReplySrc: client, ReplySrcPort: 80},
			wantPacket: &nft.Packet{Hook: nft.HookForward, Src: egressPod, Dst: client, Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateNew},
		},
		{
			name: "opened by the node itself (output hook, never filtered)",
			flow: Flow{Proto: nft.ProtoTCP, OrigSrc: nodeCNI, ReplySrc: server, ReplySrcPort: 9090},
		},
		{
			name: "SCTP: port not in the dump, kept",
			flow: Flow{Proto: nft.ProtoSCTP, OrigSrc: other, ReplySrc: server, ReplySrcPort: 0},
		},
		{
			name:       "traffic between pods no policy isolates",
			flow:       Flow{Proto: nft.ProtoTCP, OrigSrc: other, ReplySrc: client, ReplySrcPort: 22},
			wantPacket: &nft.Packet{Hook: nft.HookForward, Src: other, Dst: client, Proto: nft.ProtoTCP, DstPort: 22, CtState: nft.CtStateNew},
		},
		{
			name:       "IPv4-mapped addresses are judged as IPv4",
			flow:       Flow{Proto: nft.ProtoTCP, OrigSrc: netip.AddrFrom16(client.As16()), ReplySrc: netip.AddrFrom16(server.As16()), ReplySrcPort: 9090},
			wantPacket: &nft.Packet{Hook: nft.HookForward, Src: client, Dst: server, Proto: nft.ProtoTCP, DstPort: 9090, CtState: nft.CtStateNew},
			wantDeny:   true,
		},
	}
	rs := testRuleset()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := tt.flow.Packet(isLocal)
			if tt.wantPacket == nil {
				if ok {
					t.Fatalf("Packet() = %v, want not judged", p)
				}
			} else if !ok {
				t.Fatalf("Packet() not judged, want %v", *tt.wantPacket)
			} else if diff := cmp.Diff(*tt.wantPacket, p, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Fatalf("Packet() (-want +got):\n%s", diff)
			}
			j := NewJudge(rs, isLocal)
			if got := j.Denies(tt.flow); got != tt.wantDeny {
				t.Errorf("Denies() = %v, want %v; trace:\n%v", got, tt.wantDeny, rs.Trace(p).Steps)
			}
		})
	}
}

// TestJudge_TracesEachPacketOnce: many connections of one client to one
// server differ only in the source port, which is not part of the packet.
func TestJudge_TracesEachPacketOnce(t *testing.T) {
	j := NewJudge(testRuleset(), isLocal)
	flows := []Flow{
		{Proto: nft.ProtoTCP, OrigSrc: client, ReplySrc: server, ReplySrcPort: 9090},
		{Proto: nft.ProtoTCP, OrigSrc: client, ReplySrc: server, ReplySrcPort: 9090},
		{Proto: nft.ProtoTCP, OrigSrc: client, ReplySrc: server, ReplySrcPort: 8080},
		{Proto: nft.ProtoTCP, OrigSrc: nodeCNI, ReplySrc: server, ReplySrcPort: 8080},
	}
	var denied int
	for _, f := range flows {
		if j.Denies(f) {
			denied++
		}
	}
	got := [4]int{j.Examined, j.Judged, j.Traced, denied}
	if want := [4]int{4, 3, 2, 2}; got != want {
		t.Errorf("examined, judged, traced, denied = %v, want %v", got, want)
	}
}

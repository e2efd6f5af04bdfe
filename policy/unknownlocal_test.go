package policy

// IP plan: fixtures_test.go, with withPodCIDRs: node-1's pod CIDRs are
// 10.244.1.0/24 and fd00:10:244:1::/64, its own addresses 10.244.1.0,
// 10.244.1.1 and fd00:10:244:1::1. x/new is a pod of node-1 that has no
// address in its status yet; its CNI gave it 10.244.1.30.

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftpolicy/nftpolicy/nft"
)

func TestCompile_UnknownLocalGuard(t *testing.T) {
	cases := []struct {
		name string
		pkt  string
		hook nft.HookName
		want bool // connects
	}{
		{"the new pod cannot be reached from a remote pod", "10.244.2.12 -> 10.244.1.30 TCP/80", nft.HookForward, false},
		{"the new pod cannot be reached from a local pod", "10.244.1.11 -> 10.244.1.30 UDP/53", nft.HookForward, false},
		{"the new pod cannot send", "10.244.1.30 -> 10.244.2.12 TCP/80", nft.HookForward, false},
		{"the new pod cannot reach its node", "10.244.1.30 -> 10.244.1.1 TCP/22", nft.HookInput, false},
		{"an unused v6 address is unknown too", "fd00:10:244:1::99 -> fd00:10:244:1::10 TCP/80", nft.HookForward, false},
		{"known pods no policy selects still connect", "10.244.1.11 -> 10.244.2.12 TCP/80", nft.HookForward, true},
		{"the node's bridge address (masqueraded hairpin) is no pod", "10.244.1.1 -> 10.244.1.11 TCP/80", nft.HookForward, true},
		{"a remote node's pod CIDR is that node's business", "10.244.2.99 -> 10.244.1.11 TCP/80", nft.HookForward, true},
		{"outside addresses are not in the guard", "192.0.2.1 -> 10.244.1.11 TCP/80", nft.HookForward, true},
	}
	snap := withPodCIDRs(fixtureSnapshot(node1))
	newPod := mkPod("x/new", node1, "pod=new", "")
	newPod.Phase = corev1.PodPending
	snap.Pods = append(snap.Pods, newPod)
	rs, _ := Compile(snap)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := pkt(tc.pkt)
			res := rs.Trace(nft.Packet{Hook: tc.hook, Src: p.Src, Dst: p.Dst, Proto: protoOf(p.Protocol), DstPort: p.DstPort, CtState: nft.CtStateNew})
			if got := res.Verdict == nft.VerdictAccept; got != tc.want {
				t.Errorf("%s: connects=%v, want %v; trace:\n\t%s", tc.pkt, got, tc.want, strings.Join(res.Steps, "\n\t"))
			}
			if ev := Evaluate(snap, p); ev.Allowed != tc.want {
				t.Errorf("%s: Evaluate allowed=%v, want %v (%+v)", tc.pkt, ev.Allowed, tc.want, ev)
			}
		})
	}
}

// Once the pod has its address (from its status, or as the CNI plugin
// announced it), the incremental compile lifts the guard for that address
// only, in the same ruleset that carries the pod's own chains.
func TestNodeCompiler_UnknownLocalFollowsPods(t *testing.T) {
	snap := withPodCIDRs(fixtureSnapshot(node1, denyIngressX))
	c := NewNodeCompiler(node1)
	c.LoadSnapshot(snap)
	newPod := mkPod("x/new", node1, "pod=new", "")
	newPod.Phase = corev1.PodPending
	c.SetPod(&newPod)

	probe := func(rs *nft.Ruleset) bool {
		res := rs.Trace(nft.Packet{Hook: nft.HookForward, Src: netip.MustParseAddr("10.244.1.30"), Dst: netip.MustParseAddr("10.244.2.12"), Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateNew})
		return res.Verdict == nft.VerdictAccept
	}
	rs, _ := c.Compile()
	if probe(rs) {
		t.Fatal("x/new sends before the agent knows its address")
	}
	known := newPod
	known.IPs = []netip.Addr{netip.MustParseAddr("10.244.1.30")}
	c.SetPod(&known)
	rs, _ = c.Compile()
	if !probe(rs) {
		t.Error("x/new (egress not isolated) cannot send once its address is known")
	}
	in := rs.Trace(nft.Packet{Hook: nft.HookForward, Src: netip.MustParseAddr("10.244.2.12"), Dst: netip.MustParseAddr("10.244.1.30"), Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateNew})
	if in.Verdict != nft.VerdictDrop || !strings.Contains(strings.Join(in.Steps, "\n"), "@ingress-v4") {
		t.Errorf("x/new is not judged by its namespace's default deny once known:\n\t%s", strings.Join(in.Steps, "\n\t"))
	}
	fresh, _ := Compile(withPodCIDRs(&Snapshot{NodeName: node1, Namespaces: snap.Namespaces, Pods: append(fixturePods(), known), Policies: snap.Policies}))
	if got, want := nft.CanonicalListing(rs.Dump()), nft.CanonicalListing(fresh.Dump()); got != want {
		t.Errorf("incremental compile differs from a fresh one:\n%s\n---\n%s", got, want)
	}
	c.DeletePod("x", "new")
	rs, _ = c.Compile()
	if probe(rs) {
		t.Error("a deleted pod's address is still open")
	}
}

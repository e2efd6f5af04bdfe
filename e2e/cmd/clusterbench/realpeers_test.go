package main

// IP plan: podLayout's pods (the server 10.244.1.200, the clients .1.201
// and .2.201, the outsider .2.202, other-1..3) and n real peer pods
// 10.244.<1+j%3>.<10+j>, one after the other as host-local hands them
// out, so that neighbours on a node are adjacent addresses. No cluster:
// the policies are judged by policy.Evaluate and compiled by
// policy.Compile, and the compiled table's text is read as peersInTable
// reads the kernel's.

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/policy"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

// realPeerLayout is podLayout with n peer pods and the real-peer figure's
// policies (the clients' bp-99999 and rp-0000 .. rp-<policies-2>).
func realPeerLayout(t *testing.T, n, policies int) (*policy.Snapshot, map[string]netip.Addr, []*kubelet.Pod) {
	t.Helper()
	nps := []*networkingv1.NetworkPolicy{synth.BackgroundPolicy(benchNS, benchPort, 99999, "last")}
	for i := range policies - 1 {
		nps = append(nps, realPeerPolicy(i, n))
	}
	snap, ips := layout(t, nps, nil)
	var peers []*kubelet.Pod
	for j := range n {
		node := 1 + j%3
		ip := netip.MustParseAddr(fmt.Sprintf("10.244.%d.%d", node, 10+j))
		labels := map[string]string{"rp": fmt.Sprintf("r%d", j)}
		name := fmt.Sprintf("peer-%03d", j)
		snap.Pods = append(snap.Pods, policy.Pod{Namespace: benchNS, Name: name, NodeName: fmt.Sprintf("node-%d", node), Labels: labels,
			Phase: corev1.PodRunning, IPs: []netip.Addr{ip}})
		ips[name] = ip
		peers = append(peers, &kubelet.Pod{Spec: kubelet.PodSpec{Namespace: benchNS, Name: name, Labels: labels}, IP: ip})
	}
	return snap, ips, peers
}

func TestRealPeerPolicies_OnTheBenchLayout(t *testing.T) {
	const n, policies = 5, 11 // rp-0000 .. rp-0009: every peer admitted twice
	snap, ips, _ := realPeerLayout(t, n, policies)
	for i := range policies - 1 {
		port := uint16(realPeerPort0 + i)
		for j := range n {
			peer := ips[fmt.Sprintf("peer-%03d", j)]
			v := policy.Evaluate(snap, policy.Packet{Src: peer, Dst: ips["server"], Protocol: corev1.ProtocolTCP, DstPort: port})
			if want := i%n == j; v.Allowed != want {
				t.Errorf("peer-%03d -> server TCP %d: allowed %v, want %v", j, port, v.Allowed, want)
			}
		}
	}
	// The measured traffic is the clients', admitted by bp-99999 alone;
	// the outsider and the peers stay blocked on that port.
	for name, want := range map[string]bool{"client-same": true, "client-cross": true, "outsider": false, "peer-000": false} {
		if v := policy.Evaluate(snap, tcp9000(ips[name], ips["server"])); v.Allowed != want {
			t.Errorf("%s -> server TCP %d: allowed %v, want %v", name, benchPort, v.Allowed, want)
		}
	}
}

// The server node's compiled table holds every peer's address on its
// policies' ports, one element per policy, and countCovered finds each
// peer there, and misses the one whose Pod the agent does not know.
func TestCountCovered_CompiledTable(t *testing.T) {
	const n, policies = 6, 13
	snap, _, peers := realPeerLayout(t, n, policies)
	node1 := *snap
	node1.NodeName = "node-1"
	rs, warnings := policy.Compile(&node1)
	if len(warnings) != 0 {
		t.Fatalf("warnings %+v", warnings)
	}
	dump := rs.Dump()
	if got := countCovered(dump, peers, n); got != n {
		t.Errorf("countCovered = %d, want %d; table:\n%s", got, n, dump)
	}
	if got, want := len(allowElement.FindAllString(dump, -1)), 2*(policies-1); got < want {
		// server and other-1 (both tier=bench on node 1) have one element
		// per rp policy each, plus the clients'.
		t.Errorf("%d TCP allow-list elements, want at least %d", got, want)
	}

	// peer-002 unknown to the agent: not in the table.
	without := node1
	without.Pods = nil
	for _, p := range node1.Pods {
		if p.Name != "peer-002" {
			without.Pods = append(without.Pods, p)
		}
	}
	rs, _ = policy.Compile(&without)
	if got := countCovered(rs.Dump(), peers, n); got != n-1 {
		t.Errorf("without peer-002's Pod: countCovered = %d, want %d", got, n-1)
	}
}

func TestCountCovered_Ranges(t *testing.T) {
	pod := func(j int, ip string) *kubelet.Pod {
		return &kubelet.Pod{Spec: kubelet.PodSpec{Labels: map[string]string{"rp": fmt.Sprintf("r%d", j)}}, IP: netip.MustParseAddr(ip)}
	}
	peers := []*kubelet.Pod{pod(0, "10.244.1.10"), pod(1, "10.244.1.11"), pod(2, "10.244.2.12")}
	table := `elements = { 10.244.1.9-10.244.1.10 . tcp . 10000,
		10.244.1.11 . tcp . 10000,
		10.244.2.12 . tcp . 10005 }`
	// peer 0 in a range on its port; peer 1 on peer 0's port (10000
	// admits r0 only); peer 2 on 10005 = policy 5, 5 % 3 = 2: its own.
	if got := countCovered(table, peers, 3); got != 2 {
		t.Errorf("countCovered = %d, want 2", got)
	}
}

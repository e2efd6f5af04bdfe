package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftpolicy/nftpolicy/bench/results"
	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
)

// The real-peer datapath figure (issue 13, goal 5): figure 1's interleaved
// pairs (no agent / agents, bootstrap interval of each ratio) with
// policies whose peers are real pods instead of synthetic /32s. The
// harness creates -real-peers pods spread over the nodes (each its own
// network namespace, an address from the CNI, a Running Pod object; no
// podserver process and no Service: they only need to exist), labelled
// rp=r<j>; policy rp-<i> selects the tier=bench pods like a background
// policy and admits pod r<i mod peers> on TCP port realPeerPort0+i, a port
// of its own, so that no two policies' boxes merge into one element: the
// server's allow-list holds one element per policy, keyed by the address
// of a real pod that the agent learned from the Pod's status. Together with
// the clients' policy (bp-99999) they make -real-peer-policies policies.

// realPeerPort0 is the port policy rp-0000 admits its peer on.
const realPeerPort0 = 10000

// RealPeers is results.json's `datapath_real_peers`.
type RealPeers struct {
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	PeerPods int       `json:"peer_pods"`
	// PodsPerNode: the peer pods each node hosts.
	PodsPerNode map[string]int `json:"peer_pods_per_node"`
	// Policies: every NetworkPolicy of the figure (the rp-NNNN and the
	// clients' bp-99999).
	Policies          int     `json:"policies"`
	PodCreateSeconds  float64 `json:"pod_create_seconds"`
	PodDeleteSeconds  float64 `json:"pod_delete_seconds"`
	MemAvailableDelta int64   `json:"mem_available_delta_bytes"`
	// PeersInTable: the peer pods whose address lies in an element
	// admitting TCP on a policy's port in the server node's table, once
	// the agents synced (must be all of them).
	PeersInTable int          `json:"peers_in_table"`
	Interleaved  *Interleaved `json:"interleaved"`
}

// realPeerPolicy is policy rp-<i> of n real peer pods: it selects the
// tier=bench pods and admits pod rp=r<i mod n> on TCP realPeerPort0+i.
func realPeerPolicy(i, n int) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(int32(realPeerPort0 + i))
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("rp-%04d", i), Namespace: benchNS},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"tier": "bench"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{
					MatchLabels: map[string]string{"rp": fmt.Sprintf("r%d", i%n)}}}},
			}},
		},
	}
}

// realPeers creates the peer pods and the policies, runs the interleaved
// pairs and deletes the pods again (the policies stay until the next
// figure replaces them). It leaves no agent running.
func (e *env) realPeers(ctx context.Context, peers, policies, pairs int, d time.Duration, log io.Writer) (*RealPeers, error) {
	if peers < 1 || policies < 2 || realPeerPort0+policies-2 > 65535 {
		return nil, fmt.Errorf("-real-peers %d, -real-peer-policies %d: at least 1 pod, 2 to %d policies", peers, policies, 65535-realPeerPort0+2)
	}
	started := time.Now()
	rp := &RealPeers{Started: started.UTC(), PeerPods: peers, Policies: policies, PodsPerNode: map[string]int{}}
	e.stopAgents()
	memBefore := memAvailable()
	specs := make([]kubelet.PodSpec, peers)
	for j := range specs {
		specs[j] = kubelet.PodSpec{Namespace: benchNS, Name: fmt.Sprintf("peer-%03d", j), Labels: map[string]string{"rp": fmt.Sprintf("r%d", j)},
			NoService: true, NoServer: true}
	}
	var mu sync.Mutex
	err := parallel(ctx, specs, func(spec kubelet.PodSpec) error {
		p, err := e.kl.CreatePod(ctx, spec)
		if err != nil {
			return err
		}
		mu.Lock()
		e.peers = append(e.peers, p)
		rp.PodsPerNode[p.Node.Name]++
		mu.Unlock()
		return nil
	})
	rp.PodCreateSeconds = time.Since(started).Seconds()
	rp.MemAvailableDelta = memAvailable() - memBefore
	fmt.Fprintf(log, "%s %d peer pods created in %.1fs (%v per node), MemAvailable %+.0f MiB\n", time.Now().Format("15:04:05.000"),
		len(e.peers), rp.PodCreateSeconds, rp.PodsPerNode, float64(rp.MemAvailableDelta)/(1<<20))
	if err != nil {
		return nil, fmt.Errorf("peer pods: %w", err)
	}
	// The namespace's policies become exactly the clients' one and the
	// rp-NNNN.
	np := e.cs.NetworkingV1().NetworkPolicies(benchNS)
	if err := e.ensureBackground(ctx, 0); err != nil {
		return nil, err
	}
	if err := e.createPolicies(ctx, []int{99999}); err != nil {
		return nil, err
	}
	idx := make([]int, policies-1)
	for i := range idx {
		idx[i] = i
	}
	if err := parallel(ctx, idx, func(i int) error {
		_, err := np.Create(ctx, realPeerPolicy(i, peers), metav1.CreateOptions{})
		return err
	}); err != nil {
		return nil, err
	}
	// The agents once, to see the peers in the table.
	if _, _, err := e.withAgents(ctx, policies); err != nil {
		return nil, err
	}
	covered, err := e.peersInTable(ctx)
	if err != nil {
		return nil, err
	}
	rp.PeersInTable = covered
	if covered != len(e.peers) {
		return nil, fmt.Errorf("%d of %d peer pods' addresses are in the server node's allow-lists", covered, len(e.peers))
	}
	iv, err := e.interleaved(ctx, policies, pairs, d, 5000, log)
	if err != nil {
		return nil, err
	}
	rp.Interleaved = iv
	t := time.Now()
	if err := e.deletePeers(ctx); err != nil {
		return nil, err
	}
	rp.PodDeleteSeconds = time.Since(t).Seconds()
	rp.Seconds = time.Since(started).Seconds()
	return rp, nil
}

// deletePeers deletes the peer pods, a few at a time.
func (e *env) deletePeers(ctx context.Context) error {
	err := parallel(ctx, e.peers, func(p *kubelet.Pod) error { return e.kl.DeletePod(ctx, p) })
	e.peers = nil
	return err
}

// allowElement is an allow-list element admitting TCP on one port, as
// nft prints it: an address or a range, then protocol and port.
var allowElement = regexp.MustCompile(`(\d+\.\d+\.\d+\.\d+)(?:-(\d+\.\d+\.\d+\.\d+))? \. tcp \. (\d+)`)

// peersInTable counts the peer pods whose address lies in an element
// admitting TCP on the port of a policy admitting it, in the table of
// the server's node.
func (e *env) peersInTable(ctx context.Context) (int, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", e.st.Nodes[0].NetNS, "nft", "list", "table", "inet", "nftpolicy").Output()
	if err != nil {
		return 0, fmt.Errorf("nft list table: %w", err)
	}
	return countCovered(string(out), e.peers, len(e.peers)), nil
}

// countCovered counts the pods of peers (peer j is pod rp=r<j>, admitted
// by the policies i ≡ j mod n on port realPeerPort0+i) that some element of
// table covers on one of their ports.
func countCovered(table string, peers []*kubelet.Pod, n int) int {
	type box struct {
		lo, hi netip.Addr
		port   int
	}
	var boxes []box
	for _, m := range allowElement.FindAllStringSubmatch(table, -1) {
		lo, err := netip.ParseAddr(m[1])
		if err != nil {
			continue
		}
		hi := lo
		if m[2] != "" {
			if hi, err = netip.ParseAddr(m[2]); err != nil {
				continue
			}
		}
		port, _ := strconv.Atoi(m[3])
		boxes = append(boxes, box{lo, hi, port})
	}
	covered := 0
	for _, p := range peers {
		j, err := strconv.Atoi(strings.TrimPrefix(p.Spec.Labels["rp"], "r"))
		if err != nil {
			continue
		}
		for _, b := range boxes {
			if b.port >= realPeerPort0 && (b.port-realPeerPort0)%n == j && b.lo.Compare(p.IP) <= 0 && p.IP.Compare(b.hi) <= 0 {
				covered++
				break
			}
		}
	}
	return covered
}

// memAvailable is /proc/meminfo's MemAvailable in bytes (0 if unreadable).
func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func printRealPeers(w io.Writer, rp *RealPeers) {
	fmt.Fprintf(w, "\nFigure 1 with real-pod peers — %d policies admitting %d real pods (%v per node), each on a port of its own; pods created in %.1fs (MemAvailable %+.0f MiB), deleted in %.1fs; %d of %d peers in the server node's allow-lists; load average %s\n",
		rp.Policies, rp.PeerPods, rp.PodsPerNode, rp.PodCreateSeconds, float64(rp.MemAvailableDelta)/(1<<20), rp.PodDeleteSeconds, rp.PeersInTable, rp.PeerPods, results.LoadAverage())
	if rp.Interleaved != nil {
		printInterleaved(w, rp.Interleaved)
	}
}

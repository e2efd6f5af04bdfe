//go:build linux

package controlplane

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

// AgentLatency is the agent's share of figure 2 (programming latency) on
// the control plane alone: the server's node of figure 2's cluster, with
// background NetworkPolicies selecting the server (synth.BackgroundPolicy,
// as clusterbench creates them), in a long-lived policy.NodeCompiler
// synced by a kernel.Syncer into a throwaway network namespace. Each of
// figure 2's NetworkPolicy kinds is made Reps times as the agent's
// reconcile handles its event: the update (SetPolicy, DeletePolicy,
// SetPod), NodeCompiler.Compile, Syncer.Sync. What the cluster adds on top
// (the API write, the watch, the debounce, the prober's poll) is not in
// it. Noop is the baseline: the same compile and sync with nothing
// changed.
type AgentLatency struct {
	BackgroundPolicies int `json:"background_policies"`
	// AllowListElements are the elements of the server's ingress
	// allow-list with allow-last in place.
	AllowListElements int                `json:"allow_list_elements"`
	Reps              int                `json:"reps"`
	Noop              LatencyKind        `json:"noop"`
	Kinds             []LatencyKind      `json:"kinds"`
	All               LatencyKindSummary `json:"all"`
}

// LatencyKind is one kind of event, Reps times.
type LatencyKind struct {
	Kind string `json:"kind"`
	// Verdict is what the event makes of client-same's connection to the
	// server on TCP 9000 (checked with nft.Trace on each synced ruleset).
	Verdict string `json:"verdict"`
	LatencyKindSummary
}

// LatencyKindSummary is a distribution of per-event costs, in seconds:
// wall clock of update + compile + sync, and the process's CPU time for
// it (garbage collection included), with the diff's size.
type LatencyKindSummary struct {
	N              int       `json:"n"`
	P50Seconds     float64   `json:"p50_seconds"`
	P99Seconds     float64   `json:"p99_seconds"`
	MaxSeconds     float64   `json:"max_seconds"`
	CompileP50     float64   `json:"compile_p50_seconds"`
	SyncP50        float64   `json:"sync_p50_seconds"`
	CPUP50Seconds  float64   `json:"cpu_p50_seconds"`
	CPUMeanSeconds float64   `json:"cpu_mean_seconds"`
	Ops            int       `json:"ops,omitempty"`
	OpElements     int       `json:"op_elements,omitempty"`
	Samples        []float64 `json:"samples_seconds,omitempty"`
}

// Figure 2's objects, as clusterbench names them.
const (
	latencyNS   = "bench"
	latencyNode = "node-1"
	latencyPort = 9000
)

// latencyPods are figure 2's pods: the server and other-1 (selected by
// every background policy) and client-same on the server's node, the
// others remote.
func latencyPods() []policy.Pod {
	pod := func(name, node string, ip string, labels map[string]string) policy.Pod {
		return policy.Pod{Namespace: latencyNS, Name: name, NodeName: node, Phase: corev1.PodRunning,
			Labels: labels, IPs: []netip.Addr{netip.MustParseAddr(ip)}}
	}
	return []policy.Pod{
		pod("server", latencyNode, "10.244.0.200", map[string]string{"app": "server", "tier": "bench"}),
		pod("client-same", latencyNode, "10.244.0.201", map[string]string{"peer": "last"}),
		pod("other-1", latencyNode, "10.244.0.202", map[string]string{"tier": "bench"}),
		pod("client-cross", "node-2", "10.244.1.201", map[string]string{"peer": "last"}),
		pod("outsider", "node-2", "10.244.1.202", map[string]string{"peer": "none"}),
		pod("other-2", "node-2", "10.244.1.203", map[string]string{"tier": "bench"}),
	}
}

// latencyPolicies are deny-server (isolates the server, no rules) and
// allow-last (admits peer=last on TCP 9000), as clusterbench's.
func latencyPolicies() (deny, allow *networkingv1.NetworkPolicy) {
	server := metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}
	deny = &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny-server", Namespace: latencyNS},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: server, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	allow = synth.BackgroundPolicy(latencyNS, latencyPort, 99999, "last")
	allow.Name = "allow-last"
	allow.Spec.PodSelector = *server.DeepCopy()
	return deny, allow
}

// withPeer is allow-last admitting peer=value instead.
func withPeer(allow *networkingv1.NetworkPolicy, value string) *networkingv1.NetworkPolicy {
	p := allow.DeepCopy()
	p.Spec.Ingress[0].From[0].PodSelector.MatchLabels = map[string]string{"peer": value}
	return p
}

// MeasureAgentLatency builds figure 2's node with background policies,
// syncs it into a fresh namespace, and measures each kind reps times.
func MeasureAgentLatency(background, reps int) (AgentLatency, error) {
	out := AgentLatency{BackgroundPolicies: background, Reps: reps}
	snap := &policy.Snapshot{NodeName: latencyNode,
		Namespaces: []policy.Namespace{{Name: latencyNS, Labels: map[string]string{"kubernetes.io/metadata.name": latencyNS}}},
		Pods:       latencyPods()}
	deny, allow := latencyPolicies()
	snap.Policies = append(snap.Policies, deny)
	for i := range background {
		snap.Policies = append(snap.Policies, synth.BackgroundPolicy(latencyNS, latencyPort, i, fmt.Sprintf("p%d", i)))
	}
	s, cl, cur, closeNS, err := startAgent(snap)
	if err != nil {
		return out, err
	}
	defer closeNS()
	server, client := snap.Pods[0], snap.Pods[1]
	probe := nft.Packet{Hook: nft.HookForward, Src: client.IPs[0], Dst: server.IPs[0], Proto: nft.ProtoTCP,
		DstPort: latencyPort, CtState: nft.CtStateNew}
	newcomer := policy.Pod{Namespace: latencyNS, Name: "newcomer", NodeName: latencyNode, Phase: corev1.PodPending,
		Labels: map[string]string{"peer": "last"}}
	running := newcomer
	running.Phase, running.IPs = corev1.PodRunning, []netip.Addr{netip.MustParseAddr("10.244.0.203")}
	newcomerProbe := probe
	newcomerProbe.Src = running.IPs[0]

	type kind struct {
		name, verdict string
		update        func()
		probe         nft.Packet
	}
	relabel := func(v string) func() {
		return func() {
			c := client
			c.Labels = map[string]string{"peer": v}
			cl.SetPod(&c)
		}
	}
	groups := [][]kind{
		{
			{"policy create (admits the client)", "allowed", func() { cl.SetPolicy(allow) }, probe},
			{"policy delete (admitted the client)", "blocked", func() { cl.DeletePolicy(latencyNS, allow.Name) }, probe},
		},
		{
			{"pod label change (client leaves allow)", "blocked", relabel("off"), probe},
			{"pod label change (client joins allow)", "allowed", relabel("last"), probe},
		},
		{
			{"policy update (peer selector off the client)", "blocked", func() { cl.SetPolicy(withPeer(allow, "off")) }, probe},
			{"policy update (peer selector back)", "allowed", func() { cl.SetPolicy(withPeer(allow, "last")) }, probe},
		},
		{
			{"new pod becomes Running (admitted)", "allowed", func() { cl.SetPod(&running) }, newcomerProbe},
		},
	}
	// untimed brings the node to where a group starts or ends.
	untimed := func(update func()) error {
		update()
		rs, _ := cl.Compile()
		if err := s.Sync(context.Background(), rs); err != nil {
			return err
		}
		cur = rs
		return nil
	}
	var noop latencySamples
	samples := make([][]latencySamples, len(groups))
	for gi, g := range groups {
		samples[gi] = make([]latencySamples, len(g))
		switch gi {
		case 1, 2: // allow-last in place for the label and update kinds
			if err := untimed(func() { cl.SetPolicy(allow) }); err != nil {
				return out, err
			}
		}
		for range reps {
			if cur, err = noop.step(s, cl, cur, func() {}); err != nil {
				return out, fmt.Errorf("no-op sync: %w", err)
			}
			if gi == 3 { // the newcomer's Pod object, Pending, before it runs
				if err := untimed(func() { cl.SetPod(&newcomer) }); err != nil {
					return out, err
				}
			}
			for ki, k := range g {
				if cur, err = samples[gi][ki].step(s, cl, cur, k.update); err != nil {
					return out, fmt.Errorf("%s: %w", k.name, err)
				}
				if got := verdictName(cur.Verdict(k.probe)); got != k.verdict {
					return out, fmt.Errorf("%s: %v is %s, want %s", k.name, k.probe, got, k.verdict)
				}
			}
			if gi == 3 {
				if err := untimed(func() { cl.DeletePod(latencyNS, newcomer.Name) }); err != nil {
					return out, err
				}
			}
		}
		if gi == 0 {
			if err := untimed(func() { cl.SetPolicy(allow) }); err != nil {
				return out, err
			}
			out.AllowListElements = allowListElements(cur, server)
		}
	}
	if err := s.Verify(context.Background()); err != nil {
		return out, fmt.Errorf("after the events: %w", err)
	}
	// Whatever the long-lived NodeCompiler kept, its result must be a
	// fresh compile's.
	fresh, _ := policy.Compile(cl.Snapshot())
	if ops := nft.Diff(fresh, cur); len(ops) != 0 {
		return out, fmt.Errorf("incremental compile differs from a fresh one by %d ops, first %v", len(ops), ops[0])
	}
	out.Noop = LatencyKind{Kind: "no-op (baseline)", LatencyKindSummary: noop.summary(false)}
	var all latencySamples
	for gi, g := range groups {
		for ki, k := range g {
			st := samples[gi][ki]
			out.Kinds = append(out.Kinds, LatencyKind{Kind: k.name, Verdict: k.verdict, LatencyKindSummary: st.summary(true)})
			all.add(st)
		}
	}
	out.All = all.summary(false)
	return out, nil
}

func verdictName(v nft.VerdictKind) string {
	if v == nft.VerdictDrop {
		return "blocked"
	}
	return "allowed"
}

// allowListElements counts the elements of pod's ingress allow-list sets.
func allowListElements(rs *nft.Ruleset, pod policy.Pod) int {
	n := nft.NamesFor(nft.Ingress, pod.Key())
	total := 0
	for _, name := range []string{n.ExactV4, n.ExactV6, n.AddrV4, n.AddrV6, n.AnyV4, n.AnyV6, n.PortsV4, n.PortsV6} {
		if s := rs.Sets[name]; s != nil {
			total += len(s.Elements)
		}
	}
	return total
}

// latencySamples are one kind's events.
type latencySamples struct {
	total, compile, sync, cpu []time.Duration
	ops, elements             int
}

// step is one event: update, compile, sync from cur, timed together on
// the wall clock and in process CPU time.
func (ls *latencySamples) step(s syncer, cl *policy.NodeCompiler, cur *nft.Ruleset, update func()) (*nft.Ruleset, error) {
	runtime.GC()
	c0 := cpuTime()
	t0 := time.Now()
	update()
	next, _ := cl.Compile()
	t1 := time.Now()
	if err := s.Sync(context.Background(), next); err != nil {
		return nil, err
	}
	t2 := time.Now()
	ls.cpu = append(ls.cpu, cpuTime()-c0)
	ls.total = append(ls.total, t2.Sub(t0))
	ls.compile = append(ls.compile, t1.Sub(t0))
	ls.sync = append(ls.sync, t2.Sub(t1))
	ls.ops, ls.elements = CountOps(nft.Diff(cur, next))
	return next, nil
}

// syncer is what step needs of a kernel.Syncer.
type syncer interface {
	Sync(context.Context, *nft.Ruleset) error
}

func (ls *latencySamples) add(o latencySamples) {
	ls.total = append(ls.total, o.total...)
	ls.compile = append(ls.compile, o.compile...)
	ls.sync = append(ls.sync, o.sync...)
	ls.cpu = append(ls.cpu, o.cpu...)
}

func (ls *latencySamples) summary(withSamples bool) LatencyKindSummary {
	out := LatencyKindSummary{N: len(ls.total), P50Seconds: median(ls.total), P99Seconds: quantile(ls.total, 0.99),
		MaxSeconds: quantile(ls.total, 1), CompileP50: median(ls.compile), SyncP50: median(ls.sync),
		CPUP50Seconds: median(ls.cpu), Ops: ls.ops, OpElements: ls.elements}
	var sum time.Duration
	for _, d := range ls.cpu {
		sum += d
	}
	if len(ls.cpu) > 0 {
		out.CPUMeanSeconds = (sum / time.Duration(len(ls.cpu))).Seconds()
	}
	if withSamples {
		for _, d := range ls.total {
			out.Samples = append(out.Samples, d.Seconds())
		}
	}
	return out
}

//go:build linux

// Package controlplane measures figures 3 and 4 of the benchmarks: the cost
// of compiling, diffing and applying the ruleset of one node of a synthetic
// cluster (policy/synth), and of one-pod churn, against the real kernel in
// a throwaway network namespace. Every figure comes with the baseline it is
// read against, taken in the same run.
package controlplane

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netns"

	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/kernel"
	"github.com/nftpolicy/nftpolicy/policy"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

// Counts describes a ruleset, or what a batch writes.
type Counts struct {
	Chains   int `json:"chains"`
	Rules    int `json:"rules"`
	Sets     int `json:"sets"`
	Elements int `json:"elements"`
	// Ops is the number of nft.Diff operations; OpElements the elements
	// they carry (each element is one netlink element attribute).
	Ops        int `json:"ops"`
	OpElements int `json:"op_elements"`
	// TierMaps are the ClusterNetworkPolicy tier maps among Sets (four
	// per tier, direction and group of pods with the same policies), and
	// TierElements their elements (among Elements).
	TierMaps     int `json:"tier_maps"`
	TierElements int `json:"tier_elements"`
}

// FullSync is one shape's full sync: nil → desired into an empty kernel table.
type FullSync struct {
	Shape string `json:"shape"`
	Pods  int    `json:"pods"`
	// Policies and Namespaces of the cluster; LocalPods on the node.
	Policies   int `json:"policies"`
	Namespaces int `json:"namespaces"`
	LocalPods  int `json:"local_pods"`
	// ClusterNetworkPolicies of the cluster (synth.ClusterNetworkPolicy);
	// with any, the cluster's Nodes are in the snapshot too.
	ClusterNetworkPolicies int `json:"cluster_network_policies"`
	// Medians over Reps repetitions, in seconds.
	CompileSeconds float64 `json:"compile_seconds"` // policy.Compile
	DiffSeconds    float64 `json:"diff_seconds"`    // nft.Diff(nil, desired) alone
	// ApplySeconds is kernel.Syncer.Sync of a fresh Syncer into a fresh
	// network namespace: its own Diff, rendering, the netlink batch and
	// the kernel's commit, and keeping the applied model.
	ApplySeconds float64 `json:"apply_seconds"`
	// FullSyncSeconds is compile + apply, what the agent spends on a
	// start or a full rebuild after the cache is listed.
	FullSyncSeconds float64 `json:"full_sync_seconds"`
	// RestartApplySeconds is the Sync of another fresh Syncer into the
	// namespace the apply just filled, with the same ruleset: an agent
	// that restarts on a node whose table is right (the full replace
	// reads the kept pipapo sets back and writes only their difference).
	RestartApplySeconds float64 `json:"restart_apply_seconds"`
	// RestartElementsAdded is what that replace wrote: the elements of
	// the hash and rbtree sets, which it empties and refills.
	RestartElementsAdded int    `json:"restart_elements_added"`
	Reps                 int    `json:"reps"`
	Written              Counts `json:"written"`
}

// ChurnStep is the cost of one kind of sync, medians and p99 over Reps.
type ChurnStep struct {
	// CompileSeconds is the agent's incremental compile: the update of its
	// long-lived policy.NodeCompiler (SetPod / DeletePod; nothing for the no-op)
	// plus NodeCompiler.Compile.
	CompileSeconds float64 `json:"compile_seconds"`
	// DiffSeconds is nft.Diff(previous, next) alone,
	// measured apart; the Syncer runs the same diff inside ApplySeconds.
	DiffSeconds float64 `json:"diff_seconds"`
	// ApplySeconds is Syncer.Sync, incremental: Diff, rendering, the
	// netlink batch and the kernel's commit, updating the applied model.
	ApplySeconds    float64 `json:"apply_seconds"`
	ApplyP99Seconds float64 `json:"apply_p99_seconds"`
	// TotalSeconds is compile + apply per repetition: the agent's work
	// for one change once its cache has the new state.
	TotalSeconds    float64 `json:"total_seconds"`
	TotalP99Seconds float64 `json:"total_p99_seconds"`
	Ops             int     `json:"ops"`
	OpElements      int     `json:"op_elements"`
}

// Churn is one shape's one-pod churn: a remote peer pod that one local
// pod's policy admits appears (Appear), then disappears (Disappear), in a
// long-lived policy.NodeCompiler, as the agent handles a pod event. Noop is the
// baseline: the same compile and sync with nothing changed.
type Churn struct {
	Shape                  string    `json:"shape"`
	Pods                   int       `json:"pods"`
	ClusterNetworkPolicies int       `json:"cluster_network_policies"`
	Reps                   int       `json:"reps"`
	Noop                   ChurnStep `json:"noop"`
	Appear                 ChurnStep `json:"appear"`
	Disappear              ChurnStep `json:"disappear"`
	// ScratchCompileSeconds is policy.Compile of the whole snapshot with
	// the peer, median: what each churn step would cost without the
	// long-lived NodeCompiler (how the agent compiled before it had one).
	ScratchCompileSeconds float64 `json:"scratch_compile_seconds"`
}

// CountRuleset counts r.
func CountRuleset(r *nft.Ruleset) Counts {
	var c Counts
	c.Chains, c.Sets = len(r.Chains), len(r.Sets)
	for _, ch := range r.Chains {
		c.Rules += len(ch.Rules)
	}
	for name, s := range r.Sets {
		c.Elements += len(s.Elements)
		if isTierMap(name) {
			c.TierMaps++
			c.TierElements += len(s.Elements)
		}
	}
	return c
}

// isTierMap reports whether name is a tier map's (nft.TierMapNamesFor).
func isTierMap(name string) bool {
	for _, t := range []nft.Tier{nft.TierAdmin, nft.TierBaseline} {
		if strings.HasPrefix(name, t.String()+"-") {
			return true
		}
	}
	return false
}

// CountOps counts ops and the elements they carry.
func CountOps(ops []nft.Op) (n, elements int) {
	for _, op := range ops {
		elements += len(op.Elements)
	}
	return len(ops), elements
}

// NetNS is a throwaway, unnamed network namespace: it disappears when
// closed (no file under /run/netns, nothing to clean up after a crash).
type NetNS struct{ h netns.NsHandle }

// NewNetNS creates a network namespace without entering it.
func NewNetNS() (*NetNS, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	h, err := netns.New()
	if err != nil {
		return nil, fmt.Errorf("new netns: %w", err)
	}
	if err := netns.Set(orig); err != nil {
		// This thread is stuck in the new namespace: never unlock it, so
		// the runtime retires it instead of reusing it.
		runtime.LockOSThread()
		h.Close()
		return nil, fmt.Errorf("back to the original netns: %w", err)
	}
	return &NetNS{h: h}, nil
}

// Fd is the namespace's file descriptor, for kernel.WithNetNSFd.
func (n *NetNS) Fd() int { return int(n.h) }

// Close releases the namespace.
func (n *NetNS) Close() error { return n.h.Close() }

// MeasureFullSync compiles snap reps times and applies it reps times, each
// into a fresh namespace.
func MeasureFullSync(shape synth.Shape, snap *policy.Snapshot, reps int) (FullSync, error) {
	out := FullSync{
		Shape: shape.String(), Pods: shape.Pods, Policies: shape.Policies,
		Namespaces: shape.Namespaces, LocalPods: shape.LocalPods, ClusterNetworkPolicies: shape.ClusterNetworkPolicies, Reps: reps,
	}
	// With the collector's target the agent sets for a full rebuild, so
	// that its extra cycles are in the figure.
	defer controllers.LowerGCTarget(controllers.FullRebuildGCPercent)()
	var compile, diff, apply []time.Duration
	var rs *nft.Ruleset
	for range reps {
		runtime.GC()
		t0 := time.Now()
		r, warnings := policy.Compile(snap)
		compile = append(compile, time.Since(t0))
		if len(warnings) > 0 {
			return out, fmt.Errorf("%s: %d compile warnings, first: %+v", shape, len(warnings), warnings[0])
		}
		rs = r
	}
	var ops []nft.Op
	for range reps {
		runtime.GC()
		t0 := time.Now()
		ops = nft.Diff(nil, rs)
		diff = append(diff, time.Since(t0))
	}
	out.Written = CountRuleset(rs)
	out.Written.Ops, out.Written.OpElements = CountOps(ops)
	var restart []time.Duration
	for range reps {
		d, r, err := applyFresh(rs)
		if err != nil {
			return out, fmt.Errorf("%s: %w", shape, err)
		}
		apply, restart = append(apply, d), append(restart, r.seconds)
		out.RestartElementsAdded = r.added
	}
	out.CompileSeconds = median(compile)
	out.DiffSeconds = median(diff)
	out.ApplySeconds = median(apply)
	out.RestartApplySeconds = median(restart)
	out.FullSyncSeconds = out.CompileSeconds + out.ApplySeconds
	return out, nil
}

// newSyncerInFreshNetNS returns a Syncer into a new throwaway namespace
// and the function that releases the namespace (closing a namespace
// handle cannot fail in a way the benchmark could act on).
func newSyncerInFreshNetNS() (*kernel.Syncer, func(), error) {
	ns, err := NewNetNS()
	if err != nil {
		return nil, nil, err
	}
	closeNS := func() { _ = ns.Close() }
	s, err := kernel.NewSyncer(kernel.WithNetNSFd(ns.Fd()))
	if err != nil {
		closeNS()
		return nil, nil, err
	}
	return s, closeNS, nil
}

// restartApply is the replace of a table that is already right by a
// fresh Syncer: how long it took and how many elements it wrote.
type restartApply struct {
	seconds time.Duration
	added   int
}

// applyFresh times one full Sync of rs into a new namespace, then the
// full replace of another fresh Syncer (an agent restart) with rs again.
func applyFresh(rs *nft.Ruleset) (time.Duration, restartApply, error) {
	var r restartApply
	ns, err := NewNetNS()
	if err != nil {
		return 0, r, err
	}
	defer ns.Close()
	s, err := kernel.NewSyncer(kernel.WithNetNSFd(ns.Fd()))
	if err != nil {
		return 0, r, err
	}
	runtime.GC()
	t0 := time.Now()
	if err := s.Sync(context.Background(), rs); err != nil {
		return 0, r, err
	}
	d := time.Since(t0)
	// The kernel must hold what we meant: read it back once.
	if err := s.Verify(context.Background()); err != nil {
		return 0, r, fmt.Errorf("after full sync: %w", err)
	}
	again, err := kernel.NewSyncer(kernel.WithNetNSFd(ns.Fd()))
	if err != nil {
		return 0, r, err
	}
	runtime.GC()
	t0 = time.Now()
	if err := again.Sync(context.Background(), rs); err != nil {
		return 0, r, fmt.Errorf("restart replace: %w", err)
	}
	r.seconds = time.Since(t0)
	r.added = again.LastReplace().ElementsAdded
	if err := again.Verify(context.Background()); err != nil {
		return 0, r, fmt.Errorf("after restart replace: %w", err)
	}
	return d, r, nil
}

// startAgent is the agent's first reconcile on a fresh node, where the
// churn and change figures start: snap loaded into a long-lived
// policy.NodeCompiler, compiled, and synced by a Syncer into a fresh
// namespace, which closeNS releases.
func startAgent(snap *policy.Snapshot) (s *kernel.Syncer, cl *policy.NodeCompiler, synced *nft.Ruleset, closeNS func(), err error) {
	if s, closeNS, err = newSyncerInFreshNetNS(); err != nil {
		return nil, nil, nil, nil, err
	}
	cl = policy.NewNodeCompiler(snap.NodeName)
	cl.LoadSnapshot(snap)
	synced, _ = cl.Compile()
	if err := s.Sync(context.Background(), synced); err != nil {
		closeNS()
		return nil, nil, nil, nil, fmt.Errorf("first sync: %w", err)
	}
	return s, cl, synced, closeNS, nil
}

// MeasureChurn loads snap into a policy.NodeCompiler, syncs it into a fresh
// namespace, then alternates reps times: peer appears, peer disappears,
// nothing changes (the baseline).
func MeasureChurn(shape synth.Shape, snap *policy.Snapshot, reps int) (Churn, error) {
	out := Churn{Shape: shape.String(), Pods: shape.Pods, ClusterNetworkPolicies: shape.ClusterNetworkPolicies, Reps: reps}
	peer := synth.ChurnPeer(shape)
	s, cl, cur, closeNS, err := startAgent(snap)
	if err != nil {
		return out, err
	}
	defer closeNS()
	var noop, appear, disappear stepTimes
	for range reps {
		var err error
		if cur, err = noop.step(s, cl, cur, func() {}); err != nil {
			return out, fmt.Errorf("no-op sync: %w", err)
		}
		if cur, err = appear.step(s, cl, cur, func() { cl.SetPod(&peer) }); err != nil {
			return out, fmt.Errorf("peer appears: %w", err)
		}
		if cur, err = disappear.step(s, cl, cur, func() { cl.DeletePod(peer.Namespace, peer.Name) }); err != nil {
			return out, fmt.Errorf("peer disappears: %w", err)
		}
	}
	if err := s.Verify(context.Background()); err != nil {
		return out, fmt.Errorf("after churn: %w", err)
	}
	out.Noop, out.Appear, out.Disappear = noop.result(), appear.result(), disappear.result()
	if out.Appear.Ops == 0 || out.Disappear.Ops == 0 {
		return out, fmt.Errorf("%s: the churn peer changed nothing (appear %d ops, disappear %d)", shape, out.Appear.Ops, out.Disappear.Ops)
	}
	// The same change compiled from scratch, for comparison; its result
	// must be what the incremental path synced.
	with := synth.WithPod(snap, peer)
	var scratch []time.Duration
	for range min(reps, 5) {
		runtime.GC()
		t0 := time.Now()
		rs, _ := policy.Compile(with)
		scratch = append(scratch, time.Since(t0))
		cl.SetPod(&peer)
		inc, _ := cl.Compile()
		if ops := nft.Diff(rs, inc); len(ops) != 0 {
			return out, fmt.Errorf("%s: incremental compile differs from a fresh one by %d ops, first %v", shape, len(ops), ops[0])
		}
		cl.DeletePod(peer.Namespace, peer.Name)
	}
	out.ScratchCompileSeconds = median(scratch)
	return out, nil
}

type stepTimes struct {
	compile, diff, apply, total []time.Duration
	ops, elements               int
}

// step is one measured event: update changes cl, then the agent's work
// follows: compile, and sync from cur (the last ruleset synced, which the
// kernel holds).
func (st *stepTimes) step(s *kernel.Syncer, cl *policy.NodeCompiler, cur *nft.Ruleset, update func()) (*nft.Ruleset, error) {
	runtime.GC()
	t0 := time.Now()
	update()
	next, _ := cl.Compile()
	t1 := time.Now()
	ops := nft.Diff(cur, next)
	t2 := time.Now()
	if err := s.Sync(context.Background(), next); err != nil {
		return nil, err
	}
	t3 := time.Now()
	st.compile = append(st.compile, t1.Sub(t0))
	st.diff = append(st.diff, t2.Sub(t1))
	st.apply = append(st.apply, t3.Sub(t2))
	st.total = append(st.total, t1.Sub(t0)+t3.Sub(t2))
	st.ops, st.elements = CountOps(ops)
	return next, nil
}

func (st *stepTimes) result() ChurnStep {
	return ChurnStep{
		CompileSeconds: median(st.compile), DiffSeconds: median(st.diff), ApplySeconds: median(st.apply),
		ApplyP99Seconds: quantile(st.apply, 0.99),
		TotalSeconds:    median(st.total), TotalP99Seconds: quantile(st.total, 0.99),
		Ops: st.ops, OpElements: st.elements,
	}
}

func median(ds []time.Duration) float64 { return quantile(ds, 0.5) }

// quantile is the nearest-rank quantile, in seconds.
func quantile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	i = min(max(i, 0), len(s)-1)
	return s[i].Seconds()
}

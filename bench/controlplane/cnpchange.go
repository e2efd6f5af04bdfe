//go:build linux

package controlplane

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

// CNPChange is one shape's ClusterNetworkPolicy change figure: each edit of
// synth.ClusterNetworkPolicyChanges is made (Update) and undone (Revert)
// in the agent's long-lived policy.NodeCompiler, as its reconcile handles a
// ClusterNetworkPolicy event: SetClusterNetworkPolicy, Compile, Sync. Noop
// is the baseline: the same compile and sync with nothing changed.
type CNPChange struct {
	Shape                  string          `json:"shape"`
	Pods                   int             `json:"pods"`
	Policies               int             `json:"policies"`
	ClusterNetworkPolicies int             `json:"cluster_network_policies"`
	Reps                   int             `json:"reps"`
	Noop                   ChurnStep       `json:"noop"`
	Kinds                  []CNPChangeKind `json:"kinds"`
}

// CNPChangeKind is one edit, made and undone Reps times.
type CNPChangeKind struct {
	Kind   string    `json:"kind"`
	What   string    `json:"what"`
	Policy string    `json:"policy"`
	Update ChurnStep `json:"update"`
	Revert ChurnStep `json:"revert"`
	// ScratchCompileSeconds is policy.Compile of the whole snapshot with
	// the edit, median: what the change would cost without the
	// long-lived NodeCompiler.
	ScratchCompileSeconds float64 `json:"scratch_compile_seconds"`
}

// Worst is the kind whose update or revert has the largest median total,
// and that total.
func (c CNPChange) Worst() (kind string, step ChurnStep) {
	for _, k := range c.Kinds {
		for _, s := range []ChurnStep{k.Update, k.Revert} {
			if s.TotalSeconds > step.TotalSeconds {
				kind, step = k.Kind, s
			}
		}
	}
	return kind, step
}

// MeasureCNPChange loads snap (a shape with ClusterNetworkPolicies) into a
// policy.NodeCompiler, syncs it into a fresh namespace, then repeats reps times:
// nothing changes (the baseline), then for each edit, the edit and its
// undoing. Afterwards each edit is compiled from scratch too, and the
// incremental result must equal it.
func MeasureCNPChange(shape synth.Shape, snap *policy.Snapshot, reps int) (CNPChange, error) {
	out := CNPChange{Shape: shape.String(), Pods: shape.Pods, Policies: shape.Policies,
		ClusterNetworkPolicies: shape.ClusterNetworkPolicies, Reps: reps}
	changes := synth.ClusterNetworkPolicyChanges()
	for _, ch := range changes {
		if ch.Index >= len(snap.ClusterNetworkPolicies) || snap.ClusterNetworkPolicies[ch.Index].Name != ch.Before.Name {
			return out, fmt.Errorf("%s: the %s edit needs ClusterNetworkPolicy %s at %d", shape, ch.Kind, ch.Before.Name, ch.Index)
		}
	}
	s, cl, cur, closeNS, err := startAgent(snap)
	if err != nil {
		return out, err
	}
	defer closeNS()
	var noop stepTimes
	update, revert := make([]stepTimes, len(changes)), make([]stepTimes, len(changes))
	for range reps {
		if cur, err = noop.step(s, cl, cur, func() {}); err != nil {
			return out, fmt.Errorf("no-op sync: %w", err)
		}
		for i, ch := range changes {
			// The objects of the snapshot are the cluster's: the edit
			// replaces the policy, and the undoing puts the original
			// back (a new pointer for the NodeCompiler each time).
			if cur, err = update[i].step(s, cl, cur, func() { cl.SetClusterNetworkPolicy(ch.After) }); err != nil {
				return out, fmt.Errorf("%s: %w", ch.Kind, err)
			}
			orig := snap.ClusterNetworkPolicies[ch.Index]
			if cur, err = revert[i].step(s, cl, cur, func() { cl.SetClusterNetworkPolicy(orig) }); err != nil {
				return out, fmt.Errorf("%s undone: %w", ch.Kind, err)
			}
		}
	}
	if err := s.Verify(context.Background()); err != nil {
		return out, fmt.Errorf("after the changes: %w", err)
	}
	out.Noop = noop.result()
	for i, ch := range changes {
		k := CNPChangeKind{Kind: ch.Kind, What: ch.What, Policy: ch.Before.Name, Update: update[i].result(), Revert: revert[i].result()}
		if k.Update.Ops == 0 || k.Revert.Ops == 0 {
			return out, fmt.Errorf("%s: the %s edit changed nothing (%d ops, undone %d)", shape, ch.Kind, k.Update.Ops, k.Revert.Ops)
		}
		edited := *snap
		edited.ClusterNetworkPolicies = slices.Clone(snap.ClusterNetworkPolicies)
		edited.ClusterNetworkPolicies[ch.Index] = ch.After
		var scratch []time.Duration
		for range min(reps, 3) {
			runtime.GC()
			t0 := time.Now()
			rs, _ := policy.Compile(&edited)
			scratch = append(scratch, time.Since(t0))
			cl.SetClusterNetworkPolicy(ch.After)
			inc, _ := cl.Compile()
			if ops := nft.Diff(rs, inc); len(ops) != 0 {
				return out, fmt.Errorf("%s, %s: incremental compile differs from a fresh one by %d ops, first %v", shape, ch.Kind, len(ops), ops[0])
			}
			cl.SetClusterNetworkPolicy(snap.ClusterNetworkPolicies[ch.Index])
		}
		k.ScratchCompileSeconds = median(scratch)
		out.Kinds = append(out.Kinds, k)
	}
	return out, nil
}

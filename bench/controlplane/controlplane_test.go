//go:build linux

package controlplane

// A smoke run of the benchmark code on a small shape: it must work end to
// end (real kernel, throwaway namespaces); no duration is asserted.

import (
	"os"
	"testing"

	"github.com/nftpolicy/nftpolicy/policy/synth"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("the benchmark smoke test needs root (CI is set, so not skipping)")
	}
	t.Skip("needs root")
}

func TestSmoke_FullSyncAndChurn(t *testing.T) {
	requireRoot(t)
	shape := synth.Scaled(1_000)
	snap := synth.Snapshot(shape)
	fs, err := MeasureFullSync(shape, snap, 1)
	if err != nil {
		t.Fatal(err)
	}
	if fs.Written.Elements == 0 || fs.Written.Ops == 0 {
		t.Errorf("full sync wrote nothing: %+v", fs.Written)
	}
	ch, err := MeasureChurn(shape, snap, 2)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Noop.Ops != 0 {
		t.Errorf("no-op sync has %d ops", ch.Noop.Ops)
	}
	if ch.Appear.Ops != 1 || ch.Appear.OpElements != 1 || ch.Disappear.Ops != 1 || ch.Disappear.OpElements != 1 {
		t.Errorf("churn: appear %d ops/%d elements, disappear %d/%d, want 1/1 each",
			ch.Appear.Ops, ch.Appear.OpElements, ch.Disappear.Ops, ch.Disappear.OpElements)
	}
}

func TestSmoke_ClusterNetworkPolicies(t *testing.T) {
	requireRoot(t)
	shape := synth.Scaled(1_000).WithClusterNetworkPolicies(100)
	snap := synth.Snapshot(shape)
	fs, err := MeasureFullSync(shape, snap, 1)
	if err != nil {
		t.Fatal(err)
	}
	if fs.ClusterNetworkPolicies != 100 || fs.Written.TierMaps == 0 || fs.Written.TierElements == 0 || fs.Written.TierElements > fs.Written.Elements {
		t.Errorf("full sync with ClusterNetworkPolicies: %+v", fs)
	}
	ch, err := MeasureCNPChange(shape, snap, 2)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Noop.Ops != 0 {
		t.Errorf("no-op sync has %d ops", ch.Noop.Ops)
	}
	if len(ch.Kinds) != len(synth.ClusterNetworkPolicyChanges()) {
		t.Fatalf("%d kinds of change measured, want %d", len(ch.Kinds), len(synth.ClusterNetworkPolicyChanges()))
	}
	for _, k := range ch.Kinds {
		// An edit and its undoing touch the same elements.
		if k.Update.Ops == 0 || k.Update.OpElements != k.Revert.OpElements {
			t.Errorf("%s: update %d ops/%d elements, revert %d/%d", k.Kind, k.Update.Ops, k.Update.OpElements, k.Revert.Ops, k.Revert.OpElements)
		}
	}
	if kind, _ := ch.Worst(); kind == "" {
		t.Error("no worst kind")
	}
	if _, err := MeasureCNPChange(synth.Scaled(1_000).WithClusterNetworkPolicies(10), synth.Snapshot(synth.Scaled(1_000).WithClusterNetworkPolicies(10)), 1); err == nil {
		t.Error("a shape without the edited policies was measured")
	}
}

// The event CPU figure runs end to end on a small shape: both kinds change
// the ruleset and are counted; no CPU time is asserted beyond being
// measured at all.
func TestSmoke_EventCPU(t *testing.T) {
	requireRoot(t)
	got, err := MeasureEventCPU(synth.Scaled(1_000), 20)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kinds) != 2 {
		t.Fatalf("%d kinds, want pod and policy", len(got.Kinds))
	}
	for _, k := range got.Kinds {
		if k.Events != 20 || k.OpsPerEvent == 0 || k.CPUSeconds <= 0 || k.WallSeconds <= 0 {
			t.Errorf("%s: %+v", k.Kind, k)
		}
	}
}

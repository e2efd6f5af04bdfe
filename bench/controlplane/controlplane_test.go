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

func TestSmoke_AgentLatency(t *testing.T) {
	requireRoot(t)
	const background = 30
	run, err := MeasureAgentLatency(background, 2)
	if err != nil {
		t.Fatal(err) // includes each kind's verdict, the kernel read-back and the fresh compile
	}
	// The server admits each background policy's own address; allow-last
	// admits its own, client-same and client-cross.
	if run.AllowListElements != background+3 {
		t.Errorf("allow-list elements %d, want %d", run.AllowListElements, background+3)
	}
	if run.Noop.Ops != 0 {
		t.Errorf("no-op sync has %d ops", run.Noop.Ops)
	}
	// Each kind writes one element operation on the server's allow-list
	// and nothing else, of as many elements as the kind moves: the
	// background is never rewritten.
	want := map[string]int{
		"policy create (admits the client)":            3, // allow-last's address and both clients
		"policy delete (admitted the client)":          3,
		"pod label change (client leaves allow)":       1,
		"pod label change (client joins allow)":        1,
		"policy update (peer selector off the client)": 2, // both clients
		"policy update (peer selector back)":           2,
		"new pod becomes Running (admitted)":           1,
	}
	if len(run.Kinds) != len(want) || run.All.N != len(want)*2 {
		t.Fatalf("%d kinds, %d events, want %d kinds of 2", len(run.Kinds), run.All.N, len(want))
	}
	for _, k := range run.Kinds {
		if k.Ops != 1 || k.OpElements != want[k.Kind] {
			t.Errorf("%s: %d ops, %d elements, want 1 op of %d", k.Kind, k.Ops, k.OpElements, want[k.Kind])
		}
	}
}

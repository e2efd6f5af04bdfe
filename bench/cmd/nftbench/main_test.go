//go:build linux

package main

// No addresses and no kernel: these tests cover how rows are related to
// their baselines, and the flags, on made-up figures.

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftpolicy/nftpolicy/bench/controlplane"
)

// rows is a run over 1k and 10k pods, each without and with 100
// ClusterNetworkPolicies: with them everything costs twice as much.
func rows() *ControlPlane {
	res := &ControlPlane{}
	for _, pods := range []int{1_000, 10_000} {
		for _, cnps := range []int{0, 100} {
			k := float64(pods) / 1_000
			if cnps > 0 {
				k *= 2
			}
			shape := "pods=" + map[int]string{1_000: "1000", 10_000: "10000"}[pods] + map[int]string{0: "", 100: "/cnps=100"}[cnps]
			step := controlplane.ChurnStep{TotalSeconds: 0.001 * k, TotalP99Seconds: 0.002 * k, Ops: 1 + cnps/50, OpElements: 1}
			res.FullSync = append(res.FullSync, controlplane.FullSync{Shape: shape, Pods: pods, ClusterNetworkPolicies: cnps,
				CompileSeconds: 0.01 * k, ApplySeconds: 0.02 * k, FullSyncSeconds: 0.03 * k,
				Written: controlplane.Counts{Elements: int(1000 * k), Ops: int(100 * k)}})
			res.Churn = append(res.Churn, controlplane.Churn{Shape: shape, Pods: pods, ClusterNetworkPolicies: cnps, Noop: step, Appear: step, Disappear: step})
			res.Memory = append(res.Memory, controlplane.Memory{Shape: shape, Pods: pods, ClusterNetworkPolicies: cnps,
				PeakRSSBytes: int64(50<<20) * int64(k), SteadyRSSBytes: int64(30<<20) * int64(k)})
			if cnps > 0 {
				res.CNPChange = append(res.CNPChange, controlplane.CNPChange{Shape: shape, Pods: pods, ClusterNetworkPolicies: cnps,
					Kinds: []controlplane.CNPChangeKind{
						{Kind: "small", Update: controlplane.ChurnStep{TotalSeconds: 0.001, TotalP99Seconds: 0.002}},
						{Kind: "large", Update: controlplane.ChurnStep{TotalSeconds: 0.01}, Revert: controlplane.ChurnStep{TotalSeconds: 0.05 * k, TotalP99Seconds: 0.06 * k}},
					}})
			}
		}
	}
	return res
}

func TestEvaluate_ScalingReadsRowsWithoutCNPs(t *testing.T) {
	res := rows()
	scaling, goals := evaluate(res)
	if len(scaling) != 2 || scaling[1].Pods != 10_000 || scaling[1].FullSyncRatio != 10 || scaling[1].ElementsRatio != 10 {
		t.Errorf("scaling = %+v, want the two rows without ClusterNetworkPolicies, x10", scaling)
	}
	if goals.Shape != "pods=10000" || !goals.ChurnOpsConstant {
		t.Errorf("goals = %+v, want those of pods=10000 without ClusterNetworkPolicies", goals)
	}
}

func TestCNPCost_AgainstTheSameSizeWithout(t *testing.T) {
	got := cnpCost(rows())
	want := []CNPCost{
		{Shape: "pods=1000/cnps=100", Pods: 1_000, ClusterNetworkPolicies: 100, CompileRatio: 2, ApplyRatio: 2, FullSyncRatio: 2,
			ElementsRatio: 2, PeakRSSRatio: 2, SteadyRSSRatio: 2, ChurnTotalRatio: 2},
		{Shape: "pods=10000/cnps=100", Pods: 10_000, ClusterNetworkPolicies: 100, CompileRatio: 2, ApplyRatio: 2, FullSyncRatio: 2,
			ElementsRatio: 2, PeakRSSRatio: 2, SteadyRSSRatio: 2, ChurnTotalRatio: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestCNPGoals_LargestShapeWorstKind(t *testing.T) {
	res := rows()
	cnpGoals(res)
	want := &CNPGoals{Shape: "pods=10000/cnps=100", FullSyncSeconds: 0.6, FullSyncMet: true, ChurnSeconds: 0.02,
		PeakRSSBytes: 1000 << 20, ChangeKind: "large", ChangeSeconds: 1, ChangeP99Seconds: 1.2}
	if diff := cmp.Diff(want, res.Goals.CNP, cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	none := withoutCNPs(rows())
	cnpGoals(none)
	if none.Goals.CNP != nil {
		t.Errorf("goals.cnp without ClusterNetworkPolicy rows: %+v", none.Goals.CNP)
	}
}

func TestPrintTable(t *testing.T) {
	for _, res := range []*ControlPlane{rows(), withoutCNPs(rows())} {
		res.Scaling, res.Goals = evaluate(res)
		res.CNPCost = cnpCost(res)
		cnpGoals(res)
		var b bytes.Buffer
		printTable(&b, res)
		withCNPs := len(res.CNPChange) > 0
		for _, s := range []string{"Figure 3/4 with ClusterNetworkPolicies", "one ClusterNetworkPolicy change", "The same goals at pods=10000/cnps=100"} {
			if strings.Contains(b.String(), s) != withCNPs {
				t.Errorf("table with ClusterNetworkPolicies=%v: %q present=%v\n%s", withCNPs, s, !withCNPs, b.String())
			}
		}
	}
}

func TestRun_RejectsFewCNPs(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"-cnps", "20", "-out", t.TempDir() + "/r.json"}, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "at least 21") {
		t.Errorf("run -cnps 20 = %d (%s), want 2 and a message", code, stderr.String())
	}
}

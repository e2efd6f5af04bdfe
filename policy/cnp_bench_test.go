package policy_test

import (
	"strings"
	"testing"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
	"github.com/nftpolicy/nftpolicy/policy"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

// BenchmarkCluster_ClusterNetworkPolicies compiles a node of a 5,000-pod
// cluster with 10,000 NetworkPolicies and 1,000 ClusterNetworkPolicies
// (synth.ClusterNetworkPolicy: 50 select every namespace, the others one
// team's), 110 local pods. "cold" loads and compiles from nothing (the
// same without any ClusterNetworkPolicy for comparison) and reports the
// ruleset's elements, those of the tier maps among them, and the tier
// maps; "change" updates one team policy back and forth (one of its
// networks: synth.ClusterNetworkPolicyChanges' team-network) and reports the compile and the diff a sync then does.
func BenchmarkCluster_ClusterNetworkPolicies(b *testing.B) {
	shape := synth.Shape{Pods: 5_000, Namespaces: 500, Policies: 10_000, LocalPods: 110, PodsPerNode: 110, ClusterNetworkPolicies: 1_000}
	snap := synth.Snapshot(shape)
	noCNP := *snap
	noCNP.ClusterNetworkPolicies, noCNP.Nodes = nil, nil

	for _, tc := range []struct {
		name string
		snap *policy.Snapshot
	}{{"cold/cnps=1000", snap}, {"cold/cnps=0", &noCNP}} {
		b.Run(tc.name, func(b *testing.B) {
			var rs *nft.Ruleset
			for b.Loop() {
				c := policy.NewNodeCompiler(synth.LocalNode)
				c.LoadSnapshot(tc.snap)
				rs, _ = c.Compile()
			}
			var elements, tierElements, tierMaps int
			for name, s := range rs.Sets {
				elements += len(s.Elements)
				if strings.HasPrefix(name, "admin-") || strings.HasPrefix(name, "baseline-") {
					tierElements += len(s.Elements)
					tierMaps++
				}
			}
			b.ReportMetric(float64(elements), "elements")
			b.ReportMetric(float64(tierElements), "tier-elements")
			b.ReportMetric(float64(tierMaps), "tier-maps")
		})
	}

	b.Run("change/cnps=1000", func(b *testing.B) {
		c := policy.NewNodeCompiler(synth.LocalNode)
		c.LoadSnapshot(snap)
		// cnp-0001 selects team-1, which local pods belong to.
		change := synth.ClusterNetworkPolicyChanges()[0]
		benchmarkFlip(b, c, func(edit bool) {
			if edit {
				c.SetClusterNetworkPolicy(change.After)
			} else {
				c.SetClusterNetworkPolicy(change.Before)
			}
		})
	})
}

func TestSynthClusterNetworkPolicies_CompileWithoutWarnings(t *testing.T) {
	shape := synth.Shape{Pods: 600, Namespaces: 60, Policies: 100, LocalPods: 40, PodsPerNode: 110, ClusterNetworkPolicies: 200}
	snap := synth.Snapshot(shape)
	rs, warnings := policy.Compile(snap)
	if len(warnings) != 0 {
		t.Errorf("warnings: %v", warnings)
	}
	if err := nfttest.Validate(rs); err != nil {
		t.Fatal(err)
	}
	maps := 0
	for name := range rs.Sets {
		if strings.HasPrefix(name, "admin-") || strings.HasPrefix(name, "baseline-") {
			maps++
		}
	}
	if maps == 0 {
		t.Error("no tier maps compiled")
	}
}

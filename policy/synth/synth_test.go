package synth

// Benchmarks of the compiler at cluster scale. Run with
//   go test -run '^$' -bench . -benchtime 3x ./policy/synth/
// Scale1k is the baseline the larger shapes are read against.

import (
	"slices"
	"testing"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
	"github.com/nftpolicy/nftpolicy/policy"
)

func shapes() []Shape {
	var out []Shape
	for _, pods := range ScalingPods {
		out = append(out, Scaled(pods))
	}
	return out
}

func BenchmarkCompile(b *testing.B) {
	for _, s := range shapes() {
		snap := Snapshot(s)
		b.Run(s.String(), func(b *testing.B) {
			var elements int
			for b.Loop() {
				rs, _ := policy.Compile(snap)
				elements = 0
				for _, set := range rs.Sets {
					elements += len(set.Elements)
				}
			}
			b.ReportMetric(float64(elements), "elements")
		})
	}
}

func TestSnapshot_IsValidAndCompiles(t *testing.T) {
	snap := Snapshot(Shape{Pods: 500, Namespaces: 20, Policies: 40, LocalPods: 30, PodsPerNode: 110})
	rs, warnings := policy.Compile(snap)
	if len(warnings) != 0 {
		t.Errorf("warnings: %+v", warnings)
	}
	if err := nfttest.Validate(rs); err != nil {
		t.Fatal(err)
	}
	if len(rs.Chains) <= len(nft.NewSkeleton().Chains) {
		t.Errorf("no pod was isolated: %d chains, as many as the skeleton", len(rs.Chains))
	}
}

func TestChurnPeer_TouchesOnlyOneAllowList(t *testing.T) {
	for _, s := range []Shape{Scaled(1_000), Scaled(10_000)} {
		snap := Snapshot(s)
		before, _ := policy.Compile(snap)
		after, _ := policy.Compile(WithPod(snap, ChurnPeer(s)))
		ops := nft.Diff(before, after)
		if len(ops) == 0 {
			t.Fatalf("%v: the churn peer changed nothing", s)
		}
		want := nft.NamesFor(nft.Ingress, "ns-0/pod-0").ExactV4 // one address on TCP 8080: a hash element
		for _, op := range ops {
			if op.Name != want || (op.Kind != nft.OpAddElements && op.Kind != nft.OpDeleteElements) {
				t.Errorf("%v: unexpected op %v (want element ops on %s only)", s, op, want)
			}
		}
		back := nft.Diff(after, before)
		if len(back) != len(ops) {
			t.Errorf("%v: appear took %d ops, disappear %d", s, len(ops), len(back))
		}
	}
}

func TestSnapshot_ClusterNetworkPolicyCount(t *testing.T) {
	s := Shape{Pods: 500, Namespaces: 20, Policies: 40, LocalPods: 30, PodsPerNode: 110}
	if snap := Snapshot(s); len(snap.ClusterNetworkPolicies) != 0 || len(snap.Nodes) != 0 {
		t.Errorf("without a count: %d ClusterNetworkPolicies, %d nodes, want none", len(snap.ClusterNetworkPolicies), len(snap.Nodes))
	}
	s = s.WithClusterNetworkPolicies(120)
	snap := Snapshot(s)
	if len(snap.ClusterNetworkPolicies) != 120 || len(snap.Nodes) != len(Nodes(s)) {
		t.Errorf("%d ClusterNetworkPolicies, %d nodes, want 120 and %d", len(snap.ClusterNetworkPolicies), len(snap.Nodes), len(Nodes(s)))
	}
	if got, want := s.String(), "pods=500/policies=40/cnps=120"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	rs, warnings := policy.Compile(snap)
	if len(warnings) != 0 {
		t.Errorf("warnings: %+v", warnings)
	}
	if err := nfttest.Validate(rs); err != nil {
		t.Fatal(err)
	}
}

func TestClusterNetworkPolicyChanges_AreElementOpsOnTheLocalNode(t *testing.T) {
	s := Scaled(1_000).WithClusterNetworkPolicies(100)
	snap := Snapshot(s)
	before, _ := policy.Compile(snap)
	for _, ch := range ClusterNetworkPolicyChanges() {
		t.Run(ch.Kind, func(t *testing.T) {
			if snap.ClusterNetworkPolicies[ch.Index].Name != ch.Before.Name || ch.After.Name != ch.Before.Name {
				t.Fatalf("change of %s/%s, policy %d is %s", ch.Before.Name, ch.After.Name, ch.Index, snap.ClusterNetworkPolicies[ch.Index].Name)
			}
			edited := *snap
			edited.ClusterNetworkPolicies = slices.Clone(snap.ClusterNetworkPolicies)
			edited.ClusterNetworkPolicies[ch.Index] = ch.After
			after, warnings := policy.Compile(&edited)
			if len(warnings) != 0 {
				t.Errorf("warnings: %+v", warnings)
			}
			ops := nft.Diff(before, after)
			if len(ops) == 0 {
				t.Fatal("the change changed nothing on the local node")
			}
			for _, op := range ops {
				if op.Kind != nft.OpAddElements && op.Kind != nft.OpDeleteElements {
					t.Errorf("op %v: want element operations only", op)
				}
			}
		})
	}
}

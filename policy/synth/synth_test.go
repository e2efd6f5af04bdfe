package synth

// Benchmarks of the compiler at cluster scale. Run with
//   go test -run '^$' -bench . -benchtime 3x ./policy/synth/
// Scale1k is the baseline the larger shapes are read against.

import (
	"fmt"
	"testing"

	"github.com/nftpolicy/nftpolicy/policy"
)

func shapes() []Shape {
	var out []Shape
	for _, pods := range []int{1_000, 10_000, 50_000, 150_000} {
		out = append(out, Shape{
			Pods: pods, Namespaces: max(pods/30, 10), Policies: max(pods/15, 10),
			LocalPods: 110, PodsPerNode: 110,
		})
	}
	return out
}

func BenchmarkCompile(b *testing.B) {
	for _, s := range shapes() {
		snap := Snapshot(s)
		b.Run(fmt.Sprintf("pods=%d/policies=%d", s.Pods, s.Policies), func(b *testing.B) {
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
	if err := rs.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(rs.Chains) <= 2 {
		t.Errorf("no pod was isolated: %d chains", len(rs.Chains))
	}
}

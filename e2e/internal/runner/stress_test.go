package runner

import (
	"reflect"
	"testing"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

// IP plan: the stress cluster on three nodes, 10.244.1.0/24 ..
// 10.244.3.0/24; pod i of namespace j at .40+3j+i on node (i+j) mod 3.

func stressTestRunner() *Runner {
	st := &cluster.State{}
	for i := 1; i <= 3; i++ {
		st.Nodes = append(st.Nodes, cluster.Node{Name: "n" + string(rune('0'+i)), PodCIDR: "10.244." + string(rune('0'+i)) + ".0/24"})
	}
	return &Runner{State: st}
}

func TestStressScenario_EveryNodeHoldsEveryNamespace(t *testing.T) {
	s := stressTestRunner().stressScenario()
	seen := map[string]map[string]bool{} // cidr prefix → namespaces
	for _, p := range s.Cluster.Pods {
		node := p.IP[:len("10.244.1")]
		if seen[node] == nil {
			seen[node] = map[string]bool{}
		}
		seen[node][p.Namespace] = true
	}
	if len(seen) != 3 {
		t.Fatalf("pods on %d nodes, want 3: %v", len(seen), seen)
	}
	for node, nss := range seen {
		if len(nss) != 3 {
			t.Errorf("node %s holds namespaces %v, want x, y and z", node, nss)
		}
	}
}

// The same seed draws the same transitions (a failing run can be
// replayed), and the generator's bookkeeping holds: at most six policies,
// names unique per namespace, a move deletes before it creates.
func TestStressGen_ReplayableAndConsistent(t *testing.T) {
	s := stressTestRunner().stressScenario()
	draw := func(seed uint64) [][]scenario.Action {
		g := newStressGen(seed, s)
		var out [][]scenario.Action
		for range 200 {
			tr := g.transition()
			out = append(out, tr)
			if len(g.policies) > 6 {
				t.Fatalf("seed %d: %d policies tracked, want at most 6", seed, len(g.policies))
			}
		}
		return out
	}
	a, b, c := draw(7), draw(7), draw(8)
	if !reflect.DeepEqual(a, b) {
		t.Error("seed 7 drew two different sequences")
	}
	if reflect.DeepEqual(a, c) {
		t.Error("seeds 7 and 8 drew the same sequence")
	}
	live := map[string]bool{}
	kinds := map[string]int{}
	for i, tr := range a {
		for _, act := range tr {
			kinds[act.Kind()]++
			switch {
			case act.CreatePolicy != nil:
				k := act.CreatePolicy.Name()
				if live[k] {
					t.Fatalf("transition %d creates %s, which exists", i, k)
				}
				live[k] = true
			case act.DeletePolicy != nil:
				k := act.DeletePolicy.Namespace + "/" + act.DeletePolicy.Name
				if !live[k] {
					t.Fatalf("transition %d deletes %s, which does not exist", i, k)
				}
				delete(live, k)
			case act.UpdatePolicy != nil:
				if k := act.UpdatePolicy.Name(); !live[k] {
					t.Fatalf("transition %d replaces %s, which does not exist", i, k)
				}
			}
		}
	}
	for _, k := range []string{"createPolicy", "deletePolicy", "updatePolicy", "setPodLabels", "setNamespaceLabels", "deletePod", "createPod"} {
		if kinds[k] == 0 {
			t.Errorf("200 transitions never drew %s", k)
		}
	}
}

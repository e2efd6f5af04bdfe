package runner

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

// No addresses: these tests render and compare matrices of pod keys.

func TestRenderObserved(t *testing.T) {
	p := scenario.Probe{Port: 80, Protocol: "TCP", Target: "pod",
		Matrix: &scenario.Matrix{Rows: []string{"x/a", "x/b"}, Cols: []string{"x/a", "x/b"}}}
	cells := []*cell{
		{probe: 0, row: 0, col: 0, want: '.', got: '.'},
		{probe: 0, row: 0, col: 1, want: '.', got: 'X'}, // differs
		{probe: 0, row: 1, col: 0, want: 'X', got: 'X'},
		{probe: 1, row: 1, col: 1, want: '.', got: 'R'}, // another probe's cell
	}
	want := "    observed TCP/80 via pod (! = differs from expected):\n" +
		"    -   x/a x/b\n" +
		"    x/a .   X! \n" +
		"    x/b X   -  \n"
	if diff := cmp.Diff(want, renderObserved(p, 0, cells)); diff != "" {
		t.Errorf("renderObserved (-want +got):\n%s", diff)
	}
}

func TestServes(t *testing.T) {
	svs := []kubelet.Server{{Port: 80, Protocol: "TCP"}, {Port: 8080, Protocol: "TCP", Name: "http"}, {Port: 53, Protocol: "UDP"}}
	tests := []struct {
		name  string
		probe scenario.Probe
		want  bool
	}{
		{name: "port and protocol", probe: scenario.Probe{Port: 80, Protocol: "TCP"}, want: true},
		{name: "other protocol on a served port", probe: scenario.Probe{Port: 80, Protocol: "UDP"}, want: false},
		{name: "unserved port", probe: scenario.Probe{Port: 81, Protocol: "TCP"}, want: false},
		{name: "given port name", probe: scenario.Probe{PortName: "http", Protocol: "TCP"}, want: true},
		{name: "generated port name", probe: scenario.Probe{PortName: "serve-53-udp", Protocol: "UDP"}, want: true},
		{name: "port name of another protocol", probe: scenario.Probe{PortName: "http", Protocol: "SCTP"}, want: false},
		{name: "unknown port name", probe: scenario.Probe{PortName: "dns", Protocol: "UDP"}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := serves(svs, tt.probe); got != tt.want {
				t.Errorf("serves(%s) = %v, want %v", tt.probe.Label(), got, tt.want)
			}
		})
	}
}

// TestBaseline: the baseline step probes as the first step's first probe
// does, from every pod to the pods that serve that probe, expecting all
// to connect.
func TestBaseline(t *testing.T) {
	s := &scenario.Scenario{
		Cluster: scenario.Cluster{
			Servers: []scenario.Server{{Port: 80, Protocol: "TCP"}},
			Pods: []scenario.Pod{
				{Namespace: "x", Name: "a"},
				{Namespace: "x", Name: "b", Servers: []scenario.Server{{Port: 53, Protocol: "UDP"}}},
				{Namespace: "y", Name: "c"},
			},
		},
		Steps: []scenario.Step{{Probes: []scenario.Probe{{Port: 80, Protocol: "TCP", Target: "pod"}, {Port: 53, Protocol: "UDP"}}}},
	}
	step, ok := baseline(s)
	if !ok {
		t.Fatal("no baseline")
	}
	want := scenario.Step{Name: "baseline", Probes: []scenario.Probe{{Port: 80, Protocol: "TCP", Target: "pod",
		Matrix: &scenario.Matrix{Rows: []string{"x/a", "x/b", "y/c"}, Cols: []string{"x/a", "y/c"}, Cells: [][]byte{[]byte(".."), []byte(".."), []byte("..")}}}}}
	if diff := cmp.Diff(want, step); diff != "" {
		t.Errorf("baseline (-want +got):\n%s", diff)
	}
	if s.Steps[0].Probes[0].Matrix != nil {
		t.Error("baseline changed the scenario's probe")
	}

	for name, s := range map[string]*scenario.Scenario{
		"no steps":    {Cluster: s.Cluster},
		"no probes":   {Cluster: s.Cluster, Steps: []scenario.Step{{Name: "only actions"}}},
		"no pods":     {Steps: s.Steps},
		"none serves": {Cluster: s.Cluster, Steps: []scenario.Step{{Probes: []scenario.Probe{{Port: 9, Protocol: "SCTP"}}}}},
	} {
		if _, ok := baseline(s); ok {
			t.Errorf("%s: a baseline, want none", name)
		}
	}
}

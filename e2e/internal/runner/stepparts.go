package runner

import (
	"context"
	"time"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

// The parts of Run that a check built around one scenario step needs (the
// audit-mode check in e2e/internal/deniedlog): set up the scenario, apply
// a step's actions, list its cells, probe one, judge the step.

// Cell is one (probe, source, destination, family) of a step, with the
// scenario's expectation: '.' connects, 'X' blocked.
type Cell struct {
	Probe    scenario.Probe
	Src, Dst string
	Family   cluster.Family
	Want     byte
}

// PrepareFile sets up scenario s, read from file, for the families it
// runs in here (IPv4 alone for a file tied to IPv4 CIDRs).
func (r *Runner) PrepareFile(ctx context.Context, s *scenario.Scenario, file string) error {
	r.families = r.scenarioFamilies(s, file)
	if usesClusterPolicies(s) {
		// As Run does: the CRD served, and no ClusterNetworkPolicy of
		// someone else's to change the verdicts (DeleteClusterNetworkPolicies
		// removes the ones the steps create).
		if err := r.ensureCNPCRD(ctx); err != nil {
			return err
		}
		if err := r.checkNoForeignCNPs(ctx); err != nil {
			return err
		}
	}
	return r.prepare(ctx, s)
}

// ApplyActions applies actions as a step of s would.
func (r *Runner) ApplyActions(ctx context.Context, s *scenario.Scenario, actions []scenario.Action) error {
	return r.applyActions(ctx, s, actions)
}

// Cells lists every cell of st, in the families of the prepared scenario.
func (r *Runner) Cells(s *scenario.Scenario, st scenario.Step) []Cell {
	var out []Cell
	for _, p := range st.Probes {
		m := p.Matrix
		for ri, src := range m.Rows {
			for ci, dst := range m.Cols {
				if s.IgnoreLoopback && src == dst {
					continue
				}
				for _, f := range r.families {
					out = append(out, Cell{Probe: p, Src: src, Dst: dst, Family: f, Want: m.Cells[ri][ci]})
				}
			}
		}
	}
	return out
}

// ProbeCell probes c once: '.', 'X', 'R' or 'E', and a detail.
func (r *Runner) ProbeCell(c Cell) (byte, string) { return r.probe(c.Probe, c.Src, c.Dst, c.Family) }

// CellPort is the destination port c's probe reaches on its pod (a named
// port resolved on it).
func (r *Runner) CellPort(c Cell) (uint16, error) { return r.probePort(c.Probe, c.Dst, c.Family) }

// JudgeStep probes st until its matrix holds or the bound passes, as Run
// does: whether it held, the time it took and a report of what differed.
func (r *Runner) JudgeStep(ctx context.Context, s *scenario.Scenario, st scenario.Step) (bool, time.Duration, string) {
	return r.judge(ctx, s, st)
}

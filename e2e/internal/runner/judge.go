package runner

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

// cell is one (probe, source, destination) judgement.
type cell struct {
	probe    int
	row, col int
	want     byte
	got      byte
	detail   string
	src, dst string
	// family is the address family the cell is probed in.
	family cluster.Family
	// probes counts how often the cell was probed in this step, and
	// lastStart is when its latest probe started, since the step's actions
	// were applied: a verdict is only as fresh as that probe.
	probes    int
	lastStart time.Duration
}

// probeFunc observes one cell once, in family f: '.', 'X', 'R' or 'E', and
// a detail.
type probeFunc func(p scenario.Probe, src, dst string, f cluster.Family) (byte, string)

// retryPause is the pause between two rounds of probes of differing cells.
const retryPause = 100 * time.Millisecond

// judge probes every cell of every probe of the step until all match or the
// bound passes, each cell in every family the scenario runs in (both in a
// dual-stack cluster); it returns whether they matched, the time to converge since
// the actions were applied, and a report of the differing cells.
func (r *Runner) judge(ctx context.Context, s *scenario.Scenario, st scenario.Step) (bool, time.Duration, string) {
	start := time.Now()
	var cells []*cell
	for pi, p := range st.Probes {
		m := p.Matrix
		for ri, src := range m.Rows {
			for ci, dst := range m.Cols {
				if s.IgnoreLoopback && src == dst {
					continue
				}
				for _, f := range r.families {
					cells = append(cells, &cell{probe: pi, row: ri, col: ci, want: m.Cells[ri][ci], src: src, dst: dst, family: f})
				}
			}
		}
	}
	pending, took := converge(ctx, start, r.Opt.Converge, r.Opt.Parallel, st.Probes, cells, r.probe)
	var explained string
	if r.Opt.Explain && ctx.Err() == nil {
		explained = r.explainCells(ctx, st, cells)
	}
	if len(pending) == 0 && explained == "" {
		return true, took, ""
	}
	var b strings.Builder
	b.WriteString(explained)
	for _, c := range pending {
		p := st.Probes[c.probe]
		fmt.Fprintf(&b, "    %s -> %s %s %s: expected %s, saw %s%s (probed %d times, last at +%.1fs)\n",
			c.src, c.dst, p.Label(), c.family, sym(c.want), sym(c.got), detail(c.detail), c.probes, c.lastStart.Seconds())
	}
	for _, f := range r.families {
		var fc []*cell
		for _, c := range cells {
			if c.family == f {
				fc = append(fc, c)
			}
		}
		for pi, p := range st.Probes {
			if len(r.families) > 1 {
				fmt.Fprintf(&b, "    over %s:\n", f)
			}
			b.WriteString(renderObserved(p, pi, fc))
		}
	}
	return false, took, b.String()
}

// converge probes cells until each matches its expectation. A cell fails
// only when a probe that started at or after start+bound still differs:
// every verdict of "not converged after the bound" rests on an observation
// made at the bound, not on one made before the agent could have acted.
// (A first round over a large matrix with many blocked cells can itself
// last longer than the bound; judging its early cells by their first probe
// reported cells probed before the agent synced as wrong for the whole
// bound.) It returns the cells that still differ and the time from start
// to the end of the last round that had to probe.
func converge(ctx context.Context, start time.Time, bound time.Duration, parallel int, probes []scenario.Probe, cells []*cell, probe probeFunc) ([]*cell, time.Duration) {
	deadline := start.Add(bound)
	pending := cells
	var failed []*cell
	for len(pending) > 0 && ctx.Err() == nil {
		probeRound(ctx, parallel, probes, pending, probe, start)
		var next []*cell
		for _, c := range pending {
			switch {
			case c.got == c.want:
			case start.Add(c.lastStart).Before(deadline):
				next = append(next, c) // differs, but was seen before the bound: look again
			default:
				failed = append(failed, c)
			}
		}
		pending = next
		if len(pending) > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(retryPause):
			}
		}
	}
	return append(failed, pending...), time.Since(start)
}

// probeRound probes each cell once, parallel at a time, and records when
// each probe started relative to start.
func probeRound(ctx context.Context, parallel int, probes []scenario.Probe, cells []*cell, probe probeFunc, start time.Time) {
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	for _, c := range cells {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.lastStart = time.Since(start)
			c.probes++
			c.got, c.detail = probe(probes[c.probe], c.src, c.dst, c.family)
		}()
	}
	wg.Wait()
}

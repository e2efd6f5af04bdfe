package runner

import (
	"context"
	"fmt"
	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

// fakeDataplane answers probes the way a node does around one sync: before
// syncAt every cell connects (in connect time); after it, every cell times
// out (after timeout), except stuck cells, which connect whatever the time
// (a dataplane that never enforces them).
type fakeDataplane struct {
	start   time.Time
	syncAt  time.Duration
	connect time.Duration
	timeout time.Duration
	stuck   map[string]bool
	calls   atomic.Int64
}

func (f *fakeDataplane) probe(_ scenario.Probe, src, dst string, _ cluster.Family) (byte, string) {
	f.calls.Add(1)
	if f.stuck[src+">"+dst] || time.Since(f.start) < f.syncAt {
		time.Sleep(f.connect)
		return '.', ""
	}
	time.Sleep(f.timeout)
	return 'X', ""
}

// blockedCells is n cells that must all be blocked.
func blockedCells(n int) []*cell {
	cells := make([]*cell, n)
	for i := range cells {
		cells[i] = &cell{want: 'X', src: fmt.Sprintf("x/p%d", i), dst: "y/server"}
	}
	return cells
}

// The bug of issue 9: a first round that outlasts the bound (many blocked
// cells, each waiting for its timeout) must not turn the cells probed
// before the agent synced into failures. Every cell here is right from
// syncAt on, so the step converges.
func TestConverge_FirstRoundLongerThanBoundIsNotAVerdict(t *testing.T) {
	const cellsN, parallel = 120, 4
	start := time.Now()
	dp := &fakeDataplane{start: start, syncAt: 30 * time.Millisecond, connect: 5 * time.Millisecond, timeout: 20 * time.Millisecond}
	cells := blockedCells(cellsN)
	// About 24 cells connect before the sync; the other ~96 × 20 ms / 4 in
	// parallel make the first round last ~0.5 s, five times the bound.
	failed, _ := converge(context.Background(), start, 100*time.Millisecond, parallel, []scenario.Probe{{}}, cells, dp.probe)
	for _, c := range failed {
		t.Errorf("%s -> %s reported as %c (probed %d times, last at +%v), but the dataplane was right from +%v",
			c.src, c.dst, c.got, c.probes, c.lastStart, dp.syncAt)
	}
	if got := dp.calls.Load(); got <= cellsN {
		t.Errorf("probes = %d, want more than one round (%d): the cells seen before the sync must be probed again", got, cellsN)
	}
}

// A cell that stays wrong fails, and its verdict rests on a probe that
// started at or after the bound.
func TestConverge_StuckCellFailsOnAFreshObservation(t *testing.T) {
	start := time.Now()
	bound := 150 * time.Millisecond
	dp := &fakeDataplane{start: start, syncAt: 20 * time.Millisecond, timeout: 10 * time.Millisecond,
		stuck: map[string]bool{"x/p3>y/server": true}}
	cells := blockedCells(40)
	failed, _ := converge(context.Background(), start, bound, 4, []scenario.Probe{{}}, cells, dp.probe)
	if len(failed) != 1 || failed[0].src != "x/p3" {
		t.Fatalf("failed = %v, want exactly x/p3", failed)
	}
	c := failed[0]
	if c.got != '.' || c.lastStart < bound || c.probes < 2 {
		t.Errorf("x/p3: got %c, probed %d times, last at +%v; want '.', several probes, the last at or after +%v", c.got, c.probes, c.lastStart, bound)
	}
}

// Cells that match from the first probe are probed once.
func TestConverge_MatchingCellsAreProbedOnce(t *testing.T) {
	start := time.Now()
	dp := &fakeDataplane{start: start, timeout: time.Millisecond}
	cells := blockedCells(10)
	failed, _ := converge(context.Background(), start, time.Second, 3, []scenario.Probe{{}}, cells, dp.probe)
	if len(failed) != 0 {
		t.Fatalf("failed = %d cells, want 0", len(failed))
	}
	for _, c := range cells {
		if c.probes != 1 {
			t.Errorf("%s probed %d times, want 1", c.src, c.probes)
		}
	}
}

// Reporting: convergence timings and observed matrices.

package runner

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

func (r *Runner) printTimings(wall time.Duration) {
	var ds []time.Duration
	for _, t := range r.Timings {
		if t.Passed {
			ds = append(ds, t.Converge)
		}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	pct := func(p float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		i := int(float64(len(ds)-1) * p)
		return ds[i]
	}
	fmt.Fprintf(r.Out, "time to converge over %d converged steps (of %d): p50 %.2fs p90 %.2fs p99 %.2fs max %.2fs; wall time %.1fs\n",
		len(ds), len(r.Timings), pct(0.5).Seconds(), pct(0.9).Seconds(), pct(0.99).Seconds(), pct(1).Seconds(), wall.Seconds())
}

func sym(b byte) string {
	switch b {
	case '.':
		return ". (connected)"
	case 'X':
		return "X (timed out)"
	case 'R':
		return "R (refused)"
	}
	return "E (error)"
}

func detail(d string) string {
	if d == "" {
		return ""
	}
	return " [" + d + "]"
}

// renderObserved prints the observed matrix of one probe; a differing cell
// is shown as its observed symbol followed by '!'.
func renderObserved(p scenario.Probe, pi int, cells []*cell) string {
	m := p.Matrix
	got := map[[2]int]*cell{}
	for _, c := range cells {
		if c.probe == pi {
			got[[2]int{c.row, c.col}] = c
		}
	}
	w := 3
	for _, n := range append(append([]string{}, m.Rows...), m.Cols...) {
		w = max(w, len(n))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "    observed %s (! = differs from expected):\n    %-*s", p.Label(), w, "-")
	for _, c := range m.Cols {
		fmt.Fprintf(&b, " %-*s", w, c)
	}
	b.WriteString("\n")
	for ri, rn := range m.Rows {
		fmt.Fprintf(&b, "    %-*s", w, rn)
		for ci := range m.Cols {
			c := got[[2]int{ri, ci}]
			v := "-"
			if c != nil {
				v = string(c.got)
				if c.got != c.want {
					v += "!"
				}
			}
			fmt.Fprintf(&b, " %-*s", w, v)
		}
		b.WriteString("\n")
	}
	return b.String()
}

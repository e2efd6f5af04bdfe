package main

import (
	"math"
	"math/rand/v2"
	"testing"
)

// pairs makes n pairs whose baseline drifts by up to ±20% from pair to
// pair (a loaded machine) and whose agent side costs `cost` (rates times
// 1-cost, latencies divided by it), with 2% noise on top.
func pairs(n int, cost float64) (base, agent []pairSample) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range n {
		drift := 0.8 + 0.4*rng.Float64()
		b, a := pairSample{}, pairSample{}
		for _, m := range measurements {
			v := 1000 * drift
			if !m.higher {
				v = 50e-6 / drift
			}
			b[m.name] = v * (1 + 0.02*rng.NormFloat64())
			if m.higher {
				a[m.name] = v * (1 - cost) * (1 + 0.02*rng.NormFloat64())
			} else {
				a[m.name] = v / (1 - cost) * (1 + 0.02*rng.NormFloat64())
			}
		}
		base, agent = append(base, b), append(agent, a)
	}
	return base, agent
}

// Pairing cancels the drift: a free agent is claimed at >= 0.95, a 10%
// cost never is, whatever the drift between pairs.
func TestPairRatios_DriftCancelsInPairs(t *testing.T) {
	for _, tc := range []struct {
		cost float64
		want bool
	}{{0, true}, {0.10, false}} {
		base, agent := pairs(20, tc.cost)
		ratios, all, worst := pairRatios(base, agent, 2000)
		if len(ratios) != len(measurements) {
			t.Fatalf("%d ratios, want %d", len(ratios), len(measurements))
		}
		if all != tc.want {
			t.Errorf("cost %.2f: goal met for all = %v (worst lower bound %.3f), want %v", tc.cost, all, worst, tc.want)
		}
		for _, r := range ratios {
			// The ±20% drift would swamp a 10% cost; paired, the median
			// lands within 3% of the true ratio.
			if want := 1 - tc.cost; math.Abs(r.Interval.Median-want) > 0.03 {
				t.Errorf("cost %.2f, %s: median %.3f [%.3f, %.3f], true ratio %.3f", tc.cost, r.Name, r.Interval.Median, r.Interval.Low, r.Interval.High, want)
			}
			if r.Interval.N != 20 || len(r.Baseline) != 20 || len(r.Agent) != 20 {
				t.Errorf("%s: %d ratios from %d/%d runs, want 20", r.Name, r.Interval.N, len(r.Baseline), len(r.Agent))
			}
		}
	}
	// Fewer pairs than the goal asks for: a figure, never a claim.
	base, agent := pairs(12, 0)
	if _, all, _ := pairRatios(base, agent, 2000); all {
		t.Error("the goal is claimed from 12 pairs")
	}
}

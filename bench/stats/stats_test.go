package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestMedianAndQuantile(t *testing.T) {
	for _, tc := range []struct {
		xs          []float64
		median, q25 float64
	}{
		{[]float64{3, 1, 2}, 2, 1.5},
		{[]float64{4, 1, 3, 2}, 2.5, 1.75},
		{[]float64{7}, 7, 7},
	} {
		if got := Median(tc.xs); got != tc.median {
			t.Errorf("Median(%v) = %v, want %v", tc.xs, got, tc.median)
		}
		if got := Quantile(tc.xs, 0.25); math.Abs(got-tc.q25) > 1e-12 {
			t.Errorf("Quantile(%v, 0.25) = %v, want %v", tc.xs, got, tc.q25)
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
}

// The interval must contain the sample median, be reproducible for a seed,
// and shrink as samples are added: a goal is claimed from it, so an
// interval that were always narrow (or always wide) would claim wrongly.
func TestMedianCI(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	draw := func(n int) []float64 {
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = 1 + 0.05*rng.NormFloat64()
		}
		return xs
	}
	small, large := draw(20), draw(400)
	a := MedianCI(small, 0.95, 2000, 7)
	if !(a.Low <= a.Median && a.Median <= a.High) {
		t.Fatalf("median %v outside its interval [%v, %v]", a.Median, a.Low, a.High)
	}
	if b := MedianCI(small, 0.95, 2000, 7); b != a {
		t.Fatalf("same samples and seed, different intervals: %+v vs %+v", a, b)
	}
	wideSmall := a.High - a.Low
	c := MedianCI(large, 0.95, 2000, 7)
	if wide := c.High - c.Low; !(wide < wideSmall/2) {
		t.Fatalf("400 samples give an interval %.4f wide, 20 give %.4f: want it at least halved", wide, wideSmall)
	}
	// The true median is 1.0: a 95% interval from 400 samples holds it.
	if !(c.Low < 1 && 1 < c.High) {
		t.Fatalf("interval [%v, %v] from 400 samples misses the true median 1", c.Low, c.High)
	}
}

func TestAtLeast(t *testing.T) {
	for _, tc := range []struct {
		iv   Interval
		want bool
	}{
		{Interval{Median: 0.99, Low: 0.96, High: 1.02, N: 20}, true},
		{Interval{Median: 0.99, Low: 0.94, High: 1.02, N: 20}, false}, // the median alone is not enough
		{Interval{Median: 0.95, Low: 0.95, High: 0.97, N: 20}, true},
		{Interval{N: 0}, false},
		{Interval{Median: 1.6, Low: 1.05, High: 3.4, N: 3}, false}, // too few pairs to claim anything
	} {
		if got := tc.iv.AtLeast(0.95); got != tc.want {
			t.Errorf("%+v.AtLeast(0.95) = %v, want %v", tc.iv, got, tc.want)
		}
	}
}

func TestPairRatios(t *testing.T) {
	got := PairRatios([]float64{2, 3, 4}, []float64{1, 0, 8})
	want := []float64{2, 0.5}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("PairRatios = %v, want %v", got, want)
	}
}

// Package stats reads benchmark samples taken in one run: interleaved
// pairs (baseline, candidate, baseline, candidate, ...) are turned into a
// median ratio with a bootstrap confidence interval, so that a goal such as
// "at least 0.95 of the baseline" is claimed only when the noise of the
// machine cannot explain it away.
package stats

import (
	"math"
	"math/rand/v2"
	"slices"
)

// Interval is the median of a set of ratios and its two-sided bootstrap
// confidence interval.
type Interval struct {
	Median float64 `json:"median"`
	Low    float64 `json:"ci_low"`
	High   float64 `json:"ci_high"`
	// Level is the confidence of [Low, High] (0.95); N the ratios it
	// was computed from; Resamples the bootstrap resamples drawn.
	Level     float64 `json:"level"`
	N         int     `json:"n"`
	Resamples int     `json:"resamples"`
}

// MinClaimSamples is the fewest ratios a claim is made from: a percentile
// bootstrap of a handful of samples gives intervals far narrower than the
// truth (three pairs can "prove" anything).
const MinClaimSamples = 10

// AtLeast reports whether the interval's lower bound reaches goal, from
// at least MinClaimSamples ratios: only then is "the ratio is at least
// goal" claimed.
func (iv Interval) AtLeast(goal float64) bool { return iv.N >= MinClaimSamples && iv.Low >= goal }

// Median is the median of xs (the mean of the two middle values for an
// even count); NaN for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Quantile is the q-quantile of xs by linear interpolation between order
// statistics; NaN for none.
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (pos-float64(lo))*(s[hi]-s[lo])
}

// MedianCI is the median of ratios with a percentile bootstrap interval at
// level (e.g. 0.95): ratios are resampled with replacement resamples times
// and the interval is the (1-level)/2 and (1+level)/2 quantiles of the
// resampled medians. The generator is seeded with seed, so that the same
// samples always give the same interval.
func MedianCI(ratios []float64, level float64, resamples int, seed uint64) Interval {
	iv := Interval{Median: Median(ratios), Level: level, N: len(ratios), Resamples: resamples}
	if len(ratios) == 0 || resamples <= 0 {
		iv.Low, iv.High = math.NaN(), math.NaN()
		return iv
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	medians := make([]float64, resamples)
	sample := make([]float64, len(ratios))
	for r := range medians {
		for i := range sample {
			sample[i] = ratios[rng.IntN(len(ratios))]
		}
		medians[r] = Median(sample)
	}
	iv.Low = Quantile(medians, (1-level)/2)
	iv.High = Quantile(medians, (1+level)/2)
	return iv
}

// PairRatios divides each candidate sample by the baseline sample taken
// next to it (candidate[i] / baseline[i]); for latencies, where lower is
// better, pass them the other way round (baseline / candidate) so that 1.0
// is "as fast" and less is slower in both cases. Pairs with a zero
// denominator are skipped.
func PairRatios(numerators, denominators []float64) []float64 {
	n := min(len(numerators), len(denominators))
	out := make([]float64, 0, n)
	for i := range n {
		if denominators[i] == 0 {
			continue
		}
		out = append(out, numerators[i]/denominators[i])
	}
	return out
}

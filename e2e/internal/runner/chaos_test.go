package runner

import (
	"strings"
	"testing"
	"time"
)

func TestWhileTampered(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 23, 7, 43, 0, time.UTC)
	c := &chaosRun{tampered: []interval{{from: t0, to: t0.Add(100 * time.Millisecond)}}}
	for _, tc := range []struct {
		name  string
		start time.Duration // relative to the nft command
		took  time.Duration
		want  bool
	}{
		{"answered before the command", -2 * time.Second, time.Second, false},
		{"waiting when the command ran (a SYN retransmitted into it)", -1005 * time.Millisecond, 1068 * time.Millisecond, true},
		{"started while tampered", 50 * time.Millisecond, 10 * time.Millisecond, true},
		{"started at the repair", 100 * time.Millisecond, time.Millisecond, true},
		{"started after the repair", 101 * time.Millisecond, time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := c.whileTampered(probeRecord{start: t0.Add(tc.start), took: tc.took})
			if got != tc.want {
				t.Errorf("whileTampered = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEvidenceNamesTheLastEventBeforeTheProbe(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 23, 7, 41, 0, time.UTC)
	c := &chaosRun{
		cells: []chaosCell{{name: "far-no TCP"}},
		events: []chaosEvent{
			{t0, "nodes reach the API again"},
			{t0.Add(350 * time.Millisecond), "the change is in the table"},
			{t0.Add(3 * time.Second), "nft delete rule"},
		},
	}
	got := c.evidence(probeRecord{cell: 0, start: t0.Add(1766 * time.Millisecond), took: 1068 * time.Millisecond, got: '.', detail: "from 10.244.2.74:34928"}, 'X')
	want := "far-no TCP: want X, got . (from 10.244.2.74:34928); started 23:07:42.766 1.416 s after the change is in the table, waited 1.068 s"
	if got != want {
		t.Errorf("evidence =\n  %s\nwant\n  %s", got, want)
	}
	if first := c.evidence(probeRecord{start: t0.Add(-time.Second)}, '.'); strings.Contains(first, "after") {
		t.Errorf("a probe before every event names one: %s", first)
	}
}

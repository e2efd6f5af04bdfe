package main

// No addresses: these tests cover flag parsing and the arithmetic on the
// agent's metrics only.

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseCounts(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []int
		wantErr bool
	}{
		{name: "two", in: "0,10000", want: []int{0, 10000}},
		{name: "spaces and empty", in: " 10000 ,, 0 ", want: []int{10000, 0}},
		{name: "empty", in: "", want: nil},
		{name: "negative", in: "-1", wantErr: true},
		{name: "not a number", in: "10k", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCounts(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestPodPause(t *testing.T) {
	metrics := func(n, compile, sync float64) map[string]float64 {
		return map[string]float64{
			"nftpolicy_compile_duration_seconds_count": n, "nftpolicy_compile_duration_seconds_sum": compile,
			"nftpolicy_sync_duration_seconds_count": n, "nftpolicy_sync_duration_seconds_sum": sync,
		}
	}
	tests := []struct {
		name          string
		before, after map[string]float64
		want          time.Duration
	}{
		{name: "fast agent: the floor", before: metrics(10, 1, 1), after: metrics(20, 1.01, 1.01), want: 100 * time.Millisecond},
		{name: "3x compile+sync", before: metrics(10, 1, 1), after: metrics(20, 2, 1.5), want: 450 * time.Millisecond},
		{name: "slow agent: the ceiling", before: metrics(0, 0, 0), after: metrics(2, 2, 2), want: 2 * time.Second},
		{name: "no reconcile", before: metrics(5, 1, 1), after: metrics(5, 1, 1), want: 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := podPause(tc.before, tc.after); got != tc.want {
				t.Errorf("podPause = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAgentShare(t *testing.T) {
	before := map[string]float64{
		"nftpolicy_event_to_sync_seconds_count": 1, "nftpolicy_event_to_sync_seconds_sum": 0.5,
		`nftpolicy_event_to_sync_seconds_bucket{le="0.001"}`: 0,
		`nftpolicy_event_to_sync_seconds_bucket{le="0.002"}`: 0,
		`nftpolicy_event_to_sync_seconds_bucket{le="0.004"}`: 0,
		`nftpolicy_event_to_sync_seconds_bucket{le="+Inf"}`:  1,
	}
	after := map[string]float64{
		"nftpolicy_event_to_sync_seconds_count": 101, "nftpolicy_event_to_sync_seconds_sum": 0.7,
		`nftpolicy_event_to_sync_seconds_bucket{le="0.001"}`: 50,
		`nftpolicy_event_to_sync_seconds_bucket{le="0.002"}`: 98,
		`nftpolicy_event_to_sync_seconds_bucket{le="0.004"}`: 100,
		`nftpolicy_event_to_sync_seconds_bucket{le="+Inf"}`:  101,
		"nftpolicy_compile_duration_seconds_count":           4, "nftpolicy_compile_duration_seconds_sum": 0.4,
		"nftpolicy_sync_duration_seconds_count": 4, "nftpolicy_sync_duration_seconds_sum": 0.2,
	}
	got := agentShare(before, after)
	got.Note = ""
	want := AgentShare{Count: 100, MeanSeconds: 0.002, P50LE: 0.001, P99LE: 0.004, CompileMeanSeconds: 0.1, SyncMeanSeconds: 0.05}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

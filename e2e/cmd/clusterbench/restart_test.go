package main

// IP plan: podLayout's pods (see cnp_test.go); no cluster. The log lines
// are the agent's own (log/slog's JSON handler), copied from a local
// cluster's node log.

import (
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftpolicy/nftpolicy/policy"
)

func TestScanLogLines(t *testing.T) {
	log := `{"time":"2026-12-02T02:12:29.019865758Z","level":"INFO","msg":"starting","node":"e2e-node-1","version":"dev"}
e2e: process bench-e2e-node-1-agent (pid 123) exited: signal: terminated
{"time":"2026-12-02T02:12:29.422931518Z","level":"INFO","msg":"starting server","name":"health probe","addr":"[::]:9809"}
{"time":"2026-12-02T02:12:29.637331131Z","level":"INFO","msg":"first sync succeeded","node":"e2e-node-1","syncSeconds":0.006247817,"setElements":2}
{"time":"2026-12-02T02:13:00.000000000Z","level":"INFO","msg":"first sync succeeded","node":"e2e-node-1","syncSeconds":9}
{"time":"2026-12-02T02:13:01.0000`
	got, err := scanLogLines(strings.NewReader(log), []string{"starting", "first sync succeeded"})
	if err != nil {
		t.Fatal(err)
	}
	start, sync := got["starting"], got["first sync succeeded"]
	if want := time.Date(2026, 12, 2, 2, 12, 29, 19865758, time.UTC); !start.Time.Equal(want) {
		t.Errorf("starting at %v, want %v", start.Time, want)
	}
	if want := time.Date(2026, 12, 2, 2, 12, 29, 637331131, time.UTC); !sync.Time.Equal(want) || sync.SyncSeconds != 0.006247817 {
		t.Errorf("first sync at %v (%v s), want the first such line, %v (0.006247817 s)", sync.Time, sync.SyncSeconds, want)
	}
	if got, err := scanLogLines(strings.NewReader(log), []string{"never logged"}); err != nil || len(got) != 0 {
		t.Errorf("a message not in the log: %v, %v", got, err)
	}
}

// The restart figure's verdicts: deny-server isolates the server, and
// restart-probe admits the outsider and nobody else.
func TestRestartPolicies_OnTheBenchLayout(t *testing.T) {
	deny, _ := serverPolicies()
	for _, tc := range []struct {
		name     string
		nps      []*networkingv1.NetworkPolicy
		outsider bool
	}{
		{"deny-server", []*networkingv1.NetworkPolicy{deny}, false},
		{"deny-server and restart-probe", []*networkingv1.NetworkPolicy{deny, restartPolicy()}, true},
	} {
		snap, ips := layout(t, tc.nps, nil)
		if v := policy.Evaluate(snap, tcp9000(ips["outsider"], ips["server"])); v.Allowed != tc.outsider {
			t.Errorf("%s: outsider -> server allowed %v, want %v", tc.name, v.Allowed, tc.outsider)
		}
		if v := policy.Evaluate(snap, tcp9000(ips["client-same"], ips["server"])); v.Allowed {
			t.Errorf("%s: client-same -> server allowed", tc.name)
		}
	}
}

func TestSpreadOf(t *testing.T) {
	if got, want := spreadOf([]float64{3, 1, 2, 10}), (Spread{Median: 2.5, Min: 1, Max: 10}); got != want {
		t.Errorf("spreadOf = %+v, want %+v", got, want)
	}
	if got := spreadOf(nil); got != (Spread{}) {
		t.Errorf("spreadOf(nil) = %+v", got)
	}
}

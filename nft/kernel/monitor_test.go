//go:build linux

package kernel

// IP plan: the rulesets of kernel_test.go (no traffic).

import (
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/nft"
)

// TestMonitor_ReportsForeignChangesOnly changes the table by hand with nft
// after the Syncer's own syncs and after changes to another table: the
// first report must be the hand-made change (so neither the own batches
// nor the other table were reported before it), Verify must agree that the
// table drifted, and the next Sync repairs it without another report.
func TestMonitor_ReportsForeignChangesOnly(t *testing.T) {
	requirePrivileges(t)
	names := nft.NamesFor(nft.Ingress, "default/web")
	tests := []struct {
		name   string
		tamper func(t *testing.T, ns string) []string
		want   string
	}{
		{name: "delete a rule", want: "delete rule", tamper: func(t *testing.T, ns string) []string {
			return []string{"delete", "rule", "inet", "nftpolicy", "forward", "handle", firstHandle(t, ns, "forward")}
		}},
		{name: "add an accept rule", want: "add rule", tamper: func(*testing.T, string) []string {
			return []string{"insert", "rule", "inet", "nftpolicy", "forward", "accept"}
		}},
		{name: "flush a set", want: "delete elements", tamper: func(*testing.T, string) []string {
			return []string{"flush", "set", "inet", "nftpolicy", names.AnyV4}
		}},
		{name: "delete the table", want: "delete", tamper: func(*testing.T, string) []string {
			return []string{"delete", "table", "inet", "nftpolicy"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, fd := newNetns(t, "monitor")
			s := newSyncer(t, fd)
			changes := watch(t, s)

			sync(t, s, rulesetA())
			sync(t, s, rulesetB()) // incremental
			if err := s.Verify(context.Background()); err != nil {
				t.Fatalf("Verify before tampering: %v", err)
			}
			sync(t, s, rulesetA()) // back, incrementally
			nftIn(t, ns, "add", "table", "inet", "other")
			nftIn(t, ns, "add", "chain", "inet", "other", "c")
			nftIn(t, ns, "add", "table", "ip", "nftpolicy") // same name, other family

			nftIn(t, ns, tt.tamper(t, ns)...)
			got := next(t, changes)
			if got.Lost || !regexp.MustCompile("^"+tt.want).MatchString(got.What) {
				t.Fatalf("first reported change = %+v, want %q by a foreign port", got, tt.want)
			}
			t.Logf("reported: %v", got)
			if err := s.Verify(context.Background()); !errors.Is(err, ErrDrift) {
				t.Fatalf("Verify after %s = %v, want ErrDrift", tt.name, err)
			}
			sync(t, s, rulesetA()) // full replace: our own, so not reported
			assertReadback(t, ns, rulesetA())

			nftIn(t, ns, "add", "chain", "inet", "nftpolicy", "intruder")
			if got := next(t, changes); got.What != "add chain" {
				t.Errorf("change after the repair = %+v, want the intruder chain (the repair itself must not be reported)", got)
			}
		})
	}
}

// watch runs a TableMonitor on s until the test ends and returns its
// reports.
func watch(t *testing.T, s *Syncer) <-chan ForeignChange {
	t.Helper()
	m, err := s.Monitor()
	if err != nil {
		t.Fatalf("Monitor: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan ForeignChange, 16)
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, func(c ForeignChange) {
			select {
			case changes <- c:
			default:
				t.Errorf("more than %d reports: %v", cap(changes), c)
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return changes
}

// next waits for the next report. The bound only keeps a broken monitor
// from hanging the test; a report comes within milliseconds.
func next(t *testing.T, changes <-chan ForeignChange) ForeignChange {
	t.Helper()
	select {
	case c := <-changes:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported")
		return ForeignChange{}
	}
}

// firstHandle is the handle of the first rule of one of our chains.
func firstHandle(t *testing.T, ns, chain string) string {
	t.Helper()
	out := nftIn(t, ns, "-a", "list", "chain", "inet", "nftpolicy", chain)
	m := regexp.MustCompile(`# handle (\d+)`).FindAllStringSubmatch(out, -1)
	if len(m) < 2 { // the chain's own handle, then its rules'
		t.Fatalf("no rule handle in\n%s", out)
	}
	return m[1][1]
}

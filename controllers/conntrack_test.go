package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/nft"
)

// fakeCleaner records the rulesets it was asked to clean against.
type fakeCleaner struct {
	mu       sync.Mutex
	cleaned  []*nft.Ruleset
	result   ConntrackCleanup
	failNext error
}

func (f *fakeCleaner) Clean(_ context.Context, rs *nft.Ruleset) (ConntrackCleanup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleaned = append(f.cleaned, rs)
	if err := f.failNext; err != nil {
		f.failNext = nil
		return ConntrackCleanup{Examined: f.result.Examined}, err
	}
	return f.result, nil
}

// cleanups returns how many cleanups ran and the ruleset of the last.
func (f *fakeCleaner) cleanups() (int, *nft.Ruleset) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cleaned) == 0 {
		return 0, nil
	}
	return len(f.cleaned), f.cleaned[len(f.cleaned)-1]
}

func (f *fakeCleaner) fail(err error) {
	f.mu.Lock()
	f.failNext = err
	f.mu.Unlock()
}

// reportingSyncer is a recordingSyncer that says whether a sync may deny
// what was allowed before, as kernel.Syncer does.
type reportingSyncer struct {
	*recordingSyncer
	mu        sync.Mutex
	tightened bool
}

func (s *reportingSyncer) Tightened() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.tightened }

func (s *reportingSyncer) set(tightened bool) { s.mu.Lock(); s.tightened = tightened; s.mu.Unlock() }

func TestReconcile_ConntrackCleanupAfterTighteningSyncs(t *testing.T) {
	cleaner := &fakeCleaner{result: ConntrackCleanup{Examined: 5, Deleted: 2}}
	r, rec, reg := newFakeReconciler(t, nil, Options{Conntrack: cleaner, ConntrackAvailable: true})
	s := &reportingSyncer{recordingSyncer: rec, tightened: true}
	r.syncer = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.conntrack.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("conntrack worker: %v", err)
		}
	})
	reconcileOnce := func(step string) {
		t.Helper()
		if _, err := r.Reconcile(context.Background(), workKey); err != nil {
			t.Fatalf("%s: Reconcile: %v", step, err)
		}
	}
	cleanupsAre := func(want int) func() string {
		return func() string {
			n, rs := cleaner.cleanups()
			if n != want {
				return fmt.Sprintf("%d cleanups, want %d", n, want)
			}
			if rs != rec.latest() {
				return "the last cleanup was not against the ruleset synced last"
			}
			return ""
		}
	}

	reconcileOnce("first sync")
	eventually(t, 5*time.Second, nil, "cleanup after the first sync", cleanupsAre(1))
	if got := metricValue(t, reg, "nftpolicy_conntrack_netlink_available"); got != 1 {
		t.Errorf("conntrack_netlink_available = %v, want 1", got)
	}
	eventually(t, 5*time.Second, nil, "deleted entries counted", func() string {
		if got := metricValue(t, reg, "nftpolicy_conntrack_entries_deleted_total"); got != 2 {
			return fmt.Sprintf("conntrack_entries_deleted_total = %v, want 2", got)
		}
		return ""
	})

	s.set(false)
	reconcileOnce("sync that denies nothing new")
	consistently(t, 300*time.Millisecond, "a sync that denies nothing new must not clean", func() string {
		if n, _ := cleaner.cleanups(); n != 1 {
			return fmt.Sprintf("%d cleanups, want 1", n)
		}
		return ""
	})

	s.set(true)
	cleaner.fail(errors.New("netlink: ENOBUFS"))
	reconcileOnce("failed cleanup")
	// The failure is retried within conntrackRetry, with no new sync.
	eventually(t, 5*time.Second, nil, "cleanup retried after a failure", cleanupsAre(3))
	if got := metricValue(t, reg, "nftpolicy_conntrack_cleanup_errors_total"); got != 1 {
		t.Errorf("conntrack_cleanup_errors_total = %v, want 1", got)
	}
}

func TestReconcile_NoConntrackCleaner(t *testing.T) {
	r, _, reg := newFakeReconciler(t, nil, Options{})
	if _, err := r.Reconcile(context.Background(), workKey); err != nil {
		t.Fatal(err)
	}
	if r.conntrack != nil {
		t.Error("a conntrack worker without a cleaner")
	}
	if got := metricValue(t, reg, "nftpolicy_conntrack_netlink_available"); got != 0 {
		t.Errorf("conntrack_netlink_available = %v, want 0", got)
	}
}

func TestAppliedRuleset_PassesTightenedOn(t *testing.T) {
	rec := newRecordingSyncer(t)
	for _, tightened := range []bool{true, false} {
		a := &AppliedRuleset{Inner: &reportingSyncer{recordingSyncer: rec, tightened: tightened}, Now: time.Now}
		if got := a.Tightened(); got != tightened {
			t.Errorf("Tightened() over an inner syncer that says %v = %v", tightened, got)
		}
	}
	if a := (&AppliedRuleset{Inner: rec, Now: time.Now}); !a.Tightened() {
		t.Error("Tightened() over a syncer that cannot tell = false, want true")
	}
}

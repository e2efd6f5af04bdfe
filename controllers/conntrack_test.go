package controllers

import (
	"context"
	"errors"
	"testing"

	"github.com/nftpolicy/nftpolicy/nft"
)

// fakeCleaner records the rulesets it was asked to clean against.
type fakeCleaner struct {
	cleaned  []*nft.Ruleset
	result   ConntrackCleanup
	failNext error
}

func (f *fakeCleaner) Clean(_ context.Context, rs *nft.Ruleset) (ConntrackCleanup, error) {
	f.cleaned = append(f.cleaned, rs)
	if err := f.failNext; err != nil {
		f.failNext = nil
		return ConntrackCleanup{Examined: f.result.Examined}, err
	}
	return f.result, nil
}

// reportingSyncer is a recordingSyncer that says whether a sync may deny
// what was allowed before, as kernel.Syncer does.
type reportingSyncer struct {
	*recordingSyncer
	tightened bool
}

func (s *reportingSyncer) Tightened() bool { return s.tightened }

func TestReconcile_ConntrackCleanupAfterTighteningSyncs(t *testing.T) {
	cleaner := &fakeCleaner{result: ConntrackCleanup{Examined: 5, Deleted: 2}}
	r, rec, reg := newFakeReconciler(t, nil, Options{Conntrack: cleaner, ConntrackAvailable: true})
	s := &reportingSyncer{recordingSyncer: rec, tightened: true}
	r.syncer = s
	reconcileOnce := func(step string) (retryWithinResync bool) {
		t.Helper()
		res, err := r.Reconcile(context.Background(), workKey)
		if err != nil {
			t.Fatalf("%s: Reconcile: %v (a cleanup must never fail the reconcile)", step, err)
		}
		return res.RequeueAfter < r.resync
	}

	if reconcileOnce("first sync") {
		t.Error("first sync: requeued early after a successful cleanup")
	}
	if len(cleaner.cleaned) != 1 || cleaner.cleaned[0] != rec.latest() {
		t.Fatalf("first sync: cleaned %d times, want once against the ruleset just synced", len(cleaner.cleaned))
	}
	if got := metricValue(t, reg, "nftpolicy_conntrack_entries_deleted_total"); got != 2 {
		t.Errorf("conntrack_entries_deleted_total = %v, want 2", got)
	}
	if got := metricValue(t, reg, "nftpolicy_conntrack_netlink_available"); got != 1 {
		t.Errorf("conntrack_netlink_available = %v, want 1", got)
	}

	s.tightened = false
	reconcileOnce("sync that denies nothing new")
	if len(cleaner.cleaned) != 1 {
		t.Errorf("a sync that denies nothing new cleaned conntrack (%d cleanups, want 1)", len(cleaner.cleaned))
	}

	s.tightened = true
	cleaner.failNext = errors.New("netlink: ENOBUFS")
	if !reconcileOnce("failed cleanup") {
		t.Error("failed cleanup: not retried before the resync period")
	}
	if got := metricValue(t, reg, "nftpolicy_conntrack_cleanup_errors_total"); got != 1 {
		t.Errorf("conntrack_cleanup_errors_total = %v, want 1", got)
	}

	s.tightened = false
	if reconcileOnce("retry") {
		t.Error("retry: requeued early after a successful cleanup")
	}
	if len(cleaner.cleaned) != 3 {
		t.Errorf("after a failed cleanup the next sync, unchanged, cleaned %d times in all, want 3", len(cleaner.cleaned))
	}
	if got := metricValue(t, reg, "nftpolicy_conntrack_entries_deleted_total"); got != 4 {
		t.Errorf("conntrack_entries_deleted_total = %v, want 4", got)
	}
}

func TestReconcile_NoConntrackCleaner(t *testing.T) {
	r, _, reg := newFakeReconciler(t, nil, Options{})
	if _, err := r.Reconcile(context.Background(), workKey); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, reg, "nftpolicy_conntrack_netlink_available"); got != 0 {
		t.Errorf("conntrack_netlink_available = %v, want 0", got)
	}
}

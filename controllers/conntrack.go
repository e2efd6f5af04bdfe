package controllers

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/nftpolicy/nftpolicy/nft"
)

// ConntrackCleaner deletes the conntrack entries of connections that the
// ruleset just applied denies (nft/conntrack in the agent). Without it,
// established connections outlive a policy that denies them, since the
// base chains accept established packets before any policy.
type ConntrackCleaner interface {
	Clean(ctx context.Context, applied *nft.Ruleset) (ConntrackCleanup, error)
}

// ConntrackCleanup counts what one ConntrackCleaner.Clean did.
type ConntrackCleanup struct {
	Examined int // entries read
	Deleted  int // entries deleted: their connection is now denied
}

// tightenReporter is implemented by Syncers that know whether their last
// successful Sync may deny what the kernel allowed before (kernel.Syncer);
// for others every sync counts.
type tightenReporter interface {
	Tightened() bool
}

// conntrackRetry is how soon a failed cleanup is tried again.
const conntrackRetry = time.Second

// conntrackWorker cleans conntrack beside the reconcile loop, so that a
// large conntrack table never delays a sync: the reconcile hands it each
// ruleset that may deny something new, and it always cleans against the
// latest one handed (which the kernel holds, or held a moment ago; an
// entry it deletes that a newer ruleset allows is picked up again by
// conntrack on the connection's next packet and accepted).
type conntrackWorker struct {
	cleaner ConntrackCleaner
	metrics *Metrics
	log     logr.Logger
	timeout time.Duration
	now     func() time.Time

	mu   sync.Mutex
	next *nft.Ruleset // to clean against; nil when nothing is pending
	wake chan struct{}
}

func newConntrackWorker(c ConntrackCleaner, m *Metrics, timeout time.Duration, now func() time.Time) *conntrackWorker {
	return &conntrackWorker{cleaner: c, metrics: m, timeout: timeout, now: now, wake: make(chan struct{}, 1)}
}

// submit makes rs the ruleset of the next cleanup.
func (w *conntrackWorker) submit(rs *nft.Ruleset) {
	w.mu.Lock()
	w.next = rs
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take returns the pending ruleset, if any, and clears it.
func (w *conntrackWorker) take() *nft.Ruleset {
	w.mu.Lock()
	defer w.mu.Unlock()
	rs := w.next
	w.next = nil
	return rs
}

// Start runs cleanups until ctx ends (a manager.Runnable).
func (w *conntrackWorker) Start(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
		}
		rs := w.take()
		if rs == nil {
			continue
		}
		if err := w.clean(ctx, rs); err != nil && ctx.Err() == nil {
			// Retry against this ruleset unless a newer one came.
			time.AfterFunc(conntrackRetry, func() {
				w.mu.Lock()
				if w.next == nil {
					w.next = rs
				}
				w.mu.Unlock()
				select {
				case w.wake <- struct{}{}:
				default:
				}
			})
		}
	}
}

// NeedLeaderElection: every node's agent cleans its own node.
func (w *conntrackWorker) NeedLeaderElection() bool { return false }

// clean runs one cleanup and records it.
func (w *conntrackWorker) clean(ctx context.Context, rs *nft.Ruleset) error {
	cleanCtx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	start := w.now()
	res, err := w.cleaner.Clean(cleanCtx, rs)
	took := w.now().Sub(start)
	w.metrics.conntrackDuration.Observe(took.Seconds())
	w.metrics.conntrackDeleted.Add(float64(res.Deleted))
	if err != nil {
		w.metrics.conntrackErrors.Inc()
		w.log.Error(err, "conntrack cleanup failed; connections the new ruleset denies may stay open until it is retried",
			"examined", res.Examined, "deleted", res.Deleted)
		return err
	}
	if res.Deleted > 0 {
		w.log.Info("cut connections the new ruleset denies", "conntrackEntriesDeleted", res.Deleted, "examined", res.Examined,
			"seconds", took.Seconds())
	}
	return nil
}

// afterSync hands rs to the conntrack worker when the sync that applied it
// may deny something the kernel allowed before (not after a sync that
// changed nothing or only admitted more peers).
func (r *Reconciler) afterSync(rs *nft.Ruleset) {
	if r.conntrack == nil {
		return
	}
	if c, ok := r.syncer.(tightenReporter); ok && !c.Tightened() {
		return
	}
	r.conntrack.submit(rs)
}

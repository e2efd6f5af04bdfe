package controllers

import (
	"context"
	"time"

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

// conntrackRetry is how soon a failed cleanup is tried again when nothing
// else triggers a reconcile.
const conntrackRetry = time.Second

// cleanConntrack runs the cleaner after a successful sync of rs when the
// sync may deny something the kernel allowed before (not after a sync that
// changed nothing or only admitted more peers), or when the last cleanup
// failed. It returns whether a retry is needed.
// A failed cleanup never fails the reconcile: the ruleset is in the
// kernel and new connections are judged by it.
func (r *Reconciler) cleanConntrack(ctx context.Context, rs *nft.Ruleset) (retry bool) {
	if r.conntrack == nil {
		return false
	}
	tightened := true
	if c, ok := r.syncer.(tightenReporter); ok {
		tightened = c.Tightened()
	}
	if !tightened && !r.conntrackPending {
		return false
	}
	cleanCtx, cancel := context.WithTimeout(ctx, r.syncTimeout)
	defer cancel()
	start := r.now()
	res, err := r.conntrack.Clean(cleanCtx, rs)
	r.metrics.conntrackDuration.Observe(r.now().Sub(start).Seconds())
	r.metrics.conntrackDeleted.Add(float64(res.Deleted))
	r.conntrackPending = err != nil
	if err != nil {
		r.metrics.conntrackErrors.Inc()
		r.log.Error(err, "conntrack cleanup failed; connections the new ruleset denies may stay open until it is retried",
			"examined", res.Examined, "deleted", res.Deleted)
		return true
	}
	if res.Deleted > 0 {
		r.log.Info("cut connections the new ruleset denies", "conntrackEntriesDeleted", res.Deleted, "examined", res.Examined,
			"seconds", r.now().Sub(start).Seconds())
	}
	return false
}

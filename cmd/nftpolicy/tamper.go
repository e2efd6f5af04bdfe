package main

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

// Timing of the reaction to changes someone else makes to our table.
const (
	// tamperRepairEvery is the least time between two verify-and-repair
	// syncs the table monitor asks for: a script that flushes the table in
	// a loop gets a repair after each flush, but not more than ten a second
	// of read-backs and full replaces.
	tamperRepairEvery = 100 * time.Millisecond
	// tamperRewatch is the wait before the monitor is opened again after it
	// failed.
	tamperRewatch = time.Second
)

// tamperWatch is a manager Runnable: it watches the kernel's nftables
// change notifications, and when someone else changed table inet nftpolicy
// it makes the next Sync verify the table (and so replace it if it
// drifted) and asks the reconciler for that sync at once, instead of at
// the next periodic resync.
type tamperWatch struct {
	kernel   kernelSyncer
	syncer   *verifyingSyncer
	requests chan<- struct{}
	log      logr.Logger
	changes  prometheus.Counter
	// noted carries monitor reports to the loop that rate-limits them; one
	// pending report stands for any number.
	noted chan string
}

func newTamperWatch(k kernelSyncer, v *verifyingSyncer, requests chan<- struct{}, reg prometheus.Registerer, log logr.Logger) (*tamperWatch, error) {
	w := &tamperWatch{
		kernel:   k,
		syncer:   v,
		requests: requests,
		log:      log.WithName("table-monitor"),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nftpolicy_foreign_table_changes_total",
			Help: "Committed nftables transactions that changed table inet nftpolicy and were not the agent's (or lost notifications), each followed by a verify and repair.",
		}),
		noted: make(chan string, 1),
	}
	if err := reg.Register(w.changes); err != nil {
		return nil, fmt.Errorf("register metric: %w", err)
	}
	return w, nil
}

// NeedLeaderElection: every node's agent guards its own table.
func (w *tamperWatch) NeedLeaderElection() bool { return false }

// Start runs until ctx is done.
func (w *tamperWatch) Start(ctx context.Context) error {
	go w.forward(ctx)
	for ctx.Err() == nil {
		err := w.kernel.WatchTable(ctx, w.note)
		if ctx.Err() != nil {
			break
		}
		// A change may have come while the monitor was down.
		w.note(fmt.Sprintf("table monitor stopped: %v", err))
		w.log.Error(err, "nftables table monitor failed; opening it again", "after", tamperRewatch.String())
		select {
		case <-ctx.Done():
		case <-time.After(tamperRewatch):
		}
	}
	return nil
}

// note is the monitor's callback: it must not block the monitor.
func (w *tamperWatch) note(reason string) {
	w.changes.Inc()
	w.syncer.verifyNext()
	select {
	case w.noted <- reason:
	default:
	}
}

// forward asks the reconciler for a sync per report, at most one per
// tamperRepairEvery; reports in between share the next one, and so does
// the log line.
func (w *tamperWatch) forward(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case reason := <-w.noted:
			w.log.Info("table inet nftpolicy was changed by someone else; verifying and repairing it", "change", reason)
			select {
			case w.requests <- struct{}{}:
			default: // one is pending already
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(tamperRepairEvery):
		}
	}
}

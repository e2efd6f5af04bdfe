package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/nftpolicy/nftpolicy/policy"
)

// Addresses announced by the CNI plugin (cmd/nftpolicy-cni): a new local
// pod's addresses, known to the CNI from its ADD, before the kubelet writes
// them into the pod's status. Until the status has addresses, the agent
// treats the announced ones as the pod's; once it has, the status wins and
// the announcement is forgotten. Announce returns when a successful sync
// has put the pod, with its addresses and its chains, into the kernel, so
// the plugin can hold the pod's creation until then.

// announcementTTL is how long an announcement for a pod that never shows
// up in the pod store is kept (the Pod object may be slow to arrive, or
// the plugin was called for something that is no pod the API knows).
const announcementTTL = 5 * time.Minute

type announcement struct {
	ips []netip.Addr
	at  time.Time
	// applied: a reconcile has handed the pod to the NodeCompiler with
	// addresses (these, or its status's when statusWins).
	applied, statusWins bool
	// waiters are closed by the first successful sync after applied.
	waiters []chan struct{}
}

// announcements are the pending announcements by pod, and the work queue
// through which an announcement asks for a reconcile (announceSource).
type announcements struct {
	mu    sync.Mutex
	byPod map[types.NamespacedName]*announcement
	q     workqueue.TypedRateLimitingInterface[reconcile.Request]
}

func newAnnouncements() *announcements {
	return &announcements{byPod: map[types.NamespacedName]*announcement{}}
}

// Announce records ips as the addresses of the pod namespace/name (which
// must be a pod of this node with no address in its status yet to make a
// difference) and waits until a sync that includes them has succeeded, or
// ctx ends. The pod need not be in the agent's store yet: the announcement
// is applied when it arrives.
func (r *Reconciler) Announce(ctx context.Context, namespace, name string, ips []netip.Addr) error {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	var errs []error
	if namespace == "" || name == "" {
		errs = append(errs, errors.New("namespace and name are required"))
	}
	if len(ips) == 0 {
		errs = append(errs, errors.New("no addresses"))
	}
	clean := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		if !ip.IsValid() {
			errs = append(errs, errors.New("an invalid address"))
			continue
		}
		if ip = ip.Unmap().WithZone(""); !slices.Contains(clean, ip) {
			clean = append(clean, ip)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("announce pod %s: %w", key, err)
	}
	done := make(chan struct{})
	a := r.announced
	a.mu.Lock()
	n := &announcement{ips: clean, at: r.now(), waiters: []chan struct{}{done}}
	if prev := a.byPod[key]; prev != nil {
		// Earlier callers (a retried ADD) wait for the newer addresses.
		n.waiters = append(n.waiters, prev.waiters...)
	}
	a.byPod[key] = n
	q := a.q
	a.mu.Unlock()
	r.log.V(1).Info("pod addresses announced", "pod", key.String(), "ips", clean)
	r.changes.pod(key)
	if q != nil { // nil only when a test drives Reconcile itself
		r.enqueue(q)
	}
	select {
	case <-done:
		r.metrics.announcements.WithLabelValues(announceSynced).Inc()
		return nil
	case <-ctx.Done():
		r.metrics.announcements.WithLabelValues(announceNotSynced).Inc()
		return fmt.Errorf("pod %s: addresses %v not in the kernel yet: %w", key, clean, context.Cause(ctx))
	}
}

// withAnnounced returns p as the NodeCompiler should see it: with the
// announced addresses while a local pod's status has none. It marks the
// announcement applied (the next successful sync releases its waiters);
// a status with addresses wins, and its announcement is dropped after that
// sync.
func (r *Reconciler) withAnnounced(p *policy.Pod) *policy.Pod {
	a := r.announced
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.byPod[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}]
	if n == nil {
		return p
	}
	n.applied = true
	if p.NodeName != r.nodeName || p.HostNetwork || len(p.IPs) > 0 {
		n.statusWins = true
		return p
	}
	cp := *p
	cp.IPs = n.ips
	return &cp
}

// podGone drops the announcement of a pod that was in the NodeCompiler and
// is deleted. One for a pod that has not arrived yet stays (until
// announcementTTL).
func (r *Reconciler) podGone(key types.NamespacedName) {
	a := r.announced
	a.mu.Lock()
	if n := a.byPod[key]; n != nil && n.applied {
		delete(a.byPod, key)
	}
	a.mu.Unlock()
}

// announcedSynced releases the waiters of every applied announcement after
// a successful sync, forgets those the status has overtaken, and those
// whose pod never arrived within announcementTTL.
func (r *Reconciler) announcedSynced(now time.Time) {
	a := r.announced
	a.mu.Lock()
	defer a.mu.Unlock()
	for key, n := range a.byPod {
		if n.applied {
			for _, w := range n.waiters {
				close(w)
			}
			n.waiters = nil
		}
		if n.statusWins || (!n.applied && now.Sub(n.at) > announcementTTL) {
			delete(a.byPod, key)
		}
	}
}

// announceSource hands the controller's work queue to Announce.
type announceSource struct{ a *announcements }

var _ source.Source = announceSource{}

func (s announceSource) String() string { return "CNI announcements" }

// Start implements source.Source; it does not block.
func (s announceSource) Start(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	s.a.mu.Lock()
	s.a.q = q
	s.a.mu.Unlock()
	return nil
}

package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// Every watch event goes the same way: its handler records which object
// changed in the Reconciler's pending changes, then enqueues the one work
// key (r.enqueue), at once after a quiet period, else at the end of the
// minimum sync interval. Updates that change nothing policy sees are
// dropped before either.

// enqueue adds workKey to q when the next reconcile is due (noteEvent).
func (r *Reconciler) enqueue(q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	q.AddAfter(workKey, r.noteEvent())
}

// objectEvents handles the events of one controller-runtime watch
// (Namespaces, NetworkPolicies, Nodes): note records the changed object;
// nil records nothing and only enqueues.
type objectEvents struct {
	r    *Reconciler
	note func(client.Object)
}

var _ handler.EventHandler = (*objectEvents)(nil)

func (h *objectEvents) add(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if h.note != nil && o != nil {
		h.note(o)
	}
	h.r.enqueue(q)
}

func (h *objectEvents) Create(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(e.Object, q)
}

func (h *objectEvents) Update(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if !changed(e.ObjectOld, e.ObjectNew) {
		return
	}
	h.add(e.ObjectNew, q)
}

// Delete: controller-runtime unwraps tombstones, so e.Object is the last
// known state.
func (h *objectEvents) Delete(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(e.Object, q)
}

func (h *objectEvents) Generic(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(e.Object, q)
}

// changed reports whether two versions of a trimmed object differ in more
// than their resourceVersion.
func changed(old, new client.Object) bool {
	if old == nil || new == nil {
		return true
	}
	if old.GetResourceVersion() == new.GetResourceVersion() {
		return false // a resync of the informer, not a change
	}
	o, n := old.DeepCopyObject().(client.Object), new.DeepCopyObject().(client.Object)
	o.SetResourceVersion("")
	n.SetResourceVersion("")
	o.SetGeneration(0)
	n.SetGeneration(0)
	return !equality.Semantic.DeepEqual(o, n)
}

// namespacedName is the key of o.
func namespacedName(o client.Object) types.NamespacedName {
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
}

// podSource is the controller's source of pod events: Start registers a
// handler with the PodStore's informer (which the manager runs, see
// SetupWithManager), and the controller starts no worker before
// WaitForSync has seen the handler receive the initial list, so neither
// the first reconcile nor readiness can come before the pods are in.
type podSource struct {
	r     *Reconciler
	store *PodStore

	mu  sync.Mutex
	reg toolscache.ResourceEventHandlerRegistration
}

var _ source.SyncingSource = (*podSource)(nil)

func (s *podSource) String() string { return "pod store" }

// Start implements source.Source; it does not block.
func (s *podSource) Start(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	reg, err := s.store.addEventHandler(&podEvents{r: s.r, q: q})
	if err != nil {
		return fmt.Errorf("watch pod store: %w", err)
	}
	s.mu.Lock()
	s.reg = reg
	s.mu.Unlock()
	return nil
}

// WaitForSync implements source.SyncingSource.
func (s *podSource) WaitForSync(ctx context.Context) error {
	s.mu.Lock()
	reg := s.reg
	s.mu.Unlock()
	if reg == nil {
		return errors.New("pod source not started")
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return fmt.Errorf("pod store did not sync: %w", context.Cause(ctx))
	}
	return nil
}

// podEvents records pod changes (by name) and enqueues the work key.
type podEvents struct {
	r *Reconciler
	q workqueue.TypedRateLimitingInterface[reconcile.Request]
}

func (h *podEvents) add(obj any) {
	if key, ok := podKeyOf(obj); ok {
		h.r.changes.pod(key)
	} else {
		// Not a pod record (cannot happen with PodStore's transform):
		// rather than lose the change, reload everything.
		h.r.changes.everything()
	}
	h.r.enqueue(h.q)
}

func (h *podEvents) OnAdd(obj any, _ bool) { h.add(obj) }

func (h *podEvents) OnUpdate(old, new any) {
	o, okOld := old.(*podRecord)
	n, okNew := new.(*podRecord)
	if okOld && okNew && !podChanged(o, n) {
		return
	}
	h.add(new)
}

// OnDelete gets a record or, when the informer missed the delete and only
// found it by relisting, a tombstone; podKeyOf reads the name from either.
func (h *podEvents) OnDelete(obj any) { h.add(obj) }

// requestSource turns each receive from Options.SyncRequests into a
// reconcile, due like any event (noteEvent), with no object changed: the
// reconcile compiles what the NodeCompiler holds and hands it to the Syncer,
// which does the rest (for the agent, verify the kernel table and repair
// it).
type requestSource struct {
	r        *Reconciler
	requests <-chan struct{}
}

var _ source.Source = (*requestSource)(nil)

func (s *requestSource) String() string { return "sync requests" }

// Start implements source.Source; it does not block.
func (s *requestSource) Start(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-s.requests:
				if !ok {
					return
				}
				s.r.enqueue(q)
			}
		}
	}()
	return nil
}

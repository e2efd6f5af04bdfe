package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsv1client "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset/typed/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	policyv1beta1client "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/typed/apis/v1beta1"
)

// ClusterNetworkPolicy (sigs.k8s.io/network-policy-api) is an optional
// API: its CRD may be missing, may appear while the agent runs, and may go
// away again. The agent enforces NetworkPolicies either way and watches
// ClusterNetworkPolicies exactly while the cluster serves them.
const (
	// CNPCRDName is the name of the ClusterNetworkPolicy CRD.
	CNPCRDName = "clusternetworkpolicies.policy.networking.k8s.io"
	// cnpKind is the kind the agent watches, at version
	// policyv1beta1.GroupVersion (the storage version of v0.3.0).
	cnpKind = "ClusterNetworkPolicy"
)

// cnpWatcher is the controller's source of ClusterNetworkPolicy events,
// and owns the store they come from, which runs only while the CRD serves
// v1beta1.
//
// How the CRD is found: the agent watches that one CustomResourceDefinition
// by name (a field selector; RBAC grants get/list/watch on that name only).
// A watch rather than polling discovery, because a watch
//   - notices the CRD at once, and its removal too (the store then stops
//     before its reflector spins on 404s), where polling waits for the next
//     round and has every node's agent ask the API server's discovery
//     endpoint over and over for a CRD that is usually never installed;
//   - says what discovery cannot: whether the CRD is Established yet (a
//     CRD is listed a moment before its resources can be listed) and
//     whether it is being deleted;
//   - costs one idle watch per agent, on one object.
//
// When the CRD serves v1beta1, the watcher starts a store of every
// ClusterNetworkPolicy (a client-go informer, objects trimmed); once that
// has listed everything it publishes the store to the Reconciler and asks
// for all policies to be applied. When the CRD goes (deleted, or v1beta1
// no longer served), it stops the store, unpublishes it and asks for the
// same, which removes them all from the policy state. Each later event
// names its policy, like every other watch.
//
// At start, WaitForSync holds the controller's first reconcile until the
// CRD has been looked at and, if it serves v1beta1, until the policies are
// in: a restarted agent must not replace its table with one that lacks the
// ClusterNetworkPolicies it enforced before.
type cnpWatcher struct {
	r     *Reconciler
	crdLW toolscache.ListerWatcher // the CRD, by name
	cnpLW toolscache.ListerWatcher // every ClusterNetworkPolicy
	log   logr.Logger

	kick   chan struct{} // a CRD event: look again (buffered, 1)
	synced chan *cnpRun  // a store has listed everything
	ready  chan struct{} // closed once the CRD was looked at and acted on
	once   sync.Once     // closes ready
	q      workqueue.TypedRateLimitingInterface[reconcile.Request]
	crd    toolscache.SharedIndexInformer

	mu      sync.Mutex
	started bool
	store   toolscache.Store // the published store; nil while not watching
}

// cnpRun is one run of the ClusterNetworkPolicy store.
type cnpRun struct {
	informer toolscache.SharedIndexInformer
	cancel   context.CancelFunc
	done     chan struct{}
}

var _ source.SyncingSource = (*cnpWatcher)(nil)

func newCNPWatcher(r *Reconciler, crdLW, cnpLW toolscache.ListerWatcher) *cnpWatcher {
	return &cnpWatcher{
		r: r, crdLW: crdLW, cnpLW: cnpLW, log: r.log.WithName("clusternetworkpolicies"),
		kick: make(chan struct{}, 1), synced: make(chan *cnpRun), ready: make(chan struct{}),
	}
}

func (w *cnpWatcher) String() string { return "clusternetworkpolicies (while the CRD is served)" }

// Start implements source.Source; it does not block. Everything it starts
// ends with ctx (the controller's).
func (w *cnpWatcher) Start(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return errors.New("clusternetworkpolicy source started twice")
	}
	w.started, w.q = true, q
	w.crd = toolscache.NewSharedIndexInformerWithOptions(w.crdLW, &apiextensionsv1.CustomResourceDefinition{}, toolscache.SharedIndexInformerOptions{
		ObjectDescription: "customresourcedefinition " + CNPCRDName,
	})
	if err := w.crd.SetTransform(TrimCRD); err != nil {
		return err
	}
	kick := func(any) { w.poke() }
	if _, err := w.crd.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: kick, UpdateFunc: func(_, n any) { kick(n) }, DeleteFunc: kick,
	}); err != nil {
		return err
	}
	ctx = logr.NewContext(ctx, w.log)
	go w.crd.RunWithContext(ctx)
	go w.loop(ctx)
	return nil
}

// WaitForSync implements source.SyncingSource: the CRD has been looked at
// and, if it serves v1beta1, every ClusterNetworkPolicy is in the store.
func (w *cnpWatcher) WaitForSync(ctx context.Context) error {
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		what := "the " + CNPCRDName + " CRD could not be read"
		if w.crd != nil && w.crd.HasSynced() {
			what = "the CRD serves ClusterNetworkPolicy v1beta1, but they could not be listed"
		}
		return fmt.Errorf("%s (RBAC? see config/rbac): %w", what, context.Cause(ctx))
	}
}

func (w *cnpWatcher) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// current returns the published store, or nil while the CRD is not served
// (or the store has not listed everything yet).
func (w *cnpWatcher) current() toolscache.Store {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.store
}

// loop starts and stops the store as the CRD comes and goes, until ctx ends.
func (w *cnpWatcher) loop(ctx context.Context) {
	if !toolscache.WaitForCacheSync(ctx.Done(), w.crd.HasSynced) {
		return
	}
	var run *cnpRun
	defer func() {
		if run != nil {
			w.stop(run, false)
		}
	}()
	for {
		served, why := w.served()
		switch {
		case served && run == nil:
			w.log.Info("ClusterNetworkPolicy CRD is served; watching ClusterNetworkPolicies", "crd", CNPCRDName, "version", policyv1beta1.GroupVersion.Version)
			run = w.startRun(ctx)
		case !served && run != nil:
			w.log.Info("ClusterNetworkPolicy CRD no longer served; stopped watching, enforcing NetworkPolicies only", "crd", CNPCRDName, "reason", why)
			w.stop(run, true)
			run = nil
		}
		if !served {
			w.once.Do(func() {
				w.log.Info("ClusterNetworkPolicy CRD not served; enforcing NetworkPolicies only until it is", "crd", CNPCRDName, "reason", why)
				close(w.ready)
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case done := <-w.synced:
			if done == run {
				w.publish(run)
				w.once.Do(func() { close(w.ready) })
			}
		}
	}
}

// served reports whether the CRD serves ClusterNetworkPolicy v1beta1 now,
// and if not, why.
func (w *cnpWatcher) served() (bool, string) {
	obj, ok, err := w.crd.GetStore().GetByKey(CNPCRDName)
	if err != nil || !ok {
		return false, "not installed"
	}
	crd, ok := obj.(*apiextensionsv1.CustomResourceDefinition)
	if !ok {
		return false, fmt.Sprintf("unexpected object %T", obj)
	}
	return crdServes(crd)
}

// crdServes reports whether crd serves ClusterNetworkPolicy v1beta1, and
// if not, why.
func crdServes(crd *apiextensionsv1.CustomResourceDefinition) (bool, string) {
	if crd.DeletionTimestamp != nil {
		return false, "being deleted"
	}
	established := false
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			established = true
		}
	}
	if !established {
		return false, "not established yet"
	}
	want := policyv1beta1.GroupVersion.Version
	for _, v := range crd.Spec.Versions {
		if v.Name == want && v.Served {
			return true, ""
		}
	}
	return false, "version " + want + " not served (network-policy-api v0.3.0 or later serves it)"
}

// startRun starts a store of every ClusterNetworkPolicy; w.synced receives
// it once it has listed them.
func (w *cnpWatcher) startRun(ctx context.Context) *cnpRun {
	inf := toolscache.NewSharedIndexInformerWithOptions(w.cnpLW, &policyv1beta1.ClusterNetworkPolicy{}, toolscache.SharedIndexInformerOptions{
		ObjectDescription: "clusternetworkpolicies",
	})
	// Neither fails on an informer that has not started.
	_ = inf.SetTransform(TrimClusterNetworkPolicy)
	_, _ = inf.AddEventHandler(&cnpEvents{w: w})
	runCtx, cancel := context.WithCancel(ctx)
	run := &cnpRun{informer: inf, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		inf.RunWithContext(runCtx)
	}()
	go func() {
		if !toolscache.WaitForCacheSync(runCtx.Done(), inf.HasSynced) {
			return
		}
		select {
		case w.synced <- run:
		case <-runCtx.Done():
		}
	}()
	return run
}

// publish hands the store of run to the Reconciler and asks for every
// ClusterNetworkPolicy to be applied.
func (w *cnpWatcher) publish(run *cnpRun) {
	w.mu.Lock()
	w.store = run.informer.GetStore()
	w.mu.Unlock()
	w.r.metrics.cnpWatched.Set(1)
	w.r.changes.everyCNP()
	w.r.enqueue(w.q)
}

// stop ends run; unpublish also takes its policies out of the policy state
// (not needed when the agent is stopping).
func (w *cnpWatcher) stop(run *cnpRun, unpublish bool) {
	w.mu.Lock()
	w.store = nil
	w.mu.Unlock()
	w.r.metrics.cnpWatched.Set(0)
	run.cancel()
	<-run.done
	if unpublish {
		w.r.changes.everyCNP()
		w.r.enqueue(w.q)
	}
}

// cnpEvents records ClusterNetworkPolicy changes (by name) and enqueues
// the work key. Events of a store that is not published yet (or any
// more) are harmless: a reconcile reads the published store.
type cnpEvents struct{ w *cnpWatcher }

func (h *cnpEvents) add(obj any) {
	// Cluster-scoped: the key is the name; tombstones carry it too.
	name, err := toolscache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		h.w.r.changes.everyCNP()
	} else {
		h.w.r.changes.cnp(name)
	}
	h.w.r.enqueue(h.w.q)
}

func (h *cnpEvents) OnAdd(obj any, _ bool) { h.add(obj) }

func (h *cnpEvents) OnUpdate(old, new any) {
	o, okOld := old.(client.Object)
	n, okNew := new.(client.Object)
	if okOld && okNew && !changed(o, n) {
		return
	}
	h.add(new)
}

func (h *cnpEvents) OnDelete(obj any) { h.add(obj) }

// CRDListWatch lists and watches the ClusterNetworkPolicy CRD, and nothing
// else: the field selector on its name is what lets RBAC grant this one
// object (resourceNames) instead of every CRD.
func CRDListWatch(cfg *rest.Config, httpClient *http.Client) (toolscache.ListerWatcher, error) {
	c, err := apiextensionsv1client.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("customresourcedefinition client: %w", err)
	}
	crds := c.CustomResourceDefinitions()
	byName := fields.OneTermEqualSelector("metadata.name", CNPCRDName).String()
	return &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = byName
			return crds.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = byName
			return crds.Watch(ctx, o)
		},
	}, nil
}

// CNPListWatch lists and watches every ClusterNetworkPolicy (v1beta1).
func CNPListWatch(cfg *rest.Config, httpClient *http.Client) (toolscache.ListerWatcher, error) {
	c, err := policyv1beta1client.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("clusternetworkpolicy client: %w", err)
	}
	cnps := c.ClusterNetworkPolicies()
	return &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cnps.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return cnps.Watch(ctx, o)
		},
	}, nil
}

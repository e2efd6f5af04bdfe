// Package controllers runs the agent's control loop for one node: it
// watches NetworkPolicies, Namespaces and Nodes (controller-runtime's cache,
// trimmed), every Pod (PodStore, as compact policy records) and, while
// their CRD is served, ClusterNetworkPolicies (cnpWatcher), keeps
// a long-lived policy.NodeCompiler up to date with what changed, compiles the
// node's ruleset from it and hands that to a Syncer, which applies it to
// the kernel.
//
// Every watch event records which object changed and enqueues one constant
// key, so bursts of events coalesce into one reconcile, which applies just
// those objects to the NodeCompiler. There is no leader election: each node's
// agent owns its own kernel state.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/api/v1alpha1"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
)

// Syncer applies a desired ruleset to the kernel. Sync must be idempotent
// and atomic: on error the kernel keeps what it had before the call.
type Syncer interface {
	Sync(ctx context.Context, r *nft.Ruleset) error
}

// EventRecorder records Kubernetes Events (k8s.io/client-go/tools/events).
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// CompileFunc compiles the node's ruleset from the cluster state; the
// default is (*policy.NodeCompiler).Compile.
type CompileFunc func(*policy.NodeCompiler) (*nft.Ruleset, []policy.Warning)

// Event reasons.
const (
	// ReasonPolicyNotEnforced: part of the policy could not be enforced as
	// written on this node (the note says which part and why).
	ReasonPolicyNotEnforced = "PolicyNotEnforced"
	// ReasonPolicyEnforced: a policy that had warnings on this node has none
	// any more.
	ReasonPolicyEnforced = "PolicyEnforced"
	// eventAction is the events.k8s.io "action" of our Events.
	eventAction = "Enforce"
	// maxEventNote keeps notes under the 1 kB events.k8s.io limit.
	maxEventNote = 1000
)

// Defaults of Options that the agent configuration does not set (the
// others, such as v1alpha1.DefaultResyncPeriod, are the API's).
const (
	// DefaultSyncTimeout bounds one Syncer.Sync call.
	DefaultSyncTimeout = time.Minute
	// Retry backoff after a failed sync (per attempt, doubled, capped).
	retryBase = 250 * time.Millisecond
	retryMax  = 2 * time.Minute
)

// ControllerName names the controller, its logger and its Events' reporter.
const ControllerName = "nftpolicy"

// workKey is the one work item: every event enqueues it, every reconcile
// handles the whole node.
var workKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "node"}}

// Options configure a Reconciler.
type Options struct {
	// NodeName is the node whose ruleset is compiled. Required.
	NodeName string
	// Syncer applies rulesets. Required.
	Syncer Syncer
	// Registerer receives the metrics. Required (in the agent,
	// controller-runtime's metrics.Registry).
	Registerer prometheus.Registerer
	// Reader reads Namespaces, NetworkPolicies and Nodes; default: the
	// manager's cache.
	Reader client.Reader
	// Pods is the store of every pod; default: a PodStore over the
	// manager's configuration, which the manager runs. A store passed here
	// must be run by the caller.
	Pods *PodStore
	// Recorder records Events; default: the manager's recorder.
	Recorder EventRecorder
	// Precondition, if set, must pass for the agent to be ready (the host
	// check for br_netfilter). It is called on every readiness probe.
	Precondition func() error
	// Compile defaults to (*policy.NodeCompiler).Compile.
	Compile CompileFunc
	// ResyncPeriod: a reconcile runs at least this often without events, so
	// that the syncer can repair drift, and the first reconcile after each
	// period rebuilds the NodeCompiler from the stores. Default
	// v1alpha1.DefaultResyncPeriod.
	ResyncPeriod time.Duration
	// MinSyncInterval is the least time between the starts of two
	// reconciles. An event after a quiet period is reconciled at once;
	// events that follow within the interval wait for its end and share one
	// reconcile. The interval also stretches to twice the last reconcile's
	// duration, so that under constant churn the agent spends at most half
	// of one core reconciling, however big the cluster. Default
	// v1alpha1.DefaultMinSyncInterval.
	MinSyncInterval time.Duration
	// HostAddresses, if set, returns the addresses of the node's own
	// interfaces; it is called before every compile. Those in the node's
	// pod CIDRs (a bridge's gateway) are no pods, so the unknown-local
	// guard must not drop them. An error keeps the last answer.
	HostAddresses func() ([]netip.Addr, error)
	// SyncTimeout: default DefaultSyncTimeout. It bounds the conntrack
	// cleanup too.
	SyncTimeout time.Duration
	// Conntrack, if set, runs after each successful sync that may deny
	// something new and cuts the connections the new ruleset denies. It
	// runs beside the reconcile loop (SetupWithManager adds it to the
	// manager), so that it never delays a sync. Nil leaves
	// established connections alone (disabled, or the kernel has no
	// conntrack over netlink).
	Conntrack ConntrackCleaner
	// ConntrackAvailable is reported as nftpolicy_conntrack_netlink_available:
	// whether the kernel offered conntrack over netlink at start.
	ConntrackAvailable bool
	// DenyLog, when set, makes every allow-list drop send its packet to
	// NFLOG (nft.DenyLog); DeniedTraffic reads the records back.
	DenyLog *nft.DenyLog
	// AuditAll puts every NetworkPolicy and ClusterNetworkPolicy in audit
	// mode (policy.NodeCompiler.SetAuditAll).
	AuditAll bool
	// Logger: default the manager's logger.
	Logger logr.Logger
	// SyncRequests, if set, asks for a reconcile outside the watches: each
	// receive syncs as soon as MinSyncInterval allows, though no object
	// changed. The agent sends one when someone else changed its kernel
	// table, so that the Syncer verifies and repairs it at once.
	SyncRequests <-chan struct{}
}

// Reconciler compiles the node's ruleset and syncs it.
type Reconciler struct {
	nodeName     string
	syncer       Syncer
	reader       client.Reader
	pods         *PodStore
	recorder     EventRecorder
	precondition func() error
	compile      CompileFunc
	resync       time.Duration
	minInterval  time.Duration
	syncTimeout  time.Duration
	denyLog      *nft.DenyLog
	auditAll     bool
	log          logr.Logger
	metrics      *Metrics
	now          func() time.Time
	changes      *pendingChanges
	syncRequests <-chan struct{}
	conntrack    *conntrackWorker // nil: no conntrack cleanup
	announced    *announcements
	hostAddrs    func() ([]netip.Addr, error)
	lastHost     []netip.Addr

	// cnp watches ClusterNetworkPolicies while their CRD is served; nil
	// when the Reconciler runs without a manager (tests).
	cnp *cnpWatcher

	// Only Reconcile touches these (MaxConcurrentReconciles is 1).
	cluster      *policy.NodeCompiler // nil until the first full load
	lastFullLoad time.Time

	// handed is what Reconcile has put into the NodeCompiler of the two kinds
	// that the NodeCompiler cannot give back yet: the ClusterNetworkPolicies (for
	// their Events and the metrics; a few, written by people) and the Nodes
	// (as converted; one small record per node). Reconcile writes it under
	// handedMu and reads it without; others read through handedCNPs and
	// handedNodes.
	handedMu sync.Mutex
	handed   handedObjects

	mu          sync.Mutex
	firstEvent  time.Time     // first event not yet included in a successful sync
	lastStart   time.Time     // start of the last reconcile
	lastTook    time.Duration // duration of the last finished reconcile
	synced      bool          // some sync succeeded
	lastSyncErr error         // error of the last sync, nil after a success
	nodeMissing bool          // own Node object not found at the last reconcile
	// warned holds, per policy, the warning messages already reported by
	// an Event, so that an unchanged set is not reported again.
	warned map[types.NamespacedName]map[string]struct{}
}

// New validates opts and returns a Reconciler; SetupWithManager completes it.
func New(opts Options) (*Reconciler, error) {
	var errs []error
	if opts.NodeName == "" {
		errs = append(errs, errors.New("NodeName is required"))
	}
	if opts.Syncer == nil {
		errs = append(errs, errors.New("syncer is required"))
	}
	if opts.Registerer == nil {
		errs = append(errs, errors.New("metrics Registerer is required"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ResyncPeriod", opts.ResyncPeriod}, {"MinSyncInterval", opts.MinSyncInterval}, {"SyncTimeout", opts.SyncTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, is %v", d.name, d.v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("controllers: %w", err)
	}
	m, err := NewMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Reconciler{
		nodeName:     opts.NodeName,
		syncer:       opts.Syncer,
		reader:       opts.Reader,
		pods:         opts.Pods,
		recorder:     opts.Recorder,
		precondition: opts.Precondition,
		compile:      opts.Compile,
		resync:       opts.ResyncPeriod,
		minInterval:  opts.MinSyncInterval,
		syncTimeout:  opts.SyncTimeout,
		denyLog:      opts.DenyLog,
		auditAll:     opts.AuditAll,
		log:          opts.Logger,
		metrics:      m,
		now:          time.Now,
		changes:      newPendingChanges(),
		syncRequests: opts.SyncRequests,
		announced:    newAnnouncements(),
		hostAddrs:    opts.HostAddresses,
		warned:       map[types.NamespacedName]map[string]struct{}{},
	}
	r.setHanded(handedObjects{})
	if opts.ConntrackAvailable {
		m.conntrackAvailable.Set(1)
	}
	if opts.Conntrack != nil {
		r.conntrack = newConntrackWorker(opts.Conntrack, m, max(opts.SyncTimeout, DefaultSyncTimeout), r.now)
		r.conntrack.log = opts.Logger
	}
	if r.compile == nil {
		r.compile = (*policy.NodeCompiler).Compile
	}
	if r.resync == 0 {
		r.resync = v1alpha1.DefaultResyncPeriod
	}
	if r.minInterval == 0 {
		r.minInterval = v1alpha1.DefaultMinSyncInterval
	}
	if r.syncTimeout == 0 {
		r.syncTimeout = DefaultSyncTimeout
	}
	return r, nil
}

// SetupWithManager registers the controller, its watches and (unless
// Options.Pods was set) the pod store with mgr. The manager's cache must
// have been created with CacheOptions().
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.reader == nil {
		r.reader = mgr.GetCache()
	}
	if r.recorder == nil {
		r.recorder = mgr.GetEventRecorder(ControllerName)
	}
	if r.log.GetSink() == nil {
		r.log = mgr.GetLogger()
	}
	r.log = r.log.WithName(ControllerName).WithValues("node", r.nodeName)
	if r.conntrack != nil {
		r.conntrack.log = r.log.WithName("conntrack")
		if err := mgr.Add(r.conntrack); err != nil {
			return fmt.Errorf("add conntrack cleanup: %w", err)
		}
	}
	if r.cnp == nil {
		crdLW, err := CRDListWatch(mgr.GetConfig(), mgr.GetHTTPClient())
		if err != nil {
			return err
		}
		cnpLW, err := CNPListWatch(mgr.GetConfig(), mgr.GetHTTPClient())
		if err != nil {
			return err
		}
		r.cnp = newCNPWatcher(r, crdLW, cnpLW)
	}
	if r.pods == nil {
		lw, err := PodListWatch(mgr.GetConfig(), mgr.GetHTTPClient())
		if err != nil {
			return err
		}
		r.pods = NewPodStore(lw)
		if err := mgr.Add(podStoreRunnable{PodStore: r.pods, log: r.log.WithName("pods")}); err != nil {
			return fmt.Errorf("add pod store: %w", err)
		}
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		Watches(&networkingv1.NetworkPolicy{}, &objectEvents{r: r, note: func(o client.Object) { r.changes.policy(namespacedName(o)) }}).
		Watches(&corev1.Namespace{}, &objectEvents{r: r, note: func(o client.Object) { r.changes.namespace(o.GetName()) }}).
		// Every Node, not only this one: ClusterNetworkPolicy nodes peers
		// select nodes by label and match their addresses. It runs without
		// the CRD too, so a policy created later finds the nodes cached.
		Watches(&corev1.Node{}, &objectEvents{r: r, note: func(o client.Object) { r.changes.node(o.GetName()) }}).
		WatchesRawSource(&podSource{r: r, store: r.pods}).
		WatchesRawSource(r.cnp).
		WatchesRawSource(announceSource{r.announced})
	if r.syncRequests != nil {
		b = b.WatchesRawSource(&requestSource{r: r, requests: r.syncRequests})
	}
	return b.WithOptions(controller.Options{
		MaxConcurrentReconciles: 1,
		RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](retryBase, retryMax),
		// One agent per process in production; tests start several
		// managers in one process.
		SkipNameValidation: ptr.To(true),
		// Without leader election every agent is always "leader".
		NeedLeaderElection: ptr.To(false),
	}).
		Complete(r)
}

// podStoreRunnable runs a PodStore under the manager, with the agent's
// logger for client-go's reflector.
type podStoreRunnable struct {
	*PodStore
	log logr.Logger
}

func (p podStoreRunnable) Start(ctx context.Context) error {
	return p.PodStore.Start(logr.NewContext(ctx, p.log))
}

// noteEvent records the time of the first event of a batch and returns how
// long its reconcile must wait: nothing if the last reconcile started at
// least an interval ago, else the rest of that interval. The interval is
// the minimum sync interval or twice the last reconcile's duration, which
// is longer. A reconcile that is running when the event arrives does not
// cover it (it may have read the cache already); the work queue runs the
// key again after it.
func (r *Reconciler) noteEvent() time.Duration {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.firstEvent.IsZero() {
		r.firstEvent = now
	}
	interval := max(r.minInterval, 2*r.lastTook)
	return max(0, r.lastStart.Add(interval).Sub(now))
}

// takeFirstEvent records start as the start of a reconcile, and returns and
// clears the first event time of the batch it handles; events after this
// point start the next batch.
func (r *Reconciler) takeFirstEvent(start time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.firstEvent
	r.firstEvent = time.Time{}
	r.lastStart = start
	return t
}

// recordDuration keeps the duration of the reconcile that started at start,
// which stretches the interval before the next one.
func (r *Reconciler) recordDuration(start time.Time) {
	took := r.now().Sub(start)
	r.mu.Lock()
	r.lastTook = took
	r.mu.Unlock()
}

// restoreFirstEvent puts back t after a failed sync, so that the retry is
// measured from the batch's first event.
func (r *Reconciler) restoreFirstEvent(t time.Time) {
	if t.IsZero() {
		return
	}
	r.mu.Lock()
	if r.firstEvent.IsZero() || t.Before(r.firstEvent) {
		r.firstEvent = t
	}
	r.mu.Unlock()
}

// Reconcile applies the pending changes to the NodeCompiler, compiles it and
// syncs the result. A sync error is returned, so the work item is retried
// with exponential backoff; the NodeCompiler already holds the changes, so the
// retry compiles and syncs again. Success schedules the periodic resync.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	log := r.log
	compileStart := r.now()
	batchStart := r.takeFirstEvent(compileStart)
	defer r.recordDuration(compileStart)
	if r.fullLoadDue(compileStart) {
		// Load, compile and sync of everything: see FullRebuildGCPercent.
		defer LowerGCTarget(FullRebuildGCPercent)()
	}

	if err := r.applyChanges(ctx, compileStart); err != nil {
		r.restoreFirstEvent(batchStart)
		return reconcile.Result{}, err
	}
	r.checkNode(ctx)
	r.updateHostAddresses()
	ruleset, warnings := r.compile(r.cluster)
	r.metrics.compileDuration.Observe(r.now().Sub(compileStart).Seconds())
	r.reportWarnings(log, warnings)
	r.recordMetrics(ruleset, len(warnings))

	syncCtx, cancel := context.WithTimeout(ctx, r.syncTimeout)
	syncStart := r.now()
	err := r.syncer.Sync(syncCtx, ruleset)
	cancel()
	end := r.now()
	r.metrics.syncDuration.Observe(end.Sub(syncStart).Seconds())
	if err != nil {
		r.metrics.syncErrors.Inc()
		r.restoreFirstEvent(batchStart)
		r.mu.Lock()
		r.lastSyncErr = err
		r.mu.Unlock()
		// The kernel keeps the previous ruleset; controller-runtime logs
		// the error and retries with backoff.
		return reconcile.Result{}, fmt.Errorf("sync ruleset: %w", err)
	}
	r.announcedSynced(end)
	r.metrics.lastSuccess.Set(float64(end.UnixNano()) / 1e9)
	if !batchStart.IsZero() {
		r.metrics.eventToSync.Observe(end.Sub(batchStart).Seconds())
	}
	r.afterSync(ruleset)
	r.mu.Lock()
	first := !r.synced
	r.synced, r.lastSyncErr = true, nil
	r.mu.Unlock()
	st := statsOf(ruleset)
	kv := []any{"syncSeconds", end.Sub(syncStart).Seconds(), "chains", st.Chains, "rules", st.Rules,
		"setElements", st.Elements, "isolatedIngress", st.IsolatedIngress, "isolatedEgress", st.IsolatedEgress}
	if first {
		log.Info("first sync succeeded", kv...)
	} else {
		log.V(1).Info("synced", kv...)
	}
	return reconcile.Result{RequeueAfter: r.resync}, nil
}

// applyChanges brings the NodeCompiler up to date with the stores. It takes the
// pending changes before reading any store, so that an event that comes
// later is in the next batch, and reading an object that changed again
// meanwhile only applies its newer state early. The first reconcile, and
// the first one after each resync period, load everything into a fresh
// NodeCompiler instead: a change the incremental path got wrong cannot outlive
// one period. A batch that fails is put back for the retry.
func (r *Reconciler) applyChanges(ctx context.Context, now time.Time) error {
	if !r.pods.HasSynced() {
		// The controller starts no worker before its sources have synced.
		return errors.New("pod store has not synced yet")
	}
	b := r.changes.take()
	if r.fullLoadDue(now) {
		b = changeBatch{all: true}
	}
	var err error
	if b.all {
		err = r.loadAll(ctx, now)
	} else {
		err = r.apply(ctx, &b)
	}
	if err != nil {
		r.changes.putBack(b)
	}
	return err
}

// fullLoadDue reports whether the reconcile at now loads everything into
// a new NodeCompiler (applyChanges) instead of applying the changes.
func (r *Reconciler) fullLoadDue(now time.Time) bool {
	return r.cluster == nil || now.Sub(r.lastFullLoad) >= r.resync
}

// loadAll builds a new NodeCompiler from everything in the stores. Namespaces
// and policies are listed without deep copies: the cache's objects are
// never modified (an update stores a new one), which is what the NodeCompiler
// needs of the objects it keeps.
func (r *Reconciler) loadAll(ctx context.Context, now time.Time) error {
	var namespaces corev1.NamespaceList
	if err := r.reader.List(ctx, &namespaces, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	var nps networkingv1.NetworkPolicyList
	if err := r.reader.List(ctx, &nps, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("list networkpolicies: %w", err)
	}
	var nodes corev1.NodeList
	if err := r.reader.List(ctx, &nodes, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	r.cluster = nil // the old one can go before the new one grows
	c := policy.NewNodeCompiler(r.nodeName)
	c.SetDenyLog(r.denyLog)
	c.SetAuditAll(r.auditAll)
	for i := range namespaces.Items {
		ns := &namespaces.Items[i]
		c.SetNamespace(policy.Namespace{Name: ns.Name, Labels: ns.Labels})
	}
	for i := range nps.Items {
		c.SetPolicy(&nps.Items[i])
	}
	c.ExpectPods(r.pods.Len())
	r.pods.Each(func(p *policy.Pod) { c.SetPod(r.withAnnounced(p)) })
	r.cluster, r.lastFullLoad = c, now
	r.setHanded(handedObjects{})
	for i := range nodes.Items {
		r.setNode(&nodes.Items[i])
	}
	for _, p := range cnpsIn(r.cnp.current()) {
		r.setCNP(p)
	}
	return nil
}

// apply reads the current state of each object in b into the NodeCompiler:
// present → Set, gone → Delete.
func (r *Reconciler) apply(ctx context.Context, b *changeBatch) error {
	for name := range b.namespaces {
		var ns corev1.Namespace
		err := r.reader.Get(ctx, types.NamespacedName{Name: name}, &ns, client.UnsafeDisableDeepCopy)
		switch {
		case apierrors.IsNotFound(err):
			r.cluster.DeleteNamespace(name)
		case err != nil:
			return fmt.Errorf("get namespace %s: %w", name, err)
		default:
			r.cluster.SetNamespace(policy.Namespace{Name: ns.Name, Labels: ns.Labels})
		}
	}
	for key := range b.policies {
		np := &networkingv1.NetworkPolicy{}
		err := r.reader.Get(ctx, key, np, client.UnsafeDisableDeepCopy)
		switch {
		case apierrors.IsNotFound(err):
			r.cluster.DeletePolicy(key.Namespace, key.Name)
		case err != nil:
			return fmt.Errorf("get networkpolicy %s: %w", key, err)
		default:
			r.cluster.SetPolicy(np)
		}
	}
	for key := range b.pods {
		if p := r.pods.Get(key.Namespace, key.Name); p != nil {
			r.cluster.SetPod(r.withAnnounced(p))
		} else {
			r.cluster.DeletePod(key.Namespace, key.Name)
			r.podGone(key)
		}
	}
	for name := range b.nodes {
		node := &corev1.Node{}
		err := r.reader.Get(ctx, types.NamespacedName{Name: name}, node, client.UnsafeDisableDeepCopy)
		switch {
		case apierrors.IsNotFound(err):
			r.deleteNode(name)
		case err != nil:
			return fmt.Errorf("get node %s: %w", name, err)
		default:
			r.setNode(node)
		}
	}
	r.applyCNPs(b)
	return nil
}

// applyCNPs reads the ClusterNetworkPolicies of b from the published
// store into the NodeCompiler; while none is published (the CRD is not served),
// there are none.
func (r *Reconciler) applyCNPs(b *changeBatch) {
	store := r.cnp.current()
	if b.allCNPs {
		now := cnpsIn(store)
		keep := make(map[string]struct{}, len(now))
		for _, p := range now {
			keep[p.Name] = struct{}{}
			r.setCNP(p)
		}
		for name := range r.handed.cnps {
			if _, ok := keep[name]; !ok {
				r.deleteCNP(name)
			}
		}
		return
	}
	for name := range b.cnps {
		if p := cnpIn(store, name); p != nil {
			r.setCNP(p)
		} else {
			r.deleteCNP(name)
		}
	}
}

// updateHostAddresses hands the node's own addresses to the NodeCompiler
// (a new one after a full load, too).
func (r *Reconciler) updateHostAddresses() {
	if r.hostAddrs == nil {
		return
	}
	addrs, err := r.hostAddrs()
	if err != nil {
		r.log.Error(err, "read the node's own addresses; keeping the last ones")
	} else {
		r.lastHost = addrs
	}
	r.cluster.SetHostAddresses(r.lastHost)
}

// checkNode logs when the agent's own Node object appears or disappears.
// Compiling does not need it (pods carry their node name), so its absence
// is not an error.
func (r *Reconciler) checkNode(ctx context.Context) {
	var node corev1.Node
	err := r.reader.Get(ctx, types.NamespacedName{Name: r.nodeName}, &node)
	missing := apierrors.IsNotFound(err)
	if err != nil && !missing {
		r.log.Error(err, "get own node")
		return
	}
	r.mu.Lock()
	was := r.nodeMissing
	r.nodeMissing = missing
	r.mu.Unlock()
	if missing && !was {
		r.log.Info("own Node object not found; compiling for the pods bound to this node name anyway")
	}
}

// recordMetrics sets the gauges that describe the compiled state.
func (r *Reconciler) recordMetrics(rs *nft.Ruleset, warnings int) {
	n := r.cluster.Counts()
	st := statsOf(rs)
	m := r.metrics
	m.policies.Set(float64(n.Policies))
	admin, baseline := 0, 0
	for _, p := range r.handed.cnps {
		switch p.Spec.Tier {
		case policyv1beta1.AdminTier:
			admin++
		case policyv1beta1.BaselineTier:
			baseline++
		}
	}
	m.cnps.WithLabelValues(tierAdmin).Set(float64(admin))
	m.cnps.WithLabelValues(tierBaseline).Set(float64(baseline))
	m.pods.WithLabelValues(podsTotal).Set(float64(n.Pods))
	m.pods.WithLabelValues(podsLocal).Set(float64(n.LocalActivePods))
	m.pods.WithLabelValues(podsIsolatedIngress).Set(float64(st.IsolatedIngress))
	m.pods.WithLabelValues(podsIsolatedEgress).Set(float64(st.IsolatedEgress))
	m.chains.Set(float64(st.Chains))
	m.rules.Set(float64(st.Rules))
	m.sets.Set(float64(st.Sets))
	m.setElements.Set(float64(st.Elements))
	m.warnings.Set(float64(warnings))
}

// reportWarnings logs and records an Event for each warning that was not
// reported before for its policy, and a Normal Event when a policy that had
// warnings has none left. The set of reported warnings lives in memory, so
// a restarted agent reports current warnings once more.
func (r *Reconciler) reportWarnings(log logr.Logger, warnings []policy.Warning) {
	cur := map[types.NamespacedName]map[string]struct{}{}
	for _, w := range warnings {
		key := types.NamespacedName{Namespace: w.Namespace, Name: w.Policy}
		if cur[key] == nil {
			cur[key] = map[string]struct{}{}
		}
		cur[key][w.Message] = struct{}{}
	}
	r.mu.Lock()
	prev := r.warned
	r.warned = map[types.NamespacedName]map[string]struct{}{}
	for key, msgs := range cur {
		if r.policyObject(key) != nil { // a warning about a policy we cannot name is only logged
			r.warned[key] = msgs
		}
	}
	r.mu.Unlock()

	for _, key := range sortedKeys(cur) {
		obj := r.policyObject(key)
		for _, msg := range sortedMsgs(cur[key]) {
			if _, seen := prev[key][msg]; seen {
				continue
			}
			log.Info("policy not fully enforced", "policy", policyRef(key), "warning", msg)
			if obj != nil && r.recorder != nil {
				r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, ReasonPolicyNotEnforced, eventAction, "%s", truncate("node "+r.nodeName+": "+msg))
			}
		}
	}
	for _, key := range sortedKeys(prev) {
		obj := r.policyObject(key)
		if _, still := cur[key]; still || obj == nil {
			continue
		}
		log.Info("policy fully enforced again", "policy", policyRef(key))
		if r.recorder != nil {
			r.recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonPolicyEnforced, eventAction, "%s", "node "+r.nodeName+": every part of the policy is enforced")
		}
	}
}

// policyObject is the object a warning's key names, for its Event: a
// NetworkPolicy, or with an empty namespace a ClusterNetworkPolicy; nil
// when the NodeCompiler holds no such policy.
func (r *Reconciler) policyObject(key types.NamespacedName) client.Object {
	if key.Namespace == "" {
		if p := r.handed.cnps[key.Name]; p != nil {
			return p
		}
		return nil
	}
	if np := r.cluster.Policy(key.Namespace, key.Name); np != nil {
		return np
	}
	return nil
}

// policyRef names a warning's policy in logs.
func policyRef(key types.NamespacedName) string {
	if key.Namespace == "" { // namespaces are lower case: no clash
		return cnpKind + "/" + key.Name
	}
	return key.String()
}

func sortedKeys[V any](m map[types.NamespacedName]V) []types.NamespacedName {
	keys := make([]types.NamespacedName, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) })
	return keys
}

func sortedMsgs(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func truncate(s string) string {
	if len(s) <= maxEventNote {
		return s
	}
	return s[:maxEventNote-3] + "..."
}

// ReadyzCheck is a healthz.Checker: the agent is ready once a sync has
// succeeded and while the precondition (br_netfilter) holds. The error says
// what is missing.
func (r *Reconciler) ReadyzCheck(_ *http.Request) error {
	var errs []error
	if r.precondition != nil {
		if err := r.precondition(); err != nil {
			errs = append(errs, fmt.Errorf("host precondition: %w", err))
		}
	}
	r.mu.Lock()
	synced, lastErr := r.synced, r.lastSyncErr
	r.mu.Unlock()
	switch {
	case !synced && lastErr != nil:
		errs = append(errs, fmt.Errorf("no successful sync yet, last attempt failed: %w", lastErr))
	case !synced:
		errs = append(errs, errors.New("no successful sync yet"))
	}
	return errors.Join(errs...)
}

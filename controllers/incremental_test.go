package controllers

// IP plan: node-a pods 10.0.1.0/24; node-b pods 10.0.2.0/24. These tests
// run Reconcile directly: a fake client holds namespaces and policies, a
// PodStore over a fake watch holds pods, and its event handler records
// pod changes as in the agent.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/nftpolicy/nftpolicy/nft"
)

func denyWeb(name string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
}

func (a *fakeAgent) reconcile(t *testing.T) {
	t.Helper()
	if _, err := a.r.Reconcile(context.Background(), workKey); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
}

// wantWebIsolated checks the last synced ruleset for shop/web's ingress.
func (a *fakeAgent) wantWebIsolated(t *testing.T, want bool) {
	t.Helper()
	if got, err := isolated(a.syncer.latest(), nft.Ingress, "shop/web"); err != nil || got != want {
		t.Errorf("shop/web isolated = %v, %v; want %v", got, err, want)
	}
}

// waitPendingPod waits until the pod handler has recorded ns/name.
func (a *fakeAgent) waitPendingPod(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, waitTimeout, nil, "pod "+ns+"/"+name+" recorded as changed", func() string {
		a.r.changes.mu.Lock()
		defer a.r.changes.mu.Unlock()
		if _, ok := a.r.changes.b.pods[types.NamespacedName{Namespace: ns, Name: name}]; !ok {
			return fmt.Sprintf("pending pods %v", a.r.changes.b.pods)
		}
		return ""
	})
}

// TestReconcile_AppliesRecordedChanges: after the first (full) load, a
// reconcile applies exactly the objects its events named, reading their
// current state from the stores; an object nobody reported is not read.
func TestReconcile_AppliesRecordedChanges(t *testing.T) {
	ctx := context.Background()
	web := runningPod("shop", "web", "node-a", map[string]string{"app": "web"}, "10.0.1.2")
	shop := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	a := newFakeAgent(t, []client.Object{shop, web, runningPod("shop", "db", "node-b", nil, "10.0.2.2")}, Options{})
	a.reconcile(t)
	a.wantWebIsolated(t, false)

	// A policy that no event reported is not seen: no reconcile rereads
	// the whole cluster.
	if err := a.client.Create(ctx, denyWeb("deny")); err != nil {
		t.Fatal(err)
	}
	a.reconcile(t)
	a.wantWebIsolated(t, false)
	a.r.changes.policy(types.NamespacedName{Namespace: "shop", Name: "deny"})
	a.reconcile(t)
	a.wantWebIsolated(t, true)

	// Pod events come through the store's handler.
	relabelled := web.DeepCopy()
	relabelled.ResourceVersion, relabelled.Labels = "2", map[string]string{"app": "other"}
	a.pods.Modify(relabelled)
	a.waitPendingPod(t, "shop", "web")
	a.reconcile(t)
	a.wantWebIsolated(t, false)

	a.pods.Delete(relabelled)
	a.waitPendingPod(t, "shop", "web")
	a.reconcile(t)
	if got := metricValue(t, a.reg, "nftpolicy_pods", "category=total"); got != 1 {
		t.Errorf("pods total = %v after the delete, want 1", got)
	}

	// Namespaces: a relabel and a delete, read from the cache by name.
	shop.Labels = map[string]string{"team": "red"}
	if err := a.client.Update(ctx, shop); err != nil {
		t.Fatal(err)
	}
	a.r.changes.namespace("shop")
	a.reconcile(t)
	if got := a.r.cluster.Snapshot().Namespaces; len(got) != 1 || got[0].Labels["team"] != "red" {
		t.Errorf("namespaces after the relabel: %+v", got)
	}
	if err := a.client.Delete(ctx, shop); err != nil {
		t.Fatal(err)
	}
	if err := a.client.Delete(ctx, denyWeb("deny")); err != nil {
		t.Fatal(err)
	}
	a.r.changes.namespace("shop")
	a.r.changes.policy(types.NamespacedName{Namespace: "shop", Name: "deny"})
	a.reconcile(t)
	if n := a.r.cluster.Counts(); n.Namespaces != 0 || n.Policies != 0 {
		t.Errorf("after deleting the namespace and the policy: %+v", n)
	}
}

// TestReconcile_SyncRetryKeepsChanges: after a failed sync the NodeCompiler
// holds the batch already, so the retry (with no new event) syncs it.
func TestReconcile_SyncRetryKeepsChanges(t *testing.T) {
	a := newFakeAgent(t, []client.Object{runningPod("shop", "web", "node-a", map[string]string{"app": "web"}, "10.0.1.2")}, Options{})
	a.reconcile(t)
	if err := a.client.Create(context.Background(), denyWeb("deny")); err != nil {
		t.Fatal(err)
	}
	a.r.changes.policy(types.NamespacedName{Namespace: "shop", Name: "deny"})
	a.syncer.failNext(1, errors.New("netlink: EBUSY"))
	if _, err := a.r.Reconcile(context.Background(), workKey); err == nil {
		t.Fatal("Reconcile: want the sync error")
	}
	a.reconcile(t)
	a.wantWebIsolated(t, true)
}

// TestReconcile_ReadErrorPutsBatchBack: a batch whose objects cannot be
// read is not lost; the retry applies it, with what changed meanwhile.
func TestReconcile_ReadErrorPutsBatchBack(t *testing.T) {
	failGets := 0
	a := newFakeAgent(t, []client.Object{runningPod("shop", "web", "node-a", map[string]string{"app": "web"}, "10.0.1.2")}, Options{},
		interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if _, ok := obj.(*networkingv1.NetworkPolicy); ok && failGets > 0 {
				failGets--
				return errors.New("cache unavailable")
			}
			return c.Get(ctx, key, obj, opts...)
		}})
	a.reconcile(t)
	for _, name := range []string{"deny", "deny-2"} {
		if err := a.client.Create(context.Background(), denyWeb(name)); err != nil {
			t.Fatal(err)
		}
	}
	failGets = 1
	a.r.changes.policy(types.NamespacedName{Namespace: "shop", Name: "deny"})
	_, err := a.r.Reconcile(context.Background(), workKey)
	if err == nil || !strings.Contains(err.Error(), "cache unavailable") {
		t.Fatalf("Reconcile = %v, want the read error", err)
	}
	a.r.changes.policy(types.NamespacedName{Namespace: "shop", Name: "deny-2"}) // meanwhile
	a.reconcile(t)
	if got := metricValue(t, a.reg, "nftpolicy_policies"); got != 2 {
		t.Errorf("policies = %v after the retry, want both (2)", got)
	}
	a.wantWebIsolated(t, true)
}

// TestReconcile_FullLoadEveryResyncPeriod: the first reconcile after each
// resync period rebuilds the NodeCompiler from the stores, so even a change no
// event reported is applied within one period.
func TestReconcile_FullLoadEveryResyncPeriod(t *testing.T) {
	a := newFakeAgent(t, []client.Object{runningPod("shop", "web", "node-a", map[string]string{"app": "web"}, "10.0.1.2")}, Options{ResyncPeriod: time.Minute})
	clock := time.Unix(1000, 0)
	a.r.now = func() time.Time { return clock }
	a.reconcile(t)
	if err := a.client.Create(context.Background(), denyWeb("deny")); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Minute - time.Millisecond)
	a.reconcile(t)
	a.wantWebIsolated(t, false)
	clock = clock.Add(time.Millisecond)
	a.reconcile(t)
	a.wantWebIsolated(t, true)
}

func TestReconcile_RefusesBeforePodsSynced(t *testing.T) {
	lw, _ := newPodListWatch(nil)
	r, err := New(Options{NodeName: "node-a", Syncer: newRecordingSyncer(t), Registerer: prometheus.NewRegistry(), Pods: NewPodStore(lw)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(context.Background(), workKey); err == nil || !strings.Contains(err.Error(), "not synced") {
		t.Errorf("Reconcile before the pod store synced = %v, want an error", err)
	}
}

func TestPendingChanges(t *testing.T) {
	pod := func(n string) types.NamespacedName { return types.NamespacedName{Namespace: "shop", Name: n} }
	type step struct {
		do   func(p *pendingChanges)
		want *changeBatch // if set, take() and compare
	}
	record := func(p *pendingChanges) {
		p.pod(pod("a"))
		p.namespace("shop")
		p.policy(pod("np"))
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "starts as everything; changes before the first take are covered by it",
			steps: []step{
				{do: record, want: &changeBatch{all: true}},
				{want: &changeBatch{}},
			},
		},
		{
			name: "changes after a take are recorded by name",
			steps: []step{
				{want: &changeBatch{all: true}},
				{do: record, want: &changeBatch{
					pods: set(pod("a")), namespaces: set("shop"), policies: set(pod("np")),
				}},
			},
		},
		{
			name: "a failed batch is merged with what changed since",
			steps: []step{
				{want: &changeBatch{all: true}},
				{do: func(p *pendingChanges) {
					p.pod(pod("a"))
					b := p.take()
					p.pod(pod("b"))
					p.putBack(b)
				}, want: &changeBatch{pods: set(pod("a"), pod("b"))}},
			},
		},
		{
			name: "a failed full load stays a full load",
			steps: []step{
				{do: func(p *pendingChanges) {
					b := p.take()
					p.pod(pod("b"))
					p.putBack(b)
				}, want: &changeBatch{all: true}},
			},
		},
		{
			name: "ClusterNetworkPolicies and nodes by name; every ClusterNetworkPolicy covers their names",
			steps: []step{
				{want: &changeBatch{all: true}},
				{do: func(p *pendingChanges) { p.cnp("a"); p.node("n1") }, want: &changeBatch{cnps: set("a"), nodes: set("n1")}},
				{do: func(p *pendingChanges) { p.cnp("a"); p.everyCNP(); p.cnp("b"); p.node("n1") }, want: &changeBatch{allCNPs: true, nodes: set("n1")}},
			},
		},
		{
			name: "a failed batch with every ClusterNetworkPolicy stays so",
			steps: []step{
				{want: &changeBatch{all: true}},
				{do: func(p *pendingChanges) {
					p.everyCNP()
					p.node("n1")
					b := p.take()
					p.cnp("a")
					p.node("n2")
					p.putBack(b)
				}, want: &changeBatch{allCNPs: true, nodes: set("n1", "n2")}},
				{do: func(p *pendingChanges) {
					p.cnp("a")
					b := p.take()
					p.cnp("b")
					p.putBack(b)
				}, want: &changeBatch{cnps: set("a", "b")}},
			},
		},
		{
			name: "everything drops the names",
			steps: []step{
				{want: &changeBatch{all: true}},
				{do: func(p *pendingChanges) { record(p); p.everything(); record(p) }, want: &changeBatch{all: true}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPendingChanges()
			for i, st := range tc.steps {
				if st.do != nil {
					st.do(p)
				}
				if st.want == nil {
					continue
				}
				got := p.take()
				if diff := cmp.Diff(*st.want, got, cmp.AllowUnexported(changeBatch{}), cmpEmptyMaps); diff != "" {
					t.Errorf("step %d: batch (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

// cmpEmptyMaps treats nil and empty sets alike.
var cmpEmptyMaps = cmp.FilterValues(func(x, y any) bool {
	return isEmptySet(x) && isEmptySet(y)
}, cmp.Comparer(func(any, any) bool { return true }))

func isEmptySet(v any) bool {
	switch m := v.(type) {
	case map[types.NamespacedName]struct{}:
		return len(m) == 0
	case map[string]struct{}:
		return len(m) == 0
	}
	return false
}

func set[K comparable](keys ...K) map[K]struct{} {
	m := map[K]struct{}{}
	for _, k := range keys {
		m[k] = struct{}{}
	}
	return m
}

// TestPodEvents: what the pod handler records, and when it enqueues.
func TestPodEvents(t *testing.T) {
	s := NewPodStore(nil)
	rec := recordOf(t, s, fullPod())
	sameAgain := recordOf(t, s, func() *corev1.Pod { p := fullPod(); p.ResourceVersion = "43"; return p }())
	relabelled := recordOf(t, s, func() *corev1.Pod { p := fullPod(); p.Labels = nil; return p }())
	web := types.NamespacedName{Namespace: "shop", Name: "web"}
	tests := []struct {
		name        string
		event       func(h *podEvents)
		want        changeBatch
		wantEnqueue bool
	}{
		{name: "add", event: func(h *podEvents) { h.OnAdd(rec, false) }, want: changeBatch{pods: set(web)}, wantEnqueue: true},
		{name: "update of a dropped field only", event: func(h *podEvents) { h.OnUpdate(rec, sameAgain) }},
		{name: "update", event: func(h *podEvents) { h.OnUpdate(rec, relabelled) }, want: changeBatch{pods: set(web)}, wantEnqueue: true},
		{name: "delete", event: func(h *podEvents) { h.OnDelete(rec) }, want: changeBatch{pods: set(web)}, wantEnqueue: true},
		{
			name:        "delete seen by relisting (tombstone)",
			event:       func(h *podEvents) { h.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "shop/web", Obj: rec}) },
			want:        changeBatch{pods: set(web)},
			wantEnqueue: true,
		},
		{name: "not a record: reload everything", event: func(h *podEvents) { h.OnAdd(fullPod(), false) }, want: changeBatch{all: true}, wantEnqueue: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newFakeAgent(t, nil, Options{})
			a.r.changes.take() // past the first full load
			tc.event(&podEvents{r: a.r, q: a.queue})
			if diff := cmp.Diff(tc.want, a.r.changes.take(), cmp.AllowUnexported(changeBatch{}), cmpEmptyMaps); diff != "" {
				t.Errorf("recorded (-want +got):\n%s", diff)
			}
			a.r.mu.Lock()
			got := !a.r.firstEvent.IsZero()
			a.r.mu.Unlock()
			if got != tc.wantEnqueue {
				t.Errorf("enqueued = %v, want %v", got, tc.wantEnqueue)
			}
		})
	}
}

// TestReconcile_SyncsIncrementallyThroughTheFakeDataplane: after the first
// sync (a full replace) the dataplane receives only the difference, and the
// table it builds from those differences is the ruleset the reconcile
// compiled (the fake checks both, and that no synced ruleset changed).
func TestReconcile_SyncsIncrementallyThroughTheFakeDataplane(t *testing.T) {
	web := runningPod("shop", "web", "node-a", map[string]string{"app": "web"}, "10.0.1.2")
	shop := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	a := newFakeAgent(t, []client.Object{shop, web}, Options{})
	a.reconcile(t)
	if err := a.client.Create(context.Background(), denyWeb("deny")); err != nil {
		t.Fatal(err)
	}
	a.r.changes.policy(types.NamespacedName{Namespace: "shop", Name: "deny"})
	a.reconcile(t)
	a.wantWebIsolated(t, true)
	full, incremental, ops := a.syncer.fake.Syncs()
	if full != 1 || incremental < 1 || ops == 0 {
		t.Errorf("syncs: %d full, %d incremental, last with %d ops; want 1 full, then incremental ones with ops", full, incremental, ops)
	}
	if got, want := a.syncer.fake.Table().Dump(), a.syncer.latest().Dump(); got != want {
		t.Errorf("fake table differs from the last synced ruleset:\n%s\n--- want\n%s", got, want)
	}
}

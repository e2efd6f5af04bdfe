package controllers

// IP plan: node-a pods 10.0.1.0/24, fd00:1::/64; node-b pods 10.0.2.0/24.
// These tests run Reconcile directly against a fake client (no apiserver).

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
)

// recordedEvent is one Eventf call.
type recordedEvent struct {
	Regarding, Type, Reason, Note string
}

type fakeRecorder struct {
	mu     sync.Mutex
	events []recordedEvent
}

func (f *fakeRecorder) Eventf(regarding, _ runtime.Object, eventtype, reason, _, note string, args ...any) {
	o := regarding.(client.Object)
	f.mu.Lock()
	f.events = append(f.events, recordedEvent{Regarding: o.GetNamespace() + "/" + o.GetName(), Type: eventtype, Reason: reason, Note: fmt.Sprintf(note, args...)})
	f.mu.Unlock()
}

func (f *fakeRecorder) take() []recordedEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.events
	f.events = nil
	return e
}

func runningPod(ns, name, node string, labels map[string]string, ips ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "x"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	return p
}

// fakeAgent is a Reconciler for node-a over a fake client (namespaces,
// policies) and a PodStore over a fake list and watch (pods), with its
// pod event handler registered as the controller would (podSource).
type fakeAgent struct {
	r      *Reconciler
	syncer *recordingSyncer
	reg    *prometheus.Registry
	client client.Client
	pods   *watch.FakeWatcher
	store  *PodStore
	queue  workqueue.TypedRateLimitingInterface[reconcile.Request]
}

func newFakeAgent(t *testing.T, objs []client.Object, opts Options, funcs ...interceptor.Funcs) *fakeAgent {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	var pods []*corev1.Pod
	var others []client.Object
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			pods = append(pods, p)
		} else {
			others = append(others, o)
		}
	}
	a := &fakeAgent{syncer: newRecordingSyncer(t), reg: prometheus.NewRegistry()}
	b := fake.NewClientBuilder().WithScheme(scheme).WithObjects(others...)
	for _, f := range funcs {
		b = b.WithInterceptorFuncs(f)
	}
	a.client = b.Build()
	a.store, a.pods = startPodStore(t, pods...)
	opts.NodeName = "node-a"
	opts.Syncer = a.syncer
	opts.Registerer = a.reg
	opts.Reader = a.client
	opts.Pods = a.store
	opts.Logger = logr.Discard()
	var err error
	if a.r, err = New(opts); err != nil {
		t.Fatal(err)
	}
	a.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	t.Cleanup(a.queue.ShutDown)
	src := &podSource{r: a.r, store: a.store}
	if err := src.Start(context.Background(), a.queue); err != nil {
		t.Fatal(err)
	}
	if err := src.WaitForSync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return a
}

func newFakeReconciler(t *testing.T, objs []client.Object, opts Options) (*Reconciler, *recordingSyncer, *prometheus.Registry) {
	t.Helper()
	a := newFakeAgent(t, objs, opts)
	return a.r, a.syncer, a.reg
}

// gauge reads one metric value from reg (label pairs as "k=v").
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func hasLabels(m *dto.Metric, want []string) bool {
	var got []string
	for _, lp := range m.GetLabel() {
		got = append(got, lp.GetName()+"="+lp.GetValue())
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

func TestReconcile_SyncsCompiledRulesetAndMetrics(t *testing.T) {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		runningPod("shop", "web", "node-a", map[string]string{"app": "web"}, "10.0.1.2", "fd00:1::2"),
		runningPod("shop", "db", "node-b", map[string]string{"app": "db"}, "10.0.2.2"),
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "deny"}},
	}
	var gotSnap *policy.Snapshot
	compile := func(c *policy.NodeCompiler) (*nft.Ruleset, []policy.Warning) {
		gotSnap = c.Snapshot()
		r := nft.NewSkeleton()
		r.AddIsolatedEndpoint(nft.Ingress, "shop/web", []netip.Addr{netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("fd00:1::2")}, nft.AllowList{})
		return r, nil
	}
	r, s, reg := newFakeReconciler(t, objs, Options{Compile: compile, ResyncPeriod: 3 * time.Minute})

	res, err := r.Reconcile(context.Background(), workKey)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if res.RequeueAfter != 3*time.Minute {
		t.Errorf("RequeueAfter = %v, want the resync period 3m", res.RequeueAfter)
	}
	if got, err := isolated(s.latest(), nft.Ingress, "shop/web"); err != nil || !got {
		t.Errorf("synced ruleset: shop/web isolated = %v, %v; want true", got, err)
	}
	var pods []string
	for _, p := range gotSnap.Pods {
		pods = append(pods, p.Key()+"@"+p.NodeName)
	}
	if diff := cmp.Diff([]string{"shop/db@node-b", "shop/web@node-a"}, pods); diff != "" {
		t.Errorf("snapshot pods (-want +got):\n%s", diff)
	}
	if gotSnap.NodeName != "node-a" || len(gotSnap.Policies) != 1 || len(gotSnap.Namespaces) != 1 {
		t.Errorf("snapshot = node %q, %d policies, %d namespaces; want node-a, 1, 1", gotSnap.NodeName, len(gotSnap.Policies), len(gotSnap.Namespaces))
	}

	skel := statsOf(nft.NewSkeleton())
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{name: "nftpolicy_policies", want: 1},
		{name: "nftpolicy_pods", labels: []string{"category=total"}, want: 2},
		{name: "nftpolicy_pods", labels: []string{"category=local"}, want: 1},
		{name: "nftpolicy_pods", labels: []string{"category=isolated_ingress"}, want: 1},
		{name: "nftpolicy_pods", labels: []string{"category=isolated_egress"}, want: 0},
		{name: "nftpolicy_chains", want: float64(skel.Chains + 1)},
		{name: "nftpolicy_rules", want: float64(skel.Rules + 9)}, // eight lookups and a drop
		{name: "nftpolicy_sets", want: float64(skel.Sets + 8)},
		{name: "nftpolicy_set_elements", want: 2},
		{name: "nftpolicy_policy_warnings", want: 0},
		{name: "nftpolicy_sync_errors_total", want: 0},
		{name: "nftpolicy_sync_duration_seconds", want: 1},
		{name: "nftpolicy_compile_duration_seconds", want: 1},
	} {
		if got := metricValue(t, reg, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if ts := metricValue(t, reg, "nftpolicy_last_successful_sync_timestamp_seconds"); ts < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last_successful_sync_timestamp_seconds = %v, want about now", ts)
	}
	if err := r.ReadyzCheck(nil); err != nil {
		t.Errorf("ReadyzCheck after a successful sync: %v", err)
	}
}

func TestReconcile_SyncErrorIsReturnedAndCounted(t *testing.T) {
	r, s, reg := newFakeReconciler(t, nil, Options{})
	s.failNext(2, errors.New("netlink: EPERM"))
	for i := range 2 {
		if _, err := r.Reconcile(context.Background(), workKey); err == nil || !strings.Contains(err.Error(), "netlink: EPERM") {
			t.Fatalf("Reconcile %d: err = %v, want the sync error", i, err)
		}
	}
	if got := metricValue(t, reg, "nftpolicy_sync_errors_total"); got != 2 {
		t.Errorf("sync_errors_total = %v, want 2", got)
	}
	err := r.ReadyzCheck(nil)
	if err == nil || !strings.Contains(err.Error(), "no successful sync yet, last attempt failed: netlink: EPERM") {
		t.Errorf("ReadyzCheck = %v, want not ready naming the sync error", err)
	}
	if _, err := r.Reconcile(context.Background(), workKey); err != nil {
		t.Fatalf("Reconcile after failures: %v", err)
	}
	if err := r.ReadyzCheck(nil); err != nil {
		t.Errorf("ReadyzCheck after recovery: %v", err)
	}
}

func TestReconcile_EventToSyncMeasuresFromFirstEventAcrossRetries(t *testing.T) {
	r, s, reg := newFakeReconciler(t, nil, Options{})
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	r.noteEvent()
	clock = clock.Add(time.Second)
	r.noteEvent() // same batch: does not move the start
	s.failNext(1, nil)
	if _, err := r.Reconcile(context.Background(), workKey); err == nil {
		t.Fatal("want the injected sync error")
	}
	clock = clock.Add(time.Second)
	if _, err := r.Reconcile(context.Background(), workKey); err != nil {
		t.Fatal(err)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "nftpolicy_event_to_sync_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 1 || h.GetSampleSum() != 2 {
				t.Errorf("event_to_sync: count %d sum %v, want 1 sample of 2s", h.GetSampleCount(), h.GetSampleSum())
			}
			return
		}
	}
	t.Error("nftpolicy_event_to_sync_seconds not found")
}

func TestNoteEvent_ReconcilesAtOnceAfterQuietElseAtIntervalEnd(t *testing.T) {
	r, _, _ := newFakeReconciler(t, nil, Options{MinSyncInterval: 100 * time.Millisecond})
	clock := time.Unix(1000, 0)
	r.now = func() time.Time { return clock }
	if got := r.noteEvent(); got != 0 {
		t.Errorf("first event ever: wait %v, want 0", got)
	}
	if _, err := r.Reconcile(context.Background(), workKey); err != nil { // starts at 1000s
		t.Fatal(err)
	}
	steps := []struct {
		at   time.Duration // after the reconcile started
		want time.Duration
	}{
		{0, 100 * time.Millisecond},
		{30 * time.Millisecond, 70 * time.Millisecond},
		{99 * time.Millisecond, time.Millisecond},
		{100 * time.Millisecond, 0},
		{5 * time.Second, 0},
	}
	start := clock
	for _, st := range steps {
		clock = start.Add(st.at)
		if got := r.noteEvent(); got != st.want {
			t.Errorf("event %v after a reconcile started: wait %v, want %v", st.at, got, st.want)
		}
	}

	// A slow reconcile (here 300 ms of compiling) stretches the interval to
	// twice its duration: at most half the time goes to reconciling.
	clock = start.Add(10 * time.Second)
	slowStart := clock
	r.compile = func(c *policy.NodeCompiler) (*nft.Ruleset, []policy.Warning) {
		clock = clock.Add(300 * time.Millisecond)
		return c.Compile()
	}
	if _, err := r.Reconcile(context.Background(), workKey); err != nil {
		t.Fatal(err)
	}
	for _, st := range []struct{ at, want time.Duration }{
		{300 * time.Millisecond, 300 * time.Millisecond},
		{550 * time.Millisecond, 50 * time.Millisecond},
		{600 * time.Millisecond, 0},
	} {
		clock = slowStart.Add(st.at)
		if got := r.noteEvent(); got != st.want {
			t.Errorf("event %v after a 300 ms reconcile started: wait %v, want %v", st.at, got, st.want)
		}
	}
}

func TestReadyzCheck(t *testing.T) {
	bridgeErr := errors.New("br_netfilter: /proc/sys/net/bridge missing: load the br_netfilter module")
	tests := []struct {
		name         string
		precondition error
		sync         bool
		wantErrs     []string
	}{
		{name: "fresh", wantErrs: []string{"no successful sync yet"}},
		{name: "synced", sync: true},
		{name: "precondition fails before sync", precondition: bridgeErr, wantErrs: []string{"host precondition: br_netfilter", "no successful sync yet"}},
		{name: "precondition fails after sync", precondition: bridgeErr, sync: true, wantErrs: []string{"load the br_netfilter module"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _, _ := newFakeReconciler(t, nil, Options{Precondition: func() error { return tc.precondition }})
			if tc.sync {
				if _, err := r.Reconcile(context.Background(), workKey); err != nil {
					t.Fatal(err)
				}
			}
			err := r.ReadyzCheck(nil)
			if len(tc.wantErrs) == 0 {
				if err != nil {
					t.Errorf("ReadyzCheck = %v, want ready", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ReadyzCheck ready, want %q", tc.wantErrs)
			}
			for _, w := range tc.wantErrs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ReadyzCheck error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestReconcile_WarningEventsOnlyOnChange drives the Event logic with a
// compiler stand-in whose warnings the test scripts, step by step.
func TestReconcile_WarningEventsOnlyOnChange(t *testing.T) {
	objs := []client.Object{
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p1"}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p2"}},
	}
	var warnings []policy.Warning
	compile := func(*policy.NodeCompiler) (*nft.Ruleset, []policy.Warning) { return nft.NewSkeleton(), warnings }
	rec := &fakeRecorder{}
	r, _, reg := newFakeReconciler(t, objs, Options{Compile: compile, Recorder: rec})
	w := func(pol, msg string) policy.Warning {
		return policy.Warning{Namespace: "shop", Policy: pol, Message: msg}
	}
	steps := []struct {
		name     string
		warnings []policy.Warning
		want     []recordedEvent
	}{
		{name: "none", warnings: nil},
		{
			name:     "first warning",
			warnings: []policy.Warning{w("p1", "named port http not declared")},
			want:     []recordedEvent{{"shop/p1", "Warning", "PolicyNotEnforced", "node node-a: named port http not declared"}},
		},
		{name: "same again: no event", warnings: []policy.Warning{w("p1", "named port http not declared")}},
		{
			name:     "second warning on p1 and one on p2",
			warnings: []policy.Warning{w("p1", "named port http not declared"), w("p1", "sctp port range"), w("p2", "x")},
			want: []recordedEvent{
				{"shop/p1", "Warning", "PolicyNotEnforced", "node node-a: sctp port range"},
				{"shop/p2", "Warning", "PolicyNotEnforced", "node node-a: x"},
			},
		},
		{
			name:     "p1 fixed",
			warnings: []policy.Warning{w("p2", "x")},
			want:     []recordedEvent{{"shop/p1", "Normal", "PolicyEnforced", "node node-a: every part of the policy is enforced"}},
		},
		{name: "unknown policy: logged only", warnings: []policy.Warning{w("p2", "x"), w("gone", "y")}},
	}
	for _, st := range steps {
		warnings = st.warnings
		if _, err := r.Reconcile(context.Background(), workKey); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if diff := cmp.Diff(st.want, rec.take()); diff != "" {
			t.Errorf("%s: events (-want +got):\n%s", st.name, diff)
		}
		if got := metricValue(t, reg, "nftpolicy_policy_warnings"); got != float64(len(st.warnings)) {
			t.Errorf("%s: policy_warnings = %v, want %d", st.name, got, len(st.warnings))
		}
	}
}

func TestNew_ValidatesOptions(t *testing.T) {
	_, err := New(Options{ResyncPeriod: -1})
	for _, w := range []string{"NodeName is required", "syncer is required", "Registerer is required", "ResyncPeriod must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("New error %v does not mention %q", err, w)
		}
	}
}

func TestStatsOf(t *testing.T) {
	r := nft.NewSkeleton()
	r.AddIsolatedEndpoint(nft.Ingress, "a/x", []netip.Addr{netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("fd00:1::2")}, nft.AllowList{
		AnyPort: []nft.Range{nft.Addr(netip.MustParseAddr("10.0.2.2"))},
	})
	r.AddIsolatedEndpoint(nft.Egress, "a/x", []netip.Addr{netip.MustParseAddr("10.0.1.2")}, nft.AllowList{})
	r.AddIsolatedEndpoint(nft.Egress, "a/y", []netip.Addr{netip.MustParseAddr("10.0.1.3")}, nft.AllowList{})
	skel := statsOf(nft.NewSkeleton())
	want := rulesetStats{
		// Each isolated direction: a chain of eight lookups and a drop, eight sets.
		Chains: skel.Chains + 3, Rules: skel.Rules + 3*9, Sets: skel.Sets + 3*8,
		Elements:        2 + 1 + 1 + 1, // ingress map (2 addrs) + addr4 element + 2 egress map elements
		IsolatedIngress: 1, IsolatedEgress: 2,
	}
	if diff := cmp.Diff(want, statsOf(r)); diff != "" {
		t.Errorf("statsOf (-want +got):\n%s", diff)
	}
}

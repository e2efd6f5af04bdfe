package controllers

// IP plan: every pod gets a fresh address from 10.1.0.0/16 (allocated in
// test order, so no two pods share one); host-network pods use their
// node's address from 192.168.100.0/24. Each test runs its own agent for its
// own node name ("node-<n>"), so pods created by other tests are remote
// pods for it. A pod that "runs elsewhere" uses node "remote-node".

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/nftpolicy/nftpolicy/internal/testenv"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
)

const (
	// waitTimeout bounds every eventually: generous for a loaded machine.
	waitTimeout = 20 * time.Second
	remoteNode  = "remote-node"
)

var (
	apiEnv   testenv.APIServer
	ipSerial atomic.Uint32
	nodeSeq  atomic.Uint32
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(testLogger())
	code := m.Run()
	apiEnv.Stop()
	os.Exit(code)
}

// apiServer is the package's shared real kube-apiserver (admin config).
func apiServer(t *testing.T) *rest.Config { return apiEnv.Config(t) }

func testScheme(t *testing.T) *runtime.Scheme { return testenv.Scheme(t) }

// testLogger logs to stderr when NFTPOLICY_TEST_LOG is set (t.Log cannot
// be used: the manager logs after the test returns).
func testLogger() logr.Logger {
	if os.Getenv("NFTPOLICY_TEST_LOG") == "" {
		return logr.Discard()
	}
	return funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{Verbosity: 1})
}

// harness is one agent (manager + Reconciler + recording syncer) for one
// node, and a direct client to change the cluster.
type harness struct {
	t      *testing.T
	c      client.Client
	node   string
	syncer *recordingSyncer
	r      *Reconciler
	reg    *prometheus.Registry
}

// startAgent runs an agent for a fresh node name until the test ends and
// waits for its first sync.
func startAgent(t *testing.T, mutate func(*Options)) *harness {
	t.Helper()
	h := startAgentNoWait(t, mutate)
	eventually(t, waitTimeout, h.syncer.synced, "first sync", func() string {
		if _, n := h.syncer.counts(); n == 0 {
			return "no successful sync"
		}
		return ""
	})
	return h
}

// startAgentNoWait runs an agent for a fresh node name until the test ends.
func startAgentNoWait(t *testing.T, mutate func(*Options)) *harness {
	t.Helper()
	return startAgentHooked(t, mutate, nil)
}

// startAgentHooked is startAgentNoWait; created, if set, gets the
// Reconciler before the manager starts.
func startAgentHooked(t *testing.T, mutate func(*Options), created func(*Reconciler)) *harness {
	t.Helper()
	cfg := apiServer(t)
	scheme := testScheme(t)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, c: c, node: fmt.Sprintf("node-%d", nodeSeq.Add(1)), syncer: newRecordingSyncer(t), reg: prometheus.NewRegistry()}
	h.create(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: h.node}})

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger:                 testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		NodeName:        h.node,
		Syncer:          h.syncer,
		Registerer:      h.reg,
		MinSyncInterval: 20 * time.Millisecond,
		ResyncPeriod:    10 * time.Minute,
		Logger:          testLogger(),
	}
	if mutate != nil {
		mutate(&opts)
	}
	h.r, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	if created != nil {
		created(h.r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	return h
}

func (h *harness) create(obj client.Object) {
	h.t.Helper()
	if err := h.c.Create(context.Background(), obj); err != nil {
		h.t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

func (h *harness) update(obj client.Object) {
	h.t.Helper()
	if err := h.c.Update(context.Background(), obj); err != nil {
		h.t.Fatalf("update %T %s: %v", obj, obj.GetName(), err)
	}
}

func (h *harness) delete(obj client.Object) {
	h.t.Helper()
	if err := h.c.Delete(context.Background(), obj, client.GracePeriodSeconds(0)); err != nil {
		h.t.Fatalf("delete %T %s: %v", obj, obj.GetName(), err)
	}
}

// namespace creates a namespace with a generated name.
func (h *harness) namespace(labels map[string]string) *corev1.Namespace {
	h.t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "np-", Labels: labels}}
	h.create(ns)
	return ns
}

func nextPodIP() string {
	n := ipSerial.Add(1)
	return netip.AddrFrom4([4]byte{10, 1, byte(n / 250), byte(n%250 + 1)}).String()
}

type podOpt func(*corev1.Pod)

func onNode(n string) podOpt { return func(p *corev1.Pod) { p.Spec.NodeName = n } }
func hostNetwork(ip string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.HostNetwork = true
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		p.Status.PodIP = ip
	}
}
func withPorts(ports ...corev1.ContainerPort) podOpt {
	return func(p *corev1.Pod) { p.Spec.Containers[0].Ports = ports }
}

// pod creates a Running pod on the harness's node with a fresh IP, the way
// a kubelet would: create, then set phase and IPs through status.
func (h *harness) pod(ns, name string, labels map[string]string, opts ...podOpt) *corev1.Pod {
	h.t.Helper()
	ip := nextPodIP()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:   h.node,
			Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/agnhost"}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
	for _, o := range opts {
		o(p)
	}
	status := p.Status
	h.create(p)
	p.Status = status
	if err := h.c.Status().Update(context.Background(), p); err != nil {
		h.t.Fatalf("set status of pod %s/%s: %v", ns, name, err)
	}
	return p
}

func key(o client.Object) string { return o.GetNamespace() + "/" + o.GetName() }

func (h *harness) wantIsolated(dir nft.Direction, o client.Object, want bool) {
	h.t.Helper()
	eventually(h.t, waitTimeout, h.syncer.synced, fmt.Sprintf("%s %v isolated=%v", key(o), dir, want), wantIsolation(h.syncer, dir, key(o), want))
}

// settle waits until the agent has synced every change made so far: it
// creates a marker pod on another node, waits for a sync after that, then
// until no sync happens for a quiet period (the marker's status update may
// come as a second event).
func (h *harness) settle(ns string) {
	h.t.Helper()
	_, before := h.syncer.counts()
	h.pod(ns, fmt.Sprintf("marker-%d", ipSerial.Load()), nil, onNode(remoteNode))
	eventually(h.t, waitTimeout, h.syncer.synced, "a sync after the marker pod", func() string {
		if _, n := h.syncer.counts(); n <= before {
			return "no new sync"
		}
		return ""
	})
	const quiet = 500 * time.Millisecond
	last, lastChange := -1, time.Now()
	eventually(h.t, waitTimeout, nil, "no sync for "+quiet.String(), func() string {
		n, _ := h.syncer.counts()
		if n != last {
			last, lastChange = n, time.Now()
		}
		if time.Since(lastChange) < quiet {
			return fmt.Sprintf("last sync %v ago", time.Since(lastChange).Round(time.Millisecond))
		}
		return ""
	})
}

func selectApp(app string) metav1.LabelSelector {
	return metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
}

func TestAgent_PolicyLifecycle(t *testing.T) {
	h := startAgent(t, nil)
	ns := h.namespace(nil).Name
	a := h.pod(ns, "a", map[string]string{"app": "a"})
	b := h.pod(ns, "b", map[string]string{"app": "b"})
	h.wantIsolated(nft.Ingress, a, false)

	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "np"},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: selectApp("a")}, // policyTypes defaults to Ingress
	}
	h.create(np)
	h.wantIsolated(nft.Ingress, a, true)
	h.wantIsolated(nft.Ingress, b, false)
	h.wantIsolated(nft.Egress, a, false)

	np.Spec.PodSelector = selectApp("b")
	np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	h.update(np)
	h.wantIsolated(nft.Ingress, b, true)
	h.wantIsolated(nft.Egress, b, true)
	h.wantIsolated(nft.Ingress, a, false)

	h.delete(np)
	h.wantIsolated(nft.Ingress, b, false)
	h.wantIsolated(nft.Egress, b, false)
}

func TestAgent_PodRelabel(t *testing.T) {
	h := startAgent(t, nil)
	ns := h.namespace(nil).Name
	a := h.pod(ns, "a", map[string]string{"app": "a"})
	h.create(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "np"}, Spec: networkingv1.NetworkPolicySpec{PodSelector: selectApp("a")}})
	h.wantIsolated(nft.Ingress, a, true)

	a.Labels = map[string]string{"app": "other"}
	h.update(a)
	h.wantIsolated(nft.Ingress, a, false)

	a.Labels = map[string]string{"app": "a"}
	h.update(a)
	h.wantIsolated(nft.Ingress, a, true)
}

func TestAgent_NamespaceRelabel(t *testing.T) {
	h := startAgent(t, nil)
	ns := h.namespace(nil).Name
	peerNS := h.namespace(map[string]string{"team": "red"})
	a := h.pod(ns, "a", map[string]string{"app": "a"})
	peer := h.pod(peerNS.Name, "peer", nil, onNode(remoteNode))
	peerIP := netip.MustParseAddr(peer.Status.PodIP)
	h.create(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "from-blue"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: selectApp("a"),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "blue"}},
			}}}},
		},
	})
	h.wantIsolated(nft.Ingress, a, true)
	allowed := func(want bool) func() string {
		return func() string {
			if got := allowsPeer(h.syncer.latest(), nft.Ingress, key(a), peerIP); got != want {
				return fmt.Sprintf("ingress of %s allows %s = %v, want %v", key(a), peerIP, got, want)
			}
			return ""
		}
	}
	eventually(t, waitTimeout, h.syncer.synced, "peer in red namespace not allowed", allowed(false))

	peerNS.Labels = map[string]string{"team": "blue"}
	h.update(peerNS)
	eventually(t, waitTimeout, h.syncer.synced, "peer allowed once its namespace is blue", allowed(true))

	peerNS.Labels = map[string]string{"team": "green"}
	h.update(peerNS)
	eventually(t, waitTimeout, h.syncer.synced, "peer denied once its namespace is green", allowed(false))
}

func TestAgent_PodDeleted(t *testing.T) {
	h := startAgent(t, nil)
	ns := h.namespace(nil).Name
	a := h.pod(ns, "a", map[string]string{"app": "a"})
	h.create(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "np"}, Spec: networkingv1.NetworkPolicySpec{PodSelector: selectApp("a")}})
	h.wantIsolated(nft.Ingress, a, true)
	h.delete(a)
	h.wantIsolated(nft.Ingress, a, false)
}

func TestAgent_RemotePodNeverIsolated(t *testing.T) {
	h := startAgent(t, nil)
	ns := h.namespace(nil).Name
	local := h.pod(ns, "local", map[string]string{"app": "a"})
	remote := h.pod(ns, "remote", map[string]string{"app": "a"}, onNode(remoteNode))
	h.create(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "all"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		},
	})
	h.wantIsolated(nft.Ingress, local, true)
	h.wantIsolated(nft.Egress, local, true)
	h.settle(ns)
	for _, dir := range []nft.Direction{nft.Ingress, nft.Egress} {
		if msg := wantIsolation(h.syncer, dir, key(remote), false)(); msg != "" {
			t.Error(msg)
		}
	}
}

func TestAgent_HostNetworkPodNeverIsolated(t *testing.T) {
	h := startAgent(t, nil)
	ns := h.namespace(nil).Name
	local := h.pod(ns, "local", map[string]string{"app": "a"})
	hostPod := h.pod(ns, "host", map[string]string{"app": "a"}, hostNetwork("192.168.100.1"))
	h.create(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "all"}, Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{}}})
	h.wantIsolated(nft.Ingress, local, true)
	h.settle(ns)
	if msg := wantIsolation(h.syncer, nft.Ingress, key(hostPod), false)(); msg != "" {
		t.Error(msg)
	}
	if m := h.syncer.latest().Sets[nft.MapIngressV4]; m != nil {
		for _, e := range m.Elements {
			if netip.MustParseAddr("192.168.100.1").Compare(addrOf(e.Key[0].From)) == 0 {
				t.Errorf("the host-network pod's (node's) address is in %s: %+v", nft.MapIngressV4, e)
			}
		}
	}
}

func addrOf(b []byte) netip.Addr {
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestAgent_SucceededPodDropsOut(t *testing.T) {
	h := startAgent(t, nil)
	ns := h.namespace(nil).Name
	a := h.pod(ns, "a", map[string]string{"app": "a"})
	h.create(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "np"}, Spec: networkingv1.NetworkPolicySpec{PodSelector: selectApp("a")}})
	h.wantIsolated(nft.Ingress, a, true)
	a.Status.Phase = corev1.PodSucceeded
	if err := h.c.Status().Update(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	h.wantIsolated(nft.Ingress, a, false)
}

// ourEvents lists the events.k8s.io Events this agent recorded about the
// policy.
func (h *harness) ourEvents(ns, policyName, reason string) []eventsv1.Event {
	h.t.Helper()
	var list eventsv1.EventList
	if err := h.c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		h.t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "NetworkPolicy" && e.Regarding.Name == policyName && e.Reason == reason &&
			e.ReportingController == ControllerName && strings.HasPrefix(e.Note, "node "+h.node+":") {
			out = append(out, e)
		}
	}
	return out
}

// TestAgent_NamedPortWarningEvent: the pod declares no port named "http",
// so the compiler cannot enforce the rule's port for it and warns; the
// agent records one Warning Event on the policy, and no more while the
// warning stays.
func TestAgent_NamedPortWarningEvent(t *testing.T) {
	h := startAgent(t, nil)
	ns := h.namespace(nil).Name
	h.pod(ns, "a", map[string]string{"app": "a"}, withPorts(corev1.ContainerPort{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}))
	h.create(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "http-only"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: selectApp("a"),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromString("http"))}},
			}},
		},
	})
	eventually(t, waitTimeout, nil, "a PolicyNotEnforced Warning Event on the policy", func() string {
		evs := h.ourEvents(ns, "http-only", ReasonPolicyNotEnforced)
		if len(evs) == 0 {
			return "no event"
		}
		if evs[0].Type != corev1.EventTypeWarning {
			return "event type " + evs[0].Type
		}
		return ""
	})
	h.settle(ns)
	h.settle(ns)
	if evs := h.ourEvents(ns, "http-only", ReasonPolicyNotEnforced); len(evs) != 1 || evs[0].Series != nil {
		t.Errorf("after two more reconciles: %d events (first series %+v), want exactly 1 without series", len(evs), evs[0].Series)
	}
}

// TestAgent_WarningEventRecorded checks the Event path against the API
// server with a compiler stand-in that warns about one policy by name.
func TestAgent_WarningEventRecorded(t *testing.T) {
	compile := func(c *policy.NodeCompiler) (*nft.Ruleset, []policy.Warning) {
		r, w := c.Compile()
		for _, np := range c.Snapshot().Policies {
			if np.Name == "warn-me" {
				w = append(w, policy.Warning{Namespace: np.Namespace, Policy: np.Name, Message: "test warning"})
			}
		}
		return r, w
	}
	h := startAgent(t, func(o *Options) { o.Compile = compile })
	ns := h.namespace(nil).Name
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "warn-me"}}
	h.create(np)
	eventually(t, waitTimeout, nil, "Warning Event on warn-me", func() string {
		evs := h.ourEvents(ns, "warn-me", ReasonPolicyNotEnforced)
		if len(evs) != 1 {
			return fmt.Sprintf("%d events", len(evs))
		}
		e := evs[0]
		if e.Type != corev1.EventTypeWarning || e.Note != "node "+h.node+": test warning" || e.Regarding.UID != np.UID {
			return fmt.Sprintf("event %+v", e)
		}
		return ""
	})
	if got := metricValue(t, h.reg, "nftpolicy_policy_warnings"); got < 1 {
		t.Errorf("policy_warnings = %v, want >= 1", got)
	}
}

func TestAgent_SyncFailureRetriesWithBackoff(t *testing.T) {
	h := startAgent(t, nil)
	h.syncer.failNext(3, fmt.Errorf("injected: netlink busy"))
	ns := h.namespace(nil).Name
	a := h.pod(ns, "a", map[string]string{"app": "a"})
	h.create(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "np"}, Spec: networkingv1.NetworkPolicySpec{PodSelector: selectApp("a")}})
	eventually(t, waitTimeout, h.syncer.synced, "three failures then success", func() string {
		calls, ok := h.syncer.counts()
		h.syncer.mu.Lock()
		left := h.syncer.failures
		h.syncer.mu.Unlock()
		if left > 0 || calls-ok != 3 {
			return fmt.Sprintf("%d calls, %d ok, %d failures left", calls, ok, left)
		}
		return ""
	})
	h.wantIsolated(nft.Ingress, a, true)
	if got := metricValue(t, h.reg, "nftpolicy_sync_errors_total"); got != 3 {
		t.Errorf("sync_errors_total = %v, want 3", got)
	}
	if err := h.r.ReadyzCheck(nil); err != nil {
		t.Errorf("ReadyzCheck: %v (ready since the first sync)", err)
	}
}

func TestAgent_NotReadyUntilFirstSyncAndPrecondition(t *testing.T) {
	var bridge atomic.Pointer[error]
	missing := fmt.Errorf("br_netfilter: /proc/sys/net/bridge missing: load the br_netfilter module")
	bridge.Store(&missing)
	h := startAgentNoWait(t, func(o *Options) {
		o.Syncer.(*recordingSyncer).failNext(1<<30, fmt.Errorf("injected: table busy"))
		o.Precondition = func() error {
			if p := bridge.Load(); p != nil {
				return *p
			}
			return nil
		}
	})
	notReady := func(want ...string) func() string {
		return func() string {
			err := h.r.ReadyzCheck(nil)
			if err == nil {
				return "ready"
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					return fmt.Sprintf("readyz %q does not mention %q", err, w)
				}
			}
			return ""
		}
	}
	eventually(t, waitTimeout, h.syncer.synced, "not ready: sync failing, bridge missing",
		notReady("last attempt failed: injected: table busy", "load the br_netfilter module"))

	h.syncer.failNext(0, nil)
	eventually(t, waitTimeout, h.syncer.synced, "not ready: synced, bridge still missing", func() string {
		if _, ok := h.syncer.counts(); ok == 0 {
			return "no successful sync yet"
		}
		if msg := notReady("load the br_netfilter module")(); msg != "" {
			return msg
		}
		if err := h.r.ReadyzCheck(nil); strings.Contains(err.Error(), "sync") {
			return fmt.Sprintf("readyz %q still mentions the sync", err)
		}
		return ""
	})

	bridge.Store(nil)
	if err := h.r.ReadyzCheck(nil); err != nil {
		t.Errorf("ReadyzCheck = %v, want ready", err)
	}
}

func TestAgent_PeriodicResync(t *testing.T) {
	h := startAgent(t, func(o *Options) { o.ResyncPeriod = 300 * time.Millisecond })
	_, start := h.syncer.counts()
	eventually(t, waitTimeout, h.syncer.synced, "three resyncs without any event", func() string {
		if _, n := h.syncer.counts(); n < start+3 {
			return fmt.Sprintf("%d syncs", n-start)
		}
		return ""
	})
}

// TestAgent_IgnoresUpdatesTrimmedAway: a pod status change that policy does
// not see (a condition) causes no reconcile.
func TestAgent_IgnoresUpdatesTrimmedAway(t *testing.T) {
	h := startAgent(t, nil)
	ns := h.namespace(nil).Name
	a := h.pod(ns, "a", map[string]string{"app": "a"})
	h.settle(ns)
	calls, _ := h.syncer.counts()
	a.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if err := h.c.Status().Update(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	consistently(t, time.Second, "no reconcile for a condition change", func() string {
		if n, _ := h.syncer.counts(); n != calls {
			return fmt.Sprintf("%d syncs, want %d", n, calls)
		}
		return ""
	})
}

// TestAgent_SyncRequestSyncsWithoutChange: a request on SyncRequests (the
// agent's table monitor saw someone else change the table) makes one more
// sync of the same policy state, though no object changed; the resync
// period (10 minutes here) would not.
func TestAgent_SyncRequestSyncsWithoutChange(t *testing.T) {
	requests := make(chan struct{}, 1)
	h := startAgent(t, func(o *Options) { o.SyncRequests = requests })
	ns := h.namespace(nil).Name
	a := h.pod(ns, "a", map[string]string{"app": "a"})
	h.create(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "np"},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: selectApp("a")},
	})
	h.wantIsolated(nft.Ingress, a, true)
	h.settle(ns)
	_, before := h.syncer.counts()
	dump := h.syncer.latest().Dump()

	requests <- struct{}{}
	eventually(t, waitTimeout, h.syncer.synced, "a sync after the request", func() string {
		if _, n := h.syncer.counts(); n == before {
			return fmt.Sprintf("still %d syncs", n)
		}
		return ""
	})
	if diff := cmp.Diff(dump, h.syncer.latest().Dump()); diff != "" {
		t.Errorf("ruleset synced on request differs (-before +after):\n%s", diff)
	}
}

package install

// IP plan: the one pod gets 10.77.0.10 (a fake address: no kernel is
// touched; the agent's Syncer is a recording fake). Node names are
// "install-node-<case>".

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/internal/testenv"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
)

const (
	systemNamespace = "nftpolicy-system"
	agentName       = "nftpolicy-agent" // ServiceAccount, ClusterRole and binding
	fieldOwner      = client.FieldOwner("nftpolicy-install-test")
	waitTimeout     = 30 * time.Second
	// negativeWait is how long an agent without a needed permission is
	// watched for a sync that must not come.
	negativeWait = 6 * time.Second
)

var (
	apiEnv testenv.APIServer
	logs   = &logCapture{}
)

func TestMain(m *testing.M) {
	// client-go's reflectors log through klog or through the logger that
	// controller-runtime's cache puts in their context (its global
	// logger); the Event sink through the manager's. Capture all of them,
	// to find "forbidden" errors of the agents under test.
	klog.SetLogger(logs.logger())
	ctrl.SetLogger(logs.logger())
	code := m.Run()
	apiEnv.Stop()
	os.Exit(code)
}

// apiServer is the package's shared real kube-apiserver (RBAC on; the
// returned client is in system:masters).
func apiServer(t *testing.T) (*rest.Config, client.Client) {
	t.Helper()
	cfg := apiEnv.Config(t)
	c, err := client.New(cfg, client.Options{Scheme: testScheme(t)})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, c
}

func testScheme(t *testing.T) *runtime.Scheme { return testenv.Scheme(t) }

// apply server-side-applies u (a copy), optionally as a dry run, and
// returns what the server returned.
func apply(ctx context.Context, c client.Client, u *unstructured.Unstructured, opts ...client.ApplyOption) (*unstructured.Unstructured, error) {
	obj := u.DeepCopy()
	opts = append([]client.ApplyOption{fieldOwner, client.ForceOwnership}, opts...)
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), opts...); err != nil {
		return nil, fmt.Errorf("%s %s: %w", u.GetKind(), describe(u), err)
	}
	return obj, nil
}

func describe(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetName()
	}
	return u.GetNamespace() + "/" + u.GetName()
}

// TestInstall_ServerSideDryRun applies every object of dist/install.yaml,
// then every sample policy, with server-side apply and dryRun=All: the
// kube-apiserver validates, defaults and admits each one (schema, RBAC
// escalation checks, priority class) without storing it. Only the
// Namespace is created for real first, as namespaced objects cannot be
// admitted into a namespace that does not exist.
func TestInstall_ServerSideDryRun(t *testing.T) {
	_, c := apiServer(t)
	ctx := context.Background()
	objs := installObjects(t)
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			if _, err := apply(ctx, c, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	kinds := map[string]int{}
	for _, o := range objs {
		got, err := apply(ctx, c, o, client.DryRunAll)
		if err != nil {
			t.Errorf("dry-run apply: %v", err)
			continue
		}
		kinds[o.GetKind()]++
		t.Logf("dry-run apply OK: %-18s %-40s %3d fields sent, %3d after server defaulting", o.GetKind(), describe(o), leaves(o.Object), leaves(got.Object))
	}
	if want := []string{"ClusterRole", "ClusterRoleBinding", "DaemonSet", "Namespace", "RoleBinding", "Service", "ServiceAccount"}; !equalKeys(kinds, want) {
		t.Errorf("kinds in %s: %v, want one or more of each of %v", installPath, kinds, want)
	}

	samples, err := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, path := range samples {
		if filepath.Base(path) == "kustomization.yaml" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sobjs, err := decodeObjects(b)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, o := range sobjs {
			o.SetNamespace("default")
			if _, err := apply(ctx, c, o, client.DryRunAll); err != nil {
				t.Errorf("sample %s: dry-run apply: %v", filepath.Base(path), err)
				continue
			}
			n++
			t.Logf("dry-run apply OK: sample %s: %s %s", filepath.Base(path), o.GetKind(), o.GetName())
		}
	}
	if n < 4 {
		t.Errorf("%d sample policies, want at least 4", n)
	}
}

func equalKeys(m map[string]int, want []string) bool {
	got := make([]string, 0, len(m))
	for k := range m {
		got = append(got, k)
	}
	sort.Strings(got)
	return strings.Join(got, ",") == strings.Join(want, ",")
}

// TestRBAC_AgentSyncsAsServiceAccount creates the install's
// ServiceAccount, ClusterRole and binding for real and runs the agent's
// own reconciler (controllers.New + SetupWithManager, the manager built
// like cmd/nftpolicy builds it) with a rest.Config that impersonates the
// ServiceAccount. It must sync a ruleset that isolates a new pod, record
// a Warning Event about a named port the pod does not declare, pick up the
// ClusterNetworkPolicy CRD installed after it started (the experimental
// component) and a ClusterNetworkPolicy, record a Warning Event about that
// policy, and log no "forbidden" error.
func TestRBAC_AgentSyncsAsServiceAccount(t *testing.T) {
	cfg, c := apiServer(t)
	ctx := context.Background()
	objs := installObjects(t)
	for _, kind := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"} {
		for _, o := range objs {
			if o.GetKind() == kind {
				if _, err := apply(ctx, c, o); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// The ClusterNetworkPolicy CRD appears after the agent started.
	testenv.UninstallCNPCRD(t, c)
	t.Cleanup(func() { testenv.UninstallCNPCRD(t, c) })
	user := "system:serviceaccount:" + systemNamespace + ":" + agentName
	a := startAgent(t, cfg, c, "install-node-ok", user, warnAbout(cnpName))
	waitFor(t, waitTimeout, "first sync as "+user, func() string {
		if a.syncer.latest() == nil {
			return "no sync"
		}
		return ""
	})

	// A pod on the agent's node, and a policy that isolates it for ingress
	// with a named port the pod does not declare: a compile warning, hence
	// an Event.
	const podIP = "10.77.0.10"
	np := namedPortWarning(t, c, a.node, podIP)
	ns := np.Namespace

	waitFor(t, waitTimeout, "a synced ruleset that names the pod", func() string {
		if rs := a.syncer.latest(); rs == nil || !strings.Contains(rs.Dump(), podIP) {
			return "no synced ruleset mentions " + podIP
		}
		return ""
	})
	var event eventsv1.Event
	waitFor(t, waitTimeout, "a PolicyNotEnforced Event recorded as "+user, func() string {
		var list eventsv1.EventList
		if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err.Error()
		}
		for _, e := range list.Items {
			if e.Reason == controllers.ReasonPolicyNotEnforced && e.Regarding.Name == np.Name && strings.Contains(e.Note, a.node) {
				event = e
				return ""
			}
		}
		return fmt.Sprintf("%d events, none PolicyNotEnforced about %s", len(list.Items), np.Name)
	})
	t.Logf("agent as %s: %d syncs; Event %s %s: %s", user, a.syncer.count(), event.Type, event.Reason, event.Note)

	// Now the CRD (the experimental component users install), and one
	// ClusterNetworkPolicy: the agent must pick both up as the
	// ServiceAccount, and record an Event about the policy (which it does
	// only for a policy it holds).
	testenv.InstallCRDFile(t, c, filepath.Join(componentDir("experimental"), cnpCRDFile))
	cnpClient, err := client.New(cfg, client.Options{Scheme: testScheme(t)}) // a fresh REST mapper
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, cnpClient, &policyv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: cnpName},
		Spec: policyv1beta1.ClusterNetworkPolicySpec{
			Tier: policyv1beta1.AdminTier, Priority: 1,
			Subject: policyv1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
			Egress: []policyv1beta1.ClusterNetworkPolicyEgressRule{{
				Action: policyv1beta1.ClusterNetworkPolicyRuleActionAccept,
				To:     []policyv1beta1.ClusterNetworkPolicyEgressPeer{{DomainNames: []policyv1beta1.DomainName{"www.example.com"}}},
			}},
		},
	})
	waitFor(t, waitTimeout, "the ClusterNetworkPolicy watched as "+user, func() string {
		watched := gauge(t, a.reg, "nftpolicy_cluster_network_policy_crd_watched")
		admin := gauge(t, a.reg, "nftpolicy_cluster_network_policies", "tier", "admin")
		if watched != 1 || admin != 1 {
			return fmt.Sprintf("crd_watched %v, admin policies %v", watched, admin)
		}
		return ""
	})
	waitFor(t, waitTimeout, "a PolicyNotEnforced Event on the ClusterNetworkPolicy recorded as "+user, func() string {
		var list eventsv1.EventList
		if err := c.List(ctx, &list, client.InNamespace(metav1.NamespaceDefault)); err != nil {
			return err.Error()
		}
		for _, e := range list.Items {
			if e.Reason == controllers.ReasonPolicyNotEnforced && e.Regarding.Kind == "ClusterNetworkPolicy" && e.Regarding.Name == cnpName && strings.Contains(e.Note, a.node) {
				event = e
				return ""
			}
		}
		return fmt.Sprintf("%d events in default, none about ClusterNetworkPolicy %s", len(list.Items), cnpName)
	})
	t.Logf("agent as %s: Event %s %s on %s %s: %s", user, event.Type, event.Reason, event.Regarding.Kind, event.Regarding.Name, event.Note)
	if f := logs.forbidden(user); len(f) > 0 {
		t.Errorf("the agent running as %s was refused:\n%s", user, strings.Join(f, "\n"))
	}
}

// TestRBAC_MissingVerbFails proves the test above can fail: the agent runs
// under a copy of the ClusterRole with verbs removed, bound to its own
// ServiceAccount, and a pod plus a policy isolating it appear (with the
// named-port warning). The API server must refuse the agent (which
// TestRBAC_AgentSyncsAsServiceAccount forbids); without any way to read
// pods the agent must never sync at all.
//
// The ClusterNetworkPolicy CRD is installed for these cases. Without
// reading it the agent cannot know whether ClusterNetworkPolicies exist,
// and never syncs (a ruleset without them could open what they deny).
//
// What a real API server showed: one read verb alone is not fatal. Without
// watch, client-go's reflector re-lists after every failed watch, so the
// agent converges late and logs errors; without list, informers stream
// their initial list over a watch (WatchListClient) where the API server
// supports it, as envtest's does, and nothing is refused. The ClusterRole
// keeps list for API servers without streaming lists, and get, which
// grants nothing that list does not.
func TestRBAC_MissingVerbFails(t *testing.T) {
	cfg, c := apiServer(t)
	ctx := context.Background()
	objs := installObjects(t)
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			if _, err := apply(ctx, c, o); err != nil {
				t.Fatal(err)
			}
		}
	}
	testenv.InstallCRDFile(t, c, filepath.Join(componentDir("experimental"), cnpCRDFile))
	t.Cleanup(func() { testenv.UninstallCNPCRD(t, c) })
	role := typed[*rbacv1.ClusterRole](t, objs, "ClusterRole", agentName)
	tests := []struct {
		name, group, resource string
		verbs                 []string
		podIP                 string
		// neverSyncs: the agent's cache cannot start, so it never syncs.
		neverSyncs bool
	}{
		{name: "no-read-pods", group: "", resource: "pods", verbs: []string{"list", "watch"}, podIP: "10.77.0.21", neverSyncs: true},
		{name: "no-watch-networkpolicies", group: "networking.k8s.io", resource: "networkpolicies", verbs: []string{"watch"}, podIP: "10.77.0.22"},
		{name: "no-create-events", group: "events.k8s.io", resource: "events", verbs: []string{"create"}, podIP: "10.77.0.23"},
		{name: "no-watch-clusternetworkpolicies", group: "policy.networking.k8s.io", resource: "clusternetworkpolicies", verbs: []string{"watch"}, podIP: "10.77.0.24"},
		// Without the CRD the agent cannot tell whether ClusterNetworkPolicies
		// exist, and it does not sync a ruleset that may lack them.
		{name: "no-read-crd", group: "apiextensions.k8s.io", resource: "customresourcedefinitions", verbs: []string{"list", "watch"}, podIP: "10.77.0.25", neverSyncs: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name := agentName + "-" + tt.name
			broken := role.DeepCopy()
			broken.ObjectMeta = metav1.ObjectMeta{Name: name}
			broken.Rules = withoutVerbs(t, broken.Rules, tt.group, tt.resource, tt.verbs)
			mustCreate(t, c, broken)
			mustCreate(t, c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: systemNamespace, Name: name}})
			mustCreate(t, c, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: systemNamespace, Name: name}},
			})
			user := "system:serviceaccount:" + systemNamespace + ":" + name
			a := startAgent(t, cfg, c, "install-node-"+tt.name, user)
			namedPortWarning(t, c, a.node, tt.podIP)
			waitFor(t, waitTimeout, "a forbidden error for "+user, func() string {
				if len(logs.forbidden(user)) == 0 {
					return "none logged"
				}
				return ""
			})
			if tt.neverSyncs {
				time.Sleep(negativeWait)
				if n := a.syncer.count(); n > 0 {
					t.Errorf("without %v on %s the agent synced %d times", tt.verbs, tt.resource, n)
				}
			}
			t.Logf("without %v on %q/%s: %d syncs; refused: %.260s", tt.verbs, tt.group, tt.resource, a.syncer.count(), logs.forbidden(user)[0])
		})
	}
}

// cnpName is the ClusterNetworkPolicy of TestRBAC_AgentSyncsAsServiceAccount.
const cnpName = "install-domain-names"

// warnAbout makes the agent's compiler add a warning about the
// ClusterNetworkPolicy name, as the ClusterNetworkPolicy compiler will for
// its domainNames peer: the policy store of this branch compiles nothing
// for ClusterNetworkPolicies. The agent reports it only for a policy its
// NodeCompiler holds.
func warnAbout(name string) func(*controllers.Options) {
	return func(o *controllers.Options) {
		o.Compile = func(c *policy.NodeCompiler) (*nft.Ruleset, []policy.Warning) {
			rs, w := c.Compile()
			return rs, append(w, policy.Warning{Policy: name, Message: "domainNames peers are not enforced"})
		}
	}
}

// gauge reads a gauge from reg (labels as name, value pairs); -1 when it
// has no such series.
func gauge(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue metrics
				}
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// namedPortWarning creates a pod with podIP on node and a policy isolating
// it whose named port the pod does not declare (a compile warning, which
// the agent reports as a Warning Event). It returns the policy.
func namedPortWarning(t *testing.T, c client.Client, node, podIP string) *networkingv1.NetworkPolicy {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "install-rbac-"}}
	mustCreate(t, c, ns)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/web"}}},
	}
	mustCreate(t, c, pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: podIP, PodIPs: []corev1.PodIP{{IP: podIP}}}
	if err := c.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	http := intstr.FromString("http")
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web-http"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &http}}}},
		},
	}
	mustCreate(t, c, np)
	return np
}

// withoutVerbs returns rules with verbs removed for group/resource only: a
// rule naming more resources is split so the others keep every verb.
func withoutVerbs(t *testing.T, rules []rbacv1.PolicyRule, group, resource string, verbs []string) []rbacv1.PolicyRule {
	t.Helper()
	var out []rbacv1.PolicyRule
	found := false
	for _, r := range rules {
		if len(r.APIGroups) != 1 || r.APIGroups[0] != group || !contains(r.Resources, resource) {
			out = append(out, r)
			continue
		}
		found = true
		if others := remove(r.Resources, resource); len(others) > 0 {
			out = append(out, rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: others, ResourceNames: r.ResourceNames, Verbs: r.Verbs})
		}
		kept := r.Verbs
		for _, v := range verbs {
			if !contains(kept, v) {
				t.Fatalf("the ClusterRole grants no %s on %q/%s", v, group, resource)
			}
			kept = remove(kept, v)
		}
		if len(kept) > 0 {
			out = append(out, rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: []string{resource}, ResourceNames: r.ResourceNames, Verbs: kept})
		}
	}
	if !found {
		t.Fatalf("the ClusterRole has no rule for %q/%s", group, resource)
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func remove(l []string, s string) []string {
	var out []string
	for _, x := range l {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

func mustCreate(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

// agent is one running reconciler under test.
type agent struct {
	node   string
	syncer *recordingSyncer
	reg    *prometheus.Registry
}

// startAgent runs the agent's reconciler for node with the identity of
// user (impersonated, with the groups a ServiceAccount token carries)
// until the test ends. mutate, if given, changes the Options.
func startAgent(t *testing.T, admin *rest.Config, c client.Client, node, user string, mutate ...func(*controllers.Options)) *agent {
	t.Helper()
	mustCreate(t, c, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}})
	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: user,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNamespace, "system:authenticated"},
	}
	log := logs.logger().WithValues("agent", user)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 testScheme(t),
		Cache:                  controllers.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Logger:                 log,
	})
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{node: node, syncer: &recordingSyncer{}, reg: prometheus.NewRegistry()}
	opts := controllers.Options{
		NodeName:        node,
		Syncer:          a.syncer,
		Registerer:      a.reg,
		MinSyncInterval: 20 * time.Millisecond,
		Logger:          log,
	}
	for _, m := range mutate {
		m(&opts)
	}
	r, err := controllers.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		// An agent refused its watches ends with a cache-sync error; that
		// is the point of the negative cases, not a test failure.
		if err := <-done; err != nil {
			t.Logf("manager of %s stopped: %v", user, err)
		}
	})
	return a
}

// recordingSyncer is the fake dataplane: it keeps the last ruleset.
type recordingSyncer struct {
	mu    sync.Mutex
	last  *nft.Ruleset
	syncs int
}

func (s *recordingSyncer) Sync(_ context.Context, r *nft.Ruleset) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.syncs = r, s.syncs+1
	return nil
}

func (s *recordingSyncer) latest() *nft.Ruleset {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *recordingSyncer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncs
}

// waitFor polls cond until it returns "" or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %v for %s: %s", timeout, what, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logCapture keeps every log line of the agents and of client-go (klog).
type logCapture struct {
	mu    sync.Mutex
	lines []string
}

func (l *logCapture) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		l.lines = append(l.lines, prefix+" "+args)
		l.mu.Unlock()
		if os.Getenv("NFTPOLICY_TEST_LOG") != "" {
			fmt.Fprintln(os.Stderr, prefix, args)
		}
	}, funcr.Options{Verbosity: 1})
}

// forbidden returns the logged errors in which the API server refused
// user. The API server names the user in the message, which tells apart
// agents running side by side.
func (l *logCapture) forbidden(user string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.lines {
		if strings.Contains(s, "forbidden") && (strings.Contains(s, user+`\"`) || strings.Contains(s, user+`"`)) {
			out = append(out, s)
		}
	}
	return out
}

package controllers

// IP plan: nodes node-a 192.168.10.1 (+ fd00:10::1), node-b 192.168.10.2;
// ClusterNetworkPolicy networks 10.99.0.0/16. These tests run Reconcile
// directly: a fake client holds nodes, and a store the test fills stands
// for the published ClusterNetworkPolicy store (cnpWatcher runs against the
// real API server in cnp_envtest_test.go).

import (
	"context"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
)

func testNode(name string, labels map[string]string, addrs ...corev1.NodeAddress) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Status: corev1.NodeStatus{Addresses: addrs}}
}

func internalIP(ip string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip}
}

// testCNP is a trimmed ClusterNetworkPolicy, as the store holds them.
func testCNP(name string, tier policyv1beta1.Tier, priority int32) *policyv1beta1.ClusterNetworkPolicy {
	p, _ := TrimClusterNetworkPolicy(&policyv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Spec: policyv1beta1.ClusterNetworkPolicySpec{
			Tier: tier, Priority: priority,
			Subject: policyv1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
			Egress: []policyv1beta1.ClusterNetworkPolicyEgressRule{{
				Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
				To:     []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []policyv1beta1.CIDR{"10.99.0.0/16"}}},
			}},
		},
	})
	return p.(*policyv1beta1.ClusterNetworkPolicy)
}

// publishCNPs makes store the Reconciler's published ClusterNetworkPolicy
// store (nil: the CRD is not served).
func (a *fakeAgent) publishCNPs(store toolscache.Store) {
	if a.r.cnp == nil {
		a.r.cnp = &cnpWatcher{r: a.r}
	}
	a.r.cnp.mu.Lock()
	a.r.cnp.store = store
	a.r.cnp.mu.Unlock()
}

func cnpNames(m map[string]*policyv1beta1.ClusterNetworkPolicy) map[string]int32 {
	out := map[string]int32{}
	for name, p := range m {
		out[name] = p.Spec.Priority
	}
	return out
}

// TestReconcile_ClusterNetworkPoliciesAndNodes: the full load, then each
// recorded change, reaches the NodeCompiler; unpublishing the store (the CRD
// went away) takes every ClusterNetworkPolicy out.
func TestReconcile_ClusterNetworkPoliciesAndNodes(t *testing.T) {
	objs := []client.Object{
		testNode("node-a", map[string]string{"zone": "a"}, internalIP("192.168.10.1"), internalIP("fd00:10::1"), corev1.NodeAddress{Type: corev1.NodeHostName, Address: "node-a"}),
		testNode("node-b", nil, internalIP("192.168.10.2")),
	}
	a := newFakeAgent(t, objs, Options{})
	store := toolscache.NewStore(toolscache.MetaNamespaceKeyFunc)
	_ = store.Add(testCNP("deny-a", policyv1beta1.AdminTier, 10))
	_ = store.Add(testCNP("deny-b", policyv1beta1.BaselineTier, 5))
	a.publishCNPs(store)

	a.reconcile(t) // the first reconcile loads everything
	if diff := cmp.Diff(map[string]int32{"deny-a": 10, "deny-b": 5}, cnpNames(a.r.handedCNPs())); diff != "" {
		t.Errorf("full load: ClusterNetworkPolicies (-want +got):\n%s", diff)
	}
	wantNodes := map[string]policy.Node{
		"node-a": {Name: "node-a", Labels: map[string]string{"zone": "a"}, Addresses: []netip.Addr{netip.MustParseAddr("192.168.10.1"), netip.MustParseAddr("fd00:10::1")}},
		"node-b": {Name: "node-b", Addresses: []netip.Addr{netip.MustParseAddr("192.168.10.2")}},
	}
	if diff := cmp.Diff(wantNodes, a.r.handedNodes(), addrCmp); diff != "" {
		t.Errorf("full load: nodes (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		tier string
		want float64
	}{{tierAdmin, 1}, {tierBaseline, 1}} {
		if got := metricValue(t, a.reg, "nftpolicy_cluster_network_policies", "tier="+tc.tier); got != tc.want {
			t.Errorf("cluster_network_policies{tier=%s} = %v, want %v", tc.tier, got, tc.want)
		}
	}

	// A changed policy, a new one, a deleted one, and one that changed
	// without an event (must not be read).
	_ = store.Update(testCNP("deny-a", policyv1beta1.AdminTier, 20))
	_ = store.Add(testCNP("deny-c", policyv1beta1.AdminTier, 30))
	_ = store.Delete(testCNP("deny-b", policyv1beta1.BaselineTier, 5))
	a.r.changes.cnp("deny-a")
	a.r.changes.cnp("deny-b")
	a.r.changes.cnp("deny-c")
	// A node relabelled and re-addressed, one deleted, one unknown.
	ctx := context.Background()
	nodeA := &corev1.Node{}
	if err := a.client.Get(ctx, client.ObjectKey{Name: "node-a"}, nodeA); err != nil {
		t.Fatal(err)
	}
	nodeA.Labels = map[string]string{"zone": "b"}
	if err := a.client.Update(ctx, nodeA); err != nil {
		t.Fatal(err)
	}
	nodeA.Status.Addresses = []corev1.NodeAddress{internalIP("192.168.10.11")}
	if err := a.client.Status().Update(ctx, nodeA); err != nil {
		t.Fatal(err)
	}
	if err := a.client.Delete(ctx, testNode("node-b", nil)); err != nil {
		t.Fatal(err)
	}
	a.r.changes.node("node-a")
	a.r.changes.node("node-b")
	a.r.changes.node("node-gone")
	a.reconcile(t)
	if diff := cmp.Diff(map[string]int32{"deny-a": 20, "deny-c": 30}, cnpNames(a.r.handedCNPs())); diff != "" {
		t.Errorf("after changes: ClusterNetworkPolicies (-want +got):\n%s", diff)
	}
	wantNodes = map[string]policy.Node{
		"node-a": {Name: "node-a", Labels: map[string]string{"zone": "b"}, Addresses: []netip.Addr{netip.MustParseAddr("192.168.10.11")}},
	}
	if diff := cmp.Diff(wantNodes, a.r.handedNodes(), addrCmp); diff != "" {
		t.Errorf("after changes: nodes (-want +got):\n%s", diff)
	}
	if got := metricValue(t, a.reg, "nftpolicy_cluster_network_policies", "tier="+tierAdmin); got != 2 {
		t.Errorf("cluster_network_policies{tier=admin} = %v, want 2", got)
	}

	// The CRD goes: the watcher unpublishes and asks for every policy.
	a.publishCNPs(nil)
	a.r.changes.everyCNP()
	a.reconcile(t)
	if got := a.r.handedCNPs(); len(got) != 0 {
		t.Errorf("after the store went: %d ClusterNetworkPolicies in the NodeCompiler, want none", len(got))
	}
	if got := metricValue(t, a.reg, "nftpolicy_cluster_network_policies", "tier="+tierAdmin); got != 0 {
		t.Errorf("cluster_network_policies{tier=admin} = %v, want 0", got)
	}

	// It comes back with one policy.
	store = toolscache.NewStore(toolscache.MetaNamespaceKeyFunc)
	_ = store.Add(testCNP("deny-d", policyv1beta1.BaselineTier, 1))
	a.publishCNPs(store)
	a.r.changes.everyCNP()
	a.reconcile(t)
	if diff := cmp.Diff(map[string]int32{"deny-d": 1}, cnpNames(a.r.handedCNPs())); diff != "" {
		t.Errorf("store back: ClusterNetworkPolicies (-want +got):\n%s", diff)
	}
}

// TestReconcile_NoClusterNetworkPolicyStore: without a watcher (or CRD),
// reconciles work and hold no ClusterNetworkPolicy.
func TestReconcile_NoClusterNetworkPolicyStore(t *testing.T) {
	a := newFakeAgent(t, []client.Object{runningPod("shop", "web", "node-a", map[string]string{"app": "web"}, "10.0.1.2"), denyWeb("deny")}, Options{})
	a.reconcile(t)
	a.wantWebIsolated(t, true)
	a.r.changes.cnp("anything")
	a.r.changes.everyCNP()
	a.reconcile(t)
	if got := a.r.handedCNPs(); len(got) != 0 {
		t.Errorf("%d ClusterNetworkPolicies, want none", len(got))
	}
}

// TestReconcile_ClusterNetworkPolicyWarningEvents: a warning with no
// namespace is about the ClusterNetworkPolicy of that name; it gets the
// same Events as a NetworkPolicy, once per change. The compiler is a
// stand-in whose warnings the test scripts: the temporary policy store of
// this branch compiles nothing for ClusterNetworkPolicies.
func TestReconcile_ClusterNetworkPolicyWarningEvents(t *testing.T) {
	var warnings []policy.Warning
	compile := func(*policy.NodeCompiler) (*nft.Ruleset, []policy.Warning) { return nft.NewSkeleton(), warnings }
	rec := &fakeRecorder{}
	a := newFakeAgent(t, []client.Object{denyWeb("np")}, Options{Compile: compile, Recorder: rec})
	store := toolscache.NewStore(toolscache.MetaNamespaceKeyFunc)
	_ = store.Add(testCNP("dns", policyv1beta1.AdminTier, 1))
	a.publishCNPs(store)
	domain := policy.Warning{Policy: "dns", Message: `egress rule 0: domainNames peers are not enforced`}
	steps := []struct {
		name     string
		warnings []policy.Warning
		want     []recordedEvent
	}{
		{name: "none"},
		{
			name:     "domainNames warning",
			warnings: []policy.Warning{domain},
			want:     []recordedEvent{{"/dns", "Warning", "PolicyNotEnforced", "node node-a: " + domain.Message}},
		},
		{name: "same again: no event", warnings: []policy.Warning{domain}},
		{
			name:     "a NetworkPolicy of the same name is another policy",
			warnings: []policy.Warning{domain, {Namespace: "shop", Policy: "np", Message: "x"}},
			want:     []recordedEvent{{"shop/np", "Warning", "PolicyNotEnforced", "node node-a: x"}},
		},
		{
			name:     "fixed",
			warnings: []policy.Warning{{Namespace: "shop", Policy: "np", Message: "x"}},
			want:     []recordedEvent{{"/dns", "Normal", "PolicyEnforced", "node node-a: every part of the policy is enforced"}},
		},
		{name: "unknown ClusterNetworkPolicy: logged only", warnings: []policy.Warning{{Namespace: "shop", Policy: "np", Message: "x"}, {Policy: "gone", Message: "y"}}},
	}
	for _, st := range steps {
		warnings = st.warnings
		a.reconcile(t)
		if diff := cmp.Diff(st.want, rec.take()); diff != "" {
			t.Errorf("%s: events (-want +got):\n%s", st.name, diff)
		}
	}
}

func TestNodeOf(t *testing.T) {
	n := testNode("n1", map[string]string{"a": "b"},
		internalIP("192.168.10.2"),
		corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.7"},
		corev1.NodeAddress{Type: corev1.NodeHostName, Address: "n1.example"},
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "n1.internal"},
		internalIP("::ffff:192.168.10.1"), // IPv4-mapped: the IPv4 address
		internalIP("192.168.10.2"),        // twice
		internalIP("not-an-ip"),
		internalIP("fd00:10::2"),
	)
	want := policy.Node{Name: "n1", Labels: map[string]string{"a": "b"}, Addresses: []netip.Addr{
		netip.MustParseAddr("192.168.10.1"), netip.MustParseAddr("192.168.10.2"), netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("fd00:10::2"),
	}}
	if diff := cmp.Diff(want, nodeOf(n), addrCmp); diff != "" {
		t.Errorf("nodeOf (-want +got):\n%s", diff)
	}
}

func TestCRDServes(t *testing.T) {
	crd := func(mut func(*apiextensionsv1.CustomResourceDefinition)) *apiextensionsv1.CustomResourceDefinition {
		c := &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: CNPCRDName},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{Versions: []apiextensionsv1.CustomResourceDefinitionVersion{
				{Name: "v1alpha2", Served: true}, {Name: "v1beta1", Served: true, Storage: true},
			}},
			Status: apiextensionsv1.CustomResourceDefinitionStatus{Conditions: []apiextensionsv1.CustomResourceDefinitionCondition{
				{Type: apiextensionsv1.NamesAccepted, Status: apiextensionsv1.ConditionTrue},
				{Type: apiextensionsv1.Established, Status: apiextensionsv1.ConditionTrue},
			}},
		}
		if mut != nil {
			mut(c)
		}
		return c
	}
	tests := []struct {
		name string
		crd  *apiextensionsv1.CustomResourceDefinition
		want bool
	}{
		{name: "v0.3.0, established", crd: crd(nil), want: true},
		{name: "not established yet", crd: crd(func(c *apiextensionsv1.CustomResourceDefinition) {
			c.Status.Conditions[1].Status = apiextensionsv1.ConditionFalse
		})},
		{name: "being deleted", crd: crd(func(c *apiextensionsv1.CustomResourceDefinition) { c.DeletionTimestamp = &metav1.Time{} })},
		{name: "v1beta1 not served", crd: crd(func(c *apiextensionsv1.CustomResourceDefinition) { c.Spec.Versions[1].Served = false })},
		{name: "older bundle without v1beta1", crd: crd(func(c *apiextensionsv1.CustomResourceDefinition) { c.Spec.Versions = c.Spec.Versions[:1] })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, why := crdServes(tc.crd)
			if got != tc.want || (!got && why == "") {
				t.Errorf("crdServes = %v, %q; want %v (and a reason when false)", got, why, tc.want)
			}
		})
	}
}

// TestCNPEvents: what the ClusterNetworkPolicy handler records.
func TestCNPEvents(t *testing.T) {
	p := testCNP("p", policyv1beta1.AdminTier, 1)
	sameRV := p.DeepCopy()
	statusOnly := p.DeepCopy() // the transform drops status: equal but for resourceVersion
	statusOnly.ResourceVersion = "2"
	moved := p.DeepCopy()
	moved.ResourceVersion, moved.Spec.Priority = "3", 2
	tests := []struct {
		name  string
		event func(h *cnpEvents)
		want  changeBatch
	}{
		{name: "add", event: func(h *cnpEvents) { h.OnAdd(p, false) }, want: changeBatch{cnps: set("p")}},
		{name: "resync", event: func(h *cnpEvents) { h.OnUpdate(p, sameRV) }},
		{name: "status only", event: func(h *cnpEvents) { h.OnUpdate(p, statusOnly) }},
		{name: "spec", event: func(h *cnpEvents) { h.OnUpdate(p, moved) }, want: changeBatch{cnps: set("p")}},
		{name: "delete", event: func(h *cnpEvents) { h.OnDelete(p) }, want: changeBatch{cnps: set("p")}},
		{name: "tombstone", event: func(h *cnpEvents) { h.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "p", Obj: p}) }, want: changeBatch{cnps: set("p")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newFakeAgent(t, nil, Options{})
			a.r.changes.take() // past the first full load
			w := &cnpWatcher{r: a.r, q: a.queue}
			tc.event(&cnpEvents{w: w})
			if diff := cmp.Diff(tc.want, a.r.changes.take(), cmp.AllowUnexported(changeBatch{}), cmpEmptyMaps); diff != "" {
				t.Errorf("recorded (-want +got):\n%s", diff)
			}
		})
	}
}

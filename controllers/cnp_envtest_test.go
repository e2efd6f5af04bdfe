package controllers

// IP plan: pods as in envtest_test.go (10.1.0.0/16, one fresh address
// each); node addresses 192.168.100.0/24 (.50 and up here); the
// ClusterNetworkPolicies deny egress to 10.99.0.0/16, which no pod uses.
//
// These tests install and delete the ClusterNetworkPolicy CRD (the
// experimental channel of the network-policy-api module that go.mod
// requires, read from the module cache) in the package's one API server.
// The package's tests do not run in parallel, and each of these leaves the
// CRD deleted, so the other tests see a cluster without it.

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/internal/testenv"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
)

// withoutCNPCRD makes sure the CRD is not installed now and after the test.
func withoutCNPCRD(t *testing.T) {
	t.Helper()
	c := adminClient(t)
	testenv.UninstallCNPCRD(t, c)
	t.Cleanup(func() { testenv.UninstallCNPCRD(t, adminClient(t)) })
}

// installCNPCRD installs the experimental CRD and returns a new client,
// whose REST mapper learns the new kind from discovery on first use.
func installCNPCRD(t *testing.T) client.Client {
	t.Helper()
	testenv.InstallCNPCRD(t, adminClient(t), "experimental")
	return adminClient(t)
}

func adminClient(t *testing.T) client.Client {
	t.Helper()
	c, err := client.New(apiServer(t), client.Options{Scheme: testScheme(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// denyEgressCNP selects every namespace and denies egress to 10.99.0.0/16.
func denyEgressCNP(name string, tier policyv1beta1.Tier, priority int32) *policyv1beta1.ClusterNetworkPolicy {
	return &policyv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: policyv1beta1.ClusterNetworkPolicySpec{
			Tier: tier, Priority: priority,
			Subject: policyv1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
			Egress: []policyv1beta1.ClusterNetworkPolicyEgressRule{{
				Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
				To:     []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []policyv1beta1.CIDR{"10.99.0.0/16"}}},
			}},
		},
	}
}

// wantCNPs waits until the NodeCompiler holds exactly these ClusterNetworkPolicies
// (name → priority).
func (h *harness) wantCNPs(want map[string]int32) {
	h.t.Helper()
	eventually(h.t, waitTimeout, h.syncer.synced, fmt.Sprintf("ClusterNetworkPolicies %v in the NodeCompiler", want), func() string {
		got := cnpNames(h.r.handedCNPs())
		if len(got) != len(want) {
			return fmt.Sprintf("have %v", got)
		}
		for name, prio := range want {
			if p, ok := got[name]; !ok || p != prio {
				return fmt.Sprintf("have %v", got)
			}
		}
		return ""
	})
}

// wantWatched waits until nftpolicy_cluster_network_policy_crd_watched is want.
func (h *harness) wantWatched(want float64) {
	h.t.Helper()
	eventually(h.t, waitTimeout, nil, fmt.Sprintf("cluster_network_policy_crd_watched = %v", want), func() string {
		if got := metricValue(h.t, h.reg, "nftpolicy_cluster_network_policy_crd_watched"); got != want {
			return fmt.Sprintf("%v", got)
		}
		return ""
	})
}

// TestAgent_ClusterNetworkPolicyCRDLater: the agent starts without the
// CRD and enforces NetworkPolicies; the CRD appears and its objects reach
// the NodeCompiler without a restart, with each update and delete, and so do
// Node label and address changes; the CRD goes and the agent carries on
// with NetworkPolicies only, then picks it up once more.
func TestAgent_ClusterNetworkPolicyCRDLater(t *testing.T) {
	withoutCNPCRD(t)
	h := startAgent(t, nil)
	h.wantWatched(0)
	ns := h.namespace(nil).Name
	a := h.pod(ns, "a", map[string]string{"app": "a"})
	h.create(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "np"}, Spec: networkingv1.NetworkPolicySpec{PodSelector: selectApp("a")}})
	h.wantIsolated(nft.Ingress, a, true)

	c := installCNPCRD(t)
	h.wantWatched(1)
	cnp := denyEgressCNP("later", policyv1beta1.AdminTier, 10)
	if err := c.Create(context.Background(), cnp); err != nil {
		t.Fatal(err)
	}
	h.wantCNPs(map[string]int32{"later": 10})
	// The gauge is set after the compile of the reconcile that handed the
	// policy over, so it may trail wantCNPs by a moment.
	eventually(t, waitTimeout, nil, "cluster_network_policies{tier=admin} = 1", func() string {
		if got := metricValue(t, h.reg, "nftpolicy_cluster_network_policies", "tier="+tierAdmin); got != 1 {
			return fmt.Sprintf("%v", got)
		}
		return ""
	})

	cnp.Spec.Priority = 20
	if err := c.Update(context.Background(), cnp); err != nil {
		t.Fatal(err)
	}
	h.wantCNPs(map[string]int32{"later": 20})
	baseline := denyEgressCNP("baseline", policyv1beta1.BaselineTier, 5)
	if err := c.Create(context.Background(), baseline); err != nil {
		t.Fatal(err)
	}
	h.wantCNPs(map[string]int32{"later": 20, "baseline": 5})
	if err := c.Delete(context.Background(), cnp); err != nil {
		t.Fatal(err)
	}
	h.wantCNPs(map[string]int32{"baseline": 5})

	// The agent's own Node (and any other) reaches the NodeCompiler with its
	// labels and addresses.
	node := &corev1.Node{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: h.node}, node); err != nil {
		t.Fatal(err)
	}
	node.Labels = map[string]string{"zone": "z1"}
	h.update(node)
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.100.50"}, {Type: corev1.NodeHostName, Address: h.node}}
	if err := c.Status().Update(context.Background(), node); err != nil {
		t.Fatal(err)
	}
	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: h.node + "-peer", Labels: map[string]string{"zone": "z2"}}}
	h.create(other)
	eventually(t, waitTimeout, h.syncer.synced, "the Nodes' labels and addresses in the NodeCompiler", func() string {
		nodes := h.r.handedNodes()
		own, peer := nodes[h.node], nodes[other.Name]
		if own.Labels["zone"] != "z1" || !slices.Equal(own.Addresses, []netip.Addr{netip.MustParseAddr("192.168.100.50")}) || peer.Labels["zone"] != "z2" {
			return fmt.Sprintf("own %+v, peer %+v", own, peer)
		}
		return ""
	})
	h.delete(other)
	eventually(t, waitTimeout, h.syncer.synced, "the deleted Node gone from the NodeCompiler", func() string {
		if _, ok := h.r.handedNodes()[other.Name]; ok {
			return "still there"
		}
		return ""
	})

	// The CRD goes (with its objects): no ClusterNetworkPolicy is left, the
	// agent keeps running and enforcing NetworkPolicies.
	testenv.UninstallCNPCRD(t, c)
	h.wantWatched(0)
	h.wantCNPs(map[string]int32{})
	h.create(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "egress"},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: selectApp("a"), PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
	})
	h.wantIsolated(nft.Egress, a, true)
	if err := h.r.ReadyzCheck(nil); err != nil {
		t.Errorf("ReadyzCheck after the CRD went: %v", err)
	}

	// And comes back.
	c = installCNPCRD(t)
	h.wantWatched(1)
	if err := c.Create(context.Background(), denyEgressCNP("again", policyv1beta1.BaselineTier, 7)); err != nil {
		t.Fatal(err)
	}
	h.wantCNPs(map[string]int32{"again": 7})
}

// TestAgent_ClusterNetworkPolicyAtStart: with the CRD served when the agent
// starts, its first sync already includes every ClusterNetworkPolicy (a
// restarted agent must not sync a table without them).
func TestAgent_ClusterNetworkPolicyAtStart(t *testing.T) {
	withoutCNPCRD(t)
	c := installCNPCRD(t)
	for i := range 3 {
		if err := c.Create(context.Background(), denyEgressCNP(fmt.Sprintf("early-%d", i), policyv1beta1.AdminTier, int32(i))); err != nil {
			t.Fatal(err)
		}
	}
	// The compiler stand-in counts what the NodeCompiler holds at the first
	// compile, and then compiles as usual.
	var self atomic.Pointer[Reconciler]
	atFirst := make(chan int, 1)
	h := startAgentHooked(t, func(o *Options) {
		o.Compile = func(c *policy.NodeCompiler) (*nft.Ruleset, []policy.Warning) {
			select {
			case atFirst <- len(self.Load().handedCNPs()):
			default:
			}
			return c.Compile()
		}
	}, self.Store)
	select {
	case n := <-atFirst:
		if n != 3 {
			t.Errorf("the first compile saw %d ClusterNetworkPolicies, want 3", n)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no compile")
	}
	h.wantCNPs(map[string]int32{"early-0": 0, "early-1": 1, "early-2": 2})
	h.wantWatched(1)
}

// TestAgent_ClusterNetworkPolicyWarningEvent: a ClusterNetworkPolicy with a
// domainNames peer (which nftables cannot match) gets one PolicyNotEnforced
// Warning Event, in namespace default as for every cluster-scoped object,
// and no more while the warning stays. The compiler is a stand-in that
// warns about domainNames peers as the ClusterNetworkPolicy compiler is to
// (the temporary policy store of this branch compiles nothing for them);
// the Event path from there on is the agent's own, against the API server.
func TestAgent_ClusterNetworkPolicyWarningEvent(t *testing.T) {
	withoutCNPCRD(t)
	c := installCNPCRD(t)
	// The compiler itself warns about domainNames peers.
	h := startAgent(t, nil)
	ns := h.namespace(nil).Name
	cnp := &policyv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "to-example"},
		Spec: policyv1beta1.ClusterNetworkPolicySpec{
			Tier: policyv1beta1.AdminTier, Priority: 3,
			Subject: policyv1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
			Egress: []policyv1beta1.ClusterNetworkPolicyEgressRule{{
				Name:   "example",
				Action: policyv1beta1.ClusterNetworkPolicyRuleActionAccept,
				To:     []policyv1beta1.ClusterNetworkPolicyEgressPeer{{DomainNames: []policyv1beta1.DomainName{"www.example.com"}}},
			}},
		},
	}
	if err := c.Create(context.Background(), cnp); err != nil {
		t.Fatal(err)
	}
	events := func() []eventsv1.Event {
		var list eventsv1.EventList
		if err := h.c.List(context.Background(), &list, client.InNamespace(metav1.NamespaceDefault)); err != nil {
			t.Fatal(err)
		}
		var out []eventsv1.Event
		for _, e := range list.Items {
			if e.Regarding.Kind == cnpKind && e.Regarding.Name == cnp.Name && e.Reason == ReasonPolicyNotEnforced &&
				e.ReportingController == ControllerName && strings.HasPrefix(e.Note, "node "+h.node+": ") &&
				strings.Contains(e.Note, "domainNames peers are not supported") {
				out = append(out, e)
			}
		}
		return out
	}
	eventually(t, waitTimeout, nil, "a PolicyNotEnforced Warning Event on the ClusterNetworkPolicy", func() string {
		evs := events()
		if len(evs) == 0 {
			return "no event"
		}
		e := evs[0]
		if e.Type != corev1.EventTypeWarning || e.Regarding.UID != cnp.UID || e.Regarding.APIVersion != policyv1beta1.GroupVersion.String() || e.Regarding.Namespace != "" {
			return fmt.Sprintf("event %+v", e)
		}
		return ""
	})
	h.settle(ns)
	h.settle(ns)
	if evs := events(); len(evs) != 1 || evs[0].Series != nil {
		t.Errorf("after two more reconciles: %d events, want exactly 1 without series", len(evs))
	}
	if got := metricValue(t, h.reg, "nftpolicy_policy_warnings"); got < 1 {
		t.Errorf("policy_warnings = %v, want >= 1", got)
	}
}

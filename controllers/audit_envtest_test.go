package controllers

// IP plan: pods get 10.1.x.y from nextPodIP on the harness's node; nothing
// is routed (the syncer records rulesets).

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
)

// chainMode says how pod key's chain for dir ends in the latest ruleset:
// "drop" (enforcing), "audit" (an audit log rule, no drop) or "none".
func chainMode(s *recordingSyncer, dir nft.Direction, key string) string {
	r := s.latest()
	if r == nil {
		return "none"
	}
	c := r.Chains[nft.NamesFor(dir, key).Chain]
	if c == nil || len(c.Rules) == 0 {
		return "none"
	}
	last := c.Rules[len(c.Rules)-1]
	switch {
	case last.Verdict.Kind == nft.VerdictDrop:
		return "drop"
	case last.Log != nil && last.Log.Prefix == nft.AuditPrefix(c.Name):
		return "audit"
	}
	return fmt.Sprintf("unknown tail %s", last)
}

func (h *harness) wantChainMode(dir nft.Direction, o client.Object, want string) {
	h.t.Helper()
	eventually(h.t, waitTimeout, h.syncer.synced, fmt.Sprintf("%s %v chain %s", key(o), dir, want), func() string {
		if got := chainMode(h.syncer, dir, key(o)); got != want {
			return "chain ends in " + got
		}
		return ""
	})
}

var testDenyLog = &nft.DenyLog{Group: 4200, Rate: 10, Burst: 20}

// The annotation comes through the cache transform, and adding or
// removing it alone (no spec change) switches the pod's chain between
// audit and enforcement.
func TestAgent_AuditAnnotation(t *testing.T) {
	h := startAgent(t, func(o *Options) { o.DenyLog = testDenyLog })
	ns := h.namespace(nil).Name
	a := h.pod(ns, "a", map[string]string{"app": "a"})
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "staged-deny",
			Annotations: map[string]string{policy.EnforcementAnnotation: policy.EnforcementAudit}},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: selectApp("a")},
	}
	h.create(np)
	h.wantChainMode(nft.Ingress, a, "audit")

	delete(np.Annotations, policy.EnforcementAnnotation)
	h.update(np)
	h.wantChainMode(nft.Ingress, a, "drop")

	np.Annotations = map[string]string{policy.EnforcementAnnotation: policy.EnforcementAudit}
	h.update(np)
	h.wantChainMode(nft.Ingress, a, "audit")
}

// With AuditAll every NetworkPolicy audits, annotated or not.
func TestAgent_AuditAll(t *testing.T) {
	h := startAgent(t, func(o *Options) { o.DenyLog, o.AuditAll = testDenyLog, true })
	ns := h.namespace(nil).Name
	a := h.pod(ns, "a", map[string]string{"app": "a"})
	h.create(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deny"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: selectApp("a"),
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}},
	})
	h.wantChainMode(nft.Ingress, a, "audit")
	h.wantChainMode(nft.Egress, a, "audit")
}

// tierDenyMode says how the elements of the Admin tier maps that pod
// key's tier chain for dir looks up end, in the latest ruleset: "audit"
// (through an audit chain), "deny" (through a deny chain), "mixed" or
// "none" (no element, or no tier chain).
func tierDenyMode(s *recordingSyncer, dir nft.Direction, key string) string {
	r := s.latest()
	if r == nil {
		return "none"
	}
	c := r.Chains[nft.NamesFor(dir, key).Tiers]
	if c == nil {
		return "none"
	}
	modes := map[string]bool{}
	for _, rule := range c.Rules {
		if rule.VerdictMap == nil || !strings.HasPrefix(rule.VerdictMap.Set, nft.TierAdmin.String()+"-") {
			continue
		}
		for _, e := range r.Sets[rule.VerdictMap.Set].Elements {
			switch target := e.Verdict.Target(); {
			case strings.HasPrefix(target, "audit-"):
				modes["audit"] = true
			case strings.HasPrefix(target, "deny-"):
				modes["deny"] = true
			default:
				modes[e.Verdict.String()] = true
			}
		}
	}
	switch len(modes) {
	case 0:
		return "none"
	case 1:
		for m := range modes {
			return m
		}
	}
	return fmt.Sprintf("mixed %v", modes)
}

// The annotation on a ClusterNetworkPolicy, added and removed through the
// API server, switches its Deny between the audit chain and the deny
// chain, and earns it no PolicyNotEnforced warning.
func TestAgent_ClusterNetworkPolicyAuditAnnotation(t *testing.T) {
	withoutCNPCRD(t)
	c := installCNPCRD(t)
	h := startAgent(t, func(o *Options) { o.DenyLog = testDenyLog })
	ns := h.namespace(nil).Name
	a := h.pod(ns, "a", map[string]string{"app": "a"})
	cnp := denyEgressCNP("staged-deny", policyv1beta1.AdminTier, 10)
	cnp.Spec.Subject.Namespaces = &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
	cnp.Annotations = map[string]string{policy.EnforcementAnnotation: policy.EnforcementAudit}
	ctx := context.Background()
	if err := c.Create(ctx, cnp); err != nil {
		t.Fatal(err)
	}
	wantMode := func(want string) {
		t.Helper()
		eventually(t, waitTimeout, h.syncer.synced, fmt.Sprintf("%s egress Admin Deny through %s chains", key(a), want), func() string {
			if got := tierDenyMode(h.syncer, nft.Egress, key(a)); got != want {
				return got
			}
			return ""
		})
	}
	wantMode("audit")

	delete(cnp.Annotations, policy.EnforcementAnnotation)
	if err := c.Update(ctx, cnp); err != nil {
		t.Fatal(err)
	}
	wantMode("deny")

	cnp.Annotations = map[string]string{policy.EnforcementAnnotation: policy.EnforcementAudit}
	if err := c.Update(ctx, cnp); err != nil {
		t.Fatal(err)
	}
	wantMode("audit")

	h.settle(ns)
	var list eventsv1.EventList
	if err := h.c.List(ctx, &list, client.InNamespace(metav1.NamespaceDefault)); err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.Regarding.Kind == cnpKind && e.Regarding.Name == cnp.Name && e.Reason == ReasonPolicyNotEnforced {
			t.Errorf("warning on the audited ClusterNetworkPolicy: %s", e.Note)
		}
	}
}

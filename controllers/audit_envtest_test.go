package controllers

// IP plan: pods get 10.1.x.y from nextPodIP on the harness's node; nothing
// is routed (the syncer records rulesets).

import (
	"fmt"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

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

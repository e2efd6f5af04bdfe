package policy

import (
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/nft"
)

func TestIsolatingPolicies(t *testing.T) {
	pod := &Pod{Namespace: "x", Name: "a", Labels: map[string]string{"app": "a"}}
	np := func(ns, name string, sel map[string]string, types []networkingv1.PolicyType, egress bool) *networkingv1.NetworkPolicy {
		p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		p.Spec.PodSelector = metav1.LabelSelector{MatchLabels: sel}
		p.Spec.PolicyTypes = types
		if egress {
			p.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}}
		}
		return p
	}
	egress := []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	nps := []*networkingv1.NetworkPolicy{
		np("x", "all-ingress", nil, nil, false),                               // defaulted: Ingress
		np("x", "a-both-defaulted", map[string]string{"app": "a"}, nil, true), // defaulted: Ingress, Egress
		np("x", "b-only", map[string]string{"app": "b"}, nil, false),
		np("x", "egress-only", nil, egress, false),
		np("y", "other-namespace", nil, nil, false),
	}
	for _, tc := range []struct {
		dir  nft.Direction
		want []string
	}{
		{nft.Ingress, []string{"all-ingress", "a-both-defaulted"}},
		{nft.Egress, []string{"a-both-defaulted", "egress-only"}},
	} {
		if got := IsolatingPolicies(pod, tc.dir, nps); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.dir, got, tc.want)
		}
	}
}

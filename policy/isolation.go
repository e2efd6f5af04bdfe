package policy

import (
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftpolicy/nftpolicy/nft"
)

// IsolatingPolicies returns the names of the NetworkPolicies among nps
// that isolate pod in direction dir: those of its namespace that select it
// and have dir among their (defaulted) policy types. They are the policies
// whose allow-lists a dropped packet did not match, in the order given.
func IsolatingPolicies(pod *Pod, dir nft.Direction, nps []*networkingv1.NetworkPolicy) []string {
	want := networkingv1.PolicyTypeIngress
	if dir == nft.Egress {
		want = networkingv1.PolicyTypeEgress
	}
	var names []string
	for _, np := range nps {
		if np.Namespace == pod.Namespace && evalHasPolicyType(np, want) && evalSelectorMatches(&np.Spec.PodSelector, pod.Labels) {
			names = append(names, np.Name)
		}
	}
	return names
}

package synth

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// BackgroundPolicyName is the name of background policy i: bp-00042.
// Names sort in index order up to bp-99999.
func BackgroundPolicyName(i int) string { return fmt.Sprintf("bp-%05d", i) }

// BackgroundPolicy is NetworkPolicy number i of the cluster benchmarks'
// background (figure 1's configurations with policies, figure 2's
// background) and of the compiler benchmark that models them. Every one
// selects the same pods of namespace, those labelled tier=bench, and
// admits on TCP port the pods labelled peer=<peer> and one address of its
// own outside the cluster (BackgroundBlock(i)): n of them put n elements
// into the allow-list of the pods they select, and with a peer no pod
// carries, they admit no pod.
func BackgroundPolicy(namespace string, port int32, i int, peer string) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	p := intstr.FromInt32(port)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: BackgroundPolicyName(i), Namespace: namespace},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"tier": "bench"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}},
				From: []networkingv1.NetworkPolicyPeer{
					{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"peer": peer}}},
					{IPBlock: &networkingv1.IPBlock{CIDR: BackgroundBlock(i).String()}},
				},
			}},
		},
	}
}

// BackgroundBlock is background policy i's own address, as a /32: every
// other address of 172.16.0.0/12 from 172.16.0.2 on, so that no two are
// adjacent and merge into one interval: each is its own set element.
// Indexes up to 524,286 stay inside the /12.
func BackgroundBlock(i int) netip.Prefix {
	n := 2 * (i + 1)
	a := netip.AddrFrom4([4]byte{172, byte(16 + n>>16), byte(n >> 8), byte(n)})
	return netip.PrefixFrom(a, 32)
}

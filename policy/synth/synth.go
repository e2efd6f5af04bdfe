// Package synth generates large synthetic clusters for benchmarks: many
// namespaces and pods, many policies, one node with a realistic pod count.
// It is deterministic so the same figures can be compared across runs.
package synth

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftpolicy/nftpolicy/policy"
)

// Shape sizes a synthetic cluster.
type Shape struct {
	Pods        int // in the whole cluster
	Namespaces  int
	Policies    int // spread over the namespaces, two kinds alternating
	LocalPods   int // pods on the compiled node ("node-0")
	PodsPerNode int // pods per remote node; 110 is the kubelet default
	// ClusterNetworkPolicies is how many of ClusterNetworkPolicy(0), (1),
	// ... the cluster has; with any, Snapshot also holds Nodes(s), which
	// their nodes peers select (without, it holds no Node, as before the
	// count existed).
	ClusterNetworkPolicies int
}

// Scale150k is the control-plane scale target of the benchmarks.
var Scale150k = Shape{Pods: 150_000, Namespaces: 5_000, Policies: 10_000, LocalPods: 110, PodsPerNode: 110}

// LocalNode is the node Snapshot compiles for.
const LocalNode = "node-0"

// Snapshot builds the cluster. Pod i lives in namespace i%Namespaces; the
// first LocalPods pods are on LocalNode, the rest fill remote nodes of
// PodsPerNode each, every node owning a /24 of 10.0.0.0/8 like a podCIDR.
// Half the policies admit a "frontend" role on TCP 8080 and a named port
// from the same namespace; the other half admit every pod of namespaces of
// the same team label on any port. Then the ClusterNetworkPolicies, if any.
func Snapshot(s Shape) *policy.Snapshot {
	snap := &policy.Snapshot{NodeName: LocalNode}
	for n := 0; n < s.Namespaces; n++ {
		name := fmt.Sprintf("ns-%d", n)
		snap.Namespaces = append(snap.Namespaces, policy.Namespace{Name: name, Labels: map[string]string{
			"kubernetes.io/metadata.name": name,
			"team":                        fmt.Sprintf("team-%d", n%50),
		}})
	}
	roles := []string{"frontend", "backend", "db"}
	for i := 0; i < s.Pods; i++ {
		node, slot := 0, i
		if i >= s.LocalPods {
			node = 1 + (i-s.LocalPods)/s.PodsPerNode
			slot = (i - s.LocalPods) % s.PodsPerNode
		}
		snap.Pods = append(snap.Pods, policy.Pod{
			Namespace: fmt.Sprintf("ns-%d", i%s.Namespaces),
			Name:      fmt.Sprintf("pod-%d", i),
			NodeName:  fmt.Sprintf("node-%d", node),
			Labels:    map[string]string{"app": fmt.Sprintf("app-%d", i%7), "role": roles[i%len(roles)]},
			Phase:     corev1.PodRunning,
			IPs:       []netip.Addr{PodIP(node, slot)},
			Ports:     []policy.ContainerPort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 8080}},
		})
	}
	for p := 0; p < s.Policies; p++ {
		snap.Policies = append(snap.Policies, Policy(p, s.Namespaces))
	}
	if s.ClusterNetworkPolicies > 0 {
		snap.Nodes = Nodes(s)
		for i := range s.ClusterNetworkPolicies {
			snap.ClusterNetworkPolicies = append(snap.ClusterNetworkPolicies, ClusterNetworkPolicy(i))
		}
	}
	return snap
}

// PodIP is the address of slot on node: 10.(node/256).(node%256).(slot+2).
func PodIP(node, slot int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(node >> 8), byte(node), byte(slot + 2)})
}

// Policy is synthetic policy number p.
func Policy(p, namespaces int) *networkingv1.NetworkPolicy {
	ns := fmt.Sprintf("ns-%d", p%namespaces)
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("np-%d", p)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%d", p%7)}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	tcp := corev1.ProtocolTCP
	if p%2 == 0 {
		port, named := intstr.FromInt32(8080), intstr.FromString("http")
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}, {Port: &named}},
		}}
	} else {
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"team": fmt.Sprintf("team-%d", p%50)},
			}}},
		}}
	}
	return np
}

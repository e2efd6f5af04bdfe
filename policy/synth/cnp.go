package synth

import (
	"fmt"
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/policy"
)

// Nodes are the Node objects of a Snapshot(s) cluster: node n has the
// address 172.16.(n/256).(n%256) and a zone label (zone-0 to zone-3).
func Nodes(s Shape) []policy.Node {
	n := 1 + (s.Pods-s.LocalPods+s.PodsPerNode-1)/s.PodsPerNode
	out := make([]policy.Node, 0, n)
	for i := range n {
		out = append(out, policy.Node{
			Name:      fmt.Sprintf("node-%d", i),
			Labels:    map[string]string{"zone": fmt.Sprintf("zone-%d", i%4)},
			Addresses: []netip.Addr{netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)})},
		})
	}
	return out
}

// ClusterNetworkPolicy is synthetic ClusterNetworkPolicy number i of a
// Snapshot(s) cluster. One in 20 selects every namespace: an Admin policy
// that denies egress to one /24 outside the cluster and passes ingress
// from frontends on TCP 8080 (or, one in 100, a Baseline that denies
// egress to the nodes of a zone except on TCP 10250). The others select
// the namespaces of one team (team-(i%50)), in the Admin tier four times
// in five: they deny ingress from the pods of another team except its
// frontends on TCP 8080-8090, and accept egress to one more /24; in the
// Baseline tier they accept ingress from their own team. Priorities are
// unique within a tier.
func ClusterNetworkPolicy(i int) *policyv1beta1.ClusterNetworkPolicy {
	p := &policyv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cnp-%04d", i)}}
	p.Spec.Tier, p.Spec.Priority = policyv1beta1.AdminTier, int32(i%1000)
	team := func(t int) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("team-%d", t%50)}}
	}
	tcp := func(from, to int32) []policyv1beta1.ClusterNetworkPolicyProtocol {
		port := &policyv1beta1.Port{Number: from}
		if to != from {
			port = &policyv1beta1.Port{Range: &policyv1beta1.PortRange{Start: from, End: to}}
		}
		return []policyv1beta1.ClusterNetworkPolicyProtocol{{TCP: &policyv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: port}}}
	}
	frontends := func(t *metav1.LabelSelector) *policyv1beta1.NamespacedPod {
		return &policyv1beta1.NamespacedPod{NamespaceSelector: *t, PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}}}
	}
	network := func(n int) policyv1beta1.CIDR {
		return policyv1beta1.CIDR(fmt.Sprintf("203.%d.%d.0/24", n/256%256, n%256))
	}
	switch {
	case i%100 == 0:
		p.Spec.Tier, p.Spec.Priority = policyv1beta1.BaselineTier, int32(i/100)
		p.Spec.Subject.Namespaces = &metav1.LabelSelector{}
		p.Spec.Egress = []policyv1beta1.ClusterNetworkPolicyEgressRule{
			{Action: policyv1beta1.ClusterNetworkPolicyRuleActionPass, To: []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Nodes: &metav1.LabelSelector{}}}, Protocols: tcp(10250, 10250)},
			{Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny, To: []policyv1beta1.ClusterNetworkPolicyEgressPeer{{
				Nodes: &metav1.LabelSelector{MatchLabels: map[string]string{"zone": fmt.Sprintf("zone-%d", i/100%4)}}}}},
		}
	case i%20 == 0:
		p.Spec.Subject.Namespaces = &metav1.LabelSelector{}
		p.Spec.Egress = []policyv1beta1.ClusterNetworkPolicyEgressRule{{Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
			To: []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []policyv1beta1.CIDR{network(i)}}}}}
		p.Spec.Ingress = []policyv1beta1.ClusterNetworkPolicyIngressRule{{Action: policyv1beta1.ClusterNetworkPolicyRuleActionPass,
			From: []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Pods: frontends(&metav1.LabelSelector{})}}, Protocols: tcp(8080, 8080)}}
	case i%5 == 4:
		p.Spec.Tier, p.Spec.Priority = policyv1beta1.BaselineTier, int32(100+i/5)
		p.Spec.Subject.Namespaces = team(i)
		p.Spec.Ingress = []policyv1beta1.ClusterNetworkPolicyIngressRule{{Action: policyv1beta1.ClusterNetworkPolicyRuleActionAccept,
			From: []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: team(i)}}}}
	default:
		p.Spec.Subject.Namespaces = team(i)
		p.Spec.Ingress = []policyv1beta1.ClusterNetworkPolicyIngressRule{
			{Action: policyv1beta1.ClusterNetworkPolicyRuleActionPass, From: []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Pods: frontends(team(7 * i))}},
				Protocols: tcp(8080, 8090)},
			{Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny, From: []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: team(7 * i)}}},
		}
		p.Spec.Egress = []policyv1beta1.ClusterNetworkPolicyEgressRule{{Action: policyv1beta1.ClusterNetworkPolicyRuleActionAccept,
			To: []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []policyv1beta1.CIDR{network(1000 + i)}}}}}
	}
	return p
}

// ClusterNetworkPolicyChange is an edit of one synthetic
// ClusterNetworkPolicy, for the benchmarks of a policy change.
type ClusterNetworkPolicyChange struct {
	Kind string // short name, for tables and results
	What string // what the edit changes
	// Before is ClusterNetworkPolicy(Index); After is a new object, the
	// same policy edited.
	Index         int
	Before, After *policyv1beta1.ClusterNetworkPolicy
}

// ClusterNetworkPolicyChanges are the edits the change benchmarks make,
// each to a policy that selects pods on the local node of every Scaled
// shape: the network of a team's Admin policy (element operations on the
// egress maps of that team's pods), the network of an Admin policy that
// selects every namespace (the egress maps of every local pod), and the
// peer team of a team's Admin policy (the addresses of two teams' pods
// leave and enter the ingress maps of that team's pods). They need a shape
// with at least 21 ClusterNetworkPolicies.
func ClusterNetworkPolicyChanges() []ClusterNetworkPolicyChange {
	team := ClusterNetworkPolicy(1) // team-1: ns-1, ns-51, ... of which some are local
	teamNet := team.DeepCopy()
	teamNet.Spec.Egress[0].To[0].Networks = []policyv1beta1.CIDR{"198.51.100.0/24"}
	all := ClusterNetworkPolicy(20) // every namespace
	allNet := all.DeepCopy()
	allNet.Spec.Egress[0].To[0].Networks = []policyv1beta1.CIDR{"198.51.101.0/24"}
	teamPeers := team.DeepCopy()
	other := map[string]string{"team": "team-8"} // was team-7
	teamPeers.Spec.Ingress[0].From[0].Pods.NamespaceSelector.MatchLabels = other
	teamPeers.Spec.Ingress[1].From[0].Namespaces.MatchLabels = other
	return []ClusterNetworkPolicyChange{
		{Kind: "team-network", What: "a team's Admin policy: its egress Accept moves to another /24", Index: 1, Before: team, After: teamNet},
		{Kind: "all-network", What: "an Admin policy selecting every namespace: its egress Deny moves to another /24", Index: 20, Before: all, After: allNet},
		{Kind: "team-peers", What: "a team's Admin policy: its ingress Pass and Deny rules name another team", Index: 1, Before: team, After: teamPeers},
	}
}

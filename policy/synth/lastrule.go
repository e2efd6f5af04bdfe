package synth

import (
	"errors"
	"fmt"
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// LastRule describes the ClusterNetworkPolicies of the datapath benchmark
// for the tiers: PerTier Admin and PerTier Baseline policies, each with
// Rules ingress and Rules egress rules, whose subject is every pod of
// Namespace. The measured traffic, a Clients pod connecting to the Server
// pod on TCP Port, is decided in both directions (the client's egress, the
// server's ingress) by the last rule of the lowest-priority Admin policy:
// every rule before it in the Admin tier misses that traffic, so a
// rule-by-rule walk would try all of them first. The earlier rules are of
// two kinds, alternating:
//   - the same pods (ingress: the clients; egress: the server) on another
//     TCP port, one port per rule, actions Deny, Accept and Pass in turn:
//     elements keyed by the measured addresses that the measured port
//     must fall between;
//   - the measured port with another peer: ingress, pods labelled
//     LabelKey=r<n> (none exist); egress, a /32 of 172.24.0.0/13 of its
//     own (every other address, so that no two merge).
//
// The Baseline tier has the same shape, except that the last rule of its
// lowest-priority policy denies everything in both directions (namespaces
// {}): traffic that no rule before it decides, such as any other pod of
// Namespace connecting to the server, is dropped by the last Baseline
// rule after missing every Admin rule.
type LastRule struct {
	Namespace string
	// PerTier is the number of policies per tier (priorities 0 to
	// PerTier-1 in each: the lowest priority is the largest number).
	PerTier int
	// Rules per direction and policy, at most 25 (the API's limit).
	Rules int
	Port  int32
	// Clients and Server select the measured pods by label.
	Clients, Server map[string]string
	// LabelKey is the label of the pods that no pod carries (with values
	// r<n>).
	LabelKey string
	// Prefix starts every policy name: <prefix>-admin-0042,
	// <prefix>-baseline-0042.
	Prefix string
	// Labels are set on every policy (to list or delete them by).
	Labels map[string]string
}

// maxRules is the API's limit of rules per direction (maxItems).
const maxRules = 25

// Validate reports what makes l unusable: counts out of the API's ranges
// or ports beyond 65535.
func (l LastRule) Validate() error {
	var errs []error
	if l.Namespace == "" || l.Prefix == "" || l.LabelKey == "" {
		errs = append(errs, errors.New("namespace, prefix and label key must be set"))
	}
	if len(l.Clients) == 0 || len(l.Server) == 0 {
		errs = append(errs, errors.New("clients and server selectors must not be empty"))
	}
	if l.PerTier < 1 || l.PerTier > 1001 {
		errs = append(errs, fmt.Errorf("%d policies per tier: want 1 to 1001 (priorities 0 to 1000)", l.PerTier))
	}
	if l.Rules < 1 || l.Rules > maxRules {
		errs = append(errs, fmt.Errorf("%d rules per direction: want 1 to %d", l.Rules, maxRules))
	}
	if l.Port < 1 || int(l.Port)+l.PerTier*l.Rules/2+1 > 65535 {
		errs = append(errs, fmt.Errorf("port %d: the rules' other ports (up to %d more) must stay below 65536", l.Port, l.PerTier*l.Rules/2+1))
	}
	return errors.Join(errs...)
}

// Name is the name of policy i of tier.
func (l LastRule) Name(tier policyv1beta1.Tier, i int) string {
	t := "admin"
	if tier == policyv1beta1.BaselineTier {
		t = "baseline"
	}
	return fmt.Sprintf("%s-%s-%04d", l.Prefix, t, i)
}

// Deciding is the Admin policy and the index of its rule (the same in
// spec.ingress and spec.egress) that decide the measured traffic.
func (l LastRule) Deciding() (policy string, rule int) {
	return l.Name(policyv1beta1.AdminTier, l.PerTier-1), l.Rules - 1
}

// Policies returns the Admin policies, then the Baseline ones, each in
// priority order. Call Validate first.
func (l LastRule) Policies() []*policyv1beta1.ClusterNetworkPolicy {
	out := make([]*policyv1beta1.ClusterNetworkPolicy, 0, 2*l.PerTier)
	for _, tier := range []policyv1beta1.Tier{policyv1beta1.AdminTier, policyv1beta1.BaselineTier} {
		for i := range l.PerTier {
			out = append(out, l.policy(tier, i))
		}
	}
	return out
}

func (l LastRule) policy(tier policyv1beta1.Tier, i int) *policyv1beta1.ClusterNetworkPolicy {
	p := &policyv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: l.Name(tier, i), Labels: l.Labels}}
	p.Spec.Tier, p.Spec.Priority = tier, int32(i)
	p.Spec.Subject.Namespaces = l.namespace()
	last := i == l.PerTier-1
	for j := range l.Rules {
		k := i*l.Rules + j // the rule's number in its tier and direction
		switch {
		case last && j == l.Rules-1 && tier == policyv1beta1.AdminTier:
			p.Spec.Ingress = append(p.Spec.Ingress, policyv1beta1.ClusterNetworkPolicyIngressRule{
				Name: "measured", Action: policyv1beta1.ClusterNetworkPolicyRuleActionAccept,
				From:      []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Pods: l.pods(l.Clients)}},
				Protocols: tcpPort(l.Port),
			})
			p.Spec.Egress = append(p.Spec.Egress, policyv1beta1.ClusterNetworkPolicyEgressRule{
				Name: "measured", Action: policyv1beta1.ClusterNetworkPolicyRuleActionAccept,
				To:        []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Pods: l.pods(l.Server)}},
				Protocols: tcpPort(l.Port),
			})
		case last && j == l.Rules-1:
			p.Spec.Ingress = append(p.Spec.Ingress, policyv1beta1.ClusterNetworkPolicyIngressRule{
				Name: "deny-rest", Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
				From: []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: &metav1.LabelSelector{}}},
			})
			p.Spec.Egress = append(p.Spec.Egress, policyv1beta1.ClusterNetworkPolicyEgressRule{
				Name: "deny-rest", Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
				To: []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Namespaces: &metav1.LabelSelector{}}},
			})
		case k%2 == 0:
			// The measured pods on a port of this rule's own.
			port := l.Port + 1 + int32(k/2)
			action := missActions[k/2%len(missActions)]
			p.Spec.Ingress = append(p.Spec.Ingress, policyv1beta1.ClusterNetworkPolicyIngressRule{
				Action: action, From: []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Pods: l.pods(l.Clients)}}, Protocols: tcpPort(port),
			})
			p.Spec.Egress = append(p.Spec.Egress, policyv1beta1.ClusterNetworkPolicyEgressRule{
				Action: action, To: []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Pods: l.pods(l.Server)}}, Protocols: tcpPort(port),
			})
		default:
			// The measured port from or to someone else.
			action := missActions[k/2%len(missActions)]
			p.Spec.Ingress = append(p.Spec.Ingress, policyv1beta1.ClusterNetworkPolicyIngressRule{
				Action:    action,
				From:      []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Pods: l.pods(map[string]string{l.LabelKey: fmt.Sprintf("r%d", k)})}},
				Protocols: tcpPort(l.Port),
			})
			p.Spec.Egress = append(p.Spec.Egress, policyv1beta1.ClusterNetworkPolicyEgressRule{
				Action:    action,
				To:        []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []policyv1beta1.CIDR{lastRuleNetwork(k)}}},
				Protocols: tcpPort(l.Port),
			})
		}
	}
	return p
}

// missActions are the actions of the rules that miss the measured traffic,
// in turn.
var missActions = []policyv1beta1.ClusterNetworkPolicyRuleAction{
	policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
	policyv1beta1.ClusterNetworkPolicyRuleActionAccept,
	policyv1beta1.ClusterNetworkPolicyRuleActionPass,
}

func (l LastRule) namespace() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": l.Namespace}}
}

func (l LastRule) pods(labels map[string]string) *policyv1beta1.NamespacedPod {
	return &policyv1beta1.NamespacedPod{NamespaceSelector: *l.namespace(), PodSelector: metav1.LabelSelector{MatchLabels: labels}}
}

func tcpPort(port int32) []policyv1beta1.ClusterNetworkPolicyProtocol {
	return []policyv1beta1.ClusterNetworkPolicyProtocol{{TCP: &policyv1beta1.ClusterNetworkPolicyProtocolTCP{
		DestinationPort: &policyv1beta1.Port{Number: port}}}}
}

// lastRuleNetwork is rule k's own address: every other address of
// 172.24.0.0/13 (up to 262,143 rules).
func lastRuleNetwork(k int) policyv1beta1.CIDR {
	base := netip.MustParseAddr("172.24.0.0").As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	n += 2 * uint32(k+1)
	a := netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	return policyv1beta1.CIDR(netip.PrefixFrom(a, 32).String())
}

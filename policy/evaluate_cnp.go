package policy

// This file is the reference semantics of ClusterNetworkPolicy
// (policy.networking.k8s.io/v1beta1, network-policy-api v0.3.0), written
// from the API type docs, independently of any compiler. evaluate.go calls
// it around the NetworkPolicy tier.
//
// Per direction (the source pod's egress, the destination pod's ingress):
//  1. Admin tier: the Admin policies whose subject selects the pod, in
//     precedence order (below), each policy's rules of that direction in
//     written order. The first rule that matches decides: Accept and Deny
//     end the direction; Pass skips the rest of the Admin tier.
//  2. NetworkPolicy tier: if some NetworkPolicy isolates the pod in this
//     direction, it decides. Isolation is per direction: a pod isolated for
//     ingress only still reaches the Baseline tier for egress.
//  3. Baseline tier: like the Admin tier; Pass goes on to step 4.
//  4. Allowed.
//
// A ClusterNetworkPolicy never isolates a pod: traffic that no rule
// matches falls through to the next tier. Host-network pods (and pods that
// are not active, see Pod.Active) are never subjects and never match
// namespaces or pods peers; networks and nodes peers match addresses, so
// they match a host-network pod's address like any other.
//
// Precedence within a tier: priority ascending, then metadata.name
// ascending (byte order), then the snapshot's order. The API leaves equal
// priorities undefined ("the implementation can apply any of the matching
// policies"), so the name decides, which is stable across restarts and
// independent of list order. When two policies with equal priority in one
// tier both select the pod and both have a rule of this direction matching
// the packet, the evaluation warns, naming both.
//
// Decisions where the docs are silent or the input is invalid (the API
// server rejects most of these; a fuzzer may not):
//   - A subject with no field or with both fields selects nothing.
//   - A rule whose action is not Accept, Deny or Pass matches nothing
//     (Warning).
//   - A peer with no field, or with several, is what the docs call an
//     incompatible CRD version, and they ask to fail closed for the whole
//     rule: an Accept rule matches nothing; a Deny or Pass rule becomes
//     "Deny all" (any peer, protocol and port) (Warning).
//   - domainNames peers are not implemented: such a peer matches nothing,
//     the rule's other peers still apply (Warning each time the rule is
//     reached).
//   - A rule with an empty from/to matches nothing ("if any element
//     matches").
//   - networks: an unparseable CIDR matches nothing; host bits are ignored
//     (10.0.0.1/24 is 10.0.0.0/24).
//   - nodes: a node matches when its labels match and one of its
//     Addresses is the remote address; the subject's own node is not
//     special.
//   - protocols absent: every protocol and port, ICMP included. Present:
//     some entry must match. An entry with no field or several matches
//     nothing. TCP/UDP/SCTP without destinationPort is every port of that
//     protocol. A Port with neither or both of number and range matches
//     nothing; a range is inclusive, start > end matches nothing (start ==
//     end is that one port; the CRD asks start < end). A packet protocol
//     other than TCP/UDP/SCTP matches no entry.
//   - destinationNamedPort is resolved on the active pod owning the
//     destination address (for ingress the subject itself): a container
//     port with that name, the packet's protocol (empty means TCP) and the
//     packet's port. With no such pod (networks, nodes, outside) it matches
//     nothing.
//   - A tier other than Admin and Baseline: the policy is ignored.
//     Priorities outside 0..1000 sort as they are.
//   - Label selectors as in NetworkPolicy: invalid matches nothing; a pod
//     whose namespace is missing from the snapshot matches no namespace
//     selector, not even {}.
//   - Warnings name only what the evaluation of this packet reached: a
//     rule is reached when every rule before it in the walk did not match.

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// CNPRule is the ClusterNetworkPolicy rule that matched a packet first in
// one tier and direction, and what it did.
type CNPRule struct {
	Policy   string             // metadata.name
	Tier     policyv1beta1.Tier // Admin or Baseline
	Priority int32
	// Index is the rule's position in spec.egress or spec.ingress (the
	// direction of the DirectionVerdict holding it), from 0.
	Index int
	Name  string // the rule's name; often empty
	// Action is what the rule did: its action, except Deny for a Deny or
	// Pass rule with an invalid peer (fail closed, with a Warning).
	Action policyv1beta1.ClusterNetworkPolicyRuleAction
}

// String reads like `Admin "deny-ext" priority 10 rule 0 "block": Deny`.
func (r CNPRule) String() string {
	s := fmt.Sprintf("%s %q priority %d rule %d", r.Tier, r.Policy, r.Priority, r.Index)
	if r.Name != "" {
		s += fmt.Sprintf(" %q", r.Name)
	}
	return s + ": " + string(r.Action)
}

// Decider is the tier whose decision a DirectionVerdict's Allowed is.
type Decider string

// The deciders, in the order they are consulted.
const (
	DecidedByAdmin         Decider = "Admin"         // an Admin-tier Accept or Deny
	DecidedByNetworkPolicy Decider = "NetworkPolicy" // NetworkPolicies isolate the pod in this direction
	DecidedByBaseline      Decider = "Baseline"      // a Baseline-tier Accept or Deny
	DecidedByDefault       Decider = "Default"       // nothing decided: allowed
)

// DecidedBy says which tier decided d.Allowed.
func (d DirectionVerdict) DecidedBy() Decider {
	switch {
	case d.Admin != nil && d.Admin.Action != policyv1beta1.ClusterNetworkPolicyRuleActionPass:
		return DecidedByAdmin
	case d.Isolated:
		return DecidedByNetworkPolicy
	case d.Baseline != nil && d.Baseline.Action != policyv1beta1.ClusterNetworkPolicyRuleActionPass:
		return DecidedByBaseline
	default:
		return DecidedByDefault
	}
}

// String is one line on how d was decided, for people.
func (d DirectionVerdict) String() string {
	verdict := "denied"
	if d.Allowed {
		verdict = "allowed"
	}
	var why string
	switch d.DecidedBy() {
	case DecidedByAdmin:
		why = d.Admin.String()
	case DecidedByNetworkPolicy:
		why = "isolated by NetworkPolicy, no rule allows"
		if len(d.By) > 0 {
			why = "isolated by NetworkPolicy, allowed by " + strings.Join(d.By, ", ")
		}
	case DecidedByBaseline:
		why = d.Baseline.String()
	default:
		why = "no tier decided"
	}
	var passed []string
	for _, r := range []*CNPRule{d.Admin, d.Baseline} {
		if r != nil && r.Action == policyv1beta1.ClusterNetworkPolicyRuleActionPass {
			passed = append(passed, r.String())
		}
	}
	if len(passed) > 0 {
		why += " (after " + strings.Join(passed, ", ") + ")"
	}
	return verdict + ": " + why
}

// cnpTier returns the rule of an enforced policy of the tier that matches
// the packet first for pod in direction dir, or nil, and the Deny rules of
// audited policies reached before it (audit.go): each the first rule of
// its policy that matches.
func (e *evalState) cnpTier(tier policyv1beta1.Tier, pod *Pod, dir networkingv1.PolicyType) (decided *CNPRule, audits []CNPRule) {
	var cnps []*policyv1beta1.ClusterNetworkPolicy
	for _, cnp := range e.s.ClusterNetworkPolicies {
		if cnp != nil && cnp.Spec.Tier == tier && e.cnpSelects(cnp, pod) {
			cnps = append(cnps, cnp)
		}
	}
	// The tie-break: equal priorities go by name (see the file comment).
	slices.SortStableFunc(cnps, func(a, b *policyv1beta1.ClusterNetworkPolicy) int {
		return cmp.Or(cmp.Compare(a.Spec.Priority, b.Spec.Priority), strings.Compare(a.Name, b.Name))
	})
	var traced *[]CNPTrace
	if e.cur != nil {
		traced = &e.cur.Admin
		if tier == policyv1beta1.BaselineTier {
			traced = &e.cur.Baseline
		}
		*traced = []CNPTrace{} // consulted, even if no policy selects the pod
	}
	for i, cnp := range cnps {
		r, peer := e.cnpFirstMatch(cnp, dir, true)
		audited := e.s.AuditAll || Audited(cnp)
		if traced != nil {
			*traced = append(*traced, CNPTrace{Policy: cnp.Name, Priority: cnp.Spec.Priority, Match: r, Peer: peer, Audit: audited})
		}
		if r == nil {
			continue
		}
		for _, other := range cnps[i+1:] {
			if other.Spec.Priority != cnp.Spec.Priority {
				break
			}
			if o, _ := e.cnpFirstMatch(other, dir, false); o != nil {
				e.warn(cnp.Name, fmt.Sprintf("ClusterNetworkPolicies %q and %q, both %s tier priority %d, both match this %s traffic "+
					"(rule %d: %s; rule %d: %s): the API leaves their order undefined; here the name that sorts first, %q, decides",
					cnp.Name, other.Name, tier, cnp.Spec.Priority, strings.ToLower(string(dir)),
					r.Index, r.Action, o.Index, o.Action, cnp.Name))
			}
		}
		if audited {
			// It decides nothing; what it would deny is recorded.
			if r.Action == policyv1beta1.ClusterNetworkPolicyRuleActionDeny {
				audits = append(audits, *r)
			}
			continue
		}
		return r, audits
	}
	return nil, audits
}

// cnpSelects reports whether the subject of cnp selects pod (an active pod).
func (e *evalState) cnpSelects(cnp *policyv1beta1.ClusterNetworkPolicy, pod *Pod) bool {
	subj := &cnp.Spec.Subject
	if (subj.Namespaces == nil) == (subj.Pods == nil) {
		return false // exactly one field must be set
	}
	ns := evalNamespace(e.s, pod.Namespace)
	if ns == nil {
		return false
	}
	if subj.Namespaces != nil {
		return evalSelectorMatches(subj.Namespaces, ns.Labels)
	}
	return evalSelectorMatches(&subj.Pods.NamespaceSelector, ns.Labels) &&
		evalSelectorMatches(&subj.Pods.PodSelector, pod.Labels)
}

// cnpRule is an ingress or an egress rule, seen alike.
type cnpRule struct {
	name      string
	action    policyv1beta1.ClusterNetworkPolicyRuleAction
	peers     []cnpPeer
	protocols []policyv1beta1.ClusterNetworkPolicyProtocol
}

// cnpPeer is an ingress peer (namespaces, pods) or an egress peer (those,
// nodes, networks, domainNames).
type cnpPeer struct {
	namespaces  *metav1.LabelSelector
	pods        *policyv1beta1.NamespacedPod
	nodes       *metav1.LabelSelector
	networks    []policyv1beta1.CIDR
	domainNames []policyv1beta1.DomainName
}

// fields counts the fields set; exactly one is valid.
func (p *cnpPeer) fields() int {
	n := 0
	for _, set := range []bool{p.namespaces != nil, p.pods != nil, p.nodes != nil, len(p.networks) > 0, len(p.domainNames) > 0} {
		if set {
			n++
		}
	}
	return n
}

func cnpRules(cnp *policyv1beta1.ClusterNetworkPolicy, dir networkingv1.PolicyType) []cnpRule {
	var out []cnpRule
	if dir == networkingv1.PolicyTypeIngress {
		for _, r := range cnp.Spec.Ingress {
			rule := cnpRule{name: r.Name, action: r.Action, protocols: r.Protocols}
			for _, p := range r.From {
				rule.peers = append(rule.peers, cnpPeer{namespaces: p.Namespaces, pods: p.Pods})
			}
			out = append(out, rule)
		}
		return out
	}
	for _, r := range cnp.Spec.Egress {
		rule := cnpRule{name: r.Name, action: r.Action, protocols: r.Protocols}
		for _, p := range r.To {
			rule.peers = append(rule.peers, cnpPeer{namespaces: p.Namespaces, pods: p.Pods, nodes: p.Nodes,
				networks: p.Networks, domainNames: p.DomainNames})
		}
		out = append(out, rule)
	}
	return out
}

// cnpFirstMatch returns the first rule of cnp in direction dir that matches
// the packet and the index of its peer that matched (-1 for a rule that
// fails closed), or nil. With warn, what it cannot apply as written
// becomes a Warning.
func (e *evalState) cnpFirstMatch(cnp *policyv1beta1.ClusterNetworkPolicy, dir networkingv1.PolicyType, warn bool) (*CNPRule, int) {
	say := func(i int, format string, args ...any) {
		if warn {
			e.warn(cnp.Name, fmt.Sprintf("%s rule %d: ", strings.ToLower(string(dir)), i)+fmt.Sprintf(format, args...))
		}
	}
	for i, r := range cnpRules(cnp, dir) {
		if action, peer, ok := e.cnpRuleMatches(&r, dir, func(format string, args ...any) { say(i, format, args...) }); ok {
			return &CNPRule{Policy: cnp.Name, Tier: cnp.Spec.Tier, Priority: cnp.Spec.Priority, Index: i, Name: r.name, Action: action}, peer
		}
	}
	return nil, -1
}

// cnpRuleMatches reports whether r matches the packet, with which action,
// and which peer matched (-1 when the rule fails closed).
func (e *evalState) cnpRuleMatches(r *cnpRule, dir networkingv1.PolicyType, say func(string, ...any)) (policyv1beta1.ClusterNetworkPolicyRuleAction, int, bool) {
	switch r.action {
	case policyv1beta1.ClusterNetworkPolicyRuleActionAccept,
		policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
		policyv1beta1.ClusterNetworkPolicyRuleActionPass:
	default:
		say("unknown action %q: the rule matches nothing", r.action)
		return "", -1, false
	}
	if i := slices.IndexFunc(r.peers, func(p cnpPeer) bool { return p.fields() != 1 }); i >= 0 {
		if r.action == policyv1beta1.ClusterNetworkPolicyRuleActionAccept {
			say("peer %d sets no field or several: the Accept rule matches nothing (fail closed)", i)
			return "", -1, false
		}
		say("peer %d sets no field or several: the %s rule denies everything (fail closed)", i, r.action)
		return policyv1beta1.ClusterNetworkPolicyRuleActionDeny, -1, true
	}
	for i, p := range r.peers {
		if len(p.domainNames) > 0 {
			say("peer %d: domainNames peers are not implemented and match nothing", i)
		}
	}

	remoteIP, remotePod := e.p.Src, e.src
	if dir == networkingv1.PolicyTypeEgress {
		remoteIP, remotePod = e.p.Dst, e.dst
	}
	peer := slices.IndexFunc(r.peers, func(p cnpPeer) bool { return e.cnpPeerMatches(&p, remoteIP, remotePod) })
	if peer < 0 {
		return "", -1, false
	}
	if len(r.protocols) > 0 && !slices.ContainsFunc(r.protocols, func(pr policyv1beta1.ClusterNetworkPolicyProtocol) bool {
		return e.cnpProtocolMatches(&pr)
	}) {
		return "", -1, false
	}
	return r.action, peer, true
}

// cnpPeerMatches reports whether the remote side (remoteIP, owned by the
// active pod remotePod or by no pod) is inside peer, a valid peer.
func (e *evalState) cnpPeerMatches(peer *cnpPeer, remoteIP netip.Addr, remotePod *Pod) bool {
	switch {
	case peer.namespaces != nil, peer.pods != nil:
		if remotePod == nil {
			return false // host-network pods and non-pods are never selected
		}
		ns := evalNamespace(e.s, remotePod.Namespace)
		if ns == nil {
			return false
		}
		if peer.namespaces != nil {
			return evalSelectorMatches(peer.namespaces, ns.Labels)
		}
		return evalSelectorMatches(&peer.pods.NamespaceSelector, ns.Labels) &&
			evalSelectorMatches(&peer.pods.PodSelector, remotePod.Labels)
	case peer.nodes != nil:
		return slices.ContainsFunc(e.s.Nodes, func(n Node) bool {
			return evalSelectorMatches(peer.nodes, n.Labels) &&
				slices.ContainsFunc(n.Addresses, func(a netip.Addr) bool { return a.Unmap() == remoteIP })
		})
	case len(peer.networks) > 0:
		return slices.ContainsFunc(peer.networks, func(c policyv1beta1.CIDR) bool {
			prefix, err := netip.ParsePrefix(string(c))
			return err == nil && remoteIP.IsValid() && prefix.Masked().Contains(remoteIP)
		})
	default:
		return false // domainNames: not implemented
	}
}

// cnpProtocolMatches reports whether the packet's protocol and
// destination port match one protocols entry.
func (e *evalState) cnpProtocolMatches(pr *policyv1beta1.ClusterNetworkPolicyProtocol) bool {
	n := 0
	for _, set := range []bool{pr.TCP != nil, pr.UDP != nil, pr.SCTP != nil, pr.DestinationNamedPort != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return false
	}
	proto := evalPacketProtocol(e.p)
	switch {
	case pr.TCP != nil:
		return proto == corev1.ProtocolTCP && cnpPortMatches(pr.TCP.DestinationPort, e.p.DstPort)
	case pr.UDP != nil:
		return proto == corev1.ProtocolUDP && cnpPortMatches(pr.UDP.DestinationPort, e.p.DstPort)
	case pr.SCTP != nil:
		return proto == corev1.ProtocolSCTP && cnpPortMatches(pr.SCTP.DestinationPort, e.p.DstPort)
	}
	if !evalIsPortProtocol(proto) || e.dst == nil {
		return false
	}
	return slices.ContainsFunc(e.dst.Ports, func(cp ContainerPort) bool {
		cpProto := cp.Protocol
		if cpProto == "" {
			cpProto = corev1.ProtocolTCP
		}
		return cp.Name == pr.DestinationNamedPort && cpProto == proto && cp.Port == int32(e.p.DstPort)
	})
}

// cnpPortMatches: nil is every port; otherwise exactly one of number and
// range.
func cnpPortMatches(p *policyv1beta1.Port, dport uint16) bool {
	d := int32(dport)
	switch {
	case p == nil:
		return true
	case p.Range != nil && p.Number == 0:
		return p.Range.Start <= d && d <= p.Range.End
	case p.Range == nil && p.Number != 0:
		return d == p.Number
	default:
		return false
	}
}

// warn records a Warning about ClusterNetworkPolicy name once.
func (e *evalState) warn(name, msg string) {
	w := Warning{Policy: name, Message: msg}
	if !slices.Contains(e.warnings, w) {
		e.warnings = append(e.warnings, w)
	}
}

package explain

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/policy"
)

// NodePrefix names a node as an endpoint: "node/NAME" is its first
// address (InternalIP or ExternalIP).
const NodePrefix = "node/"

// Query is the question: a connection from From to To (each "ns/pod",
// "node/NAME" or an IP address) on Protocol and Port.
type Query struct {
	From, To string
	Protocol corev1.Protocol // TCP, UDP or SCTP; empty is TCP
	Port     uint16
	// ThroughService: the packet was sent to a Service that has To behind
	// it. Only a pod's traffic to itself differs: through a Service it
	// leaves the pod, is DNATed on the node and comes back over the bridge
	// (hairpin), so the node filters it like any other packet.
	ThroughService bool
}

// ParseTarget splits "ns/pod:port", "node/NAME:port", "IP:port" or
// "[IPv6]:port" into the endpoint and the port; without ":port", port is 0.
func ParseTarget(s string) (endpoint string, port uint16, err error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().String(), ap.Port(), nil
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return s, 0, nil // an IPv6 address has colons, but no port
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, 0, nil
	}
	n, err := strconv.ParseUint(s[i+1:], 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("%q: the port after ':' must be a number from 1 to 65535", s)
	}
	return s[:i], uint16(n), nil
}

// Endpoint is one side of the connection, resolved.
type Endpoint struct {
	Asked   string     `json:"asked"`
	Address netip.Addr `json:"address"`
	// Pod is the active pod (policy.Pod.Active) owning Address, if any;
	// HostNetworkPod the host-network pod asked for by name, if that was
	// the question (its address is its node's, and no policy selects it).
	Pod            string `json:"pod,omitempty"`
	HostNetworkPod string `json:"hostNetworkPod,omitempty"`
	// Node is the pod's node, or the node owning Address.
	Node string `json:"node,omitempty"`
}

// String reads like "x/a (10.244.1.5 on node-1)".
func (e Endpoint) String() string {
	name, where := e.Pod, e.Address.String()
	switch {
	case name == "" && e.HostNetworkPod != "":
		name, where = e.HostNetworkPod, "host network, "+where
	case name == "" && e.Node != "":
		return NodePrefix + e.Node + " (" + where + ")"
	case name == "":
		return where
	}
	if e.Node != "" {
		where += " on " + e.Node
	}
	return name + " (" + where + ")"
}

// resolve finds what the snapshot knows of the endpoint asked for.
func resolve(snap *policy.Snapshot, asked string) (Endpoint, error) {
	ep := Endpoint{Asked: asked}
	if name, ok := strings.CutPrefix(asked, NodePrefix); ok {
		i := slices.IndexFunc(snap.Nodes, func(n policy.Node) bool { return n.Name == name })
		if i < 0 {
			return ep, fmt.Errorf("%s: no such node", asked)
		}
		if len(snap.Nodes[i].Addresses) == 0 {
			return ep, fmt.Errorf("%s: the node has no InternalIP or ExternalIP address", asked)
		}
		ep.Address, ep.Node = snap.Nodes[i].Addresses[0], name
		return ep, nil
	}
	if addr, err := netip.ParseAddr(asked); err == nil {
		ep.Address = addr.Unmap()
	} else {
		ns, name, ok := strings.Cut(asked, "/")
		if !ok || ns == "" || name == "" {
			return ep, fmt.Errorf("%q: want namespace/pod, node/NAME or an IP address", asked)
		}
		i := slices.IndexFunc(snap.Pods, func(p policy.Pod) bool { return p.Namespace == ns && p.Name == name })
		if i < 0 {
			return ep, fmt.Errorf("%s: no such pod", asked)
		}
		pod := &snap.Pods[i]
		if len(pod.IPs) == 0 {
			return ep, fmt.Errorf("%s: the pod has no IP address yet", asked)
		}
		if !pod.Active() && !pod.HostNetwork {
			return ep, fmt.Errorf("%s: the pod has terminated (phase %s); its address may belong to another pod by now", asked, pod.Phase)
		}
		ep.Address = pod.IPs[0].Unmap()
		if pod.HostNetwork {
			ep.HostNetworkPod = asked
		}
	}
	if pod := activePod(snap, ep.Address); pod != nil {
		ep.Pod, ep.Node = pod.Key(), pod.NodeName
	} else if n := nodeOwning(snap, ep.Address); n != "" {
		ep.Node = n
	}
	return ep, nil
}

// activePod is the active pod owning addr, as the reference semantics
// pick it (the smallest "namespace/name" when several claim it).
func activePod(snap *policy.Snapshot, addr netip.Addr) *policy.Pod {
	var owner *policy.Pod
	for i := range snap.Pods {
		p := &snap.Pods[i]
		if p.Active() && slices.ContainsFunc(p.IPs, func(a netip.Addr) bool { return a.Unmap() == addr }) &&
			(owner == nil || p.Key() < owner.Key()) {
			owner = p
		}
	}
	return owner
}

// nodeOwning is the name of the node with address addr, or "".
func nodeOwning(snap *policy.Snapshot, addr netip.Addr) string {
	for _, n := range snap.Nodes {
		if slices.Contains(n.Addresses, addr) {
			return n.Name
		}
	}
	return ""
}

// Answer is the explanation of one connection.
type Answer struct {
	From     Endpoint        `json:"from"`
	To       Endpoint        `json:"to"`
	Protocol corev1.Protocol `json:"protocol"`
	Port     uint16          `json:"port,omitempty"`
	// Allowed is the verdict for a new connection.
	Allowed bool `json:"allowed"`
	// Egress is the source pod's egress, Ingress the destination pod's
	// ingress.
	Egress  Direction `json:"egress"`
	Ingress Direction `json:"ingress"`
	// Notes are facts of the dataplane that decided instead of policy
	// (a pod's traffic to itself, a node's traffic to its own pods).
	Notes []string `json:"notes,omitempty"`
	// Warnings are what the evaluation met in ClusterNetworkPolicies and
	// could not apply as written.
	Warnings []string `json:"warnings,omitempty"`
	// ClusterNetworkPolicyCRD: false when the CRD is not installed (no
	// ClusterNetworkPolicy is then enforced).
	ClusterNetworkPolicyCRD bool `json:"clusterNetworkPolicyCRD"`
	// Live holds the traces through the agents' applied tables (--live),
	// and LiveDisagrees whether they reach another verdict than Allowed.
	Live          []LiveTrace `json:"live,omitempty"`
	LiveDisagrees bool        `json:"liveDisagrees,omitempty"`
}

// Direction is the decision in one direction.
type Direction struct {
	// Pod is the pod whose policies apply; empty when that side is no
	// active pod (nothing is judged then).
	Pod string `json:"pod,omitempty"`
	// Judged is false when no policy is consulted: no pod on that side,
	// or traffic from the pod's own node.
	Judged  bool `json:"judged"`
	Allowed bool `json:"allowed"`
	// DecidedBy is Admin, NetworkPolicy, Baseline or Default
	// (policy.Decider); empty when not judged.
	DecidedBy policy.Decider `json:"decidedBy,omitempty"`
	// Admin and Baseline are the ClusterNetworkPolicies of the tier that
	// select Pod, consulted in precedence order up to the one that
	// matched; nil when the tier was not reached.
	Admin []TierPolicy `json:"admin,omitempty"`
	// NetworkPolicies are those that select Pod in this direction: the
	// enforced ones isolate it, the audited ones (Audit) only log.
	NetworkPolicies []NetworkPolicy `json:"networkPolicies,omitempty"`
	// AuditWouldDeny: only audited NetworkPolicies select Pod, the
	// packet reaches them, and none admits it: enforced, they would deny
	// it; the agent logs it as an audit record and lets it on.
	AuditWouldDeny bool `json:"auditWouldDeny,omitempty"`
	// AuditDenies are the Deny rules of ClusterNetworkPolicies in audit
	// mode that the packet reaches, Admin tier first: enforced, each would
	// deny it; the agent logs one audit record for each and lets it on.
	AuditDenies []AuditDeny  `json:"auditDenies,omitempty"`
	Baseline    []TierPolicy `json:"baseline,omitempty"`
	// AdminReached and BaselineReached tell a tier with no policy for Pod
	// from a tier that was not reached.
	AdminReached    bool `json:"adminReached"`
	BaselineReached bool `json:"baselineReached"`
}

// NetworkPolicy is a NetworkPolicy that isolates the pod, and whether and
// where it admits the connection.
type NetworkPolicy struct {
	Name   string `json:"name"` // namespace/name
	Admits bool   `json:"admits"`
	// Audit: the policy is in audit mode (annotated
	// nftpolicy.io/enforcement: audit, or every policy is): it decides
	// nothing while an enforced one selects the pod, and drops nothing.
	Audit bool `json:"audit,omitempty"`
	// Rule indexes spec.ingress or spec.egress; Peer and Port index that
	// rule's from/to and ports, nil when the rule has none (everyone,
	// every port). PeerText and PortText quote them.
	Rule     *int   `json:"rule,omitempty"`
	Peer     *int   `json:"peer,omitempty"`
	PeerText string `json:"peerText,omitempty"`
	Port     *int   `json:"port,omitempty"`
	PortText string `json:"portText,omitempty"`
}

// AuditDeny is a Deny rule of a ClusterNetworkPolicy in audit mode that
// would deny the packet.
type AuditDeny struct {
	Policy string             `json:"policy"`
	Tier   policyv1beta1.Tier `json:"tier"`
	// Rule indexes spec.ingress or spec.egress; RuleName is its name.
	Rule     int    `json:"rule"`
	RuleName string `json:"ruleName,omitempty"`
}

// TierPolicy is a ClusterNetworkPolicy that selects the pod, and its rule
// that matched, if any.
type TierPolicy struct {
	Name     string `json:"name"`
	Priority int32  `json:"priority"`
	// Audit: the policy is in audit mode (annotated
	// nftpolicy.io/enforcement: audit, or every policy is): its rule
	// decides nothing, and a Deny is logged as an audit record.
	Audit bool `json:"audit,omitempty"`
	// Rule indexes spec.ingress or spec.egress; nil when no rule matched.
	Rule     *int                                         `json:"rule,omitempty"`
	RuleName string                                       `json:"ruleName,omitempty"`
	Action   policyv1beta1.ClusterNetworkPolicyRuleAction `json:"action,omitempty"`
	// Peer indexes the rule's from/to; nil for a rule that failed closed.
	Peer     *int   `json:"peer,omitempty"`
	PeerText string `json:"peerText,omitempty"`
}

// Explain answers q from the snapshot.
func Explain(st *State, q Query) (*Answer, error) {
	snap := st.Snapshot
	var errs []error
	from, err := resolve(snap, q.From)
	errs = append(errs, err)
	to, err := resolve(snap, q.To)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if from.Address.Is4() != to.Address.Is4() {
		return nil, fmt.Errorf("%s is %s and %s is %s: a packet has one family", from.Address, family(from.Address), to.Address, family(to.Address))
	}
	proto := q.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	v, tr := policy.EvaluateWithTrace(snap, policy.Packet{Src: from.Address, Dst: to.Address, Protocol: proto, DstPort: q.Port})
	a := &Answer{From: from, To: to, Protocol: proto, Port: q.Port, Allowed: v.Allowed, ClusterNetworkPolicyCRD: st.CNPCRD}
	a.Egress = direction(snap, v.Egress, tr.Egress, networkingv1.PolicyTypeEgress)
	a.Ingress = direction(snap, v.Ingress, tr.Ingress, networkingv1.PolicyTypeIngress)
	for _, w := range v.Warnings {
		a.Warnings = append(a.Warnings, fmt.Sprintf("ClusterNetworkPolicy %s: %s", w.Policy, w.Message))
	}
	switch {
	case from.Pod != "" && from.Pod == to.Pod && q.ThroughService:
		a.Allowed = a.Egress.Allowed && a.Ingress.Allowed
		a.Notes = append(a.Notes, "through a Service, a pod's traffic to itself leaves the pod and comes back over the bridge (hairpin): its own policies judge it both ways")
	case from.Pod != "" && from.Pod == to.Pod:
		a.Notes = append(a.Notes, "a pod's traffic to itself never leaves it: always allowed, whatever its policies say")
	case to.Pod != "" && from.Pod == "" && fromOwnNode(snap, from.Address, to.Node):
		// The dataplane does not filter the output hook: the node's own
		// traffic to its pods (kubelet probes) is never judged.
		a.Ingress = Direction{Pod: to.Pod, Allowed: true}
		a.Allowed = a.Egress.Allowed
		a.Notes = append(a.Notes, fmt.Sprintf("%s is an address of %s, the node of %s: a node always reaches its own pods "+
			"(the agent does not filter the output hook), so %s's ingress policies are not consulted", from.Address, to.Node, to.Pod, to.Pod))
	}
	return a, nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// fromOwnNode reports whether addr is an address of node.
func fromOwnNode(snap *policy.Snapshot, addr netip.Addr, node string) bool {
	i := slices.IndexFunc(snap.Nodes, func(n policy.Node) bool { return n.Name == node })
	return i >= 0 && slices.Contains(snap.Nodes[i].Addresses, addr)
}

// direction turns one direction's verdict and trace into its answer.
func direction(snap *policy.Snapshot, v policy.DirectionVerdict, t policy.DirectionTrace, dir networkingv1.PolicyType) Direction {
	d := Direction{Pod: t.Pod, Allowed: v.Allowed}
	if t.Pod == "" {
		return d
	}
	d.Judged, d.DecidedBy, d.AuditWouldDeny = true, v.DecidedBy(), v.AuditDenied
	for _, r := range v.AuditDenies {
		d.AuditDenies = append(d.AuditDenies, AuditDeny{Policy: r.Policy, Tier: r.Tier, Rule: r.Index, RuleName: r.Name})
	}
	d.AdminReached, d.BaselineReached = t.Admin != nil, t.Baseline != nil
	d.Admin = tierPolicies(snap, t.Admin, dir)
	d.Baseline = tierPolicies(snap, t.Baseline, dir)
	for _, np := range t.NetworkPolicies {
		out := NetworkPolicy{Name: np.Policy, Admits: np.Admitted.Rule >= 0, Audit: np.Audit}
		if out.Admits {
			m := np.Admitted
			out.Rule = new(m.Rule)
			peer, port := npRuleParts(snap, np.Policy, dir, m.Rule)
			if m.Peer >= 0 {
				out.Peer, out.PeerText = new(m.Peer), quote(peer[m.Peer])
			}
			if m.Port >= 0 {
				out.Port, out.PortText = new(m.Port), portText(port[m.Port])
			}
		}
		d.NetworkPolicies = append(d.NetworkPolicies, out)
	}
	return d
}

// npRuleParts returns the peers and ports of rule i of the named
// NetworkPolicy in direction dir.
func npRuleParts(snap *policy.Snapshot, name string, dir networkingv1.PolicyType, i int) ([]networkingv1.NetworkPolicyPeer, []networkingv1.NetworkPolicyPort) {
	for _, np := range snap.Policies {
		if np == nil || np.Namespace+"/"+np.Name != name {
			continue
		}
		if dir == networkingv1.PolicyTypeIngress {
			return np.Spec.Ingress[i].From, np.Spec.Ingress[i].Ports
		}
		return np.Spec.Egress[i].To, np.Spec.Egress[i].Ports
	}
	return nil, nil
}

func tierPolicies(snap *policy.Snapshot, list []policy.CNPTrace, dir networkingv1.PolicyType) []TierPolicy {
	var out []TierPolicy
	for _, c := range list {
		tp := TierPolicy{Name: c.Policy, Priority: c.Priority, Audit: c.Audit}
		if c.Match != nil {
			tp.Rule, tp.RuleName, tp.Action = new(c.Match.Index), c.Match.Name, c.Match.Action
			if c.Peer >= 0 {
				tp.Peer, tp.PeerText = new(c.Peer), cnpPeerText(snap, c.Policy, dir, c.Match.Index, c.Peer)
			}
		}
		out = append(out, tp)
	}
	return out
}

// cnpPeerText quotes peer j of rule i of the named ClusterNetworkPolicy.
func cnpPeerText(snap *policy.Snapshot, name string, dir networkingv1.PolicyType, i, j int) string {
	for _, c := range snap.ClusterNetworkPolicies {
		if c == nil || c.Name != name {
			continue
		}
		if dir == networkingv1.PolicyTypeIngress {
			return quote(c.Spec.Ingress[i].From[j])
		}
		return quote(c.Spec.Egress[i].To[j])
	}
	return ""
}

// quote is v as compact JSON, the way it reads in the policy.
func quote(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// portText reads like "TCP/80", "TCP/8000-8100", "TCP/http" or "UDP (every port)".
func portText(p networkingv1.NetworkPolicyPort) string {
	proto := corev1.ProtocolTCP
	if p.Protocol != nil {
		proto = *p.Protocol
	}
	switch {
	case p.Port == nil:
		return string(proto) + " (every port)"
	case p.EndPort != nil:
		return fmt.Sprintf("%s/%s-%d", proto, p.Port.String(), *p.EndPort)
	default:
		return string(proto) + "/" + p.Port.String()
	}
}

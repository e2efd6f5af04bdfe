package policy

// This file is the reference semantics of Kubernetes NetworkPolicy v1
// (networking.k8s.io/v1), written from the API reference and the
// network-policies concept page, independently of the compiler. It is the
// test oracle: clarity over speed, and close to the wording of the spec.
// evaluate_cnp.go adds the ClusterNetworkPolicy tiers around it.
//
// What it does not model (it has no notion of connections, and
// NetworkPolicy none of nodes):
//   - "traffic to and from the node where a Pod is running is always
//     allowed": NetworkPolicy rules ignore Snapshot.Nodes, so node traffic
//     is judged like any other non-pod address (ipBlock only);
//   - Services: the Packet is already after DNAT;
//   - established connections surviving a policy change (conntrack).
//
// Decisions where the spec is silent or the input is invalid (the API server
// would have rejected most of these; here they can come from a fuzzer):
//   - An invalid label selector (LabelSelectorAsSelector fails) matches
//     nothing: in a peer the peer matches no pod; as a policy's
//     spec.podSelector the policy selects no pod (so it isolates nothing).
//   - An ipBlock with an unparseable cidr or any unparseable except matches
//     nothing. cidr host bits are ignored (10.0.0.1/24 is 10.0.0.0/24).
//     An except of the other family, or outside cidr, excludes nothing
//     beyond what it contains.
//   - A peer with ipBlock and a selector, or with no field at all, is
//     invalid and matches nothing.
//   - A port entry whose protocol is not TCP/UDP/SCTP, with endPort but no
//     port or a named port, or with endPort < port, matches nothing.
//   - A Packet with an empty Protocol is TCP (like an empty ContainerPort
//     protocol). Any protocol other than TCP/UDP/SCTP has no port and
//     matches only rules with an empty port list.
//   - Several active pods with the same IP: the one with the smallest
//     "namespace/name" owns it.
//   - A pod whose namespace is missing from Snapshot.Namespaces is still
//     selected by its policies and by a podSelector-only peer, but matches
//     no namespaceSelector (not even {}).
//   - Self traffic: "a pod cannot block access to itself" (concept page).
//     When Src and Dst belong to the same pod, Verdict.Allowed is true
//     whatever the direction verdicts say (they are still computed, so a
//     caller can see what the rules alone would do). Such a packet never
//     leaves the pod's network namespace, so the dataplane never sees it.

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/nft"
)

// Verdict is the reference decision for the first packet of a connection.
type Verdict struct {
	// Allowed is Egress.Allowed && Ingress.Allowed, except for a pod's
	// traffic to itself, which is always allowed.
	Allowed bool
	// Egress is the source pod's egress decision, Ingress the destination
	// pod's ingress decision. A side that is not an active pod is
	// {Isolated: false, Allowed: true}.
	Egress, Ingress DirectionVerdict
	// UnknownLocal: the source or destination is an address of the pod
	// CIDRs of s.NodeName that is neither an active pod of that node nor
	// one of s.HostAddresses. Such traffic is denied whatever the
	// policies say: it is a pod the node has not programmed yet.
	UnknownLocal bool
	// Audit says which deny-log records marked audit the packet gives
	// (audit.go): a direction whose audited NetworkPolicies would deny
	// it, and each audited ClusterNetworkPolicy Deny rule it reaches,
	// where the dataplane judges that direction (egress always; ingress
	// only after an allowed egress). None when UnknownLocal, or for a
	// pod's traffic to itself, which no chain sees.
	Audit AuditVerdict
	// Warnings are what the evaluation met in ClusterNetworkPolicies and
	// could not apply as written, or found ambiguous (see
	// evaluate_cnp.go), in the order met, egress first; nil if none.
	Warnings []Warning
}

// DirectionVerdict explains the decision in one direction. Which tier
// decided follows from the fields; DecidedBy says it. With no
// ClusterNetworkPolicy rule matching, Admin and Baseline are nil and the
// verdict reads as NetworkPolicy alone.
type DirectionVerdict struct {
	// Isolated: some NetworkPolicy selects the pod for this direction.
	// Isolated and By say what the NetworkPolicy tier would decide, also
	// when an Admin-tier Accept or Deny kept it from being reached.
	Isolated bool
	// Allowed is the decision: the Admin tier's Accept or Deny; else, if
	// Isolated, whether some NetworkPolicy allows; else the Baseline tier's
	// Accept or Deny; else allowed.
	Allowed bool
	By      []string // "ns/policy" NetworkPolicies whose rules allowed it (sorted, unique); nil if none
	// Audited: no enforced NetworkPolicy isolates the pod in this
	// direction, but audited ones select it (audit.go). Isolated, By and
	// Allowed ignore them; AuditBy lists those that admit the packet.
	Audited bool
	AuditBy []string
	// AuditDenied: Audited, the NetworkPolicy tier was reached (no Admin
	// Accept or Deny) and no audited policy admits the packet: enforced,
	// they would deny it. The packet goes on to the Baseline tier.
	AuditDenied bool
	// AuditDenies are the Deny rules of audited ClusterNetworkPolicies
	// that this direction reached (audit.go), Admin tier first: enforced,
	// each would have denied it; nil if none.
	AuditDenies []CNPRule
	// Admin is the Admin-tier ClusterNetworkPolicy rule that matched first
	// (Accept, Deny or Pass), nil if none did; audited policies' rules are
	// never it.
	Admin *CNPRule
	// Baseline is the Baseline-tier rule that matched first, nil if none did
	// or the tier was not reached (an Admin Accept or Deny, or Isolated).
	Baseline *CNPRule
}

// Evaluate returns whether the packet is allowed by the snapshot's policies,
// cluster-wide: the source pod's egress policies and the destination pod's
// ingress policies must both allow it.
func Evaluate(s *Snapshot, p Packet) Verdict {
	return evaluate(s, p, nil)
}

// EvaluateWithTrace is Evaluate, and the trace of how it decided: the
// policies it consulted per direction and what each of them did. The
// verdict is Evaluate's, computed by the same code.
func EvaluateWithTrace(s *Snapshot, p Packet) (Verdict, Trace) {
	var t Trace
	v := evaluate(s, p, &t)
	return v, t
}

// evaluate is Evaluate; a non-nil trace is filled in on the way.
func evaluate(s *Snapshot, p Packet, trace *Trace) Verdict {
	p.Src, p.Dst = p.Src.Unmap(), p.Dst.Unmap()
	e := evalState{s: s, p: p, src: evalPodByIP(s, p.Src), dst: evalPodByIP(s, p.Dst), trace: trace}

	v := Verdict{
		Egress:  DirectionVerdict{Allowed: true},
		Ingress: DirectionVerdict{Allowed: true},
	}
	if e.src != nil {
		e.cur = e.traceDirection(e.src, func(t *Trace) *DirectionTrace { return &t.Egress })
		v.Egress = e.direction(e.src, networkingv1.PolicyTypeEgress)
	}
	if e.dst != nil {
		e.cur = e.traceDirection(e.dst, func(t *Trace) *DirectionTrace { return &t.Ingress })
		v.Ingress = e.direction(e.dst, networkingv1.PolicyTypeIngress)
	}
	v.Allowed = v.Egress.Allowed && v.Ingress.Allowed
	// Egress is judged first; a packet it drops never meets ingress.
	v.Audit = AuditVerdict{Egress: v.Egress.AuditDenied, Ingress: v.Egress.Allowed && v.Ingress.AuditDenied}
	for _, r := range v.Egress.AuditDenies {
		v.Audit.Rules = append(v.Audit.Rules, auditRule(nft.Egress, &r))
	}
	if v.Egress.Allowed {
		for _, r := range v.Ingress.AuditDenies {
			v.Audit.Rules = append(v.Audit.Rules, auditRule(nft.Ingress, &r))
		}
	}
	if e.src != nil && e.src == e.dst {
		v.Allowed = true // a pod cannot block access to itself
		v.Audit = AuditVerdict{}
	}
	if evalUnknownLocal(s, p.Src) || evalUnknownLocal(s, p.Dst) {
		v.Allowed = false
		v.UnknownLocal = true
		v.Audit = AuditVerdict{}
	}
	v.Warnings = e.warnings
	return v
}

type evalState struct {
	s        *Snapshot
	p        Packet
	src, dst *Pod // active pods owning p.Src and p.Dst, or nil
	warnings []Warning
	// trace, when not nil, is filled in; cur is its direction being
	// evaluated (nil when not tracing).
	trace *Trace
	cur   *DirectionTrace
}

// direction decides one direction for pod, the pod whose policies apply
// (the source for egress, the destination for ingress): the Admin tier,
// then the NetworkPolicy tier if it isolates the pod in this direction,
// else the Baseline tier, else allow.
func (e *evalState) direction(pod *Pod, dir networkingv1.PolicyType) DirectionVerdict {
	v := e.networkPolicyTier(pod, dir)
	v.Admin, v.AuditDenies = e.cnpTier(policyv1beta1.AdminTier, pod, dir)
	if v.Admin != nil && v.Admin.Action != policyv1beta1.ClusterNetworkPolicyRuleActionPass {
		v.Allowed = v.Admin.Action == policyv1beta1.ClusterNetworkPolicyRuleActionAccept
		return v
	}
	if v.Isolated {
		return v // NetworkPolicy decides for the pods it selects
	}
	v.AuditDenied = v.Audited && len(v.AuditBy) == 0
	var audits []CNPRule
	v.Baseline, audits = e.cnpTier(policyv1beta1.BaselineTier, pod, dir)
	v.AuditDenies = append(v.AuditDenies, audits...)
	// A Baseline Pass hands over to the next tier: the default, allow.
	v.Allowed = v.Baseline == nil || v.Baseline.Action != policyv1beta1.ClusterNetworkPolicyRuleActionDeny
	return v
}

// networkPolicyTier is the NetworkPolicy tier alone.
func (e *evalState) networkPolicyTier(pod *Pod, dir networkingv1.PolicyType) DirectionVerdict {
	var v DirectionVerdict
	for _, np := range e.s.Policies {
		if np == nil || np.Namespace != pod.Namespace || !evalHasPolicyType(np, dir) {
			continue
		}
		if !evalSelectorMatches(&np.Spec.PodSelector, pod.Labels) {
			continue
		}
		audited := e.s.AuditAll || Audited(np)
		m, allows := e.policyMatch(np, dir)
		switch {
		case audited:
			v.Audited = true
			if allows {
				v.AuditBy = append(v.AuditBy, np.Namespace+"/"+np.Name)
			}
		default:
			v.Isolated = true
			if allows {
				v.By = append(v.By, np.Namespace+"/"+np.Name)
			}
		}
		if e.cur != nil {
			if !allows {
				m = RuleMatch{Rule: -1}
			}
			e.cur.NetworkPolicies = append(e.cur.NetworkPolicies, NetworkPolicyTrace{Policy: np.Namespace + "/" + np.Name, Admitted: m, Audit: audited})
		}
	}
	slices.Sort(v.By)
	v.By = slices.Compact(v.By)
	slices.Sort(v.AuditBy)
	v.AuditBy = slices.Compact(v.AuditBy)
	// Enforced policies decide: audited ones beside them would only widen
	// the allow-list, so they would deny nothing more.
	v.Audited = v.Audited && !v.Isolated
	if !v.Audited {
		v.AuditBy = nil
	}
	v.Allowed = !v.Isolated || len(v.By) > 0
	return v
}

// evalPolicyTypes returns spec.policyTypes, defaulted as the API server does
// when empty: Ingress always, Egress when there are egress rules.
func evalPolicyTypes(np *networkingv1.NetworkPolicy) []networkingv1.PolicyType {
	if len(np.Spec.PolicyTypes) > 0 {
		return np.Spec.PolicyTypes
	}
	types := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	if len(np.Spec.Egress) > 0 {
		types = append(types, networkingv1.PolicyTypeEgress)
	}
	return types
}

func evalHasPolicyType(np *networkingv1.NetworkPolicy, dir networkingv1.PolicyType) bool {
	return slices.Contains(evalPolicyTypes(np), dir)
}

// policyMatch reports whether some rule of np for direction dir matches:
// (no peers or some peer matches) and (no ports or some port matches), and
// where: the first such rule, its first matching peer and port. An empty
// rule list allows nothing.
func (e *evalState) policyMatch(np *networkingv1.NetworkPolicy, dir networkingv1.PolicyType) (RuleMatch, bool) {
	// The remote side: the source for ingress, the destination for egress.
	remoteIP, remotePod := e.p.Src, e.src
	if dir == networkingv1.PolicyTypeEgress {
		remoteIP, remotePod = e.p.Dst, e.dst
	}
	// ruleMatches returns the index of the matching peer and port, -1 for
	// an empty list (which matches everything), or ok false.
	ruleMatches := func(peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) (peer, port int, ok bool) {
		peer, port = -1, -1
		if len(peers) > 0 {
			peer = slices.IndexFunc(peers, func(peer networkingv1.NetworkPolicyPeer) bool {
				return e.peerMatches(np.Namespace, &peer, remoteIP, remotePod)
			})
			if peer < 0 {
				return 0, 0, false
			}
		}
		if len(ports) > 0 {
			port = slices.IndexFunc(ports, func(port networkingv1.NetworkPolicyPort) bool {
				return e.portMatches(&port)
			})
			if port < 0 {
				return 0, 0, false
			}
		}
		return peer, port, true
	}
	if dir == networkingv1.PolicyTypeIngress {
		for i, r := range np.Spec.Ingress {
			if peer, port, ok := ruleMatches(r.From, r.Ports); ok {
				return RuleMatch{Rule: i, Peer: peer, Port: port}, true
			}
		}
		return RuleMatch{}, false
	}
	for i, r := range np.Spec.Egress {
		if peer, port, ok := ruleMatches(r.To, r.Ports); ok {
			return RuleMatch{Rule: i, Peer: peer, Port: port}, true
		}
	}
	return RuleMatch{}, false
}

// peerMatches reports whether the remote side (remoteIP, owned by the active
// pod remotePod or by no pod) is inside peer, for a policy in namespace
// policyNS.
func (e *evalState) peerMatches(policyNS string, peer *networkingv1.NetworkPolicyPeer, remoteIP netip.Addr, remotePod *Pod) bool {
	hasSelector := peer.PodSelector != nil || peer.NamespaceSelector != nil
	switch {
	case peer.IPBlock != nil && hasSelector:
		return false // invalid: ipBlock excludes the other fields
	case peer.IPBlock != nil:
		return evalIPBlockContains(peer.IPBlock, remoteIP)
	case !hasSelector:
		return false // invalid: a peer must specify something
	}

	// Selectors only ever match active pods (not hostNetwork, not
	// terminated, with an IP): remotePod is nil otherwise.
	if remotePod == nil {
		return false
	}
	if peer.NamespaceSelector == nil {
		// podSelector alone: pods in the policy's own namespace.
		return remotePod.Namespace == policyNS && evalSelectorMatches(peer.PodSelector, remotePod.Labels)
	}
	ns := evalNamespace(e.s, remotePod.Namespace)
	if ns == nil || !evalSelectorMatches(peer.NamespaceSelector, ns.Labels) {
		return false
	}
	// namespaceSelector alone: all pods in the namespace; both: AND.
	return peer.PodSelector == nil || evalSelectorMatches(peer.PodSelector, remotePod.Labels)
}

// ipBlockContains reports whether ip is inside cidr and inside none of
// except. Prefixes never contain addresses of the other family.
func evalIPBlockContains(b *networkingv1.IPBlock, ip netip.Addr) bool {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return false
	}
	excepts := make([]netip.Prefix, 0, len(b.Except))
	for _, s := range b.Except {
		ex, err := netip.ParsePrefix(s)
		if err != nil {
			return false
		}
		excepts = append(excepts, ex.Masked())
	}
	if !ip.IsValid() || !cidr.Masked().Contains(ip) {
		return false
	}
	for _, ex := range excepts {
		if ex.Contains(ip) {
			return false
		}
	}
	return true
}

// portMatches reports whether the packet's protocol and destination port
// are those of port. Named ports are resolved on the destination pod (for
// ingress the isolated pod itself, for egress the pod owning p.Dst), by
// name and protocol.
func (e *evalState) portMatches(port *networkingv1.NetworkPolicyPort) bool {
	proto := corev1.ProtocolTCP
	if port.Protocol != nil {
		proto = *port.Protocol
	}
	if !evalIsPortProtocol(proto) || evalPacketProtocol(e.p) != proto {
		return false
	}
	if port.Port == nil {
		return port.EndPort == nil // all ports of the protocol
	}
	dport := int32(e.p.DstPort)
	if port.Port.Type == intstr.String {
		if port.EndPort != nil || e.dst == nil {
			return false
		}
		return slices.ContainsFunc(e.dst.Ports, func(cp ContainerPort) bool {
			cpProto := cp.Protocol
			if cpProto == "" {
				cpProto = corev1.ProtocolTCP
			}
			return cp.Name == port.Port.StrVal && cpProto == proto && cp.Port == dport
		})
	}
	first := port.Port.IntVal
	if port.EndPort == nil {
		return dport == first
	}
	last := *port.EndPort
	if last < first {
		return false
	}
	return first <= dport && dport <= last
}

func evalIsPortProtocol(p corev1.Protocol) bool {
	return p == corev1.ProtocolTCP || p == corev1.ProtocolUDP || p == corev1.ProtocolSCTP
}

// packetProtocol is the packet's protocol, TCP when empty.
func evalPacketProtocol(p Packet) corev1.Protocol {
	if p.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return p.Protocol
}

// selectorMatches applies a label selector (matchLabels and
// matchExpressions; {} matches everything). An invalid selector matches
// nothing.
func evalSelectorMatches(sel *metav1.LabelSelector, l map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(l))
}

// evalPodByIP returns the active pod that has ip, or nil. If several do (which
// a healthy cluster never shows), the smallest "namespace/name" wins.
func evalPodByIP(s *Snapshot, ip netip.Addr) *Pod {
	if !ip.IsValid() {
		return nil
	}
	var owner *Pod
	for i := range s.Pods {
		pod := &s.Pods[i]
		if !pod.Active() {
			continue
		}
		if !slices.ContainsFunc(pod.IPs, func(a netip.Addr) bool { return a.Unmap() == ip }) {
			continue
		}
		if owner == nil || pod.Key() < owner.Key() {
			owner = pod
		}
	}
	return owner
}

// evalUnknownLocal reports whether ip lies in the pod CIDRs of s.NodeName
// but is no active pod of that node and no host address of it.
func evalUnknownLocal(s *Snapshot, ip netip.Addr) bool {
	if !ip.IsValid() || slices.Contains(s.HostAddresses, ip) {
		return false
	}
	inCIDR := false
	for _, n := range s.Nodes {
		if n.Name == s.NodeName && slices.ContainsFunc(n.PodCIDRs, func(c netip.Prefix) bool { return c.Masked().Contains(ip) }) {
			inCIDR = true
		}
	}
	if !inCIDR {
		return false
	}
	for i := range s.Pods {
		pod := &s.Pods[i]
		if pod.NodeName == s.NodeName && pod.Active() && slices.ContainsFunc(pod.IPs, func(a netip.Addr) bool { return a.Unmap() == ip }) {
			return false
		}
	}
	return true
}

// evalNamespace returns the snapshot's namespace called name (the first one if
// listed twice), or nil.
func evalNamespace(s *Snapshot, name string) *Namespace {
	for i := range s.Namespaces {
		if s.Namespaces[i].Name == name {
			return &s.Namespaces[i]
		}
	}
	return nil
}

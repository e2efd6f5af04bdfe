package policy

// ClusterNetworkPolicy objects, parsed once when they are set, and the
// NodeCompiler's bookkeeping of which local pods each one selects. What the
// parsed rules compile to is in tiers.go; the semantics they must match are
// in evaluate_cnp.go.

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"go4.org/netipx"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/nft"
)

// cnpAction is a rule's action, for the flattening. The Deny rules of a
// group are told apart, each by its own action from actionDeny up, so that
// each flattened element can jump to the deny chain of the rule that
// decided it (which counts its drops, and logs them with the deny log on).
type cnpAction uint32

const (
	actionPass cnpAction = iota
	actionAccept
	actionDeny
)

// cnpEntry is one ClusterNetworkPolicy object parsed. It depends on nothing
// but the (immutable) object; the NodeCompiler replaces it when the object
// changes, so a pointer comparison tells whether it is current.
type cnpEntry struct {
	obj      *policyv1beta1.ClusterNetworkPolicy
	name     string
	tier     nft.Tier // 0: neither Admin nor Baseline, the policy is ignored
	priority int32
	// audit: the object asks for audit mode (Audited); the NodeCompiler
	// may audit every policy besides (audit.go).
	audit bool
	// subjectNamespaces selects the namespaces of the subject pods, and
	// subjectPods (nil: every pod) the pods in them. subjectNamespaces is
	// nil when the subject selects nothing.
	subjectNamespaces, subjectPods labels.Selector
	rules                          [2][]tierRule // by dirIndex
	// namedIngress are the destinationNamedPort names of the ingress
	// rules (sorted): the ingress tier depends on what they resolve to on
	// the subject pod.
	namedIngress []string
	warnings     []Warning
}

// dirIndex is the index of a direction in per-direction arrays.
func dirIndex(d nft.Direction) int {
	if d == nft.Ingress {
		return 0
	}
	return 1
}

// tierRule is one rule of one direction.
type tierRule struct {
	// name is the rule's name, or "ingress[i]"/"egress[i]" when it has none.
	name   string
	action cnpAction
	// denyAll is the fail-closed reading of a Deny or Pass rule with a peer
	// the agent does not understand: everything is denied.
	denyAll bool
	peers   []tierPeer
	// Protocols: anyProtocol when the rule has none (every protocol and
	// port, ICMP included); else ports and named, of which at least one
	// entry must match (none usable: the rule matches nothing).
	anyProtocol bool
	ports       []cnpPort
	named       []string
}

// tierPeer is one usable peer: exactly one of its fields is set.
type tierPeer struct {
	pods     *compiledPeer // namespaces or pods: a selector peer, as in NetworkPolicy
	nodes    *nodeSelector
	networks *netipx.IPSet
}

type nodeSelector struct {
	key string
	sel labels.Selector
}

// cnpPort is a protocol with a destination port range.
type cnpPort struct {
	proto    uint8
	from, to uint16
}

// precedes orders a tier's policies: priority ascending, then name (the
// tie-break of evaluate_cnp.go).
func (e *cnpEntry) precedes(o *cnpEntry) int {
	return cmp.Or(cmp.Compare(e.priority, o.priority), strings.Compare(e.name, o.name))
}

// selects reports whether e's subject selects the local pod p.
func (e *cnpEntry) selects(c *NodeCompiler, p *Pod) bool {
	if e.tier == 0 || e.subjectNamespaces == nil {
		return false
	}
	nsLabels, ok := c.namespaces[p.Namespace]
	if !ok || !e.subjectNamespaces.Matches(labels.Set(nsLabels)) {
		return false
	}
	return e.subjectPods == nil || e.subjectPods.Matches(labels.Set(p.Labels))
}

// compileCNP parses p. Whatever it cannot apply as written is a warning,
// and matches what evaluate_cnp.go says it matches (mostly nothing, or
// everything for a fail-closed Deny).
func compileCNP(p *policyv1beta1.ClusterNetworkPolicy) *cnpEntry {
	e := &cnpEntry{obj: p, name: p.Name, priority: p.Spec.Priority, audit: Audited(p)}
	var w warningSet
	warn := func(format string, args ...any) { w.add("", p.Name, fmt.Sprintf(format, args...)) }
	switch p.Spec.Tier {
	case policyv1beta1.AdminTier:
		e.tier = nft.TierAdmin
	case policyv1beta1.BaselineTier:
		e.tier = nft.TierBaseline
	default:
		warn("unknown tier %q: policy ignored", p.Spec.Tier)
	}
	e.subjectNamespaces, e.subjectPods = parseSubject(&p.Spec.Subject, warn)
	for i, r := range p.Spec.Ingress {
		peers := make([]cnpPeerSpec, len(r.From))
		for j, f := range r.From {
			peers[j] = cnpPeerSpec{namespaces: f.Namespaces, pods: f.Pods}
		}
		rule := compileCNPRule(fmt.Sprintf("ingress rule %d", i), r.Action, peers, r.Protocols, warn)
		rule.name = ruleName(r.Name, "ingress", i)
		e.rules[0] = append(e.rules[0], rule)
		e.namedIngress = append(e.namedIngress, rule.named...)
	}
	slices.Sort(e.namedIngress)
	e.namedIngress = slices.Compact(e.namedIngress)
	for i, r := range p.Spec.Egress {
		peers := make([]cnpPeerSpec, len(r.To))
		for j, t := range r.To {
			peers[j] = cnpPeerSpec{namespaces: t.Namespaces, pods: t.Pods, nodes: t.Nodes, networks: t.Networks, domainNames: t.DomainNames}
		}
		rule := compileCNPRule(fmt.Sprintf("egress rule %d", i), r.Action, peers, r.Protocols, warn)
		rule.name = ruleName(r.Name, "egress", i)
		e.rules[1] = append(e.rules[1], rule)
	}
	e.warnings = w.list()
	return e
}

// ruleName is how the deny log names a rule: its name, or its place.
func ruleName(name, dir string, i int) string {
	if name != "" {
		return name
	}
	return fmt.Sprintf("%s[%d]", dir, i)
}

func parseSubject(s *policyv1beta1.ClusterNetworkPolicySubject, warn func(string, ...any)) (namespaces, pods labels.Selector) {
	if (s.Namespaces == nil) == (s.Pods == nil) {
		warn("subject must set exactly one of namespaces and pods: the policy selects no pod")
		return nil, nil
	}
	if s.Namespaces != nil {
		sel, err := metav1.LabelSelectorAsSelector(s.Namespaces)
		if err != nil {
			warn("subject.namespaces: %v: the policy selects no pod", err)
			return nil, nil
		}
		return sel, nil
	}
	nsSel, err := metav1.LabelSelectorAsSelector(&s.Pods.NamespaceSelector)
	if err != nil {
		warn("subject.pods.namespaceSelector: %v: the policy selects no pod", err)
		return nil, nil
	}
	podSel, err := metav1.LabelSelectorAsSelector(&s.Pods.PodSelector)
	if err != nil {
		warn("subject.pods.podSelector: %v: the policy selects no pod", err)
		return nil, nil
	}
	return nsSel, podSel
}

// cnpPeerSpec is an ingress or egress peer, seen alike.
type cnpPeerSpec struct {
	namespaces  *metav1.LabelSelector
	pods        *policyv1beta1.NamespacedPod
	nodes       *metav1.LabelSelector
	networks    []policyv1beta1.CIDR
	domainNames []policyv1beta1.DomainName
}

func (p *cnpPeerSpec) fields() int {
	n := 0
	for _, set := range []bool{p.namespaces != nil, p.pods != nil, p.nodes != nil, len(p.networks) > 0, len(p.domainNames) > 0} {
		if set {
			n++
		}
	}
	return n
}

func compileCNPRule(where string, action policyv1beta1.ClusterNetworkPolicyRuleAction, peers []cnpPeerSpec,
	protocols []policyv1beta1.ClusterNetworkPolicyProtocol, warn func(string, ...any)) tierRule {
	var r tierRule
	switch action {
	case policyv1beta1.ClusterNetworkPolicyRuleActionAccept:
		r.action = actionAccept
	case policyv1beta1.ClusterNetworkPolicyRuleActionDeny:
		r.action = actionDeny
	case policyv1beta1.ClusterNetworkPolicyRuleActionPass:
		r.action = actionPass
	default:
		warn("%s: unknown action %q: the rule matches nothing", where, action)
		return tierRule{action: actionPass} // no peers: matches nothing
	}
	if i := slices.IndexFunc(peers, func(p cnpPeerSpec) bool { return p.fields() != 1 }); i >= 0 {
		if r.action == actionAccept {
			warn("%s: peer %d sets no field or several: the Accept rule matches nothing (fail closed)", where, i)
			return tierRule{action: actionPass}
		}
		warn("%s: peer %d sets no field or several: the %s rule denies everything (fail closed)", where, i, action)
		return tierRule{action: actionDeny, denyAll: true}
	}
	for i, p := range peers {
		switch {
		case p.namespaces != nil:
			sel, err := metav1.LabelSelectorAsSelector(p.namespaces)
			if err != nil {
				warn("%s: peer %d: namespaces: %v: this peer matches nothing", where, i, err)
				continue
			}
			r.peers = append(r.peers, tierPeer{pods: &compiledPeer{namespaceSelector: sel, key: "namespaces:" + sel.String()}})
		case p.pods != nil:
			nsSel, err := metav1.LabelSelectorAsSelector(&p.pods.NamespaceSelector)
			if err != nil {
				warn("%s: peer %d: pods.namespaceSelector: %v: this peer matches nothing", where, i, err)
				continue
			}
			podSel, err := metav1.LabelSelectorAsSelector(&p.pods.PodSelector)
			if err != nil {
				warn("%s: peer %d: pods.podSelector: %v: this peer matches nothing", where, i, err)
				continue
			}
			// The same key as a NetworkPolicy peer with both selectors:
			// the same pods, so the same cache entry.
			r.peers = append(r.peers, tierPeer{pods: &compiledPeer{podSelector: podSel, namespaceSelector: nsSel,
				key: "pods:" + podSel.String() + "|namespaces:" + nsSel.String()}})
		case p.nodes != nil:
			sel, err := metav1.LabelSelectorAsSelector(p.nodes)
			if err != nil {
				warn("%s: peer %d: nodes: %v: this peer matches nothing", where, i, err)
				continue
			}
			r.peers = append(r.peers, tierPeer{nodes: &nodeSelector{key: sel.String(), sel: sel}})
		case len(p.networks) > 0:
			var b netipx.IPSetBuilder
			for _, cidr := range p.networks {
				prefix, err := netip.ParsePrefix(string(cidr))
				if err != nil {
					warn("%s: peer %d: network %q: %v: it matches nothing", where, i, cidr, err)
					continue
				}
				b.AddPrefix(prefix.Masked())
			}
			s, _ := b.IPSet()
			r.peers = append(r.peers, tierPeer{networks: s})
		default:
			warn("%s: peer %d: domainNames peers are not supported: this peer matches nothing", where, i)
		}
	}
	if len(protocols) == 0 {
		r.anyProtocol = true
		return r
	}
	for i, pr := range protocols {
		n := 0
		for _, set := range []bool{pr.TCP != nil, pr.UDP != nil, pr.SCTP != nil, pr.DestinationNamedPort != ""} {
			if set {
				n++
			}
		}
		if n != 1 {
			warn("%s: protocols entry %d sets no field or several: it matches nothing", where, i)
			continue
		}
		var proto uint8
		var port *policyv1beta1.Port
		switch {
		case pr.TCP != nil:
			proto, port = nft.ProtoTCP, pr.TCP.DestinationPort
		case pr.UDP != nil:
			proto, port = nft.ProtoUDP, pr.UDP.DestinationPort
		case pr.SCTP != nil:
			proto, port = nft.ProtoSCTP, pr.SCTP.DestinationPort
		default:
			r.named = append(r.named, pr.DestinationNamedPort)
			continue
		}
		if from, to, ok := portRange(port); ok {
			r.ports = append(r.ports, cnpPort{proto: proto, from: from, to: to})
		} else {
			warn("%s: protocols entry %d: invalid destination port: it matches nothing", where, i)
		}
	}
	return r
}

// portRange is the port range of a destinationPort (nil: every port), or
// false when it matches no port (cnpPortMatches in evaluate_cnp.go).
func portRange(p *policyv1beta1.Port) (from, to uint16, ok bool) {
	switch {
	case p == nil:
		return 0, 65535, true
	case p.Range != nil && p.Number == 0:
		lo, hi := max(p.Range.Start, 0), min(p.Range.End, 65535)
		if lo > hi {
			return 0, 0, false
		}
		return uint16(lo), uint16(hi), true
	case p.Range == nil && p.Number > 0 && p.Number <= 65535:
		return uint16(p.Number), uint16(p.Number), true
	}
	return 0, 0, false
}

// podTiers are the ClusterNetworkPolicies that apply to one local pod, per
// tier and direction, in precedence order: those whose subject selects it
// and that have rules of that direction. It is replaced, never modified,
// when that changes.
type podTiers struct {
	lists [2][2][]*cnpEntry // [tierIndex][dirIndex]
	// keys identify each list's compiled maps: the policies' names, and
	// for an ingress list using named ports, what those names resolve to
	// on the pod (named ports of ingress rules resolve on the subject).
	keys [2][2]string
}

// noTiers is every pod's podTiers when no ClusterNetworkPolicy applies.
var noTiers = &podTiers{}

func tierIndex(t nft.Tier) int {
	if t == nft.TierAdmin {
		return 0
	}
	return 1
}

// tiersOf returns pod's podTiers, computed (from every policy) when the pod,
// its namespace's labels or the policies changed in a way that was not
// patched in place.
func (c *NodeCompiler) tiersOf(pod *Pod) *podTiers {
	k := objectKey{pod.Namespace, pod.Name}
	if pt, ok := c.podTiers[k]; ok {
		return pt
	}
	pt := &podTiers{}
	for _, e := range c.cnps {
		if e.selects(c, pod) {
			for d := range 2 {
				if len(e.rules[d]) > 0 {
					l := &pt.lists[tierIndex(e.tier)][d]
					*l = append(*l, e)
				}
			}
		}
	}
	for t := range 2 {
		for d := range 2 {
			slices.SortFunc(pt.lists[t][d], (*cnpEntry).precedes)
		}
	}
	pt = pt.finish(pod)
	c.podTiers[k] = pt
	return pt
}

// finish computes the keys of the (sorted) lists; it returns noTiers when
// every list is empty.
func (pt *podTiers) finish(pod *Pod) *podTiers {
	empty := true
	for t := range 2 {
		for d := range 2 {
			l := pt.lists[t][d]
			if len(l) == 0 {
				pt.keys[t][d] = ""
				continue
			}
			empty = false
			names := make([]string, len(l))
			var named []string
			for i, e := range l {
				names[i] = e.name
				named = append(named, e.namedIngress...)
			}
			key := strings.Join(names, ",")
			if d == 0 && len(named) > 0 {
				key += "|" + resolvedFingerprint(pod, named)
			}
			pt.keys[t][d] = key
		}
	}
	if empty {
		return noTiers
	}
	return pt
}

// resolvedFingerprint renders what names resolve to on pod, canonically:
// two pods with the same fingerprint resolve every one of the names alike.
func resolvedFingerprint(pod *Pod, names []string) string {
	slices.Sort(names)
	var b strings.Builder
	for _, name := range slices.Compact(names) {
		rs := pod.resolveNamed(name)
		slices.SortFunc(rs, func(a, b protoPort) int { return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port)) })
		fmt.Fprintf(&b, "%s=%v;", name, rs)
	}
	return b.String()
}

// replaced returns pt with old (nil: none) taken out and now (nil: none)
// put in; pod is the pod pt belongs to.
func (pt *podTiers) replaced(old, now *cnpEntry, pod *Pod) *podTiers {
	out := &podTiers{}
	for t := range 2 {
		for d := range 2 {
			l := pt.lists[t][d]
			if old != nil {
				if i := slices.Index(l, old); i >= 0 {
					l = slices.Delete(slices.Clone(l), i, i+1)
				}
			}
			out.lists[t][d] = l
		}
	}
	if now != nil {
		for d := range 2 {
			if len(now.rules[d]) > 0 {
				l := &out.lists[tierIndex(now.tier)][d]
				i, _ := slices.BinarySearchFunc(*l, now, (*cnpEntry).precedes)
				*l = slices.Insert(slices.Clone(*l), i, now)
			}
		}
	}
	return out.finish(pod)
}

// SetClusterNetworkPolicy adds p or replaces the ClusterNetworkPolicy of
// the same name.
func (c *NodeCompiler) SetClusterNetworkPolicy(p *policyv1beta1.ClusterNetworkPolicy) {
	old := c.cnps[p.Name]
	if old != nil && old.obj == p {
		return
	}
	now := compileCNP(p)
	c.cnps[p.Name] = now
	c.cnpChanged(old, now)
}

// DeleteClusterNetworkPolicy removes a ClusterNetworkPolicy; an unknown
// name is ignored.
func (c *NodeCompiler) DeleteClusterNetworkPolicy(name string) {
	old, ok := c.cnps[name]
	if !ok {
		return
	}
	delete(c.cnps, name)
	c.cnpChanged(old, nil)
}

// cnpChanged patches the podTiers of the local pods that old selected or
// now selects: O(local pods) selector matches, not O(local pods ×
// policies).
func (c *NodeCompiler) cnpChanged(old, now *cnpEntry) {
	for k, pt := range c.podTiers {
		pod := c.local[k]
		wasIn := old != nil && pt != noTiers && slices.ContainsFunc(pt.lists[:], func(l [2][]*cnpEntry) bool {
			return slices.Contains(l[0], old) || slices.Contains(l[1], old)
		})
		nowIn := now != nil && now.selects(c, pod)
		switch {
		case nowIn:
			c.podTiers[k] = pt.replaced(old, now, pod)
		case wasIn:
			c.podTiers[k] = pt.replaced(old, nil, pod)
		}
	}
}

// ClusterNetworkPolicy returns the ClusterNetworkPolicy of that name, or
// nil.
func (c *NodeCompiler) ClusterNetworkPolicy(name string) *policyv1beta1.ClusterNetworkPolicy {
	if e := c.cnps[name]; e != nil {
		return e.obj
	}
	return nil
}

// SetNode adds n or replaces the node of the same name. Nodes matter only
// to ClusterNetworkPolicy nodes peers.
func (c *NodeCompiler) SetNode(n Node) {
	n.Addresses = unmapAll(n.Addresses)
	old, existed := c.nodes[n.Name]
	c.nodes[n.Name] = n
	c.nodeChanged(old, existed, n, true)
}

// DeleteNode removes a node; an unknown node is ignored.
func (c *NodeCompiler) DeleteNode(name string) {
	old, existed := c.nodes[name]
	if !existed {
		return
	}
	delete(c.nodes, name)
	c.nodeChanged(old, true, Node{}, false)
}

// nodeChanged drops the nodes peers that matched the node before or match
// it now.
func (c *NodeCompiler) nodeChanged(old Node, existed bool, now Node, exists bool) {
	if existed && exists && maps.Equal(old.Labels, now.Labels) && slices.Equal(old.Addresses, now.Addresses) {
		return
	}
	for key, e := range c.nodePeers {
		if (existed && e.sel.sel.Matches(labels.Set(old.Labels))) || (exists && e.sel.sel.Matches(labels.Set(now.Labels))) {
			delete(c.nodePeers, key)
		}
	}
}

// nodePeerEntry is the set of addresses of the nodes one selector matches.
type nodePeerEntry struct {
	sel *nodeSelector
	set *netipx.IPSet
	usage
}

// selectedNodes is the entry of the addresses of the nodes sel matches.
func (c *NodeCompiler) selectedNodes(sel *nodeSelector) *nodePeerEntry {
	if e := c.nodePeers[sel.key]; e != nil {
		e.used = c.epoch
		return e
	}
	var b netipx.IPSetBuilder
	for _, n := range c.nodes {
		if sel.sel.Matches(labels.Set(n.Labels)) {
			for _, a := range n.Addresses {
				b.Add(a)
			}
		}
	}
	s, _ := b.IPSet()
	e := &nodePeerEntry{sel: sel, set: s, usage: usage{c.epoch}}
	c.nodePeers[sel.key] = e
	return e
}

// namedPortEntry groups the addresses of the active pods that declare a
// port name, by the protocol and number they give it: an egress
// destinationNamedPort resolves on the destination pod.
type namedPortEntry struct {
	name     string
	byNumber []protoPortPeers
	usage
}

type protoPortPeers struct {
	proto uint8
	port  uint16
	peers *netipx.IPSet
}

// namedPortPods returns the entry of port name over every active pod.
func (c *NodeCompiler) namedPortPods(name string) *namedPortEntry {
	if e := c.cnpNamed[name]; e != nil {
		e.used = c.epoch
		return e
	}
	builders := map[protoPort]*netipx.IPSetBuilder{}
	for _, pods := range c.activeByNS {
		for _, p := range pods {
			for _, k := range p.resolveNamed(name) {
				if builders[k] == nil {
					builders[k] = &netipx.IPSetBuilder{}
				}
				for _, ip := range p.IPs {
					builders[k].Add(ip)
				}
			}
		}
	}
	e := &namedPortEntry{name: name, usage: usage{c.epoch}}
	for k, b := range builders {
		s, _ := b.IPSet()
		e.byNumber = append(e.byNumber, protoPortPeers{proto: k.proto, port: k.port, peers: s})
	}
	slices.SortFunc(e.byNumber, func(a, b protoPortPeers) int {
		return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port))
	})
	c.cnpNamed[name] = e
	return e
}

// protoPort is a resolved named port.
type protoPort struct {
	proto uint8
	port  uint16
}

// resolveNamed is every (protocol, port) under which p declares name, as
// evaluate_cnp.go matches a destinationNamedPort: the protocol TCP, UDP or
// SCTP (empty is TCP), any number a packet can carry.
func (p *Pod) resolveNamed(name string) []protoPort {
	var out []protoPort
	for _, cp := range p.Ports {
		if cp.Name != name || cp.Port < 0 || cp.Port > 65535 {
			continue
		}
		if proto := protoNumber(cp.Protocol); proto != 0 {
			out = append(out, protoPort{proto, uint16(cp.Port)})
		}
	}
	return out
}

// forgetNamedPorts drops the named-port entries of the names p declares.
func (c *NodeCompiler) forgetNamedPorts(p *Pod) {
	if p == nil {
		return
	}
	for _, cp := range p.Ports {
		delete(c.cnpNamed, cp.Name)
	}
}

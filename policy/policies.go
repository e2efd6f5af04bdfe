package policy

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftpolicy/nftpolicy/nft"
)

// compiledPolicy is a NetworkPolicy with its selectors parsed once.
type compiledPolicy struct {
	namespace, name string
	// audit: the object asks for audit mode (Audited); the NodeCompiler
	// may audit every policy besides.
	audit           bool
	podSelector     labels.Selector
	ingress, egress bool // policyTypes
	ingressRules    []compiledRule
	egressRules     []compiledRule
}

func (p *compiledPolicy) has(dir nft.Direction) bool {
	if dir == nft.Ingress {
		return p.ingress
	}
	return p.egress
}

func (p *compiledPolicy) rules(dir nft.Direction) []compiledRule {
	if dir == nft.Ingress {
		return p.ingressRules
	}
	return p.egressRules
}

type compiledRule struct {
	peers []compiledPeer // empty: everyone
	ports []compiledPort // empty: every protocol and port
}

// compiledPeer is one entry of from/to. A nil selector is "not specified".
type compiledPeer struct {
	podSelector, namespaceSelector labels.Selector
	ipBlock                        *netipx.IPSet // set for ipBlock peers only
	key                            string        // cache key of the selector pair
	invalid                        bool          // matches nothing (reported)
}

// compiledPort is one port entry: a numeric range or a name to resolve.
type compiledPort struct {
	proto     uint8
	protoName string
	from, to  uint16
	name      string
}

// compilePolicy parses np. A policy whose own podSelector cannot be parsed
// is skipped whole (the API server rejects such selectors, so this is only
// defence in depth); a bad peer or port skips just that part.
func (c *NodeCompiler) compilePolicy(np *networkingv1.NetworkPolicy) *compiledPolicy {
	p := &compiledPolicy{namespace: np.Namespace, name: np.Name, audit: Audited(np)}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		c.warnings.add(np.Namespace, np.Name, fmt.Sprintf("podSelector: %v: policy ignored", err))
		return nil
	}
	p.podSelector = sel
	types := np.Spec.PolicyTypes
	if len(types) == 0 {
		// The API server defaults policyTypes; repeat its rule for objects
		// that did not come through it.
		types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			types = append(types, networkingv1.PolicyTypeEgress)
		}
	}
	for _, t := range types {
		switch t {
		case networkingv1.PolicyTypeIngress:
			p.ingress = true
		case networkingv1.PolicyTypeEgress:
			p.egress = true
		}
	}
	for i, r := range np.Spec.Ingress {
		p.ingressRules = append(p.ingressRules, c.compileRule(p, fmt.Sprintf("ingress[%d]", i), r.From, r.Ports))
	}
	for i, r := range np.Spec.Egress {
		p.egressRules = append(p.egressRules, c.compileRule(p, fmt.Sprintf("egress[%d]", i), r.To, r.Ports))
	}
	return p
}

func (c *NodeCompiler) compileRule(p *compiledPolicy, where string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) compiledRule {
	var r compiledRule
	for i, peer := range peers {
		r.peers = append(r.peers, c.compilePeer(p, fmt.Sprintf("%s.peers[%d]", where, i), peer))
	}
	for i, port := range ports {
		if cp, ok := c.compilePort(p, fmt.Sprintf("%s.ports[%d]", where, i), port); ok {
			r.ports = append(r.ports, cp)
		}
	}
	if len(ports) > 0 && len(r.ports) == 0 {
		// Every port entry was unusable: the rule must admit nothing rather
		// than fall back to "all ports".
		r.ports = []compiledPort{{proto: 0, from: 1, to: 0}}
	}
	return r
}

func (c *NodeCompiler) compilePeer(p *compiledPolicy, where string, peer networkingv1.NetworkPolicyPeer) compiledPeer {
	var out compiledPeer
	bad := func(err error) compiledPeer {
		c.warnings.add(p.namespace, p.name, fmt.Sprintf("%s: %v: this peer matches nothing", where, err))
		return compiledPeer{invalid: true}
	}
	if peer.IPBlock != nil && (peer.PodSelector != nil || peer.NamespaceSelector != nil) {
		return bad(fmt.Errorf("peer has both ipBlock and a selector"))
	}
	if peer.IPBlock != nil {
		s, err := ipBlockSet(peer.IPBlock)
		if err != nil {
			return bad(err)
		}
		out.ipBlock = s
		return out
	}
	if peer.PodSelector == nil && peer.NamespaceSelector == nil {
		return bad(fmt.Errorf("peer has no selector and no ipBlock"))
	}
	var keys []string
	if peer.PodSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
		if err != nil {
			return bad(err)
		}
		out.podSelector = sel
		keys = append(keys, "pods:"+sel.String())
	}
	if peer.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(peer.NamespaceSelector)
		if err != nil {
			return bad(err)
		}
		out.namespaceSelector = sel
		keys = append(keys, "namespaces:"+sel.String())
	} else {
		// A pod selector alone means pods of the policy's own namespace.
		keys = append(keys, "in:"+p.namespace)
	}
	out.key = strings.Join(keys, "|")
	return out
}

// ipBlockSet is cidr minus every except, as a set of addresses.
func ipBlockSet(b *networkingv1.IPBlock) (*netipx.IPSet, error) {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return nil, fmt.Errorf("ipBlock.cidr: %w", err)
	}
	var s netipx.IPSetBuilder
	s.AddPrefix(unmapPrefix(cidr).Masked())
	for _, e := range b.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil {
			return nil, fmt.Errorf("ipBlock.except: %w", err)
		}
		s.RemovePrefix(unmapPrefix(ex).Masked())
	}
	return s.IPSet()
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

func (c *NodeCompiler) compilePort(p *compiledPolicy, where string, port networkingv1.NetworkPolicyPort) (compiledPort, bool) {
	proto := corev1.ProtocolTCP
	if port.Protocol != nil {
		proto = *port.Protocol
	}
	out := compiledPort{proto: protoNumber(proto), protoName: string(proto)}
	if out.proto == 0 {
		c.warnings.add(p.namespace, p.name, fmt.Sprintf("%s: unknown protocol %q: port entry skipped", where, proto))
		return out, false
	}
	if port.EndPort != nil && (port.Port == nil || port.Port.Type == intstr.String) {
		c.warnings.add(p.namespace, p.name, fmt.Sprintf("%s: endPort needs a numeric port: port entry skipped", where))
		return out, false
	}
	switch {
	case port.Port == nil:
		out.from, out.to = 0, 65535
	case port.Port.Type == intstr.String:
		out.name = port.Port.StrVal
	default:
		n := port.Port.IntVal
		end := n
		if port.EndPort != nil {
			end = *port.EndPort
		}
		if n < 1 || n > 65535 || end < n || end > 65535 {
			c.warnings.add(p.namespace, p.name, fmt.Sprintf("%s: invalid port range %d-%d: port entry skipped", where, n, end))
			return out, false
		}
		out.from, out.to = uint16(n), uint16(end)
	}
	return out, true
}

// selectedPods is the entry of the addresses of the active pods a selector
// peer matches, shared by every rule with the same selectors.
func (c *NodeCompiler) selectedPods(policyNamespace string, peer compiledPeer) *peerEntry {
	if e := c.peers[peer.key]; e != nil {
		e.used = c.epoch
		return e
	}
	var b netipx.IPSetBuilder
	add := func(pods map[string]*Pod) {
		for _, pod := range pods {
			if peer.podSelector != nil && !peer.podSelector.Matches(labels.Set(pod.Labels)) {
				continue
			}
			for _, ip := range pod.IPs {
				b.Add(ip)
			}
		}
	}
	if peer.namespaceSelector == nil {
		add(c.activeByNS[policyNamespace])
	} else {
		for _, ns := range c.sortedNamespaces() {
			if peer.namespaceSelector.Matches(labels.Set(c.namespaces[ns])) {
				add(c.activeByNS[ns])
			}
		}
	}
	s, _ := b.IPSet()
	e := &peerEntry{key: peer.key, peer: peer, policyNamespace: policyNamespace, set: s, usage: usage{c.epoch}}
	c.peers[peer.key] = e
	c.peerIndex.add(peer.key, peer)
	return e
}

// warningSet collects warnings without duplicates.
type warningSet map[Warning]struct{}

func (w *warningSet) addAll(ws []Warning) {
	for _, x := range ws {
		w.add(x.Namespace, x.Policy, x.Message)
	}
}

func (w *warningSet) add(namespace, policy, msg string) {
	if *w == nil {
		*w = warningSet{}
	}
	(*w)[Warning{Namespace: namespace, Policy: policy, Message: msg}] = struct{}{}
}

func (w warningSet) list() []Warning {
	out := make([]Warning, 0, len(w))
	for k := range w {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Policy != b.Policy {
			return a.Policy < b.Policy
		}
		return a.Message < b.Message
	})
	return out
}

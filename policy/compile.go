package policy

import (
	"fmt"
	"net/netip"
	"sort"

	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"

	"github.com/nftpolicy/nftpolicy/nft"
)

// Compile builds the desired nftables ruleset of snap.NodeName.
//
// Every active pod on the node that some policy isolates in a direction gets
// a chain and four sets for that direction (nft.AddIsolatedEndpoint): the
// union of everything every rule of every selecting policy admits, folded
// into disjoint (peer, protocol, port) boxes. Per-packet cost is then one
// map lookup plus at most four set lookups, whatever the number of
// policies. Policy parts that cannot be enforced are skipped and reported
// as warnings; everything else is still compiled.
func Compile(snap *Snapshot) (*nft.Ruleset, []Warning) {
	c := newCompiler(snap)
	rs := nft.NewSkeleton()
	for _, pod := range c.localPods() {
		for _, dir := range []nft.Direction{nft.Ingress, nft.Egress} {
			selecting := c.policiesIsolating(pod, dir)
			if len(selecting) == 0 {
				continue
			}
			allow := c.allowList(pod, dir, selecting)
			rs.AddIsolatedEndpoint(dir, pod.Key(), pod.IPs, allow)
		}
	}
	return rs, c.warnings.list()
}

// compiler holds the indexes and caches of one Compile call.
type compiler struct {
	snap       *Snapshot
	namespaces map[string]map[string]string // name → labels
	active     []*Pod                       // pods that take part in policy, with unmapped IPs
	policies   []*compiledPolicy
	peerCache  map[string]*netipx.IPSet
	warnings   warningSet
}

func newCompiler(snap *Snapshot) *compiler {
	c := &compiler{
		snap:       snap,
		namespaces: map[string]map[string]string{},
		peerCache:  map[string]*netipx.IPSet{},
	}
	for _, ns := range snap.Namespaces {
		c.namespaces[ns.Name] = ns.Labels
	}
	for i := range snap.Pods {
		p := snap.Pods[i]
		if !p.Active() {
			continue
		}
		p.IPs = unmapAll(p.IPs)
		c.active = append(c.active, &p)
	}
	sort.Slice(c.active, func(i, j int) bool { return c.active[i].Key() < c.active[j].Key() })
	for _, np := range snap.Policies {
		if cp := c.compilePolicy(np); cp != nil {
			c.policies = append(c.policies, cp)
		}
	}
	return c
}

func unmapAll(ips []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.Unmap())
	}
	return out
}

// localPods are the active pods on the compiled node, sorted by key.
func (c *compiler) localPods() []*Pod {
	var out []*Pod
	for _, p := range c.active {
		if p.NodeName == c.snap.NodeName {
			out = append(out, p)
		}
	}
	return out
}

// policiesIsolating are the policies in pod's namespace that select it and
// name dir in their policyTypes.
func (c *compiler) policiesIsolating(pod *Pod, dir nft.Direction) []*compiledPolicy {
	var out []*compiledPolicy
	for _, p := range c.policies {
		if p.namespace == pod.Namespace && p.has(dir) && p.podSelector.Matches(labelSet(pod.Labels)) {
			out = append(out, p)
		}
	}
	return out
}

// allowList folds every rule of the selecting policies into one allow-list.
func (c *compiler) allowList(pod *Pod, dir nft.Direction, selecting []*compiledPolicy) nft.AllowList {
	var anyPort netipx.IPSetBuilder
	boxes := portBoxes{}
	for _, p := range selecting {
		for _, rule := range p.rules(dir) {
			peers := c.rulePeers(p, rule.peers)
			if len(rule.ports) == 0 {
				anyPort.AddSet(peers)
				continue
			}
			for _, port := range rule.ports {
				c.addPort(boxes, pod, dir, p, peers, port)
			}
		}
	}
	anySet, _ := anyPort.IPSet()
	return nft.AllowList{AnyPort: ipRanges(anySet), Ports: boxes.disjoint(anySet)}
}

// addPort adds the boxes one port entry of a rule admits.
func (c *compiler) addPort(boxes portBoxes, pod *Pod, dir nft.Direction, p *compiledPolicy, peers *netipx.IPSet, port compiledPort) {
	if port.name == "" {
		boxes.add(port.proto, port.from, port.to, peers)
		return
	}
	if dir == nft.Ingress {
		// The destination is the isolated pod itself.
		if num, ok := pod.namedPort(port.name, port.proto); ok {
			boxes.add(port.proto, num, num, peers)
			return
		}
		c.warnings.add(p.namespace, p.name, fmt.Sprintf(
			"ingress named port %q/%s is not declared by selected pod %s: that port entry admits nothing to it",
			port.name, port.protoName, pod.Key()))
		return
	}
	// Egress: the name is resolved on each destination pod, so each
	// destination pod address gets its own number.
	resolved := false
	for _, dst := range c.active {
		num, ok := dst.namedPort(port.name, port.proto)
		if !ok {
			continue
		}
		var b netipx.IPSetBuilder
		for _, ip := range dst.IPs {
			if peers.Contains(ip) {
				b.Add(ip)
				resolved = true
			}
		}
		if s, _ := b.IPSet(); len(s.Ranges()) > 0 {
			boxes.add(port.proto, num, num, s)
		}
	}
	if !resolved {
		c.warnings.add(p.namespace, p.name, fmt.Sprintf(
			"egress named port %q/%s is declared by no destination pod of its rule: that port entry admits nothing",
			port.name, port.protoName))
	}
}

// namedPort resolves a container port name for a protocol.
func (p *Pod) namedPort(name string, proto uint8) (uint16, bool) {
	for _, cp := range p.Ports {
		if cp.Name == name && protoNumber(cp.Protocol) == proto && cp.Port > 0 && cp.Port <= 65535 {
			return uint16(cp.Port), true
		}
	}
	return 0, false
}

// protoNumber maps a Kubernetes protocol to its IP protocol number; empty
// means TCP, as the API defaults it.
func protoNumber(p corev1.Protocol) uint8 {
	switch p {
	case corev1.ProtocolUDP:
		return nft.ProtoUDP
	case corev1.ProtocolSCTP:
		return nft.ProtoSCTP
	case corev1.ProtocolTCP, "":
		return nft.ProtoTCP
	}
	return 0
}

func ipRanges(s *netipx.IPSet) []nft.Range {
	var out []nft.Range
	for _, r := range s.Ranges() {
		out = append(out, nft.AddrRange(r.From(), r.To()))
	}
	return out
}

// everyone is every IPv4 and IPv6 address: the peers of a rule with no
// from/to list.
func everyone() *netipx.IPSet {
	var b netipx.IPSetBuilder
	b.AddPrefix(netip.MustParsePrefix("0.0.0.0/0"))
	b.AddPrefix(netip.MustParsePrefix("::/0"))
	s, _ := b.IPSet()
	return s
}

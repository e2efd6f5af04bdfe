package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

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
	nsNames    []string                     // sorted namespace names
	active     []*Pod                       // pods that take part in policy, with unmapped IPs, in snapshot order
	activeByNS map[string][]*Pod
	// rawPolicies are compiled lazily, per namespace, only where a local pod
	// lives: a node enforces (and warns about) nothing else.
	rawPolicies map[string][]*networkingv1.NetworkPolicy
	policies    map[string][]*compiledPolicy
	peerCache   map[string]*netipx.IPSet
	namedCache  map[namedKey][]numberedPeers
	ruleCache   map[*compiledRule]*netipx.IPSet
	warnings    warningSet
}

// namedKey identifies an egress named-port resolution: the same name and
// protocol over the same peer set resolve identically for every local pod.
type namedKey struct {
	name  string
	proto uint8
	peers *netipx.IPSet
}

func newCompiler(snap *Snapshot) *compiler {
	c := &compiler{
		snap:        snap,
		namespaces:  map[string]map[string]string{},
		activeByNS:  map[string][]*Pod{},
		rawPolicies: map[string][]*networkingv1.NetworkPolicy{},
		policies:    map[string][]*compiledPolicy{},
		peerCache:   map[string]*netipx.IPSet{},
		namedCache:  map[namedKey][]numberedPeers{},
		ruleCache:   map[*compiledRule]*netipx.IPSet{},
	}
	for _, ns := range snap.Namespaces {
		c.namespaces[ns.Name] = ns.Labels
		c.nsNames = append(c.nsNames, ns.Name)
	}
	sort.Strings(c.nsNames)
	// One backing array for the active pods' copies (the snapshot is not
	// modified): one allocation instead of one per pod. Their order is the
	// snapshot's; only localPods needs an order, and sorts its few pods.
	// Everything built from c.active or activeByNS is a set, whatever the
	// order.
	active := make([]Pod, 0, len(snap.Pods))
	for i := range snap.Pods {
		if !snap.Pods[i].Active() {
			continue
		}
		active = append(active, snap.Pods[i])
		p := &active[len(active)-1]
		p.IPs = unmapAll(p.IPs)
	}
	c.active = make([]*Pod, len(active))
	for i := range active {
		p := &active[i]
		c.active[i] = p
		c.activeByNS[p.Namespace] = append(c.activeByNS[p.Namespace], p)
	}
	for _, np := range snap.Policies {
		if np != nil {
			c.rawPolicies[np.Namespace] = append(c.rawPolicies[np.Namespace], np)
		}
	}
	return c
}

// policiesIn compiles, once, the policies of one namespace.
func (c *compiler) policiesIn(namespace string) []*compiledPolicy {
	if ps, ok := c.policies[namespace]; ok {
		return ps
	}
	ps := []*compiledPolicy{}
	for _, np := range c.rawPolicies[namespace] {
		if cp := c.compilePolicy(np); cp != nil {
			ps = append(ps, cp)
		}
	}
	c.policies[namespace] = ps
	return ps
}

// unmapAll returns ips with IPv4-mapped IPv6 addresses unmapped: ips itself
// (never modified) when there is nothing to unmap.
func unmapAll(ips []netip.Addr) []netip.Addr {
	if !slices.ContainsFunc(ips, netip.Addr.Is4In6) {
		return ips
	}
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
	slices.SortFunc(out, func(a, b *Pod) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
}

// policiesIsolating are the policies in pod's namespace that select it and
// name dir in their policyTypes.
func (c *compiler) policiesIsolating(pod *Pod, dir nft.Direction) []*compiledPolicy {
	var out []*compiledPolicy
	for _, p := range c.policiesIn(pod.Namespace) {
		if p.has(dir) && p.podSelector.Matches(labelSet(pod.Labels)) {
			out = append(out, p)
		}
	}
	return out
}

// allowList folds every rule of the selecting policies into one allow-list.
func (c *compiler) allowList(pod *Pod, dir nft.Direction, selecting []*compiledPolicy) nft.AllowList {
	var anyPeers []*netipx.IPSet
	boxes := portBoxes{}
	for _, p := range selecting {
		rules := p.rules(dir)
		for i := range rules {
			rule := &rules[i]
			peers := c.rulePeers(p, rule)
			if len(rule.ports) == 0 {
				anyPeers = append(anyPeers, peers)
				continue
			}
			for _, port := range rule.ports {
				c.addPort(boxes, pod, dir, p, peers, port)
			}
		}
	}
	var anySet *netipx.IPSet
	if len(anyPeers) == 1 {
		// One any-port rule: its (immutable, cached) set as it is.
		anySet = anyPeers[0]
	} else {
		var anyPort netipx.IPSetBuilder
		for _, s := range anyPeers {
			anyPort.AddSet(s)
		}
		anySet, _ = anyPort.IPSet()
	}
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
	key := namedKey{name: port.name, proto: port.proto, peers: peers}
	byNumber, ok := c.namedCache[key]
	if !ok {
		byNumber = c.namedPortPeers(key)
		c.namedCache[key] = byNumber
	}
	if len(byNumber) == 0 {
		c.warnings.add(p.namespace, p.name, fmt.Sprintf(
			"egress named port %q/%s is declared by no destination pod of its rule: that port entry admits nothing",
			port.name, port.protoName))
		return
	}
	for _, np := range byNumber {
		boxes.add(port.proto, np.port, np.port, np.peers)
	}
}

// numberedPeers are destination addresses that resolve a name to port.
type numberedPeers struct {
	port  uint16
	peers *netipx.IPSet
}

// namedPortPeers groups the addresses, among k.peers, of active pods that
// declare the named port, by the number each pod gives it.
func (c *compiler) namedPortPeers(k namedKey) []numberedPeers {
	builders := map[uint16]*netipx.IPSetBuilder{}
	for _, dst := range c.active {
		num, ok := dst.namedPort(k.name, k.proto)
		if !ok {
			continue
		}
		for _, ip := range dst.IPs {
			if k.peers.Contains(ip) {
				if builders[num] == nil {
					builders[num] = &netipx.IPSetBuilder{}
				}
				builders[num].Add(ip)
			}
		}
	}
	out := make([]numberedPeers, 0, len(builders))
	for num, b := range builders {
		s, _ := b.IPSet()
		out = append(out, numberedPeers{port: num, peers: s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].port < out[j].port })
	return out
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
	rs := s.Ranges()
	if len(rs) == 0 {
		return nil
	}
	// The addresses of all ranges share one buffer: two allocations
	// instead of two per range (each bound is capped to its own bytes).
	out := make([]nft.Range, 0, len(rs))
	buf := make([]byte, 0, 32*len(rs))
	for _, r := range rs {
		from := len(buf)
		buf = appendAddr(buf, r.From())
		mid := len(buf)
		buf = appendAddr(buf, r.To())
		out = append(out, nft.Range{From: buf[from:mid:mid], To: buf[mid:len(buf):len(buf)]})
	}
	return out
}

// appendAddr appends a's bytes as nft.AddrRange stores them (a.AsSlice()).
func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}

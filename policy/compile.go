package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"sort"

	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nftpolicy/nftpolicy/nft"
)

// Compile builds the desired nftables ruleset of snap.NodeName.
//
// Every active pod on the node that some policy isolates in a direction gets
// a chain and four sets for that direction (nft.NewIsolatedEndpoint): the
// union of everything every rule of every selecting policy admits, folded
// into disjoint (peer, protocol, port) boxes. Per-packet cost is then one
// map lookup plus at most four set lookups, whatever the number of
// policies. ClusterNetworkPolicies add, for the pods they select, the
// Admin and Baseline tiers around that allow-list (tiers.go): each tier's
// ordered rules flattened into four verdict maps, at most eight more
// lookups. Policy parts that cannot be enforced are skipped and reported
// as warnings (a ClusterNetworkPolicy's with an empty Namespace);
// everything else is still compiled.
//
// Compile is a NodeCompiler loaded with snap and compiled once; the agent keeps
// a NodeCompiler instead, so that a change costs what it touches.
func Compile(snap *Snapshot) (*nft.Ruleset, []Warning) {
	c := NewNodeCompiler(snap.NodeName)
	c.LoadSnapshot(snap)
	return c.Compile()
}

// usage is the Compile epoch that last used a cache entry: dropUnused
// forgets the entries of older epochs.
type usage struct{ used uint64 }

func (u *usage) lastUsed() uint64 { return u.used }

// dropStale deletes the entries of m that the Compile of epoch did not use.
func dropStale[K comparable, V interface{ lastUsed() uint64 }](m map[K]V, epoch uint64) {
	maps.DeleteFunc(m, func(_ K, v V) bool { return v.lastUsed() != epoch })
}

// namespacePolicies are the compiled policies of one namespace, with the
// warnings compiling them gave.
type namespacePolicies struct {
	list     []*compiledPolicy
	entries  []*policyEntry
	warnings []Warning
	usage
}

// policyEntry is one policy object compiled, with its warnings. It depends
// on nothing but the (immutable) object, so a namespace whose policies
// change recompiles only the new objects, and the rule entries of the
// others stay valid.
type policyEntry struct {
	compiled *compiledPolicy // nil: the policy is ignored whole
	warnings []Warning
	usage
}

// peerEntry is the set of addresses of the active pods one selector peer
// matches.
type peerEntry struct {
	key  string
	peer compiledPeer
	// policyNamespace is where a pod selector without namespace selector
	// looks (it is part of key).
	policyNamespace string
	set             *netipx.IPSet
	usage
}

// matches reports whether p (nil: no pod) is one of the pods e selects.
func (e *peerEntry) matches(c *NodeCompiler, p *Pod) bool {
	if p == nil {
		return false
	}
	if e.peer.namespaceSelector == nil {
		if p.Namespace != e.policyNamespace {
			return false
		}
	} else if l, ok := c.namespaces[p.Namespace]; !ok || !e.peer.namespaceSelector.Matches(labels.Set(l)) {
		return false
	}
	return e.peer.podSelector == nil || e.peer.podSelector.Matches(labels.Set(p.Labels))
}

// ruleEntry is the set of peer addresses one rule admits, and the selector
// entries it was built from.
type ruleEntry struct {
	set   *netipx.IPSet
	peers []*peerEntry
	usage
}

// current reports whether every selector entry e was built from is still
// the NodeCompiler's.
func (e *ruleEntry) current(c *NodeCompiler) bool {
	for _, p := range e.peers {
		if c.peers[p.key] != p {
			return false
		}
	}
	return true
}

func (e *ruleEntry) markUsed(epoch uint64) {
	e.used = epoch
	for _, p := range e.peers {
		p.used = epoch
	}
}

// namedKey identifies an egress named-port resolution: the same name and
// protocol over the same peer set resolve identically for every local pod.
type namedKey struct {
	name  string
	proto uint8
	peers *netipx.IPSet
}

type namedEntry struct {
	byNumber []numberedPeers
	usage
}

type endpointKey struct {
	pod objectKey
	dir nft.Direction
}

// endpoint is one local pod's compiled direction, with what it was built
// from; it is reused while all of that is current.
type endpoint struct {
	pod      *Pod // the active version it was built for
	policies *namespacePolicies
	rules    []ruleUse
	named    []namedUse
	// isolated is nil when no policy isolates the pod in this direction.
	isolated *nft.IsolatedEndpoint
	warnings []Warning
	usage
}

// ruleUse and namedUse are cache entries an endpoint was built from, with
// the keys under which they must still be found for it to be current.
type ruleUse struct {
	rule  *compiledRule
	entry *ruleEntry
}

type namedUse struct {
	key   namedKey
	entry *namedEntry
}

// current reports whether e still holds for pod under nsp.
func (e *endpoint) current(c *NodeCompiler, pod *Pod, nsp *namespacePolicies) bool {
	if e.pod != pod || e.policies != nsp {
		return false
	}
	for _, u := range e.rules {
		if c.rules[u.rule] != u.entry || !u.entry.current(c) {
			return false
		}
	}
	for _, u := range e.named {
		if c.named[u.key] != u.entry {
			return false
		}
	}
	return true
}

func (e *endpoint) markUsed(epoch uint64) {
	e.used = epoch
	for _, u := range e.rules {
		u.entry.markUsed(epoch)
	}
	for _, u := range e.named {
		u.entry.used = epoch
	}
}

// policiesIn compiles, once per change of the namespace's policies, the
// policies of one namespace.
func (c *NodeCompiler) policiesIn(namespace string) *namespacePolicies {
	if nsp, ok := c.compiled[namespace]; ok {
		return nsp
	}
	nsp := &namespacePolicies{}
	var warnings warningSet
	for _, name := range c.policyNames[namespace] {
		np := c.policies[namespace][name]
		pe := c.policyCache[np]
		if pe == nil {
			saved := c.warnings
			c.warnings = warningSet{}
			pe = &policyEntry{compiled: c.compilePolicy(np)}
			pe.warnings = c.warnings.list()
			c.warnings = saved
			c.policyCache[np] = pe
		}
		pe.used = c.epoch
		nsp.entries = append(nsp.entries, pe)
		if pe.compiled != nil {
			nsp.list = append(nsp.list, pe.compiled)
		}
		warnings.addAll(pe.warnings)
	}
	nsp.warnings = warnings.list()
	c.compiled[namespace] = nsp
	return nsp
}

// endpointOf returns pod's compiled direction dir: the kept one while it
// is current, else a new one.
func (c *NodeCompiler) endpointOf(pod *Pod, dir nft.Direction, nsp *namespacePolicies) *endpoint {
	key := endpointKey{objectKey{pod.Namespace, pod.Name}, dir}
	if e := c.endpoints[key]; e != nil && e.current(c, pod, nsp) {
		e.markUsed(c.epoch)
		return e
	}
	e := &endpoint{pod: pod, policies: nsp, usage: usage{c.epoch}}
	var selecting []*compiledPolicy
	for _, p := range nsp.list {
		if p.has(dir) && p.podSelector.Matches(labels.Set(pod.Labels)) {
			selecting = append(selecting, p)
		}
	}
	if len(selecting) > 0 {
		saved := c.warnings
		c.warnings = warningSet{}
		allow := c.allowList(e, pod, dir, selecting)
		e.isolated = nft.NewIsolatedEndpoint(dir, pod.Key(), pod.IPs, allow, c.denyLog)
		e.warnings = c.warnings.list()
		c.warnings = saved
	}
	c.endpoints[key] = e
	return e
}

// allowList folds every rule of the selecting policies into one allow-list,
// recording in e the cache entries it used.
func (c *NodeCompiler) allowList(e *endpoint, pod *Pod, dir nft.Direction, selecting []*compiledPolicy) nft.AllowList {
	var anyPeers []*netipx.IPSet
	boxes := portBoxes{}
	for _, p := range selecting {
		rules := p.rules(dir)
		for i := range rules {
			rule := &rules[i]
			re := c.rulePeers(p, rule)
			e.rules = append(e.rules, ruleUse{rule, re})
			if len(rule.ports) == 0 {
				anyPeers = append(anyPeers, re.set)
				continue
			}
			for _, port := range rule.ports {
				c.addPort(e, boxes, pod, dir, p, re.set, port)
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
func (c *NodeCompiler) addPort(e *endpoint, boxes portBoxes, pod *Pod, dir nft.Direction, p *compiledPolicy, peers *netipx.IPSet, port compiledPort) {
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
	ne := c.named[key]
	if ne == nil {
		ne = &namedEntry{byNumber: c.namedPortPeers(key)}
		c.named[key] = ne
	}
	ne.used = c.epoch
	e.named = append(e.named, namedUse{key, ne})
	byNumber := ne.byNumber
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
func (c *NodeCompiler) namedPortPeers(k namedKey) []numberedPeers {
	builders := map[uint16]*netipx.IPSetBuilder{}
	for _, pods := range c.activeByNS {
		for _, dst := range pods {
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

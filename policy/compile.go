package policy

import (
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nftpolicy/nftpolicy/nft"
)

// Compile builds the desired nftables ruleset of snap.NodeName.
//
// Every active pod on the node that some policy isolates in a direction gets
// a chain and eight sets for that direction (nft.NewIsolatedEndpoint): the
// union of everything every rule of every selecting policy admits, folded
// into disjoint (peer, protocol, port) boxes and split by shape (per family:
// hash, hash, rbtree, pipapo). Per-packet cost is then one map lookup plus
// at most eight set lookups, whatever the number of
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
	name     string          // the policy's, the order of its namespace's entries
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
	// fold is the allow-list of the policies that decide; nil when no
	// policy isolates the pod in this direction.
	fold *allowFold
	// audited: audited policies select the pod in this direction (the
	// fold then holds the enforced ones, or the audited ones when none is
	// enforced), so the next compile builds the fold afresh.
	audited bool
	// isolated is nil when no enforced policy isolates the pod in this
	// direction.
	isolated *nft.IsolatedEndpoint
	// audit is the audit chain of a pod that only audited policies
	// select in this direction (nil otherwise, and without a deny log).
	audit    *nft.IsolatedEndpoint
	warnings []Warning
	usage
}

// current reports whether e still holds for pod under nsp.
func (e *endpoint) current(c *NodeCompiler, pod *Pod, nsp *namespacePolicies) bool {
	return e.pod == pod && e.policies == nsp && (e.fold == nil || e.fold.current(c))
}

func (e *endpoint) markUsed(epoch uint64) {
	e.used = epoch
	if e.fold != nil {
		e.fold.markUsed(epoch)
	}
}

// policiesIn compiles, once per change of the namespace's policies, the
// policies of one namespace. A change of a few policies patches the list
// compiled before (the other entries kept by pointer) instead of looking
// every policy up again.
func (c *NodeCompiler) policiesIn(namespace string) *namespacePolicies {
	nsp, ok := c.compiled[namespace]
	edits := c.policyEdits[namespace]
	delete(c.policyEdits, namespace)
	if ok && len(edits) == 0 {
		return nsp
	}
	var entries []*policyEntry
	if ok {
		entries = slices.Clone(nsp.entries)
		slices.Sort(edits)
		for _, name := range slices.Compact(edits) {
			i, found := slices.BinarySearchFunc(entries, name, func(e *policyEntry, n string) int { return strings.Compare(e.name, n) })
			np := c.policies[namespace][name]
			switch {
			case np == nil && found:
				entries = slices.Delete(entries, i, i+1)
			case np == nil:
			case found:
				entries[i] = c.policyEntryOf(np)
			default:
				entries = slices.Insert(entries, i, c.policyEntryOf(np))
			}
		}
	} else {
		names := c.policyNames[namespace]
		entries = make([]*policyEntry, 0, len(names))
		for _, name := range names {
			entries = append(entries, c.policyEntryOf(c.policies[namespace][name]))
		}
	}
	nsp = &namespacePolicies{entries: entries, list: make([]*compiledPolicy, 0, len(entries))}
	var warnings warningSet
	for _, pe := range entries {
		pe.used = c.epoch
		if pe.compiled != nil {
			nsp.list = append(nsp.list, pe.compiled)
		}
		warnings.addAll(pe.warnings)
	}
	nsp.warnings = warnings.list()
	c.compiled[namespace] = nsp
	return nsp
}

// policyEntryOf returns np compiled, from the cache or compiled now.
func (c *NodeCompiler) policyEntryOf(np *networkingv1.NetworkPolicy) *policyEntry {
	if pe := c.policyCache[np]; pe != nil {
		return pe
	}
	saved := c.warnings
	c.warnings = warningSet{}
	pe := &policyEntry{name: np.Name, compiled: c.compilePolicy(np)}
	pe.warnings = c.warnings.list()
	c.warnings = saved
	c.policyCache[np] = pe
	return pe
}

// endpointOf returns pod's compiled direction dir: the kept one while it
// is current, else a new one, whose allow-list is the kept one's with the
// change folded in (allowFold) when the pod is the same.
func (c *NodeCompiler) endpointOf(pod *Pod, dir nft.Direction, nsp *namespacePolicies) *endpoint {
	key := endpointKey{objectKey{pod.Namespace, pod.Name}, dir}
	old := c.endpoints[key]
	if old != nil && old.current(c, pod, nsp) {
		old.markUsed(c.epoch)
		return old
	}
	e := &endpoint{pod: pod, policies: nsp, usage: usage{c.epoch}}
	var enforced, audited []*compiledPolicy
	for _, p := range nsp.list {
		if p.has(dir) && p.podSelector.Matches(labels.Set(pod.Labels)) {
			if p.audit || c.auditAll {
				audited = append(audited, p)
			} else {
				enforced = append(enforced, p)
			}
		}
	}
	if len(audited) == 0 {
		var fold *allowFold
		var was *namespacePolicies
		if old != nil && old.pod == pod && old.fold != nil && !old.audited {
			fold, was = old.fold, old.policies
		}
		selecting, added, removed := selectingPolicies(fold, pod, dir, nsp, was)
		if len(selecting) > 0 {
			if fold == nil {
				fold = newAllowFold(pod, dir)
			}
			c.updateFold(fold, selecting, added, removed)
			e.fold = fold
			e.isolated = nft.NewIsolatedEndpoint(dir, pod.Key(), pod.IPs, fold.allow, c.denyLog)
			e.warnings = fold.warnings(c).list()
			fold.markUsed(c.epoch)
		}
		c.endpoints[key] = e
		return e
	}
	// Audited policies select the pod: a fresh fold of the policies that
	// decide. Enforced ones decide; audited ones could only widen their
	// allow-list, so they would deny nothing more (audit.go). Audit
	// records go to the deny log; without it an audit chain would record
	// nothing, so none is built.
	e.audited = true
	deciding := enforced
	if len(deciding) == 0 && c.denyLog != nil {
		deciding = audited
	}
	if len(deciding) > 0 {
		fold := newAllowFold(pod, dir)
		c.updateFold(fold, deciding, deciding, nil)
		e.fold = fold
		if len(enforced) > 0 {
			e.isolated = nft.NewIsolatedEndpoint(dir, pod.Key(), pod.IPs, fold.allow, c.denyLog)
		} else {
			e.audit = nft.NewAuditEndpoint(dir, pod.Key(), pod.IPs, fold.allow, c.denyLog)
		}
		e.warnings = fold.warnings(c).list()
		fold.markUsed(c.epoch)
	}
	c.endpoints[key] = e
	return e
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

func ipRanges(s *netipx.IPSet) []nft.Range { return nftRanges(s.Ranges()) }

// appendAddr appends a's bytes as nft.AddrRange stores them (a.AsSlice()).
func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}

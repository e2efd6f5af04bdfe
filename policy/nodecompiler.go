package policy

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"go4.org/netipx"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/nft"
)

// NodeCompiler is the agent's long-lived view of the cluster: it is updated one
// object at a time as watch events arrive (SetPod, DeletePod, ...), and
// Compile returns the node's ruleset for the current state.
//
// Compile is incremental. Between calls the NodeCompiler keeps what it resolved
// (compiled policies, the addresses each selector matches, each rule's
// peers, each local pod's built chain and sets), and every update drops or
// patches exactly the parts it can change: a remote pod appearing touches
// the selectors it matches and the local pods whose rules use them, and
// nothing else. Compile(snap) is a NodeCompiler loaded with snap and compiled
// once; FuzzNodeCompilerMatchesFreshCompile holds the incremental path to it.
//
// Objects handed to a NodeCompiler are kept by pointer and must not be modified
// afterwards; to change an object, pass a new one. Rulesets returned by
// Compile must not be modified either: a later Compile returns the same
// sets and chains again for the pods that did not change, which lets
// nft.Diff skip them by identity.
//
// A NodeCompiler is not safe for concurrent use.
type NodeCompiler struct {
	nodeName string
	// activeByNS holds the pods that take part in policy (Pod.Active),
	// with IPv4-mapped addresses unmapped (the pod as given when there was
	// nothing to unmap), by namespace and name, inactive the others as
	// given. Each pod is in one of them: at 150k pods, a third map of all
	// pods would cost ~10 MB (and keying the inner maps by name alone
	// instead of objectKey saves 6 MB).
	activeByNS map[string]map[string]*Pod
	inactive   map[objectKey]*Pod
	numActive  int
	local      map[objectKey]*Pod // active pods on nodeName
	// ipOwners counts active pods per address. Two active pods share an
	// address only in a broken or racing cluster, but then removing one of
	// them must not remove the address from a selector's set. Keyed by
	// the 16 bytes of the (unmapped, see activeByNS) address: a key
	// without netip.Addr's pointer is 12 bytes smaller, and a map the
	// collector need not scan (150k entries).
	ipOwners   map[[16]byte]int32
	namespaces map[string]map[string]string
	nsNames    []string // sorted names of namespaces; nil when stale
	policies   map[string]map[string]*networkingv1.NetworkPolicy
	// policyNames are the names of each namespace's policies, sorted, kept
	// up to date on each change instead of sorted on each recompile.
	policyNames map[string][]string

	// Caches, valid across Compile calls. An entry is replaced (never
	// modified) when what it depends on changes; a user checks that the
	// entries it was built from are still the current ones.
	compiled map[string]*namespacePolicies // namespace → its compiled policies
	// policyEdits are the names of the policies changed in a namespace
	// since its compiled entry was made.
	policyEdits map[string][]string
	// policyCache holds each policy object compiled, by identity.
	policyCache map[*networkingv1.NetworkPolicy]*policyEntry
	peers       map[string]*peerEntry // selector key → matched addresses
	// peerIndex files the keys of peers by the labels a pod needs to
	// match them (forgetPeer keeps it in step with peers).
	peerIndex peerIndex
	named     map[namedKey]*namedEntry
	endpoints map[endpointKey]*endpoint

	// ClusterNetworkPolicies, parsed (by name), and nodes.
	cnps  map[string]*cnpEntry
	nodes map[string]Node
	// hostAddrs are the node's own interface addresses (SetHostAddresses).
	hostAddrs []netip.Addr
	// podTiers holds, for local pods, the policies of each tier that
	// apply to them; an absent entry is computed on the next Compile. A
	// policy change replaces only the entries it affects (cnpChanged).
	podTiers  map[objectKey]*podTiers
	nodePeers map[string]*nodePeerEntry  // nodes selector key → node addresses
	cnpNamed  map[string]*namedPortEntry // port name → declaring pods' addresses
	groups    map[groupKey]*tierGroup
	tiered    map[endpointKey]*tieredEndpoint

	// staleness counts the replacements and removals of peers and named
	// entries, which can make a fold's resolved parts stale: a fold that
	// checked its parts at the current count need not check them again.
	// (Entries dropped as unused at the end of a Compile belong to no
	// surviving fold.)
	staleness uint64

	// everyone is the peer set of a rule without peers: every address.
	everyone *netipx.IPSet

	// denyLog, when set, logs every allow-list drop (nft.DenyLog).
	denyLog *nft.DenyLog
	// auditAll puts every NetworkPolicy in audit mode (audit.go).
	auditAll bool

	// epoch counts Compile calls; entries not used by the latest Compile
	// are dropped at its end.
	epoch uint64
	// warnings collects the warnings of what is being compiled right now;
	// each cache entry keeps its own.
	warnings warningSet
}

// objectKey is a namespace/name pair (of a pod or a policy).
type objectKey struct{ namespace, name string }

// NewNodeCompiler returns an empty NodeCompiler that compiles for nodeName.
func NewNodeCompiler(nodeName string) *NodeCompiler {
	var everyone netipx.IPSetBuilder
	everyone.AddPrefix(netip.MustParsePrefix("0.0.0.0/0"))
	everyone.AddPrefix(netip.MustParsePrefix("::/0"))
	all, _ := everyone.IPSet()
	return &NodeCompiler{
		everyone:    all,
		nodeName:    nodeName,
		inactive:    map[objectKey]*Pod{},
		activeByNS:  map[string]map[string]*Pod{},
		local:       map[objectKey]*Pod{},
		ipOwners:    map[[16]byte]int32{},
		namespaces:  map[string]map[string]string{},
		policies:    map[string]map[string]*networkingv1.NetworkPolicy{},
		policyNames: map[string][]string{},
		compiled:    map[string]*namespacePolicies{},
		policyEdits: map[string][]string{},
		policyCache: map[*networkingv1.NetworkPolicy]*policyEntry{},
		peers:       map[string]*peerEntry{},
		peerIndex:   newPeerIndex(),
		named:       map[namedKey]*namedEntry{},
		endpoints:   map[endpointKey]*endpoint{},
		cnps:        map[string]*cnpEntry{},
		nodes:       map[string]Node{},
		podTiers:    map[objectKey]*podTiers{},
		nodePeers:   map[string]*nodePeerEntry{},
		cnpNamed:    map[string]*namedPortEntry{},
		groups:      map[groupKey]*tierGroup{},
		tiered:      map[endpointKey]*tieredEndpoint{},
	}
}

// SetDenyLog makes the allow-list chains and the ClusterNetworkPolicy Deny
// rules of the following Compiles log what they drop through d (nil: no
// logging). Changing it rebuilds every pod's
// chains on the next Compile.
func (c *NodeCompiler) SetDenyLog(d *nft.DenyLog) {
	if d != nil {
		cp := *d
		d = &cp
	}
	if (d == nil) != (c.denyLog == nil) || (d != nil && *d != *c.denyLog) {
		clear(c.endpoints)
		clear(c.tiered)
		clear(c.groups)
	}
	c.denyLog = d
}

// SetAuditAll puts every NetworkPolicy and ClusterNetworkPolicy in audit
// mode (on), or only those annotated for it (off), from the next Compile
// on. Changing it rebuilds every pod's chains and every tier's maps on the
// next Compile.
func (c *NodeCompiler) SetAuditAll(on bool) {
	if on != c.auditAll {
		clear(c.endpoints)
		clear(c.groups)
		clear(c.tiered)
	}
	c.auditAll = on
}

// NodeName is the node the NodeCompiler compiles for.
func (c *NodeCompiler) NodeName() string { return c.nodeName }

// SetPod adds p or replaces the pod of the same namespace and name.
func (c *NodeCompiler) SetPod(p *Pod) {
	k := objectKey{p.Namespace, p.Name}
	var now *Pod
	if p.Active() {
		delete(c.inactive, k)
		now = p
		if ips := unmapAll(p.IPs); len(ips) > 0 && &ips[0] != &p.IPs[0] {
			cp := *p
			cp.IPs = ips
			now = &cp
		}
	} else {
		c.inactive[k] = p
	}
	c.setActive(k, now)
}

// DeletePod removes a pod; an unknown pod is ignored.
func (c *NodeCompiler) DeletePod(namespace, name string) {
	k := objectKey{namespace, name}
	delete(c.inactive, k)
	c.setActive(k, nil)
}

// setActive makes now (nil: none) the active version of pod k, and updates
// every cache the change can reach.
func (c *NodeCompiler) setActive(k objectKey, now *Pod) {
	was := c.activeByNS[k.namespace][k.name]
	if was == nil && now == nil {
		return
	}
	if (was != nil && was.NodeName == c.nodeName) || (now != nil && now.NodeName == c.nodeName) {
		delete(c.podTiers, k) // recomputed for its new labels on the next Compile
	}
	if was != nil {
		delete(c.activeByNS[k.namespace], k.name)
		if len(c.activeByNS[k.namespace]) == 0 {
			delete(c.activeByNS, k.namespace)
		}
		delete(c.local, k)
		c.numActive--
		for _, ip := range was.IPs {
			if c.ipOwners[ip.As16()]--; c.ipOwners[ip.As16()] <= 0 {
				delete(c.ipOwners, ip.As16())
			}
		}
	}
	if now != nil {
		if c.activeByNS[k.namespace] == nil {
			c.activeByNS[k.namespace] = map[string]*Pod{}
		}
		c.activeByNS[k.namespace][k.name] = now
		c.numActive++
		if now.NodeName == c.nodeName {
			c.local[k] = now
		}
		for _, ip := range now.IPs {
			c.ipOwners[ip.As16()]++
		}
	}
	// The pod's own endpoints see the change through their pod pointer.
	// Selectors that match either version see it here.
	var wasLabels, nowLabels labels.Set
	if was != nil {
		wasLabels = was.Labels
	}
	if now != nil {
		nowLabels = now.Labels
	}
	for _, key := range c.peerIndex.candidates(wasLabels, nowLabels) {
		e := c.peers[key]
		if e == nil {
			continue // not reached: forgetPeer removes a key from both
		}
		inWas, inNow := e.matches(c, was), e.matches(c, now)
		if !inWas && !inNow {
			continue
		}
		if inWas && inNow && slices.Equal(was.IPs, now.IPs) {
			continue // still matched, same addresses: same set
		}
		if patched := c.patchPeers(e, was, now, inWas, inNow); patched != nil {
			c.peers[key] = patched
			c.staleness++
		} else {
			c.forgetPeer(key)
			c.staleness++
		}
	}
	// Egress named ports resolve on every active pod in a rule's peers,
	// selected or not (an ipBlock covers pods too).
	if declaresPorts(was) || declaresPorts(now) {
		for key := range c.named {
			if containsAny(key.peers, was) || containsAny(key.peers, now) {
				delete(c.named, key)
				c.staleness++
			}
		}
		c.forgetNamedPorts(was)
		c.forgetNamedPorts(now)
	}
}

// patchPeers returns e's set with was's addresses taken out (if it matched)
// and now's added (if it matches), or nil when an address to take out is
// still owned by another active pod, which then must be looked at: the
// caller drops e and it is resolved again when needed.
func (c *NodeCompiler) patchPeers(e *peerEntry, was, now *Pod, inWas, inNow bool) *peerEntry {
	var b netipx.IPSetBuilder
	b.AddSet(e.set)
	if inWas {
		for _, ip := range was.IPs {
			if inNow && slices.Contains(now.IPs, ip) {
				continue
			}
			if c.ipOwners[ip.As16()] > 0 {
				return nil
			}
			b.Remove(ip)
		}
	}
	if inNow {
		for _, ip := range now.IPs {
			b.Add(ip)
		}
	}
	s, _ := b.IPSet()
	return &peerEntry{key: e.key, peer: e.peer, policyNamespace: e.policyNamespace, set: s, usage: e.usage}
}

func declaresPorts(p *Pod) bool { return p != nil && len(p.Ports) > 0 }

func containsAny(s *netipx.IPSet, p *Pod) bool {
	if p == nil {
		return false
	}
	for _, ip := range p.IPs {
		if s.Contains(ip) {
			return true
		}
	}
	return false
}

// SetNamespace adds ns or replaces the namespace of the same name.
func (c *NodeCompiler) SetNamespace(ns Namespace) {
	old, existed := c.namespaces[ns.Name]
	c.namespaces[ns.Name] = ns.Labels
	if !existed {
		c.nsNames = nil
	}
	c.namespaceChanged(ns.Name, old, existed, ns.Labels, true)
}

// DeleteNamespace removes a namespace (not its pods or policies, which
// are deleted by their own events). A namespace selector matches no pod of
// a namespace the NodeCompiler does not know.
func (c *NodeCompiler) DeleteNamespace(name string) {
	old, existed := c.namespaces[name]
	if !existed {
		return
	}
	delete(c.namespaces, name)
	c.nsNames = nil
	c.namespaceChanged(name, old, true, nil, false)
}

// namespaceChanged drops the selectors whose namespace selector matched
// the namespace before and not after, or the other way round, and the
// ClusterNetworkPolicy subjects of its local pods.
func (c *NodeCompiler) namespaceChanged(name string, old map[string]string, existed bool, now map[string]string, exists bool) {
	if existed != exists || !maps.Equal(old, now) {
		for k := range c.podTiers {
			if k.namespace == name {
				delete(c.podTiers, k)
			}
		}
	}
	for key, e := range c.peers {
		sel := e.peer.namespaceSelector
		if sel == nil {
			continue
		}
		if (existed && sel.Matches(labels.Set(old))) != (exists && sel.Matches(labels.Set(now))) {
			c.forgetPeer(key)
			c.staleness++
		}
	}
}

// SetPolicy adds np or replaces the policy of the same namespace and name.
func (c *NodeCompiler) SetPolicy(np *networkingv1.NetworkPolicy) {
	if c.policies[np.Namespace] == nil {
		c.policies[np.Namespace] = map[string]*networkingv1.NetworkPolicy{}
	}
	if _, ok := c.policies[np.Namespace][np.Name]; !ok {
		names := c.policyNames[np.Namespace]
		i, _ := slices.BinarySearch(names, np.Name)
		c.policyNames[np.Namespace] = slices.Insert(names, i, np.Name)
	}
	c.policies[np.Namespace][np.Name] = np
	c.policyChanged(np.Namespace, np.Name)
}

// policyChanged notes a changed policy for the next policiesIn of its
// namespace, which patches the compiled list (if there is one).
func (c *NodeCompiler) policyChanged(namespace, name string) {
	if _, ok := c.compiled[namespace]; ok {
		c.policyEdits[namespace] = append(c.policyEdits[namespace], name)
	}
}

// DeletePolicy removes a policy; an unknown policy is ignored.
func (c *NodeCompiler) DeletePolicy(namespace, name string) {
	if _, ok := c.policies[namespace][name]; !ok {
		return
	}
	delete(c.policies[namespace], name)
	if len(c.policies[namespace]) == 0 {
		delete(c.policies, namespace)
	}
	names := c.policyNames[namespace]
	if i, ok := slices.BinarySearch(names, name); ok {
		names = slices.Delete(names, i, i+1)
	}
	if len(names) == 0 {
		delete(c.policyNames, namespace)
	} else {
		c.policyNames[namespace] = names
	}
	c.policyChanged(namespace, name)
}

// Policy returns the policy of that namespace and name, or nil.
func (c *NodeCompiler) Policy(namespace, name string) *networkingv1.NetworkPolicy {
	return c.policies[namespace][name]
}

// Counts are the sizes of a NodeCompiler.
type Counts struct {
	Pods, Namespaces, Policies int
	// LocalActivePods are the active pods on the NodeCompiler's node.
	LocalActivePods int
	// ClusterNetworkPolicies and Nodes are the cluster-scoped objects.
	ClusterNetworkPolicies, Nodes int
}

// Counts returns how many objects the NodeCompiler holds.
func (c *NodeCompiler) Counts() Counts {
	n := Counts{Pods: c.numActive + len(c.inactive), Namespaces: len(c.namespaces), LocalActivePods: len(c.local),
		ClusterNetworkPolicies: len(c.cnps), Nodes: len(c.nodes)}
	for _, ps := range c.policies {
		n.Policies += len(ps)
	}
	return n
}

// Snapshot returns the current state as a Snapshot, sorted by name. It
// shares labels maps and policies with c; active pods' IPv4-mapped IPv6
// addresses come out unmapped.
func (c *NodeCompiler) Snapshot() *Snapshot {
	s := &Snapshot{
		NodeName:   c.nodeName,
		AuditAll:   c.auditAll,
		Namespaces: make([]Namespace, 0, len(c.namespaces)),
		Pods:       make([]Pod, 0, c.numActive+len(c.inactive)),
	}
	for name, l := range c.namespaces {
		s.Namespaces = append(s.Namespaces, Namespace{Name: name, Labels: l})
	}
	for _, pods := range c.activeByNS {
		for _, p := range pods {
			s.Pods = append(s.Pods, *p)
		}
	}
	for _, p := range c.inactive {
		s.Pods = append(s.Pods, *p)
	}
	for _, ps := range c.policies {
		for _, np := range ps {
			s.Policies = append(s.Policies, np)
		}
	}
	slices.SortFunc(s.Namespaces, func(a, b Namespace) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(s.Pods, func(a, b Pod) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	slices.SortFunc(s.Policies, func(a, b *networkingv1.NetworkPolicy) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	for _, e := range c.cnps {
		s.ClusterNetworkPolicies = append(s.ClusterNetworkPolicies, e.obj)
	}
	slices.SortFunc(s.ClusterNetworkPolicies, func(a, b *policyv1beta1.ClusterNetworkPolicy) int {
		return strings.Compare(a.Name, b.Name)
	})
	for _, n := range c.nodes {
		s.Nodes = append(s.Nodes, n)
	}
	slices.SortFunc(s.Nodes, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	s.HostAddresses = slices.Clone(c.hostAddrs)
	return s
}

// ExpectPods prepares an empty c for about n pods: its per-address index
// is sized once instead of grown step by step, which was most of the
// garbage of loading a large cluster. It changes nothing else.
func (c *NodeCompiler) ExpectPods(n int) {
	if len(c.ipOwners) == 0 && n > 0 {
		c.ipOwners = make(map[[16]byte]int32, n)
	}
}

// LoadSnapshot sets every object of snap into c (which keeps pointers into
// snap.Pods: snap must not be modified afterwards).
func (c *NodeCompiler) LoadSnapshot(snap *Snapshot) {
	c.ExpectPods(len(snap.Pods))
	for _, ns := range snap.Namespaces {
		c.SetNamespace(ns)
	}
	for i := range snap.Pods {
		c.SetPod(&snap.Pods[i])
	}
	for _, np := range snap.Policies {
		if np != nil {
			c.SetPolicy(np)
		}
	}
	for _, n := range snap.Nodes {
		c.SetNode(n)
	}
	for _, p := range snap.ClusterNetworkPolicies {
		if p != nil {
			c.SetClusterNetworkPolicy(p)
		}
	}
	c.SetHostAddresses(snap.HostAddresses)
	c.SetAuditAll(snap.AuditAll)
}

// SetHostAddresses replaces the addresses of the node's own interfaces,
// which its pod CIDRs may hold (a bridge gateway) and which are no pods.
func (c *NodeCompiler) SetHostAddresses(addrs []netip.Addr) {
	c.hostAddrs = unmapAll(slices.Clone(addrs))
}

// unknownLocal returns the addresses of the node's pod CIDRs that belong to
// no active local pod and to none of the node's own interfaces: the
// addresses whose traffic the guard drops. Nil when the node's pod CIDRs
// are not known (no Node object, or spec.podCIDRs unset): then there is
// no guard, and a new pod is open until its first sync, as before.
func (c *NodeCompiler) unknownLocal() []nft.Range {
	node, ok := c.nodes[c.nodeName]
	if !ok || len(node.PodCIDRs) == 0 {
		return nil
	}
	var b netipx.IPSetBuilder
	for _, cidr := range node.PodCIDRs {
		b.AddPrefix(cidr.Masked())
	}
	for _, p := range c.local {
		for _, ip := range p.IPs {
			b.Remove(ip)
		}
	}
	for _, ip := range c.hostAddrs {
		b.Remove(ip)
	}
	set, _ := b.IPSet()
	return ipRanges(set)
}

// sortedNamespaces returns the namespace names in order.
func (c *NodeCompiler) sortedNamespaces() []string {
	if c.nsNames == nil {
		c.nsNames = make([]string, 0, len(c.namespaces))
		for name := range c.namespaces {
			c.nsNames = append(c.nsNames, name)
		}
		slices.Sort(c.nsNames)
	}
	return c.nsNames
}

// Compile returns the node's ruleset and the warnings of the current state.
// See Compile (the function) for what it builds.
func (c *NodeCompiler) Compile() (*nft.Ruleset, []Warning) {
	c.epoch++
	rs := nft.NewSkeleton()
	rs.SetDenyLog(c.denyLog)
	var warnings warningSet
	locals := make([]*Pod, 0, len(c.local))
	for _, p := range c.local {
		locals = append(locals, p)
	}
	slices.SortFunc(locals, func(a, b *Pod) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	for _, pod := range locals {
		// A node enforces, and so warns about, the policies of the
		// namespaces its pods live in, and nothing else.
		nsp := c.policiesIn(pod.Namespace)
		if nsp.used != c.epoch { // first local pod of this namespace
			nsp.used = c.epoch
			for _, pe := range nsp.entries {
				pe.used = c.epoch
			}
			warnings.addAll(nsp.warnings)
		}
		for _, dir := range []nft.Direction{nft.Ingress, nft.Egress} {
			e := c.endpointOf(pod, dir, nsp)
			te := c.tieredOf(pod, dir, e)
			if te.out != nil {
				rs.AddTieredEndpoint(te.out)
			}
			warnings.addAll(e.warnings)
			for _, g := range []*tierGroup{te.admin, te.baseline} {
				if g != nil {
					warnings.addAll(g.warnings)
				}
			}
		}
	}
	rs.SetUnknownLocal(c.unknownLocal())
	// A ClusterNetworkPolicy may select a pod of any node at any time:
	// every node reports what it cannot apply as written.
	for _, e := range c.cnps {
		warnings.addAll(e.warnings)
	}
	c.dropUnused()
	return rs, warnings.list()
}

// dropUnused forgets every cache entry the last Compile did not use, so
// that the caches hold what the node needs now, and updates only pay for
// that.
func (c *NodeCompiler) dropUnused() {
	dropStale(c.compiled, c.epoch)
	dropStale(c.policyCache, c.epoch)
	for key, e := range c.peers {
		if e.lastUsed() != c.epoch {
			c.forgetPeer(key)
		}
	}
	dropStale(c.named, c.epoch)
	dropStale(c.endpoints, c.epoch)
	dropStale(c.nodePeers, c.epoch)
	dropStale(c.cnpNamed, c.epoch)
	dropStale(c.groups, c.epoch)
	dropStale(c.tiered, c.epoch)
}

// forgetPeer drops the peer entry of key, from peers and from peerIndex.
func (c *NodeCompiler) forgetPeer(key string) {
	if e := c.peers[key]; e != nil {
		c.peerIndex.remove(key, e.peer)
		delete(c.peers, key)
	}
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

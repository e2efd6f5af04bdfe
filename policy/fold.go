package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"go4.org/netipx"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/nftpolicy/nftpolicy/nft"
)

// An allowFold is one isolated endpoint's allow-list kept as the parts the
// rules of its selecting policies contribute, so that a change folds into
// it instead of rebuilding it: a policy that comes or goes adds or removes
// its own parts, a selector whose pods change swaps the addresses of the
// parts that use it, and every other part stays as it is.
//
// A part is one peer of a rule on one port entry (partKey). Equal parts of
// different rules (10,000 policies admitting the same selector on the same
// port) are one part with a count. Each port key (any port, or a protocol
// and port range) holds the address ranges of its parts, counted
// (rangeCounts); the allow-list is the union of each port key's ranges,
// made disjoint across port keys (build). Every step is a merge of sorted
// lists, linear in what the endpoint admits, with no rebuild of sets from
// the rules: at 10,000 selecting policies a policy change costs a few
// hundred microseconds instead of tens of milliseconds.
//
// A fresh endpoint is a fold with every part added, so an incremental
// result equals a fresh one by construction
// (FuzzNodeCompilerMatchesFreshCompile holds it to that).
type allowFold struct {
	pod *Pod
	dir nft.Direction
	// selecting are the policies whose parts are in, in the order of their
	// namespace's list.
	selecting []*compiledPolicy
	parts     map[partKey]*foldPart
	// live are the parts whose addresses can change (a selector peer, an
	// egress named port): the ones to check on each Compile. liveList
	// holds them for those walks, made again after a change (nil).
	live     map[partKey]*foldPart
	liveList []*foldPart
	// named are the selecting policies with named ports, whose warnings
	// depend on what the names resolve to.
	named  map[*compiledPolicy]struct{}
	counts map[portKey]rangeCounts
	unions map[portKey][]netipx.IPRange
	// edits are the range changes not applied yet, per port key.
	edits map[portKey][]countedRange
	allow nft.AllowList
	// checked is the NodeCompiler's staleness when every live part was
	// last found current.
	checked uint64
}

// portKey is where a part admits: every protocol and port (any), or
// protocol proto on ports from-to.
type portKey struct {
	any      bool
	proto    uint8
	from, to uint16
}

// partKey is one peer on one port entry. The peer is a selector (sel, its
// peerEntry key) or a fixed set (an ipBlock, or everyone for a rule without
// peers). name is set for an egress named port, resolved on each
// destination pod (port then holds only the protocol).
type partKey struct {
	port  portKey
	name  string
	sel   string
	fixed *netipx.IPSet
}

// foldPart is a part in the fold: how many rules contribute it, and what
// it adds now.
type foldPart struct {
	key   partKey
	count int32
	// peer is the compiled selector of a selector part, resolved in
	// namespace; entry the peerEntry its boxes were made from.
	peer      compiledPeer
	namespace string
	entry     *peerEntry
	named     *namedEntry
	namedKey  namedKey
	boxes     []foldBox
}

// foldBox is a set of addresses admitted on one port key.
type foldBox struct {
	port portKey
	set  *netipx.IPSet
}

// countedRange is an address range with the number of parts that hold it
// (or, in edits, the change of that number).
type countedRange struct {
	r netipx.IPRange
	n int32
}

// rangeCounts are distinct ranges sorted by start, then end.
type rangeCounts []countedRange

func newAllowFold(pod *Pod, dir nft.Direction) *allowFold {
	return &allowFold{
		pod: pod, dir: dir,
		parts:  map[partKey]*foldPart{},
		live:   map[partKey]*foldPart{},
		named:  map[*compiledPolicy]struct{}{},
		counts: map[portKey]rangeCounts{},
		unions: map[portKey][]netipx.IPRange{},
		edits:  map[portKey][]countedRange{},
	}
}

// current reports whether every part whose addresses can change still has
// the entries it was resolved from.
func (f *allowFold) current(c *NodeCompiler) bool {
	if f.checked == c.staleness {
		return true
	}
	for _, p := range f.liveParts() {
		if !p.current(c) {
			return false
		}
	}
	f.checked = c.staleness
	return true
}

func (p *foldPart) current(c *NodeCompiler) bool {
	if p.entry != nil && c.peers[p.entry.key] != p.entry {
		return false
	}
	return p.named == nil || c.named[p.namedKey] == p.named
}

// liveParts are the live parts as a slice, which every Compile walks (a
// walk of a map of 10,000 entries costs several times more).
func (f *allowFold) liveParts() []*foldPart {
	if f.liveList == nil && len(f.live) > 0 {
		f.liveList = make([]*foldPart, 0, len(f.live))
		for _, p := range f.live {
			f.liveList = append(f.liveList, p)
		}
	}
	return f.liveList
}

func (f *allowFold) markUsed(epoch uint64) {
	for _, p := range f.liveParts() {
		if p.entry != nil {
			p.entry.used = epoch
		}
		if p.named != nil {
			p.named.used = epoch
		}
	}
}

// selectingPolicies returns the policies of nsp that select pod in dir,
// and which of them the fold must add and remove to get there from
// f.selecting (f nil: all of them are added). A policy kept by pointer
// keeps its selection without matching its selector again.
func selectingPolicies(f *allowFold, pod *Pod, dir nft.Direction, nsp *namespacePolicies, was *namespacePolicies) (sel, added, removed []*compiledPolicy) {
	selects := func(p *compiledPolicy) bool {
		return p.has(dir) && p.podSelector.Matches(labels.Set(pod.Labels))
	}
	if f == nil {
		for _, p := range nsp.list {
			if selects(p) {
				sel = append(sel, p)
			}
		}
		return sel, sel, nil
	}
	// Both lists are in name order (policyNames), and f.selecting is in
	// the order of was.list: one walk over the three.
	old, oldSel := was.list, f.selecting
	oi, si := 0, 0
	drop := func() { // old[oi] leaves
		if si < len(oldSel) && oldSel[si] == old[oi] {
			removed = append(removed, old[oi])
			si++
		}
		oi++
	}
	sel = make([]*compiledPolicy, 0, len(oldSel)+1)
	for _, p := range nsp.list {
		for oi < len(old) && old[oi].name < p.name {
			drop()
		}
		if oi < len(old) && old[oi] == p {
			if si < len(oldSel) && oldSel[si] == p {
				sel = append(sel, p)
				si++
			}
			oi++
			continue
		}
		if oi < len(old) && old[oi].name == p.name {
			drop() // replaced by p
		}
		if selects(p) {
			sel = append(sel, p)
			added = append(added, p)
		}
	}
	for oi < len(old) {
		drop()
	}
	return sel, added, removed
}

// update folds the policies added and removed into f, takes the parts
// whose selector or named port resolution changed again, and rebuilds the
// allow-list from the counted ranges.
func (c *NodeCompiler) updateFold(f *allowFold, selecting, added, removed []*compiledPolicy) {
	f.selecting = selecting
	for _, p := range removed {
		c.eachPart(f, p, func(k partKey, _ compiledPeer) { f.dec(k) })
		delete(f.named, p)
	}
	for _, p := range added {
		c.eachPart(f, p, func(k partKey, peer compiledPeer) { c.inc(f, k, p.namespace, peer) })
		if hasNamedPorts(p, f.dir) {
			f.named[p] = struct{}{}
		}
	}
	if f.checked != c.staleness {
		for _, p := range f.liveParts() {
			if !p.current(c) {
				f.edit(p.boxes, -1)
				c.resolve(p)
				f.edit(p.boxes, +1)
			}
		}
	}
	f.checked = c.staleness
	f.apply()
	f.allow = f.build()
}

// eachPart calls fn with every part one policy contributes in f's
// direction, and the selector of selector parts.
func (c *NodeCompiler) eachPart(f *allowFold, p *compiledPolicy, fn func(partKey, compiledPeer)) {
	rules := p.rules(f.dir)
	for i := range rules {
		rule := &rules[i]
		var peers []partKey
		var compiled []compiledPeer
		if len(rule.peers) == 0 {
			peers, compiled = []partKey{{fixed: c.everyone}}, []compiledPeer{{}}
		}
		for _, peer := range rule.peers {
			switch {
			case peer.invalid:
			case peer.ipBlock != nil:
				peers, compiled = append(peers, partKey{fixed: peer.ipBlock}), append(compiled, compiledPeer{})
			default:
				peers, compiled = append(peers, partKey{sel: peer.key}), append(compiled, peer)
			}
		}
		for pi, k := range peers {
			if len(rule.ports) == 0 {
				k.port = portKey{any: true}
				fn(k, compiled[pi])
				continue
			}
			for _, port := range rule.ports {
				k := k
				switch {
				case port.proto == 0: // no usable port entry: admits nothing
					continue
				case port.name == "":
					k.port = portKey{proto: port.proto, from: port.from, to: port.to}
				case f.dir == nft.Ingress:
					// The destination is the isolated pod itself.
					num, ok := f.pod.namedPort(port.name, port.proto)
					if !ok {
						continue // warned by warnings
					}
					k.port = portKey{proto: port.proto, from: num, to: num}
				default:
					k.port, k.name = portKey{proto: port.proto}, port.name
				}
				fn(k, compiled[pi])
			}
		}
	}
}

func hasNamedPorts(p *compiledPolicy, dir nft.Direction) bool {
	for _, r := range p.rules(dir) {
		for _, port := range r.ports {
			if port.name != "" {
				return true
			}
		}
	}
	return false
}

// inc counts one more contribution of part k, resolving it if it is new.
func (c *NodeCompiler) inc(f *allowFold, k partKey, namespace string, peer compiledPeer) {
	if p := f.parts[k]; p != nil {
		p.count++
		return
	}
	p := &foldPart{key: k, count: 1, peer: peer, namespace: namespace}
	f.parts[k] = p
	if k.sel != "" || k.name != "" {
		f.live[k] = p
		f.liveList = nil
	}
	c.resolve(p)
	f.edit(p.boxes, +1)
}

// dec counts one contribution of part k less, removing it at zero.
func (f *allowFold) dec(k partKey) {
	p := f.parts[k]
	if p == nil {
		return
	}
	if p.count--; p.count > 0 {
		return
	}
	f.edit(p.boxes, -1)
	delete(f.parts, k)
	if _, ok := f.live[k]; ok {
		delete(f.live, k)
		f.liveList = nil
	}
}

// resolve sets p's boxes from the current entries: its peer's addresses
// on its port, or, for an egress named port, the addresses of each number
// the destination pods give the name.
func (c *NodeCompiler) resolve(p *foldPart) {
	k := p.key
	set := k.fixed
	if k.sel != "" {
		p.entry = c.selectedPods(p.namespace, p.peer)
		set = p.entry.set
	}
	p.boxes = nil // the old boxes may still be in edits
	if k.name == "" {
		if len(set.Ranges()) > 0 {
			p.boxes = append(p.boxes, foldBox{port: k.port, set: set})
		}
		return
	}
	p.namedKey = namedKey{name: k.name, proto: k.port.proto, peers: set}
	p.named = c.named[p.namedKey]
	if p.named == nil {
		p.named = &namedEntry{byNumber: c.namedPortPeers(p.namedKey)}
		c.named[p.namedKey] = p.named
	}
	p.named.used = c.epoch
	for _, np := range p.named.byNumber {
		p.boxes = append(p.boxes, foldBox{port: portKey{proto: k.port.proto, from: np.port, to: np.port}, set: np.peers})
	}
}

// edit records that boxes are added (n = 1) or taken out (n = -1).
func (f *allowFold) edit(boxes []foldBox, n int32) {
	for _, b := range boxes {
		for _, r := range b.set.Ranges() {
			f.edits[b.port] = append(f.edits[b.port], countedRange{r, n})
		}
	}
}

// apply merges the recorded edits into the counts of their port keys and
// recomputes those keys' unions.
func (f *allowFold) apply() {
	for port, edits := range f.edits {
		slices.SortFunc(edits, compareCounted)
		var counts rangeCounts
		if len(edits) <= inPlaceEdits {
			counts = f.counts[port].patch(edits)
		} else {
			counts = mergeCounts(f.counts[port], edits)
		}
		if len(counts) == 0 {
			delete(f.counts, port)
			delete(f.unions, port)
			continue
		}
		f.counts[port] = counts
		f.unions[port] = counts.union()
	}
	clear(f.edits)
}

func compareCounted(a, b countedRange) int {
	return cmp.Or(a.r.From().Compare(b.r.From()), a.r.To().Compare(b.r.To()))
}

// inPlaceEdits is how many edits of one port key are applied one by one
// in place (a search and a move each) rather than merged into a new list:
// a policy change brings a handful, a selector change may bring thousands.
const inPlaceEdits = 64

// patch applies edits to rc in place, one by one.
func (rc rangeCounts) patch(edits []countedRange) rangeCounts {
	for _, e := range edits {
		i, found := slices.BinarySearchFunc(rc, e, compareCounted)
		switch {
		case !found && e.n != 0:
			rc = slices.Insert(rc, i, e)
		case found:
			if rc[i].n += e.n; rc[i].n == 0 {
				rc = slices.Delete(rc, i, i+1)
			}
		}
	}
	return rc
}

// mergeCounts adds sorted edits to sorted counts; ranges whose count
// drops to zero go.
func mergeCounts(counts rangeCounts, edits []countedRange) rangeCounts {
	out := make(rangeCounts, 0, len(counts)+len(edits))
	push := func(x countedRange) {
		if last := len(out) - 1; last >= 0 && out[last].r == x.r {
			out[last].n += x.n
			if out[last].n == 0 {
				out = out[:last]
			}
			return
		}
		if x.n != 0 {
			out = append(out, x)
		}
	}
	i, j := 0, 0
	for i < len(counts) || j < len(edits) {
		if j == len(edits) || (i < len(counts) && compareCounted(counts[i], edits[j]) <= 0) {
			push(counts[i])
			i++
		} else {
			push(edits[j])
			j++
		}
	}
	return out
}

// union is the ranges' union as disjoint, non-adjacent ranges in order
// (what a netipx.IPSet holds).
func (rc rangeCounts) union() []netipx.IPRange {
	out := make([]netipx.IPRange, 0, len(rc))
	for _, x := range rc {
		out = appendUnion(out, x.r)
	}
	return out
}

// appendUnion adds r to out, whose ranges are disjoint and sorted, and
// start at or before r.
func appendUnion(out []netipx.IPRange, r netipx.IPRange) []netipx.IPRange {
	if last := len(out) - 1; last >= 0 && touches(out[last], r) {
		if r.To().Compare(out[last].To()) > 0 {
			out[last] = netipx.IPRangeFrom(out[last].From(), r.To())
		}
		return out
	}
	return append(out, r)
}

// touches reports whether r, which starts at or after a, overlaps a or
// follows it without a gap (same family).
func touches(a, r netipx.IPRange) bool {
	if a.From().Is4() != r.From().Is4() {
		return false
	}
	next := a.To().Next()
	return !next.IsValid() || r.From().Compare(next) <= 0
}

// subtract returns a minus b (both disjoint and sorted).
func subtract(a, b []netipx.IPRange) []netipx.IPRange {
	if len(b) == 0 {
		return a
	}
	var out []netipx.IPRange
	j := 0
	for _, r := range a {
		from, to := r.From(), r.To()
		for j < len(b) && b[j].To().Less(from) {
			j++
		}
		for k := j; k < len(b) && from.IsValid() && b[k].From().Compare(to) <= 0; k++ {
			if b[k].From().Compare(from) > 0 {
				out = append(out, netipx.IPRangeFrom(from, b[k].From().Prev()))
			}
			if b[k].To().Compare(to) >= 0 {
				from = netip.Addr{} // the rest is covered
				break
			}
			from = b[k].To().Next()
		}
		if from.IsValid() && from.Compare(to) <= 0 && from.Is4() == to.Is4() {
			out = append(out, netipx.IPRangeFrom(from, to))
		}
	}
	return out
}

// build makes the allow-list from the unions: the any-port peers, and per
// protocol the port axis cut at every port key's edges, each piece
// admitting the union of the keys covering it minus the any-port peers,
// neighbouring pieces with equal peers joined. The elements come out
// ordered by protocol, port piece, then peer.
func (f *allowFold) build() nft.AllowList {
	covered := f.unions[portKey{any: true}]
	keys := make([]portKey, 0, len(f.unions))
	for k := range f.unions {
		if !k.any {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b portKey) int {
		return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.from, b.from), cmp.Compare(a.to, b.to))
	})
	allow := nft.AllowList{AnyPort: nftRanges(covered)}
	for start := 0; start < len(keys); {
		end := start + 1
		for end < len(keys) && keys[end].proto == keys[start].proto {
			end++
		}
		proto := keys[start].proto
		for _, piece := range f.pieces(keys[start:end], covered) {
			ports := nft.PortRange(piece.from, piece.to)
			for _, peer := range nftRanges(piece.peers) {
				allow.Ports = append(allow.Ports, nft.PortAllow{Peer: peer, Proto: proto, Ports: ports})
			}
		}
		start = end
	}
	return allow
}

// allowPiece is a port range with the peers it admits.
type allowPiece struct {
	from, to uint16
	peers    []netipx.IPRange
}

// pieces cuts one protocol's port axis at every edge of keys.
func (f *allowFold) pieces(keys []portKey, covered []netipx.IPRange) []allowPiece {
	points := make([]int, 0, 2*len(keys))
	for _, k := range keys {
		points = append(points, int(k.from), int(k.to)+1) // as int to allow 65536
	}
	slices.Sort(points)
	points = slices.Compact(points)
	var out []allowPiece
	var over []portKey
	for i := 0; i+1 < len(points); i++ {
		from, to := points[i], points[i+1]-1
		over = over[:0]
		for _, k := range keys {
			if int(k.from) <= from && to <= int(k.to) {
				over = append(over, k)
			}
		}
		var peers []netipx.IPRange
		switch len(over) {
		case 0:
			continue
		case 1:
			peers = f.unions[over[0]]
		default:
			var all []netipx.IPRange
			for _, k := range over {
				all = append(all, f.unions[k]...)
			}
			slices.SortFunc(all, func(a, b netipx.IPRange) int {
				return cmp.Or(a.From().Compare(b.From()), a.To().Compare(b.To()))
			})
			for _, r := range all {
				peers = appendUnion(peers, r)
			}
		}
		peers = subtract(peers, covered)
		if len(peers) == 0 {
			continue
		}
		if last := len(out) - 1; last >= 0 && int(out[last].to)+1 == from && slices.Equal(out[last].peers, peers) {
			out[last].to = uint16(to)
			continue
		}
		out = append(out, allowPiece{from: uint16(from), to: uint16(to), peers: peers})
	}
	return out
}

// warnings are the named-port warnings of the selecting policies: an
// ingress name the pod does not declare, an egress name that no
// destination pod of its rule declares.
func (f *allowFold) warnings(c *NodeCompiler) warningSet {
	var w warningSet
	for p := range f.named {
		for _, rule := range p.rules(f.dir) {
			for _, port := range rule.ports {
				if port.name == "" {
					continue
				}
				if f.dir == nft.Ingress {
					if _, ok := f.pod.namedPort(port.name, port.proto); !ok {
						w.add(p.namespace, p.name, fmt.Sprintf(
							"ingress named port %q/%s is not declared by selected pod %s: that port entry admits nothing to it",
							port.name, port.protoName, f.pod.Key()))
					}
					continue
				}
				if !f.namedResolves(c, rule, port) {
					w.add(p.namespace, p.name, fmt.Sprintf(
						"egress named port %q/%s is declared by no destination pod of its rule: that port entry admits nothing",
						port.name, port.protoName))
				}
			}
		}
	}
	return w
}

// namedResolves reports whether some peer of rule has a destination pod
// that declares the egress named port.
func (f *allowFold) namedResolves(c *NodeCompiler, rule compiledRule, port compiledPort) bool {
	keys := []partKey{{fixed: c.everyone}}
	if len(rule.peers) > 0 {
		keys = keys[:0]
		for _, peer := range rule.peers {
			switch {
			case peer.invalid:
			case peer.ipBlock != nil:
				keys = append(keys, partKey{fixed: peer.ipBlock})
			default:
				keys = append(keys, partKey{sel: peer.key})
			}
		}
	}
	for _, k := range keys {
		k.port, k.name = portKey{proto: port.proto}, port.name
		if p := f.parts[k]; p != nil && len(p.boxes) > 0 {
			return true
		}
	}
	return false
}

// nftRanges converts disjoint ranges to the model's. The addresses of all
// ranges share one buffer: two allocations instead of two per range (each
// bound is capped to its own bytes).
func nftRanges(rs []netipx.IPRange) []nft.Range {
	if len(rs) == 0 {
		return nil
	}
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

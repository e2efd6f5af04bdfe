package policy

// The ClusterNetworkPolicy tiers compiled: for each local pod and direction,
// the policies of a tier that apply to it (podTiers), in precedence order,
// are flattened into disjoint (peer, protocol, port) boxes that carry the
// verdict of the first rule covering them, and those become the tier's
// verdict maps (nft.TierMaps). Pods with the same ordered list of policies
// (and, for ingress named ports, the same declared ports) get the same
// boxes, so they share one set of maps, compiled once.

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strconv"

	"go4.org/netipx"

	"github.com/nftpolicy/nftpolicy/nft"
)

// groupKey identifies a tier's maps for one direction: the ordered names
// of the policies in them (and for ingress named ports the declared
// ports), as podTiers.keys.
type groupKey struct {
	tier nft.Tier
	dir  nft.Direction
	key  string
}

// tierGroup is one tier's rules for one direction compiled into maps, with
// the cache entries it was built from.
type tierGroup struct {
	cnps  []*cnpEntry
	peers []*peerEntry
	nodes []*nodePeerEntry
	named []*namedPortEntry
	maps  *nft.TierMaps
	// inert: every policy of the group is audited and can log nothing
	// (no Deny rule in the direction, or no deny log): the pods get no
	// lookups of its maps, as if the policies were absent.
	inert    bool
	warnings []Warning
	usage
}

// current reports whether every entry g was built from is still the
// NodeCompiler's.
func (g *tierGroup) current(c *NodeCompiler) bool {
	for _, e := range g.cnps {
		if c.cnps[e.name] != e {
			return false
		}
	}
	for _, p := range g.peers {
		if c.peers[p.key] != p {
			return false
		}
	}
	for _, n := range g.nodes {
		if c.nodePeers[n.sel.key] != n {
			return false
		}
	}
	for _, n := range g.named {
		if c.cnpNamed[n.name] != n {
			return false
		}
	}
	return true
}

func (g *tierGroup) markUsed(epoch uint64) {
	g.used = epoch
	for _, p := range g.peers {
		p.used = epoch
	}
	for _, n := range g.nodes {
		n.used = epoch
	}
	for _, n := range g.named {
		n.used = epoch
	}
}

func (g *tierGroup) mapsOrNil() *nft.TierMaps {
	if g == nil || g.inert {
		return nil
	}
	return g.maps
}

// tieredEndpoint is one local pod's direction with every tier, and what it
// was built from; it is reused while all of that is current.
type tieredEndpoint struct {
	np              *endpoint
	tiers           *podTiers
	admin, baseline *tierGroup
	out             *nft.TieredEndpoint // nil: nothing judges the pod in this direction
	usage
}

// tieredOf returns pod's direction dir with the tiers around np, its
// NetworkPolicy tier.
func (c *NodeCompiler) tieredOf(pod *Pod, dir nft.Direction, np *endpoint) *tieredEndpoint {
	pt := c.tiersOf(pod)
	admin := c.groupOf(pod, pt, nft.TierAdmin, dir)
	var baseline *tierGroup
	if np.isolated == nil {
		// Baseline applies only where no NetworkPolicy isolates the pod in
		// this direction.
		baseline = c.groupOf(pod, pt, nft.TierBaseline, dir)
	}
	key := endpointKey{objectKey{pod.Namespace, pod.Name}, dir}
	if te := c.tiered[key]; te != nil && te.np == np && te.tiers == pt && te.admin == admin && te.baseline == baseline {
		te.used = c.epoch
		return te
	}
	te := &tieredEndpoint{np: np, tiers: pt, admin: admin, baseline: baseline, usage: usage{c.epoch}}
	allow := np.isolated
	if allow == nil {
		allow = np.audit // logs, never drops: Baseline still applies
	}
	te.out = nft.NewTieredEndpoint(dir, pod.Key(), pod.IPs, admin.mapsOrNil(), allow, baseline.mapsOrNil())
	c.tiered[key] = te
	return te
}

// groupOf returns the compiled maps of pod's policies of tier for dir, nil
// when it has none.
func (c *NodeCompiler) groupOf(pod *Pod, pt *podTiers, tier nft.Tier, dir nft.Direction) *tierGroup {
	ti, di := tierIndex(tier), dirIndex(dir)
	list := pt.lists[ti][di]
	if len(list) == 0 {
		return nil
	}
	gk := groupKey{tier: tier, dir: dir, key: pt.keys[ti][di]}
	if g := c.groups[gk]; g != nil && g.current(c) {
		g.markUsed(c.epoch)
		return g
	}
	g := c.buildGroup(pod, gk, list)
	c.groups[gk] = g
	return g
}

// allAddresses is every IPv4 and IPv6 address.
var allAddresses = func() *netipx.IPSet {
	var b netipx.IPSetBuilder
	b.AddPrefix(netip.MustParsePrefix("0.0.0.0/0"))
	b.AddPrefix(netip.MustParsePrefix("::/0"))
	s, _ := b.IPSet()
	return s
}()

// buildGroup resolves the peers of list's rules of gk.dir and flattens
// them. pod is one pod the list applies to: ingress named ports resolve on
// it (gk.key holds what they resolve to, so every pod with this key
// resolves them alike).
func (c *NodeCompiler) buildGroup(pod *Pod, gk groupKey, list []*cnpEntry) *tierGroup {
	g := &tierGroup{cnps: list, usage: usage{c.epoch}}
	di := dirIndex(gk.dir)
	var rules []flatRule
	var denyChains []*nft.Chain
	g.inert = true
	for pi, e := range list {
		audited := e.audit || c.auditAll
		if audited && (c.denyLog == nil || !slices.ContainsFunc(e.rules[di], func(r tierRule) bool { return r.action == actionDeny })) {
			// An audited policy decides nothing; all it does is log what
			// its Deny rules would deny, and without a Deny rule or the
			// deny log that is nothing.
			continue
		}
		g.inert = false
		for _, r := range e.rules[di] {
			fr := flatRule{action: r.action, policy: pi}
			if audited {
				fr.audit = &nft.DenyRule{Dir: gk.dir, Policy: e.name, Rule: r.name}
			} else if r.action == actionDeny {
				// Its own chain counts its drops (and logs them, with the
				// deny log on).
				fr.action = actionDeny + cnpAction(len(denyChains))
				denyChains = append(denyChains, c.denyLog.DenyChain(nft.DenyRule{Dir: gk.dir, Policy: e.name, Rule: r.name}))
			}
			if r.denyAll {
				fr.any = []*netipx.IPSet{allAddresses}
				rules = append(rules, fr)
				continue
			}
			var peers []*netipx.IPSet
			for _, p := range r.peers {
				switch {
				case p.pods != nil:
					pe := c.selectedPods("", *p.pods)
					g.peers = append(g.peers, pe)
					peers = append(peers, pe.set)
				case p.nodes != nil:
					ne := c.selectedNodes(p.nodes)
					g.nodes = append(g.nodes, ne)
					peers = append(peers, ne.set)
				default:
					peers = append(peers, p.networks)
				}
			}
			if r.anyProtocol {
				fr.any = peers
				rules = append(rules, fr)
				continue
			}
			for _, pt := range r.ports {
				fr.boxes = append(fr.boxes, flatBox{proto: pt.proto, from: pt.from, to: pt.to, peers: peers})
			}
			for _, name := range r.named {
				if gk.dir == nft.Ingress {
					// The destination is the subject pod itself.
					for _, pp := range pod.resolveNamed(name) {
						fr.boxes = append(fr.boxes, flatBox{proto: pp.proto, from: pp.port, to: pp.port, peers: peers})
					}
					continue
				}
				// Egress: each destination pod's own number for the name.
				ne := c.namedPortPods(name)
				g.named = append(g.named, ne)
				for _, pp := range ne.byNumber {
					var dst []*netipx.IPSet
					for _, s := range peers {
						var b netipx.IPSetBuilder
						b.AddSet(s)
						b.Intersect(pp.peers)
						if x, _ := b.IPSet(); len(x.Ranges()) > 0 {
							dst = append(dst, x)
						}
					}
					fr.boxes = append(fr.boxes, flatBox{proto: pp.proto, from: pp.port, to: pp.port, peers: dst})
				}
			}
			rules = append(rules, fr)
		}
	}
	g.maps = nft.NewTierMaps(gk.tier, gk.dir, gk.key, groupComment(gk, list), flatten(rules, denyChains, c.denyLog))
	g.warnings = overlapWarnings(gk, list, rules)
	return g
}

// groupComment names the policies of a group, shortened to what nft shows.
func groupComment(gk groupKey, list []*cnpEntry) string {
	tier := "Admin"
	if gk.tier == nft.TierBaseline {
		tier = "Baseline"
	}
	s := tier + " " + gk.dir.String() + " rules of "
	for i, e := range list {
		next := e.name
		if i > 0 {
			next = ", " + next
		}
		if len(s)+len(next) > 100 {
			return s + " and " + strconv.Itoa(len(list)-i) + " more"
		}
		s += next
	}
	return s
}

// overlapWarnings warns about each pair of policies with equal priority
// whose rules of the direction cover some traffic in common: the API
// leaves their order undefined.
func overlapWarnings(gk groupKey, list []*cnpEntry, rules []flatRule) []Warning {
	byPolicy := make([][]flatRule, len(list))
	for _, r := range rules {
		byPolicy[r.policy] = append(byPolicy[r.policy], r)
	}
	var w warningSet
	for i := range list {
		for j := i + 1; j < len(list) && list[j].priority == list[i].priority; j++ {
			if rulesOverlap(byPolicy[i], byPolicy[j]) {
				a, b := list[i], list[j]
				w.add("", a.name, fmt.Sprintf("ClusterNetworkPolicies %q and %q, both %s tier priority %d, have overlapping %s rules "+
					"for pods on this node: the API leaves their order undefined; here the name that sorts first, %q, decides",
					a.name, b.name, a.obj.Spec.Tier, a.priority, gk.dir, a.name))
			}
		}
	}
	return w.list()
}

func rulesOverlap(a, b []flatRule) bool {
	for _, x := range a {
		for _, y := range b {
			if setsOverlap(x.any, y.any) {
				return true
			}
			for _, bx := range y.boxes {
				if setsOverlap(x.any, bx.peers) {
					return true
				}
			}
			for _, bx := range x.boxes {
				if setsOverlap(bx.peers, y.any) {
					return true
				}
				for _, by := range y.boxes {
					if bx.proto == by.proto && bx.from <= by.to && by.from <= bx.to && setsOverlap(bx.peers, by.peers) {
						return true
					}
				}
			}
		}
	}
	return false
}

func setsOverlap(xs, ys []*netipx.IPSet) bool {
	for _, x := range xs {
		for _, y := range ys {
			if rangesOverlap(x.Ranges(), y.Ranges()) {
				return true
			}
		}
	}
	return false
}

// rangesOverlap reports whether two sorted lists of disjoint ranges share
// an address, in one pass over both.
func rangesOverlap(a, b []netipx.IPRange) bool {
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0].To().Less(b[0].From()):
			a = a[1:]
		case b[0].To().Less(a[0].From()):
			b = b[1:]
		default:
			return true
		}
	}
	return false
}

// flatRule is one rule of a tier, in precedence order among the rules it is
// flattened with: it covers any × every protocol and port, and each box.
type flatRule struct {
	action cnpAction
	policy int // index of its policy in the group
	// audit, when set, makes this a rule of an audited policy (audit.go),
	// named for the deny log: it decides nothing; if it is the first rule
	// of its policy covering a packet that the enforced rules before it
	// leave undecided, and a Deny, the packet gives an audit record.
	audit *nft.DenyRule
	any   []*netipx.IPSet
	boxes []flatBox
}

// flatBox is peers × one protocol × a port range.
type flatBox struct {
	proto    uint8
	from, to uint16
	peers    []*netipx.IPSet
}

// vrange is an address range with the verdict of a flattened column of
// the key space (a protocol, or a protocol's port range): actionAccept or
// actionDeny. What passes is in no vrange.
type vrange struct {
	from, to addrKey
	v        cnpAction
}

// flatten folds ordered first-match rules into disjoint verdict boxes.
//
// Protocols without ports (ICMP and every other one) only meet rules
// without protocols (any); each of TCP, UDP and SCTP meets those and its
// own boxes. The port axis of each is cut at every box edge, and for each
// piece (each distinct set of covering boxes, painted once) a sweep over
// addresses finds the first rule covering each address: those are the
// columns. A second sweep over every column splits the addresses into
// ranges over which no column's verdict changes; for each such range,
// a protocol whose verdict is the same on every port goes to the any-port
// map (joined with neighbouring protocols of equal verdict), the others
// to the port map as runs of equal verdict over neighbouring ports. Pass
// and uncovered traffic go nowhere.
//
// The Deny rules carry actions from actionDeny up, and the elements of
// action actionDeny+k jump to denyChains[k], which counts (and, with the
// deny log on, logs) and drops; a Deny without its chain (none given)
// drops in the element itself.
//
// Rules of audited policies (flatRule.audit, only with the deny log on)
// decide nothing: where the first rule of an audited policy that covers a
// box is a Deny, and no enforced rule before it covers the box, the box's
// element leads through an audit chain (nft.DenyLog.AuditRuleChain) that
// logs each such rule and then does what the enforced rules alone decide.
// Boxes no audited Deny reaches keep the verdict they would have without
// the audited policies.
func flatten(rules []flatRule, denyChains []*nft.Chain, log *nft.DenyLog) nft.TierVerdicts {
	f := flattener{rules: rules, ranges: map[*netipx.IPSet][][2]addrKey{}, memo: map[string]int{"": 0},
		painted: map[*netipx.IPSet]bool{}, log: log, denyChains: denyChains, auditBase: actionDeny + cnpAction(len(denyChains))}
	for _, r := range rules {
		if r.audit != nil {
			f.audited = true
			f.auditOutcomes = map[string]cnpAction{}
			break
		}
	}
	f.cols = [][]vrange{f.paint(nil)} // column 0: protocols without ports, and ports no box covers
	var pieces [len(portProtocols)][]portPiece
	for i, proto := range portProtocols {
		pieces[i] = f.portPieces(proto)
	}
	out := nft.TierVerdicts{DenyChains: denyChains}
	verdictOf := func(a cnpAction) nft.Verdict {
		switch {
		case a == actionAccept:
			return nft.Return // the tier allows this direction; the base chain goes on
		case f.audited && a >= f.auditBase:
			o := f.outcomes[a-f.auditBase]
			if o.then == actionAccept {
				// The audit chain's end returns from the tier chain, as
				// Return would.
				return nft.Goto(o.chain.Name)
			}
			// Pass: its end goes on with the tier chain's next rule, the
			// next tier. Deny: it ends in the Deny's own chain.
			return nft.Jump(o.chain.Name)
		case len(denyChains) > 0:
			return nft.Jump(denyChains[a-actionDeny].Name)
		}
		return nft.Drop
	}
	for _, iv := range sweepColumns(f.cols) {
		emitBoxes(&out, iv, &pieces, verdictOf)
	}
	for i, o := range f.outcomes {
		// An Accept and a Pass after the same records share their chain
		// (a goto to it, or a jump).
		if !slices.ContainsFunc(f.outcomes[:i], func(p auditOutcome) bool { return p.chain.Name == o.chain.Name }) {
			out.AuditChains = append(out.AuditChains, o.chain)
		}
	}
	return out
}

// auditOutcome is what a box covered by audited Deny rules gets: the audit
// chain logging them (in the order met), then the enforced verdict.
type auditOutcome struct {
	chain *nft.Chain
	then  cnpAction // actionPass, actionAccept or a Deny's action
}

// outcome returns the action standing for the audit records of rules recs
// (indexes into f.rules) followed by then, the enforced rules' action.
func (f *flattener) outcome(recs []int, then cnpAction) cnpAction {
	key := make([]byte, 0, 8*len(recs)+8)
	for _, r := range recs {
		key = strconv.AppendInt(key, int64(r), 10)
		key = append(key, ',')
	}
	key = strconv.AppendInt(key, int64(then), 10)
	if a, ok := f.auditOutcomes[string(key)]; ok {
		return a
	}
	named := make([]nft.DenyRule, len(recs))
	for i, r := range recs {
		named[i] = *f.rules[r].audit
	}
	var next string
	if then >= actionDeny {
		next = f.denyChains[then-actionDeny].Name // every enforced Deny has its own chain
	}
	a := f.auditBase + cnpAction(len(f.outcomes))
	f.outcomes = append(f.outcomes, auditOutcome{chain: f.log.AuditRuleChain(named, next), then: then})
	f.auditOutcomes[string(key)] = a
	return a
}

// portProtocols are the protocols with ports, in protocol number order.
var portProtocols = [...]uint8{nft.ProtoTCP, nft.ProtoUDP, nft.ProtoSCTP}

// emitBoxes adds the elements of one address range whose verdict in each
// column is iv.vec.
func emitBoxes(out *nft.TierVerdicts, iv addrVector, pieces *[len(portProtocols)][]portPiece, verdictOf func(cnpAction) nft.Verdict) {
	peer := nft.Range{From: iv.from.bytes(), To: iv.to.bytes()}
	var uniform [len(portProtocols)]cnpAction
	for i, proto := range portProtocols {
		ps := pieces[i]
		u := iv.vec[ps[0].col]
		same := true
		for _, pc := range ps[1:] {
			if iv.vec[pc.col] != u {
				same = false
				break
			}
		}
		if same {
			uniform[i] = u
			continue
		}
		for j := 0; j < len(ps); {
			v, k := iv.vec[ps[j].col], j
			for k+1 < len(ps) && iv.vec[ps[k+1].col] == v {
				k++
			}
			if v != actionPass {
				out.Ports = append(out.Ports, nft.PortVerdict{Peer: peer, Proto: proto, Ports: nft.PortRange(ps[j].from, ps[k].to), Verdict: verdictOf(v)})
			}
			j = k + 1
		}
	}
	// The protocol axis: the port protocols' uniform verdicts between
	// stretches of the others'.
	other := iv.vec[0]
	type seg struct {
		from, to uint8
		v        cnpAction
	}
	segs := make([]seg, 0, 2*len(portProtocols)+1)
	next := 0
	for i, proto := range portProtocols {
		if next < int(proto) {
			segs = append(segs, seg{uint8(next), proto - 1, other})
		}
		segs = append(segs, seg{proto, proto, uniform[i]})
		next = int(proto) + 1
	}
	segs = append(segs, seg{uint8(next), 255, other})
	for j := 0; j < len(segs); {
		v, k := segs[j].v, j
		for k+1 < len(segs) && segs[k+1].v == v {
			k++
		}
		if v != actionPass {
			out.AnyPort = append(out.AnyPort, nft.ProtoVerdict{Peer: peer, Protos: nft.ProtoRange(segs[j].from, segs[k].to), Verdict: verdictOf(v)})
		}
		j = k + 1
	}
}

// addrVector is an address range and the verdict of every column on it.
type addrVector struct {
	from, to addrKey
	vec      []cnpAction
}

// sweepColumns splits the addresses some column covers into maximal
// ranges over which every column's verdict is constant (neighbouring
// ranges with equal verdicts joined), in address order. Each column's
// ranges are sorted and disjoint, so at most one per column is active.
func sweepColumns(cols [][]vrange) []addrVector {
	type colRange struct {
		vrange
		col int
	}
	var in []colRange
	for c, rs := range cols {
		for _, r := range rs {
			in = append(in, colRange{r, c})
		}
	}
	slices.SortFunc(in, func(a, b colRange) int { return a.from.Compare(b.from) })
	var out []addrVector
	var active []colRange
	vec := make([]cnpAction, len(cols))
	i := 0
	var cur addrKey
	for {
		active = slices.DeleteFunc(active, func(r colRange) bool { return r.to.Less(cur) })
		if len(active) == 0 {
			if i == len(in) {
				return out
			}
			cur = in[i].from
		}
		for ; i < len(in) && in[i].from.Compare(cur) <= 0; i++ {
			active = append(active, in[i])
		}
		end := active[0].to
		clear(vec)
		for _, r := range active {
			vec[r.col] = r.v
			if r.to.Less(end) {
				end = r.to
			}
		}
		if i < len(in) && in[i].from.Compare(end) <= 0 {
			end = in[i].from.Prev()
		}
		if last := len(out) - 1; last >= 0 && out[last].to.Next() == cur && slices.Equal(out[last].vec, vec) {
			out[last].to = end
		} else {
			out = append(out, addrVector{from: cur, to: end, vec: slices.Clone(vec)})
		}
		cur = end.Next()
		if !cur.IsValid() {
			active = active[:0] // end was the family's last address
		}
	}
}

type flattener struct {
	rules  []flatRule
	ranges map[*netipx.IPSet][][2]addrKey // each set's ranges, converted once
	cols   [][]vrange                     // painted columns
	memo   map[string]int                 // covering boxes → column
	// Buffers of paint: the sets already painted, the ranges to sweep.
	painted map[*netipx.IPSet]bool
	scratch []paintRange
	// audited: some rules are audited (flatRule.audit); their boxes lead
	// through audit chains, outcomes[a-auditBase] for action a, built
	// with log and the deny chains, and interned by auditOutcomes.
	audited       bool
	log           *nft.DenyLog
	denyChains    []*nft.Chain
	auditBase     cnpAction
	outcomes      []auditOutcome
	auditOutcomes map[string]cnpAction
}

func (f *flattener) rangesOf(s *netipx.IPSet) [][2]addrKey {
	r, ok := f.ranges[s]
	if !ok {
		rs := s.Ranges()
		r = make([][2]addrKey, len(rs))
		for i, x := range rs {
			r[i] = [2]addrKey{keyOf(x.From()), keyOf(x.To())}
		}
		f.ranges[s] = r
	}
	return r
}

// boxRef is box b of rule r.
type boxRef struct{ rule, box int }

// portPiece is a port range and the column holding its verdicts.
type portPiece struct {
	from, to uint16
	col      int
}

// portPieces cuts proto's port axis at every box edge and returns the
// pieces, covering 0-65535. Pieces that the same boxes cover have the same
// verdicts and share a column, painted once; pieces no box covers have
// column 0's.
func (f *flattener) portPieces(proto uint8) []portPiece {
	type span struct {
		ref      boxRef
		from, to int
	}
	var spans []span
	cuts := []int{0, 65536}
	for ri, r := range f.rules {
		for bi, b := range r.boxes {
			if b.proto == proto {
				spans = append(spans, span{boxRef{ri, bi}, int(b.from), int(b.to)})
				cuts = append(cuts, int(b.from), int(b.to)+1)
			}
		}
	}
	sort.Ints(cuts)
	cuts = slices.Compact(cuts)
	slices.SortFunc(spans, func(a, b span) int { return a.from - b.from })
	byRef := func(a, b span) int {
		if a.ref.rule != b.ref.rule {
			return a.ref.rule - b.ref.rule
		}
		return a.ref.box - b.ref.box
	}
	var pieces []portPiece
	var active []span // the boxes covering the current piece, in rule order
	var sig []byte
	next := 0
	for i := 0; i+1 < len(cuts); i++ {
		from, to := cuts[i], cuts[i+1]-1
		active = slices.DeleteFunc(active, func(s span) bool { return s.to < from })
		for ; next < len(spans) && spans[next].from == from; next++ {
			at, _ := slices.BinarySearchFunc(active, spans[next], byRef)
			active = slices.Insert(active, at, spans[next])
		}
		sig = sig[:0]
		for _, s := range active {
			sig = strconv.AppendInt(sig, int64(s.ref.rule), 10)
			sig = append(sig, '.')
			sig = strconv.AppendInt(sig, int64(s.ref.box), 10)
			sig = append(sig, ',')
		}
		col, ok := f.memo[string(sig)]
		if !ok {
			refs := make([]boxRef, len(active))
			for j, s := range active {
				refs[j] = s.ref
			}
			col = len(f.cols)
			f.cols = append(f.cols, f.paint(refs))
			f.memo[string(sig)] = col
		}
		if last := len(pieces) - 1; last >= 0 && pieces[last].col == col {
			pieces[last].to = uint16(to)
			continue
		}
		pieces = append(pieces, portPiece{from: uint16(from), to: uint16(to), col: col})
	}
	return pieces
}

// paint finds, for every address that the rules' any sets or the given
// boxes cover, the first rule covering it, and returns the ranges it
// accepts or denies (sorted, neighbours of equal verdict joined).
func (f *flattener) paint(boxes []boxRef) []vrange {
	in := f.scratch[:0]
	clear(f.painted)
	add := func(rule int, sets []*netipx.IPSet) {
		for _, s := range sets {
			// A set an earlier rule brought covers the same addresses first:
			// this rule's copy is shadowed whole (policies often repeat the
			// same peers). An audited rule decides nothing, so it shadows
			// nothing.
			if f.painted[s] {
				continue
			}
			f.painted[s] = f.rules[rule].audit == nil
			for _, r := range f.rangesOf(s) {
				in = append(in, paintRange{from: r[0], to: r[1], rule: rule})
			}
		}
	}
	bi := 0
	for ri, r := range f.rules {
		add(ri, r.any)
		for ; bi < len(boxes) && boxes[bi].rule == ri; bi++ {
			add(ri, r.boxes[boxes[bi].box].peers)
		}
	}
	f.scratch = in
	var out []vrange
	appendRange := func(from, to addrKey, a cnpAction) {
		if a == actionPass {
			return
		}
		if last := len(out) - 1; last >= 0 && out[last].v == a && out[last].to.Next() == from {
			out[last].to = to
			return
		}
		out = append(out, vrange{from: from, to: to, v: a})
	}
	if !f.audited {
		for _, p := range firstMatch(in) {
			appendRange(p.from, p.to, f.rules[p.rule].action)
		}
		return out
	}
	var recs []int
	var seen []int // policies whose first covering rule was met
	coverings(in, func(from, to addrKey, covering []int) {
		recs, seen = recs[:0], seen[:0]
		then := actionPass
		for _, ri := range covering {
			r := &f.rules[ri]
			if r.audit == nil {
				then = r.action // the first enforced rule decides
				break
			}
			if slices.Contains(seen, r.policy) {
				continue // the policy's own earlier rule covers it
			}
			seen = append(seen, r.policy)
			if r.action == actionDeny {
				recs = append(recs, ri)
			}
		}
		if len(recs) > 0 {
			then = f.outcome(recs, then)
		}
		appendRange(from, to, then)
	})
	return out
}

// coverings calls visit for every maximal address range over which the set
// of rules covering it (some range of in) is the same and not empty, in
// address order, with those rules in rule order. Only the flattening of
// audited policies needs more than the first rule (firstMatch).
func coverings(in []paintRange, visit func(from, to addrKey, rules []int)) {
	slices.SortFunc(in, func(a, b paintRange) int { return a.from.Compare(b.from) })
	var active []paintRange
	var rules []int
	i := 0
	var cur addrKey
	for {
		active = slices.DeleteFunc(active, func(r paintRange) bool { return r.to.Less(cur) })
		if len(active) == 0 {
			if i == len(in) {
				return
			}
			cur = in[i].from
		}
		for ; i < len(in) && in[i].from.Compare(cur) <= 0; i++ {
			if !in[i].to.Less(cur) {
				active = append(active, in[i])
			}
		}
		if len(active) == 0 {
			continue
		}
		end := active[0].to
		rules = rules[:0]
		for _, r := range active {
			if r.to.Less(end) {
				end = r.to
			}
			rules = append(rules, r.rule)
		}
		if i < len(in) && in[i].from.Compare(end) <= 0 {
			end = in[i].from.Prev() // a rule starts there: decide again
		}
		slices.Sort(rules)
		visit(cur, end, slices.Compact(rules))
		cur = end.Next()
		if !cur.IsValid() {
			active = active[:0] // end was the family's last address
		}
	}
}

// paintRange is an address range covered by a rule (its index: the lower,
// the earlier).
type paintRange struct {
	from, to addrKey
	rule     int
}

// firstMatch returns, for every address some range of in covers, the
// first rule covering it: sorted, disjoint ranges, neighbours of the same
// rule joined. It sweeps the ranges in address order keeping the rules
// that cover the current address in a heap, O(n log n) for n ranges.
func firstMatch(in []paintRange) []paintRange {
	slices.SortFunc(in, func(a, b paintRange) int { return a.from.Compare(b.from) })
	var out []paintRange
	var h ruleHeap
	i := 0
	var cur addrKey
	for {
		for len(h) > 0 && h[0].to.Less(cur) {
			h.pop()
		}
		if len(h) == 0 {
			if i == len(in) {
				return out
			}
			cur = in[i].from
		}
		for ; i < len(in) && in[i].from.Compare(cur) <= 0; i++ {
			if !in[i].to.Less(cur) {
				h.push(in[i])
			}
		}
		if len(h) == 0 {
			continue
		}
		w := h[0]
		end := w.to
		if i < len(in) && in[i].from.Compare(end) <= 0 {
			end = in[i].from.Prev() // a rule starts there: decide again
		}
		if last := len(out) - 1; last >= 0 && out[last].rule == w.rule && out[last].to.Next() == cur {
			out[last].to = end
		} else {
			out = append(out, paintRange{from: cur, to: end, rule: w.rule})
		}
		cur = end.Next()
		if !cur.IsValid() {
			// end was the family's last address: every range in the heap
			// ends there.
			h = h[:0]
		}
	}
}

// ruleHeap is a min-heap of ranges by rule.
type ruleHeap []paintRange

func (h *ruleHeap) push(r paintRange) {
	*h = append(*h, r)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p].rule <= s[i].rule {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *ruleHeap) pop() {
	s := *h
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && s[l].rule < s[m].rule {
			m = l
		}
		if r < n && s[r].rule < s[m].rule {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
}

// addrKey is an address as two integers and its family. It holds no
// pointer (netip.Addr does), so the sweeps sort and copy millions of them
// without write barriers or work for the garbage collector.
type addrKey struct {
	hi, lo uint64
	fam    uint8 // 4 or 6; 0 is no address: past a family's last one
}

func keyOf(a netip.Addr) addrKey {
	if a.Is4() {
		b := a.As4()
		return addrKey{lo: uint64(binary.BigEndian.Uint32(b[:])), fam: 4}
	}
	b := a.As16()
	return addrKey{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), fam: 6}
}

// IsValid reports whether a is an address (Next of a family's last
// address is not).
func (a addrKey) IsValid() bool { return a.fam != 0 }

// Compare orders IPv4 before IPv6, then numerically.
func (a addrKey) Compare(b addrKey) int {
	return cmp.Or(cmp.Compare(a.fam, b.fam), cmp.Compare(a.hi, b.hi), cmp.Compare(a.lo, b.lo))
}

func (a addrKey) Less(b addrKey) bool { return a.Compare(b) < 0 }

// Next is the following address, or no address past the family's last.
func (a addrKey) Next() addrKey {
	switch a.fam {
	case 4:
		if a.lo == math.MaxUint32 {
			return addrKey{}
		}
		a.lo++
	case 6:
		a.lo++
		if a.lo == 0 {
			a.hi++
			if a.hi == 0 {
				return addrKey{}
			}
		}
	}
	return a
}

// Prev is the preceding address; a must not be its family's first.
func (a addrKey) Prev() addrKey {
	if a.lo == 0 {
		a.hi--
	}
	a.lo--
	return a
}

// bytes is a in network byte order, as nft.Range holds addresses.
func (a addrKey) bytes() []byte {
	if a.fam == 4 {
		return binary.BigEndian.AppendUint32(make([]byte, 0, 4), uint32(a.lo))
	}
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 16), a.hi)
	return binary.BigEndian.AppendUint64(b, a.lo)
}

package nft

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
)

// Tier is a ClusterNetworkPolicy tier: the Admin tier is consulted before
// the NetworkPolicy allow-list of a pod, the Baseline tier after it (and
// only when no NetworkPolicy isolates the pod in that direction).
type Tier uint8

// Tiers.
const (
	TierAdmin Tier = iota + 1
	TierBaseline
)

func (t Tier) String() string {
	if t == TierAdmin {
		return "admin"
	}
	return "baseline"
}

// TierVerdicts are one tier's ordered first-match rules for one direction
// of the pods they apply to, flattened: disjoint boxes of (peer, protocol,
// port) that each carry the verdict of the first rule covering them. A rule
// that accepts gives Return (this direction is allowed; the base chain goes
// on to judge the other one), a rule that denies gives a jump to its deny
// chain (DenyLog.DenyChain), which counts, with the deny log on logs, and
// drops (Drop itself is still understood: an element can drop). Traffic that a
// Pass rule covers first, or that no rule covers, is in no element: the
// lookup misses and the next tier decides. Traffic that audited Deny rules
// would deny first jumps to an audit chain, which logs them and then
// passes (falls off its end), or goes there (`goto`) when the enforced
// rules accept it, so that the chain's end leaves the tier chain as a
// Return would, or ends by jumping to the deny chain of the enforced Deny.
//
// As in AllowList, elements within AnyPort and within Ports must be
// pairwise disjoint, and for a given peer and protocol at most one of the
// two may hold elements: AnyPort is looked up first, and its verdicts do
// not depend on the port.
type TierVerdicts struct {
	AnyPort []ProtoVerdict
	Ports   []PortVerdict
	// DenyChains are the chains that verdicts jump to instead of Drop,
	// so that Deny drops are counted and, with the deny log on, logged
	// (DenyLog.DenyChain); they go into every ruleset the maps go into.
	DenyChains []*Chain
	// AuditChains are the chains that verdicts jump or go to for traffic
	// that audited Deny rules would deny (DenyLog.AuditRuleChain): they
	// log it and go on with what the enforced rules decide.
	AuditChains []*Chain
}

// ProtoVerdict is the verdict for Peer on protocols Protos, every port.
type ProtoVerdict struct {
	Peer    Range
	Protos  Range
	Verdict Verdict
}

// PortVerdict is the verdict for Peer on protocol Proto, destination ports
// Ports.
type PortVerdict struct {
	Peer    Range
	Proto   uint8
	Ports   Range
	Verdict Verdict
}

// TierMapNames are the names of the four verdict maps of one tier map set.
type TierMapNames struct {
	AnyV4, AnyV6     string // peer address . l4proto : verdict
	PortsV4, PortsV6 string // peer address . l4proto . port : verdict
}

// TierMapNamesFor derives the map names of tier's maps for direction dir
// from key, which identifies their content (the compiler uses the ordered
// names of the policies flattened into them). Pods whose tier compiles to
// the same key share the maps.
func TierMapNamesFor(tier Tier, dir Direction, key string) TierMapNames {
	sum := sha256.Sum256([]byte(tier.String() + "/" + dir.String() + "/" + key))
	prefix := "in"
	if dir == Egress {
		prefix = "out"
	}
	base := tier.String() + "-" + prefix + "-" + hex.EncodeToString(sum[:8])
	return TierMapNames{AnyV4: base + ".any4", AnyV6: base + ".any6", PortsV4: base + ".ports4", PortsV6: base + ".ports6"}
}

// TierMaps are one tier's flattened rules for one direction, as four
// interval verdict maps. They are built once and may be shared by the
// tier chains of any number of pods and added to any number of rulesets.
type TierMaps struct {
	Tier  Tier
	Dir   Direction
	Names TierMapNames
	// Sets are the any-port v4 and v6 maps, then the port v4 and v6 maps.
	Sets [4]*Set
	// DenyChains and AuditChains are the chains the maps jump or go to
	// (TierVerdicts).
	DenyChains, AuditChains []*Chain
}

// NewTierMaps builds the maps of tier for direction dir, named after key
// (see TierMapNamesFor), holding v.
func NewTierMaps(tier Tier, dir Direction, key, comment string, v TierVerdicts) *TierMaps {
	n := TierMapNamesFor(tier, dir, key)
	mk := func(name string, types ...KeyType) *Set {
		return &Set{Name: name, Comment: comment, KeyTypes: types, Interval: true, IsVerdictMap: true}
	}
	any4 := mk(n.AnyV4, TypeIPv4Addr, TypeInetProto)
	any6 := mk(n.AnyV6, TypeIPv6Addr, TypeInetProto)
	ports4 := mk(n.PortsV4, TypeIPv4Addr, TypeInetProto, TypeInetService)
	ports6 := mk(n.PortsV6, TypeIPv6Addr, TypeInetProto, TypeInetService)
	b := newElementBuilder(2*len(v.AnyPort) + 3*len(v.Ports))
	sizeByFamily(any4, any6, len(v.AnyPort), func(i int) Range { return v.AnyPort[i].Peer })
	sizeByFamily(ports4, ports6, len(v.Ports), func(i int) Range { return v.Ports[i].Peer })
	for _, p := range v.AnyPort {
		appendByFamily(any4, any6, p.Peer, Element{Key: b.key(p.Peer, p.Protos), Verdict: p.Verdict})
	}
	for _, p := range v.Ports {
		appendByFamily(ports4, ports6, p.Peer, Element{Key: b.key(p.Peer, b.proto(p.Proto), p.Ports), Verdict: p.Verdict})
	}
	return &TierMaps{Tier: tier, Dir: dir, Names: n, Sets: [4]*Set{any4, any6, ports4, ports6},
		DenyChains: v.DenyChains, AuditChains: v.AuditChains}
}

// lookups are the four rules of a tier chain that consult m: a hit ends
// the chain with the element's verdict, a miss goes on.
func (m *TierMaps) lookups() []Rule {
	peer4, peer6 := FieldIPv4Saddr, FieldIPv6Saddr
	if m.Dir == Egress {
		peer4, peer6 = FieldIPv4Daddr, FieldIPv6Daddr
	}
	return []Rule{
		{VerdictMap: &Lookup{Fields: []Field{peer4, FieldL4Proto}, Set: m.Names.AnyV4}},
		{VerdictMap: &Lookup{Fields: []Field{peer6, FieldL4Proto}, Set: m.Names.AnyV6}},
		{VerdictMap: &Lookup{Fields: []Field{peer4, FieldL4Proto, FieldTHDport}, Set: m.Names.PortsV4}},
		{VerdictMap: &Lookup{Fields: []Field{peer6, FieldL4Proto, FieldTHDport}, Set: m.Names.PortsV6}},
	}
}

// TieredEndpoint is everything one local pod adds to the table for one
// direction when ClusterNetworkPolicy tiers apply to it: a chain of its own
// (the tier chain) that looks up the Admin tier maps, then jumps into the
// pod's NetworkPolicy allow-list chain when one isolates it, or else looks
// up the Baseline tier maps; and the dispatch elements, which jump into
// the tier chain. With only an allow-list it is that allow-list alone
// (IsolatedEndpoint), dispatched as before.
//
// Per packet this costs at most eight map or set lookups and one jump,
// whatever the number of policies: all of a tier's rules are in its maps.
type TieredEndpoint struct {
	Dir   Direction
	Names EndpointNames
	// Chain is the tier chain (Names.Tiers); nil when no tier but the
	// NetworkPolicy allow-list applies.
	Chain *Chain
	// Admin and Baseline are the maps the tier chain looks up, nil when
	// the tier has no rule for the pod. Baseline is nil whenever Allow is
	// set and enforces: a NetworkPolicy that isolates the pod decides
	// instead.
	Admin, Baseline *TierMaps
	// Allow is the NetworkPolicy allow-list, nil when no NetworkPolicy
	// isolates the pod in Dir.
	Allow *IsolatedEndpoint
	// MapElements4 and MapElements6 dispatch the pod's addresses into
	// Chain, or into Allow's chain when Chain is nil.
	MapElements4, MapElements6 []Element
}

// NewTieredEndpoint combines the tiers of the pod id (addresses addrs) in
// direction dir; any of admin, allow and baseline may be nil, and baseline
// is ignored when allow is set and enforces. An audit allow-list
// (NewAuditEndpoint) isolates nothing: the tier chain jumps into it (it
// logs what it would drop, and returns) and goes on to the Baseline tier.
// It returns nil when none applies: the pod is then not judged in that
// direction at all.
//
// The tier chain's rules depend only on which tiers apply and on the
// names of their maps, never on the maps' elements, so a change of peers
// touches elements only.
func NewTieredEndpoint(dir Direction, id string, addrs []netip.Addr, admin *TierMaps, allow *IsolatedEndpoint, baseline *TierMaps) *TieredEndpoint {
	if allow != nil && !allow.Audit {
		baseline = nil
	}
	if admin == nil && baseline == nil {
		if allow == nil {
			return nil
		}
		return &TieredEndpoint{Dir: dir, Names: allow.Names, Allow: allow,
			MapElements4: allow.MapElements4, MapElements6: allow.MapElements6}
	}
	n := NamesFor(dir, id)
	e := &TieredEndpoint{Dir: dir, Names: n, Admin: admin, Baseline: baseline, Allow: allow}
	var rules []Rule
	if admin != nil {
		rules = append(rules, admin.lookups()...)
	}
	if allow != nil {
		rules = append(rules, Rule{Verdict: Jump(allow.Chain.Name)})
	}
	if baseline != nil {
		rules = append(rules, baseline.lookups()...)
	}
	// Falling off the end returns: nothing decided, the direction is
	// allowed.
	e.Chain = &Chain{Name: n.Tiers, Rules: rules}
	for _, a := range addrs {
		el := Element{Key: []Range{Addr(a)}, Verdict: Jump(n.Tiers), Comment: id}
		if a.Is6() && !a.Is4In6() {
			e.MapElements6 = append(e.MapElements6, el)
		} else {
			e.MapElements4 = append(e.MapElements4, el)
		}
	}
	return e
}

// AddTieredEndpoint adds e's chains, sets and maps (shared, not copied) and
// appends its jumps to the dispatch maps of e.Dir, which must exist
// (NewSkeleton). Tier maps shared by several endpoints are added once.
func (r *Ruleset) AddTieredEndpoint(e *TieredEndpoint) {
	if e.Allow != nil {
		for _, s := range e.Allow.Sets {
			r.AddSet(s)
		}
		r.AddChain(e.Allow.Chain)
	}
	for _, m := range []*TierMaps{e.Admin, e.Baseline} {
		if m != nil {
			for _, s := range m.Sets {
				r.AddSet(s)
			}
			for _, c := range m.DenyChains {
				r.AddChain(c)
			}
			for _, c := range m.AuditChains {
				r.AddChain(c)
			}
		}
	}
	if e.Chain != nil {
		r.AddChain(e.Chain)
	}
	map4, map6 := MapIngressV4, MapIngressV6
	if e.Dir == Egress {
		map4, map6 = MapEgressV4, MapEgressV6
	}
	r.Sets[map4].Elements = append(r.Sets[map4].Elements, e.MapElements4...)
	r.Sets[map6].Elements = append(r.Sets[map6].Elements, e.MapElements6...)
}

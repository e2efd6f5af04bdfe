package nft

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"slices"
)

// Names of the fixed objects of the table.
const (
	// ChainForward filters traffic between pods, bridged (via br_netfilter)
	// or routed, after kube-proxy's DNAT, so Service traffic is judged by
	// endpoint pod address.
	ChainForward = "forward"
	// ChainInput filters a local pod's traffic to its own node's addresses
	// (egress only: ingress into a pod never reaches the input hook).
	ChainInput = "input"

	// MapIngressV4 and MapIngressV6 map the address of each local pod that
	// some policy judges for ingress (a NetworkPolicy isolates it, or a
	// ClusterNetworkPolicy tier has rules for it) to a jump into that pod's
	// ingress chain: its tier chain if it has one, else its allow-list.
	MapIngressV4 = "ingress-v4"
	MapIngressV6 = "ingress-v6"
	// MapEgressV4 and MapEgressV6 do the same for egress, keyed by source.
	MapEgressV4 = "egress-v4"
	MapEgressV6 = "egress-v6"

	// MapUnknownLocalV4 and MapUnknownLocalV6 hold, as address intervals
	// that map to drop, the addresses of the node's pod CIDRs that belong
	// to no pod the agent knows and to none of the node's own interfaces.
	// Traffic from or to such an address is a pod the agent has not
	// programmed yet (or no pod at all), so it is dropped before any
	// dispatch: a new pod is isolated from its first packet, fail closed,
	// until the sync that knows its address and rules replaces the drop.
	MapUnknownLocalV4 = "unknown-local-v4"
	MapUnknownLocalV6 = "unknown-local-v6"

	// ChainMidStream refuses TCP connections picked up mid-stream that
	// involve a local pod whose traffic in the direction at risk is judged:
	// a packet from a pod judged for ingress, or to a pod judged for
	// egress. See NewSkeleton.
	ChainMidStream = "mid-stream"
)

// notLoneSYN matches a TCP packet that cannot open a connection: any
// combination of FIN, SYN, RST and ACK but a SYN alone. Conntrack already
// marks a SYN-ACK, RST or FIN without an entry invalid (dropped by the
// prologue), so in practice this is the ACK (with data or not) that
// nf_conntrack_tcp_loose picks up as a new connection.
var notLoneSYN = &TCPFlagsMatch{Mask: TCPFlagFIN | TCPFlagSYN | TCPFlagRST | TCPFlagACK, Unless: TCPFlagSYN}

// icmpv6NeighbourDiscovery are ICMPv6 types 133–137 (router solicitation,
// router advertisement, neighbour solicitation, neighbour advertisement,
// redirect): without them IPv6 stops working, so no policy may drop them.
var icmpv6NeighbourDiscovery = []uint8{133, 134, 135, 136, 137}

// Direction is the side of a pod a chain guards.
type Direction uint8

// Directions.
const (
	Ingress Direction = iota + 1
	Egress
)

func (d Direction) String() string {
	if d == Ingress {
		return "ingress"
	}
	return "egress"
}

// NewSkeleton returns the fixed part of the table: the two base chains and
// the four dispatch maps, with no pod isolated. Every packet that belongs to
// an established connection is accepted first, so the per-pod chains only
// ever judge the first packet of a connection.
func NewSkeleton() *Ruleset {
	r := NewRuleset()
	for _, m := range []struct {
		name string
		key  KeyType
		doc  string
	}{
		{MapIngressV4, TypeIPv4Addr, "local pods with ingress policy, by IPv4 address"},
		{MapIngressV6, TypeIPv6Addr, "local pods with ingress policy, by IPv6 address"},
		{MapEgressV4, TypeIPv4Addr, "local pods with egress policy, by IPv4 address"},
		{MapEgressV6, TypeIPv6Addr, "local pods with egress policy, by IPv6 address"},
	} {
		r.AddSet(&Set{Name: m.name, Comment: m.doc, KeyTypes: []KeyType{m.key}, IsVerdictMap: true})
	}
	for _, m := range []struct {
		name string
		key  KeyType
	}{{MapUnknownLocalV4, TypeIPv4Addr}, {MapUnknownLocalV6, TypeIPv6Addr}} {
		r.AddSet(&Set{Name: m.name, Comment: "node pod CIDR addresses of no known pod: dropped",
			KeyTypes: []KeyType{m.key}, Interval: true, IsVerdictMap: true})
	}
	prologue := []Rule{
		{Matches: []Match{{CtState: CtStateEstablished | CtStateRelated}}, Verdict: Accept},
		{Matches: []Match{{CtState: CtStateInvalid}}, Verdict: Drop},
		{Matches: []Match{{ICMPv6Type: icmpv6NeighbourDiscovery}}, Verdict: Accept},
	}
	// The guard comes after the prologue (established flows, neighbour
	// discovery) and before any dispatch, so no allow-list can admit an
	// unknown local address.
	sourceGuard := []Rule{
		{VerdictMap: &Lookup{Fields: []Field{FieldIPv4Saddr}, Set: MapUnknownLocalV4}},
		{VerdictMap: &Lookup{Fields: []Field{FieldIPv6Saddr}, Set: MapUnknownLocalV6}},
	}
	destinationGuard := []Rule{
		{VerdictMap: &Lookup{Fields: []Field{FieldIPv4Daddr}, Set: MapUnknownLocalV4}},
		{VerdictMap: &Lookup{Fields: []Field{FieldIPv6Daddr}, Set: MapUnknownLocalV6}},
	}
	egressDispatch := []Rule{
		{VerdictMap: &Lookup{Fields: []Field{FieldIPv4Saddr}, Set: MapEgressV4}},
		{VerdictMap: &Lookup{Fields: []Field{FieldIPv6Saddr}, Set: MapEgressV6}},
	}
	ingressDispatch := []Rule{
		{VerdictMap: &Lookup{Fields: []Field{FieldIPv4Daddr}, Set: MapIngressV4}},
		{VerdictMap: &Lookup{Fields: []Field{FieldIPv6Daddr}, Set: MapIngressV6}},
	}
	// A TCP packet that finds no conntrack entry but is not a SYN (a
	// segment still in flight, or a retransmission, after the conntrack
	// cleanup removed the entry of a connection the new policy denies)
	// would be picked up by conntrack as a new connection in the reverse
	// direction: from the server to the client. Across nodes only this
	// node judged the connection (the server's ingress here, or the
	// client's egress here); the other node still holds its entry, and
	// the reverse direction is not what this node's policy denies, so the
	// connection would come back. Such a packet is therefore dropped when
	// it leaves a pod judged for ingress or enters a pod judged for
	// egress; one that passes is still judged as-is by the dispatch above.
	// Pods judged in neither direction keep the kernel's behaviour (their
	// long-idle connections survive a conntrack timeout as before). The
	// check comes after the dispatch, which only drops or returns, so that
	// a SYN's trace, rule numbers included, is that of a table without it.
	midStream := []Rule{
		{Matches: []Match{{CtState: CtStateNew}, {TCPFlags: notLoneSYN}}, Verdict: Jump(ChainMidStream)},
	}
	r.AddChain(&Chain{
		Name: ChainMidStream,
		Rules: []Rule{
			{Matches: []Match{{Lookup: &Lookup{Fields: []Field{FieldIPv4Saddr}, Set: MapIngressV4}}}, Verdict: Drop},
			{Matches: []Match{{Lookup: &Lookup{Fields: []Field{FieldIPv6Saddr}, Set: MapIngressV6}}}, Verdict: Drop},
			{Matches: []Match{{Lookup: &Lookup{Fields: []Field{FieldIPv4Daddr}, Set: MapEgressV4}}}, Verdict: Drop},
			{Matches: []Match{{Lookup: &Lookup{Fields: []Field{FieldIPv6Daddr}, Set: MapEgressV6}}}, Verdict: Drop},
		},
	})
	// A new connection that falls off the end of forward (past the
	// mid-stream check) is one every policy on its path let through:
	// counted, then accepted by the chain's policy. Untracked packets (IPv6 multicast listener reports
	// across the bridge, ...) are no connection and are not counted. Only
	// forward: input also carries every other new connection to the node
	// (kubelet, SSH, the node's own loopback), which are not pod traffic.
	acceptedNew := []Rule{{Matches: []Match{{CtState: CtStateNew}}, Counter: true}}
	r.AddChain(&Chain{
		Name:  ChainForward,
		Hook:  &Hook{Name: HookForward, Priority: 0, Policy: VerdictAccept},
		Rules: concatRules(prologue, sourceGuard, destinationGuard, egressDispatch, ingressDispatch, midStream, acceptedNew),
	})
	// input gets no such check: a pod's connection to its own node could
	// come back through the node's answers, which leave through the
	// output hook, unfiltered, so a check here would not cut it; and the
	// pod's answers to the node's own connections (always allowed) would
	// lose their pickups after a conntrack timeout (README, Limitations).
	r.AddChain(&Chain{
		Name:  ChainInput,
		Hook:  &Hook{Name: HookInput, Priority: 0, Policy: VerdictAccept},
		Rules: concatRules(prologue, sourceGuard, egressDispatch),
	})
	return r
}

// SetUnknownLocal fills the two unknown-local maps with ranges (disjoint,
// not adjacent, as an interval set needs), each mapped to drop.
func (r *Ruleset) SetUnknownLocal(ranges []Range) {
	v4, v6 := r.Sets[MapUnknownLocalV4], r.Sets[MapUnknownLocalV6]
	v4.Elements, v6.Elements = nil, nil
	for _, rg := range ranges {
		appendByFamily(v4, v6, rg, Element{Key: []Range{rg}, Verdict: Drop})
	}
}

func concatRules(parts ...[]Rule) []Rule {
	var out []Rule
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// AllowList is everything one pod admits in one direction. Peer ranges are
// addresses of the other side (sources for ingress, destinations for
// egress). Within each list, elements must be pairwise disjoint: nftables
// rejects overlapping intervals in a set.
type AllowList struct {
	// AnyPort holds peer address ranges allowed on every protocol and port.
	AnyPort []Range
	// Ports holds (peer range, protocol, port range) boxes.
	Ports []PortAllow
}

// PortAllow admits Peer on protocol Proto, destination ports Ports.
type PortAllow struct {
	Peer    Range
	Proto   uint8
	Ports   Range
	Comment string
}

// exactKeys is the number of hash keys (address . protocol . port) p is
// held as: one per address of its peer when it admits one port and its
// peer is small enough to spell out (spelledOut), else 0.
func (p PortAllow) exactKeys() int {
	if !bytes.Equal(p.Ports.From, p.Ports.To) {
		return 0
	}
	return spelledOut(p.Peer)
}

// spellOutMax is the most addresses a peer range may hold to be held
// address by address in a hash set rather than as one range in the rbtree
// or in pipapo. Pods of one node get adjacent addresses, which the fold
// joins into ranges: spelled out, a pod joining or leaving such a run adds
// or deletes its own hash element instead of replacing a range element of
// a slower backend. Each address is an element; 16 bounds what that costs.
const spellOutMax = 16

// spelledOut is the number of addresses of r when it holds at most
// spellOutMax of them, else 0.
func spelledOut(r Range) int {
	if bytes.Equal(r.From, r.To) {
		return 1
	}
	from, _ := netip.AddrFromSlice(r.From)
	to, _ := netip.AddrFromSlice(r.To)
	n := 1
	for a := from; a != to; a = a.Next() {
		if n == spellOutMax || !a.IsValid() {
			return 0
		}
		n++
	}
	return n
}

// eachAddr calls fn with each address of r, as a single-address Range,
// in order. A single address is passed as r itself, not copied.
func eachAddr(r Range, fn func(Range)) {
	if bytes.Equal(r.From, r.To) {
		fn(r)
		return
	}
	from, _ := netip.AddrFromSlice(r.From)
	to, _ := netip.AddrFromSlice(r.To)
	for a := from; a.IsValid(); a = a.Next() {
		b := a.AsSlice()
		fn(Range{From: b, To: b})
		if a == to {
			return
		}
	}
}

// EndpointNames are the names of one pod's chains and sets for one
// direction. An allow-list is held in four pairs of sets, one per shape
// of element, so that each shape gets the cheapest kernel backend that can
// hold it (see newAllowListEndpoint).
type EndpointNames struct {
	Chain            string // the NetworkPolicy allow-list
	ExactV4, ExactV6 string // peer address . l4proto . port, single values: hash
	AddrV4, AddrV6   string // single peer addresses allowed on everything: hash
	AnyV4, AnyV6     string // peer address ranges allowed on everything: rbtree
	PortsV4, PortsV6 string // every other (peer range, l4proto, port range) box: pipapo
	// Tiers is the chain that consults the ClusterNetworkPolicy tiers
	// (TieredEndpoint).
	Tiers string
}

// NamesFor derives object names for the pod identified by id (its
// "namespace/name") in direction dir. The readable tail helps a human read
// `nft list`; the hash keeps names unique and short whatever id is.
func NamesFor(dir Direction, id string) EndpointNames {
	sum := sha256.Sum256([]byte(dir.String() + "/" + id))
	tail := id
	if len(tail) > 40 {
		tail = tail[:40]
	}
	prefix := "in"
	if dir == Egress {
		prefix = "out"
	}
	chain := prefix + "-" + hex.EncodeToString(sum[:4]) + "-" + tail
	return EndpointNames{
		Chain:   chain,
		ExactV4: chain + ".exact4",
		ExactV6: chain + ".exact6",
		AddrV4:  chain + ".addr4",
		AddrV6:  chain + ".addr6",
		AnyV4:   chain + ".cidr4",
		AnyV6:   chain + ".cidr6",
		PortsV4: chain + ".ports4",
		PortsV6: chain + ".ports6",
		Tiers:   chain + ".tiers",
	}
}

// IsolatedEndpoint is everything one isolated pod adds to the table for one
// direction: its chain, its eight allow-list sets and the dispatch map
// elements that jump into the chain. It is built once (NewIsolatedEndpoint)
// and may be added to any number of rulesets: a compiler that keeps it for
// an unchanged pod hands the same sets and chain to the next ruleset, which
// lets Diff skip them without comparing their elements.
type IsolatedEndpoint struct {
	Dir Direction
	// Audit: the chain never drops (NewAuditEndpoint); where its
	// allow-list admits nothing it logs, and the packet goes on.
	Audit bool
	Names EndpointNames
	Chain *Chain
	// Sets are the allow-list's sets in the order the chain looks them
	// up: exact, addr, any, then ports, each v4 then v6.
	Sets [8]*Set
	// MapElements jump from the pod's addresses into Chain; MapElements4
	// go into the v4 dispatch map of Dir, MapElements6 into the v6 one.
	MapElements4, MapElements6 []Element
}

// NewIsolatedEndpoint isolates the pod id with addresses addrs in direction
// dir: its addresses dispatch into a chain of its own that returns for what
// allow admits and drops everything else, after a log rule when log is not
// nil. The chain's rules depend only on the names, never on allow, so a
// change of peers or ports touches set elements only.
func NewIsolatedEndpoint(dir Direction, id string, addrs []netip.Addr, allow AllowList, log *DenyLog) *IsolatedEndpoint {
	e := newAllowListEndpoint(dir, id, addrs, allow)
	e.Chain.Rules = append(e.Chain.Rules, log.rules(e.Names.Chain)...)
	// The counter is on the drop alone, so the accept path never meets it.
	e.Chain.Rules = append(e.Chain.Rules, Rule{Counter: true, Verdict: Drop})
	return e
}

// NewAuditEndpoint is the audit form of NewIsolatedEndpoint, for a pod that
// only audited policies isolate in direction dir: the same chain and sets,
// but where allow admits nothing the chain logs the packet through log
// with an audit prefix (AuditPrefix) and returns instead of dropping, so
// the packet goes on as if the pod were not isolated. What allow admits
// returns before the log rule, as in an enforcing chain: the accept path
// costs the same lookups and never meets the log. A pod whose audit chain
// becomes an enforcing one (the annotation removed) keeps its chain's
// name and sets; only the chain's tail changes.
func NewAuditEndpoint(dir Direction, id string, addrs []netip.Addr, allow AllowList, log *DenyLog) *IsolatedEndpoint {
	e := newAllowListEndpoint(dir, id, addrs, allow)
	e.Audit = true
	e.Chain.Rules = append(e.Chain.Rules, log.auditRules(e.Names.Chain)...)
	return e
}

// newAllowListEndpoint is the part of an isolated endpoint that enforcing
// and audit chains share: the sets, the lookups that return, and the
// dispatch elements.
//
// The allow-list is split by the shape of its elements, because the kernel
// picks a set's backend by its flags and the backends differ in what an
// element costs. A concatenated interval set is pipapo, whose every
// element deletion rebuilds lookup tables that grow with the set (a pod
// going away from a 10,000-element allow-list cost tens of milliseconds
// of commit); a set without the interval flag is a hash, where adding or
// deleting an element costs the same whatever the set's size; an
// interval set of one field is an rbtree, cheap to change but, on the
// kernels here, slow to fill (each insertion walks its neighbours for
// overlaps: 1,500 single addresses in each of 110 sets took 3-4 times as
// long to build as in pipapo). So:
//   - exact4/exact6 (hash, `addr . l4proto . th dport`) hold the boxes of
//     one protocol and one port, address by address: a pod admitted on a
//     port, the commonest element (a peer range of up to spellOutMax
//     addresses is spelled out);
//   - addr4/addr6 (hash, `addr`) hold the addresses allowed on every
//     protocol and port, one by one: a pod admitted on everything (again
//     with ranges of up to spellOutMax addresses spelled out);
//   - cidr4/cidr6 (rbtree, `addr`) hold the larger address ranges allowed on
//     every protocol and port (CIDRs). They are not called any4/any6 as
//     the one concatenated set of the layout before them was: the first
//     sync of an upgraded agent keeps a set of the same name only when its
//     type matches, so a new name lets that sync delete the old set and
//     keep the pipapo ports sets instead of failing and deleting them all;
//   - ports4/ports6 (pipapo) keep everything else: address ranges or port
//     ranges on one protocol.
//
// Each lookup returns on a match, so the union of the four shapes is what the pod
// admits, the same as one set holding every box. The chain looks them up
// in that order: the hashes first (a probe of one bucket), then the tree,
// then pipapo. A lookup into an empty set stays: the chain's rules depend
// only on the names, never on allow, so an element moving from one shape
// to another (a pod admitted on a second, adjacent port turns an exact
// element into a port range) changes set elements only, never the chain;
// and a miss in an empty set is a few instructions in the kernel.
func newAllowListEndpoint(dir Direction, id string, addrs []netip.Addr, allow AllowList) *IsolatedEndpoint {
	n := NamesFor(dir, id)
	peer4, peer6 := FieldIPv4Saddr, FieldIPv6Saddr
	if dir == Egress {
		peer4, peer6 = FieldIPv4Daddr, FieldIPv6Daddr
	}
	comment := dir.String() + " allow-list of " + id
	portKey4 := []KeyType{TypeIPv4Addr, TypeInetProto, TypeInetService}
	portKey6 := []KeyType{TypeIPv6Addr, TypeInetProto, TypeInetService}
	exact4 := &Set{Name: n.ExactV4, Comment: comment, KeyTypes: portKey4}
	exact6 := &Set{Name: n.ExactV6, Comment: comment, KeyTypes: portKey6}
	addr4 := &Set{Name: n.AddrV4, Comment: comment, KeyTypes: []KeyType{TypeIPv4Addr}}
	addr6 := &Set{Name: n.AddrV6, Comment: comment, KeyTypes: []KeyType{TypeIPv6Addr}}
	any4 := &Set{Name: n.AnyV4, Comment: comment, KeyTypes: []KeyType{TypeIPv4Addr}, Interval: true}
	any6 := &Set{Name: n.AnyV6, Comment: comment, KeyTypes: []KeyType{TypeIPv6Addr}, Interval: true}
	ports4 := &Set{Name: n.PortsV4, Comment: comment, KeyTypes: portKey4, Interval: true}
	ports6 := &Set{Name: n.PortsV6, Comment: comment, KeyTypes: portKey6, Interval: true}
	// Room for exactly the elements of each set (see sizeByFamily), by
	// family.
	var exactN, portsN, addrN, anyN [2]int
	for _, p := range allow.Ports {
		if k := p.exactKeys(); k > 0 {
			exactN[family(p.Peer)] += k
		} else {
			portsN[family(p.Peer)]++
		}
	}
	for _, p := range allow.AnyPort {
		if k := spelledOut(p); k > 0 {
			addrN[family(p)] += k
		} else {
			anyN[family(p)]++
		}
	}
	b := newElementBuilder(addrN[0] + addrN[1] + anyN[0] + anyN[1] + 3*(exactN[0]+exactN[1]+portsN[0]+portsN[1]))
	exact4.Elements, exact6.Elements = slices.Grow(exact4.Elements, exactN[0]), slices.Grow(exact6.Elements, exactN[1])
	addr4.Elements, addr6.Elements = slices.Grow(addr4.Elements, addrN[0]), slices.Grow(addr6.Elements, addrN[1])
	any4.Elements, any6.Elements = slices.Grow(any4.Elements, anyN[0]), slices.Grow(any6.Elements, anyN[1])
	ports4.Elements, ports6.Elements = slices.Grow(ports4.Elements, portsN[0]), slices.Grow(ports6.Elements, portsN[1])
	for _, p := range allow.AnyPort {
		if spelledOut(p) > 0 {
			eachAddr(p, func(a Range) { appendByFamily(addr4, addr6, a, Element{Key: b.key(a)}) })
		} else {
			appendByFamily(any4, any6, p, Element{Key: b.key(p)})
		}
	}
	for _, p := range allow.Ports {
		if p.exactKeys() > 0 {
			proto := b.proto(p.Proto)
			eachAddr(p.Peer, func(a Range) {
				appendByFamily(exact4, exact6, a, Element{Key: b.key(a, proto, p.Ports), Comment: p.Comment})
			})
		} else {
			appendByFamily(ports4, ports6, p.Peer, Element{Key: b.key(p.Peer, b.proto(p.Proto), p.Ports), Comment: p.Comment})
		}
	}
	rules := []Rule{
		{Matches: []Match{{Lookup: &Lookup{Fields: []Field{peer4, FieldL4Proto, FieldTHDport}, Set: n.ExactV4}}}, Verdict: Return},
		{Matches: []Match{{Lookup: &Lookup{Fields: []Field{peer6, FieldL4Proto, FieldTHDport}, Set: n.ExactV6}}}, Verdict: Return},
		{Matches: []Match{{Lookup: &Lookup{Fields: []Field{peer4}, Set: n.AddrV4}}}, Verdict: Return},
		{Matches: []Match{{Lookup: &Lookup{Fields: []Field{peer6}, Set: n.AddrV6}}}, Verdict: Return},
		{Matches: []Match{{Lookup: &Lookup{Fields: []Field{peer4}, Set: n.AnyV4}}}, Verdict: Return},
		{Matches: []Match{{Lookup: &Lookup{Fields: []Field{peer6}, Set: n.AnyV6}}}, Verdict: Return},
		{Matches: []Match{{Lookup: &Lookup{Fields: []Field{peer4, FieldL4Proto, FieldTHDport}, Set: n.PortsV4}}}, Verdict: Return},
		{Matches: []Match{{Lookup: &Lookup{Fields: []Field{peer6, FieldL4Proto, FieldTHDport}, Set: n.PortsV6}}}, Verdict: Return},
	}
	e := &IsolatedEndpoint{
		Dir:   dir,
		Names: n,
		Sets:  [8]*Set{exact4, exact6, addr4, addr6, any4, any6, ports4, ports6},
		Chain: &Chain{Name: n.Chain, Rules: rules},
	}
	for _, a := range addrs {
		el := Element{Key: []Range{Addr(a)}, Verdict: Jump(n.Chain), Comment: id}
		if a.Is6() && !a.Is4In6() {
			e.MapElements6 = append(e.MapElements6, el)
		} else {
			e.MapElements4 = append(e.MapElements4, el)
		}
	}
	return e
}

// AddEndpoint adds e's chain and sets (shared, not copied) and appends its
// jumps to the dispatch maps of e.Dir, which must exist (NewSkeleton).
func (r *Ruleset) AddEndpoint(e *IsolatedEndpoint) {
	for _, s := range e.Sets {
		r.AddSet(s)
	}
	r.AddChain(e.Chain)
	map4, map6 := MapIngressV4, MapIngressV6
	if e.Dir == Egress {
		map4, map6 = MapEgressV4, MapEgressV6
	}
	r.Sets[map4].Elements = append(r.Sets[map4].Elements, e.MapElements4...)
	r.Sets[map6].Elements = append(r.Sets[map6].Elements, e.MapElements6...)
}

// AddIsolatedEndpoint is AddEndpoint(NewIsolatedEndpoint(...)).
func (r *Ruleset) AddIsolatedEndpoint(dir Direction, id string, addrs []netip.Addr, allow AllowList) EndpointNames {
	e := NewIsolatedEndpoint(dir, id, addrs, allow, nil)
	r.AddEndpoint(e)
	return e.Names
}

// elementBuilder makes the elements of one endpoint's or tier's sets. Keys
// share one backing array and each protocol's Range is made once (sets of
// a ruleset are never modified), so thousands of elements cost a few
// allocations, not several each.
type elementBuilder struct {
	keys   []Range
	protos map[uint8]Range
}

// newElementBuilder returns a builder with room for n key parts.
func newElementBuilder(n int) *elementBuilder {
	return &elementBuilder{keys: make([]Range, 0, n), protos: map[uint8]Range{}}
}

// key returns parts as a key in the shared backing array.
func (b *elementBuilder) key(parts ...Range) []Range {
	start := len(b.keys)
	b.keys = append(b.keys, parts...)
	return b.keys[start:len(b.keys):len(b.keys)]
}

// proto is the shared single-protocol Range of p.
func (b *elementBuilder) proto(p uint8) Range {
	r, ok := b.protos[p]
	if !ok {
		r = Proto(p)
		b.protos[p] = r
	}
	return r
}

// sizeByFamily makes room in v4 and v6 for exactly the elements of n
// peers, by family: the sets of a ruleset outlive it (the Syncer keeps the
// last one), so the slack of appending without it would stay in memory
// along with the garbage of every growth.
func sizeByFamily(v4, v6 *Set, n int, peer func(i int) Range) {
	n4 := 0
	for i := range n {
		if len(peer(i).From) == 4 {
			n4++
		}
	}
	v4.Elements = slices.Grow(v4.Elements, n4)
	v6.Elements = slices.Grow(v6.Elements, n-n4)
}

// family is 0 for an IPv4 range, 1 for an IPv6 one.
func family(r Range) int {
	if len(r.From) == 4 {
		return 0
	}
	return 1
}

// appendByFamily appends e to v4 or v6, by the family of peer.
func appendByFamily(v4, v6 *Set, peer Range, e Element) {
	if len(peer.From) == 4 {
		v4.Elements = append(v4.Elements, e)
	} else {
		v6.Elements = append(v6.Elements, e)
	}
}

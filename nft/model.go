// Package nft is the desired-state model of the one nftables table that
// nftpolicy owns: its sets, verdict maps, chains and rules, expressed as a
// small semantic IR rather than raw bytecode.
//
// The model is deliberately closed: it can only express the handful of
// matches and verdicts the agent needs. That keeps three consumers simple and
// in agreement with each other:
//   - Dump renders it as the text `nft list table inet nftpolicy` prints,
//   - Trace walks a packet through it (the test oracle for the compiler),
//   - Diff turns two models into the minimal list of kernel operations,
//     which nft/kernel renders into one netlink batch.
//
// This package knows nothing of Kubernetes and nothing of netlink.
package nft

import (
	"net/netip"
)

// The table every nftpolicy object lives in. We never touch any other table.
const (
	TableFamily = "inet"
	TableName   = "nftpolicy"
)

// KeyType is the nftables data type of one field of a set key.
type KeyType uint8

// Key types, named as nft names them.
const (
	TypeIPv4Addr    KeyType = iota + 1 // ipv4_addr, 4 bytes
	TypeIPv6Addr                       // ipv6_addr, 16 bytes
	TypeInetProto                      // inet_proto, 1 byte (IP protocol number)
	TypeInetService                    // inet_service, 2 bytes (port, big endian)
)

// Len is the number of bytes of a value of type t.
func (t KeyType) Len() int {
	switch t {
	case TypeIPv4Addr:
		return 4
	case TypeIPv6Addr:
		return 16
	case TypeInetProto:
		return 1
	case TypeInetService:
		return 2
	}
	return 0
}

// String is the nft name of the type.
func (t KeyType) String() string {
	switch t {
	case TypeIPv4Addr:
		return "ipv4_addr"
	case TypeIPv6Addr:
		return "ipv6_addr"
	case TypeInetProto:
		return "inet_proto"
	case TypeInetService:
		return "inet_service"
	}
	return "invalid"
}

// Field is a packet field a rule can look up in a set.
type Field uint8

// Packet fields.
const (
	FieldIPv4Saddr Field = iota + 1 // ip saddr
	FieldIPv4Daddr                  // ip daddr
	FieldIPv6Saddr                  // ip6 saddr
	FieldIPv6Daddr                  // ip6 daddr
	FieldL4Proto                    // meta l4proto
	FieldTHDport                    // th dport (transport header destination port)
)

// Type is the key type a field is compared as.
func (f Field) Type() KeyType {
	switch f {
	case FieldIPv4Saddr, FieldIPv4Daddr:
		return TypeIPv4Addr
	case FieldIPv6Saddr, FieldIPv6Daddr:
		return TypeIPv6Addr
	case FieldL4Proto:
		return TypeInetProto
	case FieldTHDport:
		return TypeInetService
	}
	return 0
}

// String is the nft expression for the field.
func (f Field) String() string {
	switch f {
	case FieldIPv4Saddr:
		return "ip saddr"
	case FieldIPv4Daddr:
		return "ip daddr"
	case FieldIPv6Saddr:
		return "ip6 saddr"
	case FieldIPv6Daddr:
		return "ip6 daddr"
	case FieldL4Proto:
		return "meta l4proto"
	case FieldTHDport:
		return "th dport"
	}
	return "invalid"
}

// Ruleset is the whole desired content of table inet nftpolicy.
// Names are unique across Sets (sets and verdict maps share one namespace in
// nftables) and across Chains.
type Ruleset struct {
	Sets   map[string]*Set
	Chains map[string]*Chain
	// Limits are the named limit objects (the deny log's, see DenyLog).
	Limits map[string]*Limit
}

// NewRuleset returns an empty ruleset.
func NewRuleset() *Ruleset {
	return &Ruleset{Sets: map[string]*Set{}, Chains: map[string]*Chain{}}
}

// AddSet adds s, replacing any set of the same name, and returns it.
func (r *Ruleset) AddSet(s *Set) *Set {
	r.Sets[s.Name] = s
	return s
}

// AddChain adds c, replacing any chain of the same name, and returns it.
func (r *Ruleset) AddChain(c *Chain) *Chain {
	r.Chains[c.Name] = c
	return c
}

// Set is a named set, or a verdict map when IsVerdictMap is true.
type Set struct {
	Name    string
	Comment string
	// KeyTypes has one entry per concatenated field of the key.
	KeyTypes []KeyType
	// Interval sets (flags interval) hold ranges; every other set holds
	// single values (each Range has From == To).
	Interval bool
	// IsVerdictMap makes this a `map { type K : verdict }`.
	IsVerdictMap bool
	Elements     []Element
}

// Element is one set or map element.
type Element struct {
	// Key has one Range per KeyTypes entry.
	Key []Range
	// Verdict is the value of a verdict map element.
	Verdict Verdict
	Comment string
}

// Range is an inclusive range of values of one key type, in network byte
// order, so that byte-wise comparison orders values numerically.
type Range struct {
	From, To []byte
}

// Chain is a named chain. Base chains have a Hook.
//
// Chains carry no comment: google/nftables cannot attach one (a chain's
// NFTA_CHAIN_USERDATA), and what a comment would say is already in the
// name (in-HASH-ns/pod, ...) and in the comments of the map elements and
// sets that lead to the chain.
type Chain struct {
	Name  string
	Hook  *Hook
	Rules []Rule
}

// Hook makes a chain a base chain: type filter hook <Name> priority <Priority>.
type Hook struct {
	Name     HookName
	Priority int // 0 is `filter`
	Policy   VerdictKind
}

// HookName is a netfilter hook.
type HookName string

// The hooks nftpolicy attaches to.
const (
	HookForward HookName = "forward"
	HookInput   HookName = "input"
)

// Rule is a conjunction of matches followed by either a Verdict or a
// verdict-map dispatch.
type Rule struct {
	Matches []Match
	// VerdictMap, when set, replaces Verdict: the packet's key is looked up
	// in the named verdict map, and a miss continues with the next rule.
	VerdictMap *Lookup
	Verdict    Verdict
	// Log, when set, makes this a log rule (with no verdict): see Log.
	Log *Log
	// Counter gives the rule an anonymous counter (`counter`), right
	// before its verdict: the packets and bytes that matched the rule.
	// The kernel keeps it while the rule exists; a rule written again
	// starts from zero (see CounterTracker).
	Counter bool
	Comment string
}

// Match is one condition of a rule. Exactly one field is set.
type Match struct {
	CtState    CtState // ct state <states>: true when the packet's state is in the mask
	ICMPv6Type []uint8 // icmpv6 type { ... }
	Lookup     *Lookup // <fields> @set
	NFProto    NFProto // meta nfproto ipv4|ipv6
	TCPFlags   *TCPFlagsMatch
}

// TCPFlag is a bit of the TCP header's flags byte.
type TCPFlag uint8

// TCP flags, with their bit values in the header.
const (
	TCPFlagFIN TCPFlag = 0x01
	TCPFlagSYN TCPFlag = 0x02
	TCPFlagRST TCPFlag = 0x04
	TCPFlagPSH TCPFlag = 0x08
	TCPFlagACK TCPFlag = 0x10
	TCPFlagURG TCPFlag = 0x20
	TCPFlagECE TCPFlag = 0x40
	TCPFlagCWR TCPFlag = 0x80
)

// TCPFlagsMatch matches a TCP packet whose flags, masked by Mask, are
// anything but Unless: `tcp flags & (Mask) != Unless`. Packets of other
// protocols never match. The table needs only this negative form (a TCP
// packet that is not a lone SYN), so the model has no other.
type TCPFlagsMatch struct {
	Mask, Unless TCPFlag
}

// CtState is a bit mask of conntrack states, with the kernel's bit values.
type CtState uint32

// Conntrack states.
const (
	CtStateInvalid     CtState = 1
	CtStateEstablished CtState = 2
	CtStateRelated     CtState = 4
	CtStateNew         CtState = 8
	CtStateUntracked   CtState = 64
)

// NFProto is a netfilter protocol family for `meta nfproto`.
type NFProto uint8

// Families.
const (
	NFProtoIPv4 NFProto = 2
	NFProtoIPv6 NFProto = 10
)

// Lookup matches when the concatenation of Fields is an element of Set.
type Lookup struct {
	Fields []Field
	Set    string
}

// VerdictKind is what a rule does with a packet.
type VerdictKind uint8

// Verdicts.
const (
	VerdictNone   VerdictKind = iota // no verdict: continue (only for rules with a VerdictMap)
	VerdictAccept                    // accept
	VerdictDrop                      // drop
	VerdictReturn                    // return to the calling chain
	VerdictJump                      // jump Chain
	// VerdictGoto is `goto Chain`: like a jump, but the chain's end (or
	// its return) goes back to where the current chain was called from,
	// not to the rule after the goto.
	VerdictGoto
)

// Verdict is a verdict with its target chain for jumps.
type Verdict struct {
	Kind  VerdictKind
	Chain string
}

// Accept, Drop, Return and Jump build verdicts.
var (
	Accept = Verdict{Kind: VerdictAccept}
	Drop   = Verdict{Kind: VerdictDrop}
	Return = Verdict{Kind: VerdictReturn}
)

// Jump returns a jump to chain.
func Jump(chain string) Verdict { return Verdict{Kind: VerdictJump, Chain: chain} }

// Goto returns a goto to chain.
func Goto(chain string) Verdict { return Verdict{Kind: VerdictGoto, Chain: chain} }

// Target is the chain v jumps or goes to, empty for the other verdicts.
func (v Verdict) Target() string {
	if v.Kind == VerdictJump || v.Kind == VerdictGoto {
		return v.Chain
	}
	return ""
}

// Protocol numbers used in keys.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132
)

// AddrRange is a Range of addresses (both of one family).
func AddrRange(from, to netip.Addr) Range {
	return Range{From: from.AsSlice(), To: to.AsSlice()}
}

// PrefixRange is the Range covered by p.
func PrefixRange(p netip.Prefix) Range {
	p = p.Masked()
	return AddrRange(p.Addr(), lastAddr(p))
}

// Addr is the single-address Range of a.
func Addr(a netip.Addr) Range { return AddrRange(a, a) }

// ProtoRange is a Range of IP protocol numbers.
func ProtoRange(from, to uint8) Range { return Range{From: []byte{from}, To: []byte{to}} }

// Proto is the single-protocol Range of p.
func Proto(p uint8) Range { return ProtoRange(p, p) }

// PortRange is a Range of ports.
func PortRange(from, to uint16) Range {
	return Range{From: []byte{byte(from >> 8), byte(from)}, To: []byte{byte(to >> 8), byte(to)}}
}

// Port is the single-port Range of p.
func Port(p uint16) Range { return PortRange(p, p) }

// lastAddr is the highest address in p (p must be masked).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for bit := 0; bit < 8; bit++ {
			if i*8+bit >= bits {
				b[i] |= 0x80 >> bit
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

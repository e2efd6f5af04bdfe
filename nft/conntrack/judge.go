// Package conntrack removes the conntrack entries of connections that a
// newly applied ruleset denies. The base chains accept every packet of an
// established connection before any policy is consulted, so without this a
// connection opened while a policy allowed it outlives the policy.
//
// Each entry is judged by walking the packet that opened it through the
// ruleset with nft.Trace, as the hook that filtered it saw it: after
// kube-proxy's DNAT (the reply tuple's source is the endpoint) and before
// any SNAT (the original source). The judging (this file) is pure; the
// netlink side (cleaner.go) lists and deletes entries.
//
// This package knows nothing of Kubernetes.
package conntrack

import (
	"net/netip"

	"github.com/nftpolicy/nftpolicy/nft"
)

// Flow is what judging needs of one conntrack entry.
type Flow struct {
	Proto uint8
	// OrigSrc is the source of the connection's first packet as it left
	// its sender (the original tuple's source: SNAT shows only in the
	// reply tuple).
	OrigSrc netip.Addr
	// ReplySrc and ReplySrcPort are where the first packet really went:
	// the reply tuple's source is the original destination after DNAT
	// (a Service's endpoint), or the original destination itself.
	ReplySrc     netip.Addr
	ReplySrcPort uint16
}

// Packet returns the first packet of f as the ruleset's hooks saw it, and
// false when this table never judged such a packet or the entry does not
// tell enough to judge it again:
//   - a connection the node itself opened (its source is a local address)
//     left through the output hook, which the table does not filter;
//   - only TCP, UDP, ICMP and ICMPv6 entries are judged. Other protocols
//     with ports (SCTP, DCCP, UDP-Lite) would need the destination port,
//     which the conntrack dump we read does not decode for them; they are
//     kept rather than judged on a guess.
//
// A packet to a local address met the input hook, any other the forward
// hook. isLocal reports whether an address belongs to this node.
func (f Flow) Packet(isLocal func(netip.Addr) bool) (nft.Packet, bool) {
	if !f.OrigSrc.IsValid() || !f.ReplySrc.IsValid() || isLocal(f.OrigSrc) {
		return nft.Packet{}, false
	}
	p := nft.Packet{
		Hook:    nft.HookForward,
		Src:     f.OrigSrc.Unmap(),
		Dst:     f.ReplySrc.Unmap(),
		Proto:   f.Proto,
		CtState: nft.CtStateNew,
	}
	if isLocal(f.ReplySrc) {
		p.Hook = nft.HookInput
	}
	switch f.Proto {
	case nft.ProtoTCP, nft.ProtoUDP:
		p.DstPort = f.ReplySrcPort
	case nft.ProtoICMP, nft.ProtoICMPv6:
		// No ports. ICMPv6 neighbour discovery, the only ICMP the table
		// accepts by type, is never a tracked connection, so the type
		// (which the dump does not decode) does not matter.
	default:
		return nft.Packet{}, false
	}
	return p, true
}

// Judge decides conntrack entries against one ruleset, remembering the
// verdict of each distinct packet: the source port is not part of the
// packet, so the many connections of one client to one server cost one
// trace. A Judge is not safe for concurrent use.
type Judge struct {
	rs      *nft.Ruleset
	isLocal func(netip.Addr) bool
	seen    map[nft.Packet]bool
	// Examined counts entries offered, Judged those that could be judged,
	// Traced the distinct packets traced.
	Examined, Judged, Traced int
}

// NewJudge judges against rs, the ruleset just applied to the kernel.
func NewJudge(rs *nft.Ruleset, isLocal func(netip.Addr) bool) *Judge {
	return &Judge{rs: rs, isLocal: isLocal, seen: map[nft.Packet]bool{}}
}

// Denies reports whether rs drops the packet that opened f, which is then
// a connection the ruleset no longer allows.
func (j *Judge) Denies(f Flow) bool {
	j.Examined++
	p, ok := f.Packet(j.isLocal)
	if !ok {
		return false
	}
	j.Judged++
	deny, ok := j.seen[p]
	if !ok {
		j.Traced++
		deny = j.rs.Verdict(p) == nft.VerdictDrop
		j.seen[p] = deny
	}
	return deny
}

package nft

import (
	"bytes"
	"fmt"
	"net/netip"
)

// Packet is what Trace needs to know of a packet.
type Packet struct {
	Hook     HookName
	Src, Dst netip.Addr
	Proto    uint8  // IP protocol number
	DstPort  uint16 // meaningful for TCP, UDP and SCTP only
	ICMPType uint8  // meaningful for ICMPv6 only
	CtState  CtState
	// TCPFlags are the flags of a TCP packet. Zero stands for a lone SYN,
	// the first packet of a connection: that is what every caller judging
	// a connection means, and a TCP packet with no flag at all is invalid
	// to conntrack, so it never reaches a rule that looks at flags.
	TCPFlags TCPFlag
}

// tcpFlags is the packet's TCP flags, a lone SYN when none are given.
func (p Packet) tcpFlags() TCPFlag {
	if p.TCPFlags == 0 {
		return TCPFlagSYN
	}
	return p.TCPFlags
}

// hasPorts reports whether the packet's transport header has ports, that is
// whether `th dport` yields a port rather than unrelated header bytes.
func (p Packet) hasPorts() bool {
	switch p.Proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
		return true
	}
	return false
}

func (p Packet) String() string {
	s := fmt.Sprintf("%s %s -> %s proto %d dport %d ct %s", p.Hook, p.Src, p.Dst, p.Proto, p.DstPort, p.CtState)
	if p.TCPFlags != 0 {
		s += " flags " + p.TCPFlags.String()
	}
	return s
}

// TraceResult is the final verdict of a packet and the rules it hit.
type TraceResult struct {
	Verdict VerdictKind // VerdictAccept or VerdictDrop
	Steps   []string    // one line per rule that matched, readable in test failures
	// Logs are the prefixes of the log rules the packet met, in order:
	// the deny-log records it would send (within the limit).
	Logs []string
}

// maxJumpDepth bounds chain nesting like the kernel does (it allows 16).
const maxJumpDepth = 16

// Trace walks p through the ruleset as the kernel would, from the base
// chain of p.Hook. A hook without a chain accepts.
func (r *Ruleset) Trace(p Packet) TraceResult {
	var base *Chain
	for _, c := range r.Chains {
		if c.Hook != nil && c.Hook.Name == p.Hook {
			base = c
		}
	}
	if base == nil {
		return TraceResult{Verdict: VerdictAccept, Steps: []string{"no base chain for hook " + string(p.Hook)}}
	}
	t := tracer{r: r, p: p, record: true}
	v, done := t.run(base, 0)
	if !done {
		v = base.Hook.Policy
		t.steps = append(t.steps, fmt.Sprintf("%s: policy %s", base.Name, Verdict{Kind: v}))
	}
	return TraceResult{Verdict: v, Steps: t.steps, Logs: t.logs}
}

// Verdict is Trace(p).Verdict without the steps, whose formatting costs
// more than the walk itself: for callers that judge many packets, such
// as the conntrack cleanup.
func (r *Ruleset) Verdict(p Packet) VerdictKind {
	var base *Chain
	for _, c := range r.Chains {
		if c.Hook != nil && c.Hook.Name == p.Hook {
			base = c
		}
	}
	if base == nil {
		return VerdictAccept
	}
	t := tracer{r: r, p: p}
	if v, done := t.run(base, 0); done {
		return v
	}
	return base.Hook.Policy
}

type tracer struct {
	r      *Ruleset
	p      Packet
	record bool // keep steps and logs (Trace)
	steps  []string
	logs   []string
}

// step records one line of the trace, when recording.
func (t *tracer) step(format string, args ...any) {
	if t.record {
		t.steps = append(t.steps, fmt.Sprintf(format, args...))
	}
}

// run evaluates chain c. done is false when the chain fell off its end or
// returned; otherwise v is the final accept or drop.
func (t *tracer) run(c *Chain, depth int) (v VerdictKind, done bool) {
	if depth > maxJumpDepth {
		t.step("jump depth exceeded: drop")
		return VerdictDrop, true
	}
	for i, rule := range c.Rules {
		if !t.matchAll(rule.Matches) {
			continue
		}
		verdict := rule.Verdict
		if rule.VerdictMap != nil {
			elem, ok := t.lookup(rule.VerdictMap)
			if !ok {
				continue
			}
			verdict = elem.Verdict
		}
		if rule.Log == nil && rule.VerdictMap == nil && verdict.Kind == VerdictNone {
			// A rule that only counts (the accepted-connections
			// counter at the end of a base chain): nothing to trace.
			continue
		}
		if rule.Log != nil && verdict.Kind == VerdictNone {
			// A log rule: the kernel logs (within its limit) and goes on.
			t.step("%s#%d %s => log, continue", c.Name, i+1, rule)
			if t.record {
				t.logs = append(t.logs, rule.Log.Prefix)
			}
			continue
		}
		t.step("%s#%d %s => %s", c.Name, i+1, rule, verdict)
		switch verdict.Kind {
		case VerdictAccept, VerdictDrop:
			return verdict.Kind, true
		case VerdictReturn:
			return 0, false
		case VerdictJump, VerdictGoto:
			target, ok := t.r.Chains[verdict.Chain]
			if !ok {
				t.step("jump to missing chain %s: drop", verdict.Chain)
				return VerdictDrop, true
			}
			if v, done := t.run(target, depth+1); done {
				return v, true
			}
			if verdict.Kind == VerdictGoto {
				// The target's end returns to this chain's caller.
				return 0, false
			}
		}
	}
	return 0, false
}

func (t *tracer) matchAll(ms []Match) bool {
	for _, m := range ms {
		if !t.match(m) {
			return false
		}
	}
	return true
}

func (t *tracer) match(m Match) bool {
	switch {
	case m.CtState != 0:
		return t.p.CtState&m.CtState != 0
	case len(m.ICMPv6Type) > 0:
		if !t.p.Src.Is6() || t.p.Proto != ProtoICMPv6 {
			return false
		}
		for _, typ := range m.ICMPv6Type {
			if typ == t.p.ICMPType {
				return true
			}
		}
		return false
	case m.Lookup != nil:
		_, ok := t.lookup(m.Lookup)
		return ok
	case m.NFProto == NFProtoIPv4:
		return t.p.Src.Is4()
	case m.NFProto == NFProtoIPv6:
		return t.p.Src.Is6()
	case m.TCPFlags != nil:
		return t.p.Proto == ProtoTCP && t.p.tcpFlags()&m.TCPFlags.Mask != m.TCPFlags.Unless
	}
	return false
}

// lookup builds the packet's key for l and finds the element holding it.
func (t *tracer) lookup(l *Lookup) (Element, bool) {
	set, ok := t.r.Sets[l.Set]
	if !ok {
		return Element{}, false
	}
	key := make([][]byte, len(l.Fields))
	for i, f := range l.Fields {
		v, ok := t.field(f)
		if !ok {
			return Element{}, false
		}
		key[i] = v
	}
	for _, e := range set.Elements {
		if elementHolds(e, key) {
			return e, true
		}
	}
	return Element{}, false
}

func elementHolds(e Element, key [][]byte) bool {
	if len(e.Key) != len(key) {
		return false
	}
	for i, r := range e.Key {
		if bytes.Compare(key[i], r.From) < 0 || bytes.Compare(key[i], r.To) > 0 {
			return false
		}
	}
	return true
}

// field loads f from the packet. Address fields of the other family do not
// load (nft guards them with an nfproto dependency); ports load only for
// protocols that have them.
func (t *tracer) field(f Field) ([]byte, bool) {
	p := t.p
	switch f {
	case FieldIPv4Saddr:
		return addr4(p.Src)
	case FieldIPv4Daddr:
		return addr4(p.Dst)
	case FieldIPv6Saddr:
		return addr6(p.Src)
	case FieldIPv6Daddr:
		return addr6(p.Dst)
	case FieldL4Proto:
		return []byte{p.Proto}, true
	case FieldTHDport:
		if !p.hasPorts() {
			return nil, false
		}
		return []byte{byte(p.DstPort >> 8), byte(p.DstPort)}, true
	}
	return nil, false
}

func addr4(a netip.Addr) ([]byte, bool) {
	if !a.Is4() {
		return nil, false
	}
	return a.AsSlice(), true
}

func addr6(a netip.Addr) ([]byte, bool) {
	if !a.Is6() {
		return nil, false
	}
	return a.AsSlice(), true
}

package nft

import (
	"bytes"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// Dump renders the ruleset as `nft list table inet nftpolicy` prints it
// (nft 1.0.6): sets and maps first, then base chains, then the other chains;
// objects sorted by name, elements sorted by key, one element per line.
// The kernel tests compare it with what nft reads back from the kernel, so
// the text is the contract between the model and the bytecode we write.
func (r *Ruleset) Dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", TableFamily, TableName)
	var blocks []string
	for _, name := range sortedKeys(r.Limits) {
		blocks = append(blocks, dumpLimit(r.Limits[name]))
	}
	for _, name := range sortedKeys(r.Sets) {
		blocks = append(blocks, dumpSet(r.Sets[name]))
	}
	for _, c := range r.sortedChains() {
		blocks = append(blocks, dumpChain(c))
	}
	b.WriteString(strings.Join(blocks, "\n"))
	b.WriteString("}\n")
	return b.String()
}

// dumpLimit prints l as nft does, which leaves out a burst of 5 packets
// (its default).
func dumpLimit(l *Limit) string {
	burst := ""
	if l.Burst != 5 {
		burst = fmt.Sprintf(" burst %d packets", l.Burst)
	}
	return fmt.Sprintf("\tlimit %s {\n\t\trate %d/second%s\n\t}\n", l.Name, l.Rate, burst)
}

// sortedChains orders base chains first, then the rest, each by name.
func (r *Ruleset) sortedChains() []*Chain {
	chains := make([]*Chain, 0, len(r.Chains))
	for _, c := range r.Chains {
		chains = append(chains, c)
	}
	sort.Slice(chains, func(i, j int) bool {
		bi, bj := chains[i].Hook != nil, chains[j].Hook != nil
		if bi != bj {
			return bi
		}
		return chains[i].Name < chains[j].Name
	})
	return chains
}

func dumpSet(s *Set) string {
	var b strings.Builder
	kind := "set"
	if s.IsVerdictMap {
		kind = "map"
	}
	fmt.Fprintf(&b, "\t%s %s {\n", kind, s.Name)
	types := make([]string, len(s.KeyTypes))
	for i, t := range s.KeyTypes {
		types[i] = t.String()
	}
	fmt.Fprintf(&b, "\t\ttype %s", strings.Join(types, " . "))
	if s.IsVerdictMap {
		b.WriteString(" : verdict")
	}
	b.WriteString("\n")
	if s.Interval {
		b.WriteString("\t\tflags interval\n")
	}
	if s.Comment != "" {
		fmt.Fprintf(&b, "\t\tcomment %s\n", strconv.Quote(s.Comment))
	}
	if len(s.Elements) > 0 {
		elems := make([]string, len(s.Elements))
		for i, e := range SortedElements(s.Elements) {
			elems[i] = FormatElement(s, e)
		}
		fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(elems, ",\n\t\t\t     "))
	}
	b.WriteString("\t}\n")
	return b.String()
}

// FormatElement renders one element of s as nft prints it.
func FormatElement(s *Set, e Element) string {
	parts := make([]string, len(e.Key))
	for i, k := range e.Key {
		parts[i] = FormatRange(s.KeyTypes[i], k)
	}
	out := strings.Join(parts, " . ")
	if e.Comment != "" {
		out += " comment " + strconv.Quote(e.Comment)
	}
	if s.IsVerdictMap {
		out += " : " + e.Verdict.String()
	}
	return out
}

// SortedElements returns a copy of elems ordered by key bytes.
func SortedElements(elems []Element) []Element {
	out := append([]Element(nil), elems...)
	sort.Slice(out, func(i, j int) bool { return compareKeys(out[i].Key, out[j].Key) < 0 })
	return out
}

func compareKeys(a, b []Range) int {
	for i := range a {
		if i >= len(b) {
			return 1
		}
		if c := bytes.Compare(a[i].From, b[i].From); c != 0 {
			return c
		}
		if c := bytes.Compare(a[i].To, b[i].To); c != 0 {
			return c
		}
	}
	if len(a) < len(b) {
		return -1
	}
	return 0
}

// FormatRange renders one key field as nft prints it: a prefix as
// addr/len, a single value alone, anything else as from-to.
func FormatRange(t KeyType, r Range) string {
	switch t {
	case TypeIPv4Addr, TypeIPv6Addr:
		from, _ := netip.AddrFromSlice(r.From)
		to, _ := netip.AddrFromSlice(r.To)
		if from == to {
			return from.String()
		}
		if bits, ok := prefixLen(r.From, r.To); ok {
			return netip.PrefixFrom(from, bits).String()
		}
		return from.String() + "-" + to.String()
	case TypeInetProto:
		if r.From[0] == r.To[0] {
			return protoName(r.From[0])
		}
		return fmt.Sprintf("%d-%d", r.From[0], r.To[0])
	case TypeInetService:
		from := uint16(r.From[0])<<8 | uint16(r.From[1])
		to := uint16(r.To[0])<<8 | uint16(r.To[1])
		if from == to {
			return strconv.Itoa(int(from))
		}
		return fmt.Sprintf("%d-%d", from, to)
	}
	return "?"
}

// prefixLen reports whether [from, to] is exactly one CIDR prefix.
func prefixLen(from, to []byte) (int, bool) {
	bits := 0
	for i := range from {
		x := from[i] ^ to[i]
		if x == 0 {
			if bits != i*8 {
				// Differing bits already seen: the rest must all differ.
				return 0, false
			}
			bits += 8
			continue
		}
		// x must be a run of low ones, from must have zeros there and to ones.
		lead := 0
		for lead < 8 && x&(0x80>>lead) == 0 {
			lead++
		}
		if bits != i*8 || x != 0xff>>lead || from[i]&x != 0 || to[i]&x != x {
			return 0, false
		}
		bits += lead
		for j := i + 1; j < len(from); j++ {
			if from[j] != 0 || to[j] != 0xff {
				return 0, false
			}
		}
		return bits, true
	}
	return bits, true
}

var protoNames = map[uint8]string{
	ProtoICMP:   "icmp",
	ProtoTCP:    "tcp",
	ProtoUDP:    "udp",
	ProtoICMPv6: "ipv6-icmp",
	ProtoSCTP:   "sctp",
}

func protoName(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

func dumpChain(c *Chain) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
	if c.Hook != nil {
		fmt.Fprintf(&b, "\t\ttype filter hook %s priority %s; policy %s;\n",
			c.Hook.Name, priorityName(c.Hook.Priority), Verdict{Kind: c.Hook.Policy})
	}
	for _, rule := range c.Rules {
		fmt.Fprintf(&b, "\t\t%s\n", rule)
	}
	b.WriteString("\t}\n")
	return b.String()
}

func priorityName(p int) string {
	switch {
	case p == 0:
		return "filter"
	case p > 0:
		return "filter + " + strconv.Itoa(p)
	default:
		return "filter - " + strconv.Itoa(-p)
	}
}

// String renders the rule as nft prints it.
func (r Rule) String() string {
	var parts []string
	for _, m := range r.Matches {
		parts = append(parts, m.String())
	}
	if r.Log != nil {
		parts = append(parts, "limit name "+strconv.Quote(r.Log.Limit)+" log prefix "+strconv.Quote(r.Log.Prefix)+" group "+strconv.Itoa(int(r.Log.Group)))
	}
	if r.Counter {
		parts = append(parts, "counter")
	}
	if r.VerdictMap != nil {
		parts = append(parts, fieldList(r.VerdictMap.Fields)+" vmap @"+r.VerdictMap.Set)
	} else if r.Verdict.Kind != VerdictNone {
		parts = append(parts, r.Verdict.String())
	}
	if r.Comment != "" {
		parts = append(parts, "comment "+strconv.Quote(r.Comment))
	}
	return strings.Join(parts, " ")
}

func fieldList(fs []Field) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = f.String()
	}
	return strings.Join(s, " . ")
}

// String renders the match as nft prints it.
func (m Match) String() string {
	switch {
	case m.CtState != 0:
		return "ct state " + m.CtState.String()
	case len(m.ICMPv6Type) == 1:
		return "icmpv6 type " + icmpv6TypeName(m.ICMPv6Type[0])
	case len(m.ICMPv6Type) > 1:
		names := make([]string, len(m.ICMPv6Type))
		for i, t := range m.ICMPv6Type {
			names[i] = icmpv6TypeName(t)
		}
		return "icmpv6 type { " + strings.Join(names, ", ") + " }"
	case m.Lookup != nil:
		return fieldList(m.Lookup.Fields) + " @" + m.Lookup.Set
	case m.NFProto == NFProtoIPv4:
		return "meta nfproto ipv4"
	case m.NFProto == NFProtoIPv6:
		return "meta nfproto ipv6"
	case m.TCPFlags != nil:
		return "tcp flags != " + m.TCPFlags.Unless.String() + " / " + m.TCPFlags.Mask.String()
	}
	return "?"
}

var tcpFlagNames = []struct {
	bit  TCPFlag
	name string
}{
	{TCPFlagFIN, "fin"},
	{TCPFlagSYN, "syn"},
	{TCPFlagRST, "rst"},
	{TCPFlagPSH, "psh"},
	{TCPFlagACK, "ack"},
	{TCPFlagURG, "urg"},
	{TCPFlagECE, "ecn"},
	{TCPFlagCWR, "cwr"},
}

// String lists the flags in the order nft prints them (nft calls ECE
// "ecn").
func (f TCPFlag) String() string {
	var names []string
	for _, n := range tcpFlagNames {
		if f&n.bit != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

var ctStateNames = []struct {
	bit  CtState
	name string
}{
	{CtStateInvalid, "invalid"},
	{CtStateEstablished, "established"},
	{CtStateRelated, "related"},
	{CtStateNew, "new"},
	{CtStateUntracked, "untracked"},
}

// String lists the states in the order nft prints them.
func (s CtState) String() string {
	var names []string
	for _, n := range ctStateNames {
		if s&n.bit != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

var icmpv6TypeNames = map[uint8]string{
	133: "nd-router-solicit",
	134: "nd-router-advert",
	135: "nd-neighbor-solicit",
	136: "nd-neighbor-advert",
	137: "nd-redirect",
}

func icmpv6TypeName(t uint8) string {
	if n, ok := icmpv6TypeNames[t]; ok {
		return n
	}
	return strconv.Itoa(int(t))
}

// String renders the verdict as nft prints it.
func (v Verdict) String() string {
	switch v.Kind {
	case VerdictAccept:
		return "accept"
	case VerdictDrop:
		return "drop"
	case VerdictReturn:
		return "return"
	case VerdictJump:
		return "jump " + v.Chain
	case VerdictGoto:
		return "goto " + v.Chain
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

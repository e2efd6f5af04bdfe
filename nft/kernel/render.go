//go:build linux

package kernel

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/nft"
)

// Everything here mirrors the bytecode nft 1.0.6 itself generates for the
// same rule text in an inet table (read with `nft --debug=netlink`), so that
// `nft list` decodes what we write back into the text nft.Dump prints.

func ourTable() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: nft.TableName}
}

// keyTypes maps model key types to nftables data types.
var keyTypes = map[nft.KeyType]nftables.SetDatatype{
	nft.TypeIPv4Addr:    nftables.TypeIPAddr,
	nft.TypeIPv6Addr:    nftables.TypeIP6Addr,
	nft.TypeInetProto:   nftables.TypeInetProto,
	nft.TypeInetService: nftables.TypeInetService,
}

// renderSet is the set definition; elements are rendered separately.
func renderSet(t *nftables.Table, s *nft.Set) (*nftables.Set, error) {
	types := make([]nftables.SetDatatype, len(s.KeyTypes))
	for i, kt := range s.KeyTypes {
		dt, ok := keyTypes[kt]
		if !ok {
			return nil, fmt.Errorf("set %s: unknown key type %d", s.Name, kt)
		}
		types[i] = dt
	}
	out := &nftables.Set{
		Table:        t,
		Name:         s.Name,
		Interval:     s.Interval,
		Comment:      s.Comment,
		KeyByteOrder: binaryutil.BigEndian,
	}
	switch len(types) {
	case 0:
		return nil, fmt.Errorf("set %s: no key type", s.Name)
	case 1:
		out.KeyType = types[0]
	default:
		kt, err := nftables.ConcatSetType(types...)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", s.Name, err)
		}
		out.KeyType = kt
		out.Concatenation = true
	}
	if s.IsVerdictMap {
		out.IsMap = true
		out.DataType = nftables.TypeVerdict
	}
	return out, nil
}

// renderElements encodes elements the way nft does for the set's shape
// (see elementRenderer.render), in memory of their own.
func renderElements(s *nft.Set, elems []nft.Element) ([]nftables.SetElement, error) {
	var r elementRenderer
	return r.render(s, elems)
}

// elementRenderer encodes set elements into buffers it reuses from one
// call to the next: a sync renders its elements a message at a time, and
// google/nftables copies each message's elements into netlink attributes
// at once, so a full sync of 100k elements needs room for one message's
// worth instead of every element rendered at the same time.
type elementRenderer struct {
	out      []nftables.SetElement
	keys     []byte // every Key and KeyEnd of out
	verdicts []expr.Verdict
}

// render encodes elems the way nft does for the set's shape: concatenated
// keys pad every field to a 4-byte register; interval concatenations
// (pipapo) carry the range end in KeyEnd; single-field interval sets
// (rbtree) get a separate end element one past the range. The result is
// valid until the next call.
func (r *elementRenderer) render(s *nft.Set, elems []nft.Element) ([]nftables.SetElement, error) {
	r.out, r.keys, r.verdicts = r.out[:0], r.keys[:0], r.verdicts[:0]
	concat := len(s.KeyTypes) > 1
	// Room for every key first: the slices handed out below point into
	// r.keys and r.verdicts, which must not move while they are made.
	need := 0
	for _, e := range elems {
		if len(e.Key) != len(s.KeyTypes) {
			return nil, fmt.Errorf("set %s: element has %d key fields, want %d", s.Name, len(e.Key), len(s.KeyTypes))
		}
		need += 2 * keyLen(e.Key, concat)
	}
	r.keys = slices.Grow(r.keys, need)
	r.verdicts = slices.Grow(r.verdicts, len(elems))
	for _, e := range elems {
		el := nftables.SetElement{Key: r.key(e.Key, concat, false), Comment: e.Comment}
		if e.Verdict.Kind != nft.VerdictNone {
			r.verdicts = append(r.verdicts, renderVerdict(e.Verdict))
			el.VerdictData = &r.verdicts[len(r.verdicts)-1]
		}
		switch {
		case s.Interval && concat:
			el.KeyEnd = r.key(e.Key, concat, true)
			r.out = append(r.out, el)
		case s.Interval:
			r.out = append(r.out, el)
			if end, ok := r.onePast(e.Key[0].To); ok {
				r.out = append(r.out, nftables.SetElement{Key: end, IntervalEnd: true})
			}
		default:
			r.out = append(r.out, el)
		}
	}
	return r.out, nil
}

// keyLen is the length of an encoded key (of its From or its To values:
// both have the same length).
func keyLen(key []nft.Range, concat bool) int {
	n := 0
	for _, p := range key {
		n += len(p.From)
		if concat {
			n = (n + 3) &^ 3
		}
	}
	return n
}

// key appends the encoded key (its From values, or its To values for end)
// to r.keys and returns it.
func (r *elementRenderer) key(key []nft.Range, concat, end bool) []byte {
	start := len(r.keys)
	for _, p := range key {
		v := p.From
		if end {
			v = p.To
		}
		r.keys = append(r.keys, v...)
		for concat && (len(r.keys)-start)%4 != 0 {
			r.keys = append(r.keys, 0)
		}
	}
	return r.keys[start:len(r.keys):len(r.keys)]
}

// onePast appends v+1 to r.keys and returns it, or false when v is the
// highest value (the interval then runs to the end and needs no end
// element).
func (r *elementRenderer) onePast(v []byte) ([]byte, bool) {
	start := len(r.keys)
	r.keys = append(r.keys, v...)
	out := r.keys[start:len(r.keys):len(r.keys)]
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			return out, true
		}
	}
	r.keys = r.keys[:start]
	return nil, false
}

func renderVerdict(v nft.Verdict) expr.Verdict {
	switch v.Kind {
	case nft.VerdictAccept:
		return expr.Verdict{Kind: expr.VerdictAccept}
	case nft.VerdictDrop:
		return expr.Verdict{Kind: expr.VerdictDrop}
	case nft.VerdictReturn:
		return expr.Verdict{Kind: expr.VerdictReturn}
	case nft.VerdictJump:
		return expr.Verdict{Kind: expr.VerdictJump, Chain: v.Chain}
	case nft.VerdictGoto:
		return expr.Verdict{Kind: expr.VerdictGoto, Chain: v.Chain}
	}
	return expr.Verdict{Kind: expr.VerdictContinue}
}

// renderLog is `limit name "L" log prefix "P" group G`: the limit object
// ends the rule (NFT_BREAK) once its tokens are spent, so the log
// expression after it only sees what the node-wide rate lets through.
func renderLog(l *nft.Log) []expr.Any {
	return []expr.Any{
		&expr.Objref{Type: int(nftables.ObjTypeLimit), Name: l.Limit},
		&expr.Log{
			Key:   1<<unix.NFTA_LOG_PREFIX | 1<<unix.NFTA_LOG_GROUP,
			Group: l.Group,
			Data:  []byte(l.Prefix),
		},
	}
}

// renderLimit is the named limit object l.
func renderLimit(t *nftables.Table, l *nft.Limit) *nftables.NamedObj {
	return &nftables.NamedObj{
		Table: t,
		Name:  l.Name,
		Type:  nftables.ObjTypeLimit,
		Obj: &expr.Limit{
			Type:  expr.LimitTypePkts,
			Rate:  uint64(l.Rate),
			Unit:  expr.LimitTimeSecond,
			Burst: l.Burst,
		},
	}
}

// anonSetAdder creates the anonymous set a rule needs (icmpv6 type { ... })
// in the same batch, before the rule.
type anonSetAdder func(s *nftables.Set, elems []nftables.SetElement) error

// renderRule turns one rule into expressions plus the comment userdata.
func renderRule(t *nftables.Table, chain string, r nft.Rule, addAnon anonSetAdder) (*nftables.Rule, error) {
	var exprs []expr.Any
	for _, m := range r.Matches {
		e, err := renderMatch(t, m, addAnon)
		if err != nil {
			return nil, fmt.Errorf("chain %s: %w", chain, err)
		}
		exprs = append(exprs, e...)
	}
	if r.Log != nil {
		exprs = append(exprs, renderLog(r.Log)...)
	}
	if r.Counter {
		exprs = append(exprs, &expr.Counter{})
	}
	switch {
	case r.VerdictMap != nil:
		exprs = append(exprs, loadFields(r.VerdictMap.Fields)...)
		exprs = append(exprs, &expr.Lookup{SourceRegister: 1, IsDestRegSet: true, DestRegister: 0, SetName: r.VerdictMap.Set})
	case r.Verdict.Kind != nft.VerdictNone:
		v := renderVerdict(r.Verdict)
		exprs = append(exprs, &v)
	}
	out := &nftables.Rule{Table: t, Chain: &nftables.Chain{Name: chain, Table: t}, Exprs: exprs}
	if r.Comment != "" {
		out.UserData = userdata.AppendString(nil, userdata.TypeComment, r.Comment)
	}
	return out, nil
}

func renderMatch(t *nftables.Table, m nft.Match, addAnon anonSetAdder) ([]expr.Any, error) {
	switch {
	case m.CtState != 0:
		return []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			// ct state is a host-order bit mask: nft tests mask != 0.
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(uint32(m.CtState)), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		}, nil
	case len(m.ICMPv6Type) > 0:
		return renderICMPv6Type(t, m.ICMPv6Type, addAnon)
	case m.Lookup != nil:
		exprs := loadFields(m.Lookup.Fields)
		return append(exprs, &expr.Lookup{SourceRegister: 1, SetName: m.Lookup.Set}), nil
	case m.NFProto != 0:
		return nfprotoIs(m.NFProto), nil
	case m.TCPFlags != nil:
		return renderTCPFlagsNot(m.TCPFlags), nil
	}
	return nil, fmt.Errorf("empty match")
}

// renderTCPFlagsNot is `tcp flags & (mask) != value` as nft encodes it:
// the l4proto tcp dependency, the flags byte (offset 13 of the TCP
// header), masked, compared.
func renderTCPFlagsNot(m *nft.TCPFlagsMatch) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nft.ProtoTCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{byte(m.Mask)}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{byte(m.Unless)}},
	}
}

func nfprotoIs(p nft.NFProto) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(p)}},
	}
}

// renderICMPv6Type is `icmpv6 type { ... }` as nft encodes it in an inet
// table: nfproto ipv6 and l4proto ipv6-icmp dependencies, the type byte of
// the transport header, then a lookup in an anonymous constant set (or a
// plain compare for a single type).
func renderICMPv6Type(t *nftables.Table, types []uint8, addAnon anonSetAdder) ([]expr.Any, error) {
	exprs := nfprotoIs(nft.NFProtoIPv6)
	exprs = append(exprs,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nft.ProtoICMPv6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
	)
	if len(types) == 1 {
		return append(exprs, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{types[0]}}), nil
	}
	set := &nftables.Set{Table: t, Anonymous: true, Constant: true, KeyType: nftables.TypeICMP6Type,
		KeyByteOrder: binaryutil.BigEndian}
	elems := make([]nftables.SetElement, len(types))
	for i, ty := range types {
		elems[i] = nftables.SetElement{Key: []byte{ty}}
	}
	if err := addAnon(set, elems); err != nil {
		return nil, fmt.Errorf("anonymous icmpv6 type set: %w", err)
	}
	return append(exprs, &expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID}), nil
}

// loadFields loads the concatenation of fields into consecutive registers,
// each field starting on a 4-byte boundary, as nft lays concatenations out.
// Address fields need `meta nfproto` first (inet tables carry both
// families); nft adds that dependency once, before the loads.
func loadFields(fields []nft.Field) []expr.Any {
	var exprs []expr.Any
	if p, ok := familyOf(fields); ok {
		exprs = append(exprs, nfprotoIs(p)...)
	}
	offset := uint32(0)
	for _, f := range fields {
		reg := registerAt(offset)
		exprs = append(exprs, loadField(f, reg, len(fields) > 1)...)
		offset += (uint32(f.Type().Len()) + 3) &^ 3
	}
	return exprs
}

func familyOf(fields []nft.Field) (nft.NFProto, bool) {
	for _, f := range fields {
		switch f {
		case nft.FieldIPv4Saddr, nft.FieldIPv4Daddr:
			return nft.NFProtoIPv4, true
		case nft.FieldIPv6Saddr, nft.FieldIPv6Daddr:
			return nft.NFProtoIPv6, true
		}
	}
	return 0, false
}

// registerAt names the register holding byte offset of the concatenation:
// nft uses the 16-byte NFT_REG_1..4 names on 16-byte boundaries and the
// 4-byte NFT_REG32_xx names elsewhere.
func registerAt(offset uint32) uint32 {
	if offset%16 == 0 {
		return unix.NFT_REG_1 + offset/16
	}
	return unix.NFT_REG32_00 + offset/4
}

func loadField(f nft.Field, reg uint32, inConcat bool) []expr.Any {
	network := func(off, n uint32) []expr.Any {
		return []expr.Any{&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}}
	}
	switch f {
	case nft.FieldIPv4Saddr:
		return network(12, 4)
	case nft.FieldIPv4Daddr:
		return network(16, 4)
	case nft.FieldIPv6Saddr:
		return network(8, 16)
	case nft.FieldIPv6Daddr:
		return network(24, 16)
	case nft.FieldTHDport:
		return []expr.Any{&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}}
	case nft.FieldL4Proto:
		out := []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}}
		if inConcat {
			// nft 1.0.6 emits this (no-op) byteorder for l4proto inside a
			// concatenation; mirror it so the bytecode reads back the same.
			out = append(out, &expr.Byteorder{SourceRegister: reg, DestRegister: reg, Op: expr.ByteorderHton, Len: 1, Size: 2})
		}
		return out
	}
	return nil
}

// hookNums maps hook names to netfilter hook numbers and back.
var hookNums = map[nft.HookName]nftables.ChainHook{
	nft.HookForward: *nftables.ChainHookForward,
	nft.HookInput:   *nftables.ChainHookInput,
}

func policyOf(k nft.VerdictKind) nftables.ChainPolicy {
	if k == nft.VerdictDrop {
		return nftables.ChainPolicyDrop
	}
	return nftables.ChainPolicyAccept
}

// renderChain is the chain definition without rules. For an existing
// chain the kernel takes the NEWCHAIN message as an update: only a base
// chain's policy can change that way (a hook or priority change needs
// OpReplaceBaseChain).
func renderChain(t *nftables.Table, c *nft.Chain) *nftables.Chain {
	out := &nftables.Chain{Table: t, Name: c.Name}
	if c.Hook != nil {
		policy := policyOf(c.Hook.Policy)
		out.Hooknum = new(hookNums[c.Hook.Name])
		out.Priority = new(nftables.ChainPriority(c.Hook.Priority))
		out.Type = nftables.ChainTypeFilter
		out.Policy = &policy
	}
	return out
}

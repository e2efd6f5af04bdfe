package nft

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
)

// OpKind is the kind of one kernel operation.
type OpKind uint8

// Operation kinds, declared in the order Diff emits them (see Diff).
const (
	// OpReplaceBaseChain deletes base chain Name and creates it again,
	// empty, with Chain's hook and priority, which the kernel cannot
	// change in place. In one batch nothing opens: the old chain filters
	// until the batch commits, the new one from then on, with the rules a
	// later OpReplaceRules of the same batch gives it.
	OpReplaceBaseChain OpKind = iota + 1
	// OpReplaceRules replaces all rules of Chain with Chain.Rules (flush,
	// then add). For a base chain it also carries the new hook policy.
	OpReplaceRules
	// OpAddSet creates Set (its definition only; elements follow in
	// OpAddElements).
	OpAddSet
	// OpAddChain creates the empty chain Chain (rules follow in
	// OpReplaceRules).
	OpAddChain
	// OpDeleteElements deletes Elements (matched by key) from set Name.
	OpDeleteElements
	// OpAddElements adds Elements to set Name.
	OpAddElements
	// OpDeleteChain deletes chain Name (and its rules).
	OpDeleteChain
	// OpDeleteSet deletes set or map Name.
	OpDeleteSet
	// OpAddLimit creates limit object Limit; it comes first, before any
	// rule can refer to it.
	OpAddLimit
	// OpDeleteLimit deletes limit object Name; it comes last, once no rule
	// refers to it.
	OpDeleteLimit
)

func (k OpKind) String() string {
	switch k {
	case OpReplaceBaseChain:
		return "replace-base-chain"
	case OpReplaceRules:
		return "replace-rules"
	case OpAddSet:
		return "add-set"
	case OpAddChain:
		return "add-chain"
	case OpDeleteElements:
		return "delete-elements"
	case OpAddElements:
		return "add-elements"
	case OpDeleteChain:
		return "delete-chain"
	case OpDeleteSet:
		return "delete-set"
	case OpAddLimit:
		return "add-limit"
	case OpDeleteLimit:
		return "delete-limit"
	}
	return "invalid"
}

// Op is one kernel operation. Which fields are set depends on Kind.
type Op struct {
	Kind OpKind
	// Name is the set or chain the op is about.
	Name string
	// Set is the definition for OpAddSet (without elements).
	Set *Set
	// Chain is the definition for OpAddChain (without rules) and the new
	// content for OpReplaceRules.
	Chain    *Chain
	Elements []Element
	// Limit is the definition for OpAddLimit.
	Limit *Limit
}

func (o Op) String() string {
	if o.Kind == OpAddElements || o.Kind == OpDeleteElements {
		return fmt.Sprintf("%s %s (%d)", o.Kind, o.Name, len(o.Elements))
	}
	return o.Kind.String() + " " + o.Name
}

// Diff returns the operations that turn old into desired; old == nil means an
// empty table. The ops are ordered so that, sent as one netlink batch, every
// object exists before something refers to it and nothing is deleted while
// still referred to:
//
//  0. base chains whose hook or priority changes are replaced, empty;
//  1. rules of chains that refer to a redefined set are flushed, and the
//     redefined sets deleted (a set's type cannot change in place);
//  2. new sets, then new (empty) chains;
//  3. element deletes, then element adds (a changed verdict or comment on
//     the same key is a delete plus an add);
//  4. rule replacements, now that every set and jump target exists;
//  5. chain deletions, now that no rule or map element jumps to them;
//  6. set deletions, now that no rule looks them up.
//
// Limit objects are added before everything and deleted after everything.
// A limit object never changes under the same name (DenyLog.LimitName), so
// there is nothing to redefine.
//
// Base chains are never deleted, only replaced within the batch when their
// hook or priority changes (right after the limits); their policy is part
// of OpReplaceRules.
//
// A set or chain that old and desired share by pointer is equal to itself: it
// is not compared. A compiler that hands the sets and chains of unchanged
// pods to the next ruleset by pointer (policy.NodeCompiler), diffed against the
// ruleset it last synced (kernel.Syncer keeps it), makes a sync cost what
// changed, not what exists.
func Diff(old, desired *Ruleset) []Op {
	if old == nil {
		old = NewRuleset()
	}
	redefined := redefinedSets(old, desired)
	var ops []Op
	for _, name := range sortedNames(desired.Limits) {
		if _, ok := old.Limits[name]; !ok {
			ops = append(ops, Op{Kind: OpAddLimit, Name: name, Limit: desired.Limits[name]})
		}
	}
	ops = append(ops, rehookedChains(old, desired)...)
	ops = append(ops, flushReferrers(old, desired, redefined)...)
	for _, name := range redefined {
		ops = append(ops, Op{Kind: OpDeleteSet, Name: name})
	}
	ops = append(ops, addedSets(old, desired, redefined)...)
	ops = append(ops, addedChains(old, desired)...)
	ops = append(ops, elementOps(old, desired, redefined)...)
	ops = append(ops, ruleOps(old, desired, redefined)...)
	ops = append(ops, deletedChains(old, desired)...)
	ops = append(ops, deletedSets(old, desired)...)
	for _, name := range sortedNames(old.Limits) {
		if _, ok := desired.Limits[name]; !ok {
			ops = append(ops, Op{Kind: OpDeleteLimit, Name: name})
		}
	}
	return ops
}

// redefinedSets are sets present in both whose definition (anything but
// elements) differs: they must be deleted and created again.
func redefinedSets(old, desired *Ruleset) []string {
	var out []string
	for _, name := range sortedNames(desired.Sets) {
		o, ok := old.Sets[name]
		if ok && o != desired.Sets[name] && !sameSetDefinition(o, desired.Sets[name]) {
			out = append(out, name)
		}
	}
	return out
}

func sameSetDefinition(a, b *Set) bool {
	return a.Name == b.Name && a.Comment == b.Comment && slices.Equal(a.KeyTypes, b.KeyTypes) &&
		a.Interval == b.Interval && a.IsVerdictMap == b.IsVerdictMap
}

// rehookedChains replaces the base chains that old and desired attach
// differently (another hook or priority).
func rehookedChains(old, desired *Ruleset) []Op {
	var ops []Op
	for _, name := range sortedNames(desired.Chains) {
		n := desired.Chains[name]
		if o, ok := old.Chains[name]; ok && rehooked(o, n) {
			ops = append(ops, Op{Kind: OpReplaceBaseChain, Name: name, Chain: &Chain{Name: name, Hook: n.Hook}})
		}
	}
	return ops
}

func rehooked(o, n *Chain) bool {
	return o.Hook != nil && n.Hook != nil && !SameAttachment(o.Hook, n.Hook)
}

// SameAttachment reports whether two chains hang on the same hook at the
// same priority (or are both regular chains): what the kernel cannot
// change in place. The policy can change.
func SameAttachment(a, b *Hook) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Name == b.Name && a.Priority == b.Priority
}

// flushReferrers empties the old chains that refer to a redefined set, so
// that the set can be deleted early in the batch; ruleOps fills them again.
func flushReferrers(old, desired *Ruleset, redefined []string) []Op {
	var ops []Op
	for _, name := range sortedNames(old.Chains) {
		c := old.Chains[name]
		if n, kept := desired.Chains[name]; kept && !rehooked(c, n) && refersToAny(c, redefined) {
			ops = append(ops, Op{Kind: OpReplaceRules, Name: name, Chain: &Chain{Name: name, Hook: c.Hook}})
		}
	}
	return ops
}

func refersToAny(c *Chain, sets []string) bool {
	for _, s := range sets {
		if slices.Contains(c.SetsReferred(), s) {
			return true
		}
	}
	return false
}

// SetsReferred lists the sets and maps c's rules look up.
func (c *Chain) SetsReferred() []string {
	var out []string
	for _, r := range c.Rules {
		if r.VerdictMap != nil {
			out = append(out, r.VerdictMap.Set)
		}
		for _, m := range r.Matches {
			if m.Lookup != nil {
				out = append(out, m.Lookup.Set)
			}
		}
	}
	return out
}

func addedSets(old, desired *Ruleset, redefined []string) []Op {
	var ops []Op
	for _, name := range sortedNames(desired.Sets) {
		if _, ok := old.Sets[name]; ok && !slices.Contains(redefined, name) {
			continue
		}
		def := *desired.Sets[name]
		def.Elements = nil
		ops = append(ops, Op{Kind: OpAddSet, Name: name, Set: &def})
	}
	return ops
}

func addedChains(old, desired *Ruleset) []Op {
	var ops []Op
	for _, name := range sortedNames(desired.Chains) {
		if _, ok := old.Chains[name]; ok {
			continue
		}
		def := *desired.Chains[name]
		def.Rules = nil
		ops = append(ops, Op{Kind: OpAddChain, Name: name, Chain: &def})
	}
	return ops
}

// elementOps returns all element deletes (of every set) before all element
// adds, one op per set and direction.
func elementOps(old, desired *Ruleset, redefined []string) []Op {
	var dels, adds []Op
	for _, name := range sortedNames(desired.Sets) {
		if old.Sets[name] == desired.Sets[name] {
			continue // shared, so unchanged (and never redefined)
		}
		var before []Element
		if o, ok := old.Sets[name]; ok && !slices.Contains(redefined, name) {
			before = o.Elements
		}
		del, add := diffElements(before, desired.Sets[name].Elements)
		if len(del) > 0 {
			dels = append(dels, Op{Kind: OpDeleteElements, Name: name, Elements: del})
		}
		if len(add) > 0 {
			adds = append(adds, Op{Kind: OpAddElements, Name: name, Elements: add})
		}
	}
	dels = append(dels, unjumpDeletedMaps(old, desired)...)
	return append(dels, adds...)
}

// unjumpDeletedMaps deletes the jump elements of maps that are going away:
// the map itself is deleted last, but its jumps would keep the chains they
// target alive past their deletion.
func unjumpDeletedMaps(old, desired *Ruleset) []Op {
	var ops []Op
	for _, name := range sortedNames(old.Sets) {
		if _, kept := desired.Sets[name]; kept {
			continue
		}
		var jumps []Element
		for _, e := range old.Sets[name].Elements {
			if e.Verdict.Target() != "" {
				jumps = append(jumps, e)
			}
		}
		if len(jumps) > 0 {
			ops = append(ops, Op{Kind: OpDeleteElements, Name: name, Elements: jumps})
		}
	}
	return ops
}

// diffElements compares by key; an element whose key stays but whose
// verdict or comment changes is deleted and added again.
func diffElements(old, desired []Element) (del, add []Element) {
	switch {
	case len(old) == 0:
		// A new set (every set of a full replace): its elements are the
		// adds, shared rather than copied and keyed (ops never modify
		// them), so the first sync holds one copy of the elements, not two.
		return nil, desired
	case len(desired) == 0:
		return old, nil
	}
	if sameElements(old, desired) {
		// Compile is deterministic, so an unchanged set comes in the same
		// order: compared in place, without building key maps.
		return nil, nil
	}
	// A compiler that patches a set (policy's allow-list fold) keeps the
	// order of the elements it does not touch: only what lies between the
	// common head and tail needs a key map. A set holds each key once, so
	// an element of the head or tail cannot reappear in the middle.
	head := 0
	for head < len(old) && head < len(desired) && sameElement(&old[head], &desired[head]) {
		head++
	}
	tail := 0
	for tail < len(old)-head && tail < len(desired)-head &&
		sameElement(&old[len(old)-1-tail], &desired[len(desired)-1-tail]) {
		tail++
	}
	old, desired = old[head:len(old)-tail], desired[head:len(desired)-tail]
	if len(old) == 0 || len(desired) == 0 {
		return slices.Clone(old), slices.Clone(desired)
	}
	if fitsArrayKey(old) && fitsArrayKey(desired) {
		// Every key of our layouts fits: map keys without an allocation
		// each (a changed 20k-element set costs half as much).
		return diffElementsBy(old, desired, arrayKey)
	}
	return diffElementsBy(old, desired, keyString)
}

func diffElementsBy[K comparable](old, desired []Element, keyOf func([]Range) K) (del, add []Element) {
	oldByKey := make(map[K]int, len(old))
	for i := range old {
		oldByKey[keyOf(old[i].Key)] = i
	}
	newByKey := make(map[K]int, len(desired))
	for i := range desired {
		e := &desired[i]
		k := keyOf(e.Key)
		newByKey[k] = i
		if j, ok := oldByKey[k]; !ok || old[j].Verdict != e.Verdict || old[j].Comment != e.Comment {
			add = append(add, *e)
		}
	}
	for i := range old {
		e := &old[i]
		if j, ok := newByKey[keyOf(e.Key)]; !ok || desired[j].Verdict != e.Verdict || desired[j].Comment != e.Comment {
			del = append(del, *e)
		}
	}
	return del, add
}

// elementKey holds an element's key as keyString does, in a fixed array:
// three ranges of IPv6 addresses fit (3 × (1 + 16 + 16) bytes).
type elementKey [99]byte

func fitsArrayKey(elems []Element) bool {
	for i := range elems {
		n := 0
		for _, r := range elems[i].Key {
			n += 1 + len(r.From) + len(r.To)
		}
		if n > len(elementKey{}) {
			return false
		}
	}
	return true
}

// arrayKey is keyString's bytes in an elementKey (zero-padded); the key
// must fit (fitsArrayKey). All keys of one set have the same types, hence
// the same length, so the padding cannot make two different keys equal.
func arrayKey(key []Range) elementKey {
	var k elementKey
	n := 0
	for _, r := range key {
		k[n] = byte(len(r.From))
		n++
		n += copy(k[n:], r.From)
		n += copy(k[n:], r.To)
	}
	return k
}

// sameElements reports whether a and b hold the same elements (key,
// verdict, comment) in the same order: diffElements has nothing to do.
// It runs over every element of every set on each sync, so it compares
// in place, without copies or allocations.
func sameElements(a, b []Element) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameElement(&a[i], &b[i]) {
			return false
		}
	}
	return true
}

// sameElement reports whether x and y have the same key, verdict and
// comment, without copies or allocations.
func sameElement(x, y *Element) bool {
	if len(x.Key) != len(y.Key) || x.Verdict != y.Verdict || x.Comment != y.Comment {
		return false
	}
	for j := range x.Key {
		if string(x.Key[j].From) != string(y.Key[j].From) || string(x.Key[j].To) != string(y.Key[j].To) {
			return false
		}
	}
	return true
}

// keyString is the identity of an element: its key bytes.
func keyString(key []Range) string {
	var b bytes.Buffer
	for _, r := range key {
		b.WriteByte(byte(len(r.From)))
		b.Write(r.From)
		b.Write(r.To)
	}
	return b.String()
}

// ruleOps replaces the rules of new chains and of chains whose rules or
// hook changed, and refills chains flushed by flushReferrers.
func ruleOps(old, desired *Ruleset, redefined []string) []Op {
	var ops []Op
	for _, name := range sortedNames(desired.Chains) {
		n := desired.Chains[name]
		o, existed := old.Chains[name]
		switch {
		case !existed && len(n.Rules) == 0 && n.Hook == nil:
			continue // created empty by addedChains
		case existed && (o == n || sameChain(o, n)) && !refersToAny(o, redefined):
			continue
		}
		c := *n
		ops = append(ops, Op{Kind: OpReplaceRules, Name: name, Chain: &c})
	}
	return ops
}

func sameChain(a, b *Chain) bool {
	return a.Name == b.Name && sameHook(a.Hook, b.Hook) && slices.EqualFunc(a.Rules, b.Rules, sameRule)
}

func sameHook(a, b *Hook) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func sameRule(a, b Rule) bool {
	return a.Verdict == b.Verdict && a.Comment == b.Comment && sameLookup(a.VerdictMap, b.VerdictMap) &&
		slices.EqualFunc(a.Matches, b.Matches, sameMatch) && sameLog(a.Log, b.Log)
}

func sameLog(a, b *Log) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func sameMatch(a, b Match) bool {
	return a.CtState == b.CtState && a.NFProto == b.NFProto && slices.Equal(a.ICMPv6Type, b.ICMPv6Type) &&
		sameLookup(a.Lookup, b.Lookup)
}

func sameLookup(a, b *Lookup) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Set == b.Set && slices.Equal(a.Fields, b.Fields)
}

// deletedChains never deletes a base chain: the hooks must stay in place
// for enforcement to stay closed, so a base chain that disappears from the
// model is only emptied (by ruleOps' counterpart here).
func deletedChains(old, desired *Ruleset) []Op {
	var ops []Op
	for _, name := range sortedNames(old.Chains) {
		if _, ok := desired.Chains[name]; ok {
			continue
		}
		if o := old.Chains[name]; o.Hook != nil {
			if len(o.Rules) > 0 {
				ops = append(ops, Op{Kind: OpReplaceRules, Name: name, Chain: &Chain{Name: name, Hook: o.Hook}})
			}
			continue
		}
		ops = append(ops, Op{Kind: OpDeleteChain, Name: name})
	}
	return ops
}

func deletedSets(old, desired *Ruleset) []Op {
	var ops []Op
	for _, name := range sortedNames(old.Sets) {
		if _, ok := desired.Sets[name]; !ok {
			ops = append(ops, Op{Kind: OpDeleteSet, Name: name})
		}
	}
	return ops
}

func sortedNames[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

//go:build linux

package kernel

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/nftables"

	"github.com/nftpolicy/nftpolicy/nft"
)

// queueOps renders ops into cc's pending batch. Set definitions for
// element ops come from new, or from old for sets that are going away.
// It stops when ctx is done: rendering a large batch takes a while.
func queueOps(ctx context.Context, cc *nftables.Conn, ops []nft.Op, old, new *nft.Ruleset) error {
	var r elementRenderer
	for _, op := range ops {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := queueOp(cc, op, old, new, &r); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

func queueOp(cc *nftables.Conn, op nft.Op, old, new *nft.Ruleset, r *elementRenderer) error {
	t := ourTable()
	switch op.Kind {
	case nft.OpAddSet:
		set, err := renderSet(t, op.Set)
		if err != nil {
			return err
		}
		return cc.AddSet(set, nil)
	case nft.OpAddChain:
		cc.AddChain(renderChain(t, op.Chain))
		return nil
	case nft.OpReplaceBaseChain:
		queueReplaceBaseChain(cc, op.Chain)
		return nil
	case nft.OpAddElements, nft.OpDeleteElements:
		return queueElements(cc, op, old, new, r)
	case nft.OpReplaceRules:
		return queueReplaceRules(cc, op.Chain)
	case nft.OpDeleteChain:
		cc.DelChain(&nftables.Chain{Table: t, Name: op.Name})
		return nil
	case nft.OpDeleteSet:
		cc.DelSet(&nftables.Set{Table: t, Name: op.Name})
		return nil
	case nft.OpAddLimit:
		cc.AddObj(renderLimit(t, op.Limit))
		return nil
	case nft.OpDeleteLimit:
		cc.DeleteObject(&nftables.NamedObj{Table: t, Name: op.Name, Type: nftables.ObjTypeLimit})
		return nil
	}
	return fmt.Errorf("unknown op kind %d", op.Kind)
}

func queueElements(cc *nftables.Conn, op nft.Op, old, new *nft.Ruleset, r *elementRenderer) error {
	def := new.Sets[op.Name]
	if def == nil && old != nil {
		def = old.Sets[op.Name]
	}
	if def == nil {
		return fmt.Errorf("no definition for set %s", op.Name)
	}
	set, err := renderSet(ourTable(), def)
	if err != nil {
		return err
	}
	// A message's worth at a time (an interval element of a single-field
	// set takes two netlink elements, so up to two messages), rendered
	// into r's buffers, which google/nftables copies into the message.
	for todo := op.Elements; len(todo) > 0; {
		chunk := todo[:min(len(todo), elementsPerMessage)]
		todo = todo[len(chunk):]
		elems, err := r.render(def, chunk)
		if err != nil {
			return err
		}
		send := cc.SetAddElements
		if op.Kind == nft.OpDeleteElements {
			send = cc.SetDeleteElements
		}
		if err := sendInMessages(set, elems, send); err != nil {
			return err
		}
	}
	return nil
}

// sendInMessages queues elems of set with send (SetAddElements or
// SetDeleteElements), at most elementsPerMessage to a message.
func sendInMessages(set *nftables.Set, elems []nftables.SetElement, send func(*nftables.Set, []nftables.SetElement) error) error {
	for len(elems) > 0 {
		n := min(len(elems), elementsPerMessage)
		if err := send(set, elems[:n]); err != nil {
			return err
		}
		elems = elems[n:]
	}
	return nil
}

// elementsPerMessage keeps each element message's nested element list
// under the 64 KiB a netlink attribute length can express (an element with
// a maximal comment takes about 300 bytes). The messages still go in the
// same batch, so this does not weaken atomicity.
const elementsPerMessage = 128

// queueReplaceRules flushes the chain and adds its rules again. For a base
// chain it first re-sends the chain, which updates the policy in place.
func queueReplaceRules(cc *nftables.Conn, c *nft.Chain) error {
	t := ourTable()
	if c.Hook != nil {
		cc.AddChain(renderChain(t, c))
	}
	cc.FlushChain(&nftables.Chain{Table: t, Name: c.Name})
	addAnon := func(s *nftables.Set, elems []nftables.SetElement) error { return cc.AddSet(s, elems) }
	for i, r := range c.Rules {
		rule, err := renderRule(t, c.Name, r, addAnon)
		if err != nil {
			return fmt.Errorf("rule %d: %w", i+1, err)
		}
		cc.AddRule(rule)
	}
	return nil
}

// queueReplaceBaseChain deletes a base chain and creates it again with
// c's hook and priority, empty (rules follow in OpReplaceRules). The kernel
// refuses to delete a chain that still has rules, so it is flushed first;
// the old chain keeps filtering until the batch commits.
func queueReplaceBaseChain(cc *nftables.Conn, c *nft.Chain) {
	t := ourTable()
	cc.FlushChain(&nftables.Chain{Table: t, Name: c.Name})
	cc.DelChain(&nftables.Chain{Table: t, Name: c.Name})
	cc.AddChain(renderChain(t, &nft.Chain{Name: c.Name, Hook: c.Hook}))
}

// queueFullReplace replaces whatever the table holds with desired, in the
// same batch and without ever removing the hooks: the table is added
// (a no-op if it exists), every chain flushed, every named set desired
// defines the same way kept with the elements it already has right
// (keepSets, see queueEmptyTable), every other set deleted, every chain
// desired does not have deleted, and desired created on top of the
// emptied chains. A base chain whose hook, priority or type desired changes
// is deleted and created anew in the same batch (the kernel cannot change
// those in place; see keptBaseChain). Until the batch commits, the old
// ruleset keeps enforcing; after it, the new one does.
func queueFullReplace(ctx context.Context, cc *nftables.Conn, desired *nft.Ruleset, keepSets bool) (ReplaceStats, error) {
	t := ourTable()
	exists, err := tableExists(cc)
	if err != nil {
		return ReplaceStats{}, err
	}
	start := nft.NewRuleset()
	var stats ReplaceStats
	cc.AddTable(t)
	if exists {
		if start, stats, err = queueEmptyTable(ctx, cc, desired, keepSets); err != nil {
			return stats, err
		}
	}
	ops := nft.Diff(start, desired)
	for _, op := range ops {
		if op.Kind == nft.OpAddElements {
			stats.ElementsAdded += len(op.Elements)
		}
	}
	return stats, queueOps(ctx, cc, ops, start, desired)
}

// ReplaceStats says what a full replace did to the sets it found in the
// kernel: how many of their elements it kept as they were, how many it
// deleted because desired does not have them, and how many sets it
// emptied whole; ElementsAdded counts every element the batch added.
type ReplaceStats struct {
	ElementsKept, ElementsDeleted, SetsFlushed, ElementsAdded int
}

// queueEmptyTable queues the removal of everything but the base chains we
// keep and, with keepSets, the sets desired defines the same way, and
// returns the model of what is left: those chains, empty, and those sets
// with the elements the kernel holds that desired has too.
//
// Regular chains desired has too are kept, emptied, for the same batch
// to fill again.
//
// A set is kept rather than deleted because the kernel publishes the
// elements of a pipapo set (concatenated ranges: the ports allow-lists
// and the tier maps) only after the batch's new rules are live. A set
// deleted and created again in the batch is empty for that moment, and a
// packet that the old and the new ruleset both admit is dropped
// (TestSync_FullReplaceKeepsAllowedFlowsFlowing; the chaos run saw it
// after an agent restart).
//
// A kept pipapo set's elements are read back and only the difference is
// written (keptElements): flushing a pipapo set of 20,000 elements and
// adding them again costs the kernel about 6 s, and an agent restarting
// on a node whose table is already right would spend that on every such
// set before its first sync. Every other kept set is flushed and
// refilled: a hash set does that in a fraction of the time reading it
// back takes (165,660 elements at 150k pods: 0.41 s to refill, 0.55 s
// with the read-back), and the kernel may hand an rbtree's intervals back
// merged or split.
func queueEmptyTable(ctx context.Context, cc *nftables.Conn, desired *nft.Ruleset, keepSets bool) (*nft.Ruleset, ReplaceStats, error) {
	var stats ReplaceStats
	t := ourTable()
	chains, err := listChains(cc)
	if err != nil {
		return nil, stats, err
	}
	sets, err := cc.GetSets(t)
	if err != nil {
		return nil, stats, fmt.Errorf("list sets: %w", err)
	}
	objs, err := cc.GetNamedObjects(t)
	if err != nil {
		return nil, stats, fmt.Errorf("list objects: %w", err)
	}
	left := nft.NewRuleset()
	for _, c := range chains {
		cc.FlushChain(&nftables.Chain{Table: t, Name: c.Name})
	}
	for _, s := range sets {
		if err := ctx.Err(); err != nil {
			return nil, stats, err
		}
		if s.Anonymous || strings.HasPrefix(s.Name, "__") {
			continue
		}
		if d, ok := desired.Sets[s.Name]; ok && keepSets && sameSetFlags(s, d) {
			rendered, err := renderSet(t, d)
			if err != nil {
				return nil, stats, err
			}
			// Adding a set that exists is a no-op if it is defined the
			// same way (key and data types and lengths, flags); if it is
			// not, the kernel refuses the batch (EEXIST), and the retry
			// deletes every set (Syncer.deleteSets).
			if err := cc.AddSet(rendered, nil); err != nil {
				return nil, stats, fmt.Errorf("set %s: %w", s.Name, err)
			}
			kept := &nft.Set{Name: d.Name, Comment: d.Comment, KeyTypes: d.KeyTypes, Interval: d.Interval, IsVerdictMap: d.IsVerdictMap}
			if !d.Interval || len(d.KeyTypes) == 1 {
				cc.FlushSet(rendered)
				stats.SetsFlushed++
			} else {
				same, stale, err := keptElements(cc, s, d)
				if err != nil {
					return nil, stats, err
				}
				if err := sendInMessages(rendered, stale, cc.SetDeleteElements); err != nil {
					return nil, stats, fmt.Errorf("set %s: %w", s.Name, err)
				}
				stats.ElementsDeleted += len(stale)
				kept.Elements = same
				stats.ElementsKept += len(same)
			}
			left.AddSet(kept)
			continue
		}
		cc.DelSet(&nftables.Set{Table: t, Name: s.Name})
	}
	for _, c := range chains {
		if keep, hook := keptBaseChain(c, desired); keep {
			left.AddChain(&nft.Chain{Name: c.Name, Hook: hook})
			continue
		}
		// A regular chain desired has too stays, emptied: the elements of
		// a kept verdict map may jump to it, and the kernel refuses to
		// delete a chain something jumps to (EBUSY). An element jumping
		// to a chain desired does not have is stale, deleted above.
		if d, ok := desired.Chains[c.Name]; ok && d.Hook == nil && c.Hooknum == nil {
			left.AddChain(&nft.Chain{Name: c.Name})
			continue
		}
		cc.DelChain(&nftables.Chain{Table: t, Name: c.Name})
	}
	// Limit objects go last, after the flushes that removed every rule
	// naming them: the kernel refuses to delete an object in use.
	for _, o := range objs {
		cc.DeleteObject(o)
	}
	return left, stats, nil
}

// keptElements reads kernel set ks back and splits it against desired set
// d (defined the same way, a concatenated interval set): same are d's
// elements the kernel holds exactly (key, range end, verdict and
// comment), stale the kernel's elements d does not have, as keys to
// delete. An element whose verdict or comment differs is in stale, and
// desired's version is added after its delete in the same batch.
func keptElements(cc *nftables.Conn, ks *nftables.Set, d *nft.Set) (same []nft.Element, stale []nftables.SetElement, err error) {
	got, err := cc.GetSetElements(ks)
	if err != nil {
		return nil, nil, fmt.Errorf("list elements of %s: %w", d.Name, err)
	}
	want, err := renderElements(d, d.Elements)
	if err != nil {
		return nil, nil, err
	}
	if len(want) != len(d.Elements) {
		return nil, nil, fmt.Errorf("set %s: %d elements rendered as %d", d.Name, len(d.Elements), len(want))
	}
	// Kernel elements by their rendering; desired's are taken in their
	// own order, so that same is a subsequence of d.Elements and nft.Diff
	// compares it with d in place where nothing is missing.
	inKernel := make(map[string]int, len(got))
	for i, e := range got {
		inKernel[elementString(e, true)] = i
	}
	matched := make([]bool, len(got))
	for i, e := range want {
		if j, ok := inKernel[elementString(e, false)]; ok {
			matched[j] = true
			same = append(same, d.Elements[i])
		}
	}
	for j, e := range got {
		if !matched[j] {
			stale = append(stale, nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd})
		}
	}
	return same, stale, nil
}

// sameSetFlags reports whether kernel set k has the flags desired set d
// renders with (what a read-back compares too; the kernel checks the
// types when the set is added again).
func sameSetFlags(k *nftables.Set, d *nft.Set) bool {
	return k.IsMap == d.IsVerdictMap && k.Interval == d.Interval && k.Concatenation == (len(d.KeyTypes) > 1) &&
		!k.HasTimeout && !k.Dynamic && !k.Constant
}

// keptBaseChain reports whether kernel chain c is one of our base chains
// that stays (emptied) through a full replace, and its hook as the kernel
// has it. One on a hook we do not use, or not of type filter, is deleted
// and created again by desired's Diff from the emptied table; so is one at
// another hook or priority than desired's (Diff's OpReplaceBaseChain), all
// in the same batch.
func keptBaseChain(c *nftables.Chain, desired *nft.Ruleset) (bool, *nft.Hook) {
	if c.Hooknum == nil || c.Priority == nil {
		return false, nil
	}
	ours := c.Name == nft.ChainForward || c.Name == nft.ChainInput
	if d, ok := desired.Chains[c.Name]; ok && d.Hook != nil {
		ours = true
	}
	if !ours {
		return false, nil
	}
	hook := &nft.Hook{Priority: int(*c.Priority), Policy: nft.VerdictAccept}
	for name, num := range hookNums {
		if num == *c.Hooknum {
			hook.Name = name
		}
	}
	if c.Policy != nil && *c.Policy == nftables.ChainPolicyDrop {
		hook.Policy = nft.VerdictDrop
	}
	if hook.Name == "" || c.Type != nftables.ChainTypeFilter {
		return false, nil
	}
	return true, hook
}

func listChains(cc *nftables.Conn) ([]*nftables.Chain, error) {
	all, err := cc.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	var ours []*nftables.Chain
	for _, c := range all {
		if c.Table != nil && c.Table.Name == nft.TableName {
			ours = append(ours, c)
		}
	}
	return ours, nil
}

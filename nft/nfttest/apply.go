package nfttest

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/nftpolicy/nftpolicy/nft"
)

// Apply applies ops (from nft.Diff) to a copy of r (nil means empty) the way the kernel
// would in one transaction, and fails where the kernel would refuse the
// batch: objects that exist twice or not at all, elements added twice or
// deleted while absent, chains or sets deleted while something refers to
// them, rules or map elements referring to objects that do not exist.
func Apply(r *nft.Ruleset, ops []nft.Op) (*nft.Ruleset, error) {
	out := table{Clone(r)}
	for i, op := range ops {
		if err := out.apply(op); err != nil {
			return nil, fmt.Errorf("op %d (%s): %w", i, op, err)
		}
	}
	return out.Ruleset, nil
}

func (r table) apply(op nft.Op) error {
	switch op.Kind {
	case nft.OpAddSet:
		return r.applyAddSet(op.Set)
	case nft.OpAddChain:
		return r.applyAddChain(op.Chain)
	case nft.OpDeleteElements:
		return r.applyDeleteElements(op.Name, op.Elements)
	case nft.OpAddElements:
		return r.applyAddElements(op.Name, op.Elements)
	case nft.OpReplaceRules:
		return r.applyReplaceRules(op.Chain)
	case nft.OpDeleteChain:
		return r.applyDeleteChain(op.Name)
	case nft.OpReplaceBaseChain:
		return r.applyReplaceBaseChain(op.Chain)
	case nft.OpDeleteSet:
		return r.applyDeleteSet(op.Name)
	case nft.OpAddLimit:
		return r.applyAddLimit(op.Limit)
	case nft.OpDeleteLimit:
		return r.applyDeleteLimit(op.Name)
	}
	return fmt.Errorf("unknown op kind %d", op.Kind)
}

func (r table) applyAddSet(s *nft.Set) error {
	if _, ok := r.Sets[s.Name]; ok {
		return fmt.Errorf("set %q exists", s.Name)
	}
	c := cloneSet(s)
	c.Elements = nil
	r.Sets[s.Name] = c
	return nil
}

func (r table) applyAddChain(c *nft.Chain) error {
	if _, ok := r.Chains[c.Name]; ok {
		return fmt.Errorf("chain %q exists", c.Name)
	}
	n := cloneChain(c)
	n.Rules = nil
	r.Chains[c.Name] = n
	return nil
}

func (r table) applyDeleteElements(set string, elems []nft.Element) error {
	s, ok := r.Sets[set]
	if !ok {
		return fmt.Errorf("set %q does not exist", set)
	}
	for _, e := range elems {
		i := slices.IndexFunc(s.Elements, func(x nft.Element) bool { return keyString(x.Key) == keyString(e.Key) })
		if i < 0 {
			return fmt.Errorf("set %q has no element %x", set, keyString(e.Key))
		}
		s.Elements = slices.Delete(s.Elements, i, i+1)
	}
	return nil
}

func (r table) applyAddElements(set string, elems []nft.Element) error {
	s, ok := r.Sets[set]
	if !ok {
		return fmt.Errorf("set %q does not exist", set)
	}
	for _, e := range elems {
		if slices.ContainsFunc(s.Elements, func(x nft.Element) bool { return keyString(x.Key) == keyString(e.Key) }) {
			return fmt.Errorf("set %q already has element %x", set, keyString(e.Key))
		}
		if e.Verdict.Target() != "" && r.Chains[e.Verdict.Chain] == nil {
			return fmt.Errorf("element of %q jumps to missing chain %q", set, e.Verdict.Chain)
		}
		s.Elements = append(s.Elements, cloneElement(e))
	}
	return nil
}

func (r table) applyReplaceRules(c *nft.Chain) error {
	cur, ok := r.Chains[c.Name]
	if !ok {
		return fmt.Errorf("chain %q does not exist", c.Name)
	}
	if !nft.SameAttachment(cur.Hook, c.Hook) {
		return fmt.Errorf("chain %q: the kernel cannot change a chain's hook or priority in place (EEXIST)", c.Name)
	}
	for _, s := range c.SetsReferred() {
		if r.Sets[s] == nil {
			return fmt.Errorf("chain %q refers to missing set %q", c.Name, s)
		}
	}
	for _, rule := range c.Rules {
		if rule.Verdict.Target() != "" && r.Chains[rule.Verdict.Chain] == nil {
			return fmt.Errorf("chain %q jumps to missing chain %q", c.Name, rule.Verdict.Chain)
		}
	}
	r.Chains[c.Name] = cloneChain(c)
	return nil
}

// applyReplaceBaseChain is the kernel's delete and create of a base chain
// in one batch: the chain exists afterwards, empty, with the new hook.
func (r table) applyReplaceBaseChain(c *nft.Chain) error {
	cur, ok := r.Chains[c.Name]
	switch {
	case !ok:
		return fmt.Errorf("chain %q does not exist", c.Name)
	case cur.Hook == nil || c.Hook == nil:
		return fmt.Errorf("chain %q: only a base chain is replaced by another base chain", c.Name)
	case len(c.Rules) > 0:
		return fmt.Errorf("chain %q: a replaced base chain starts empty", c.Name)
	}
	r.Chains[c.Name] = cloneChain(c)
	return nil
}

func (r table) applyDeleteChain(name string) error {
	c, ok := r.Chains[name]
	if !ok {
		return fmt.Errorf("chain %q does not exist", name)
	}
	if c.Hook != nil {
		return fmt.Errorf("base chain %q must never be deleted", name)
	}
	if by := r.jumpersTo(name); by != "" {
		return fmt.Errorf("chain %q is still a jump target of %s", name, by)
	}
	delete(r.Chains, name)
	return nil
}

// jumpersTo names an object that jumps to chain, or "" if none does.
func (r table) jumpersTo(chain string) string {
	for _, c := range r.Chains {
		for _, rule := range c.Rules {
			if rule.Verdict.Target() == chain {
				return "chain " + c.Name
			}
		}
	}
	for _, s := range r.Sets {
		for _, e := range s.Elements {
			if e.Verdict.Target() == chain {
				return "map " + s.Name
			}
		}
	}
	return ""
}

func (r table) applyDeleteSet(name string) error {
	if _, ok := r.Sets[name]; !ok {
		return fmt.Errorf("set %q does not exist", name)
	}
	for _, c := range r.Chains {
		if slices.Contains(c.SetsReferred(), name) {
			return fmt.Errorf("set %q is still referred to by chain %q", name, c.Name)
		}
	}
	delete(r.Sets, name)
	return nil
}

func (r table) applyAddLimit(l *nft.Limit) error {
	if _, ok := r.Limits[l.Name]; ok {
		return fmt.Errorf("limit %q exists", l.Name)
	}
	if r.Limits == nil {
		r.Limits = map[string]*nft.Limit{}
	}
	cp := *l
	r.Limits[l.Name] = &cp
	return nil
}

func (r table) applyDeleteLimit(name string) error {
	if _, ok := r.Limits[name]; !ok {
		return fmt.Errorf("limit %q does not exist", name)
	}
	for _, c := range r.Chains {
		for _, rule := range c.Rules {
			if rule.Log != nil && rule.Log.Limit == name {
				return fmt.Errorf("limit %q is still referred to by chain %q", name, c.Name)
			}
		}
	}
	delete(r.Limits, name)
	return nil
}

// table is a ruleset that ops are applied to.
type table struct{ *nft.Ruleset }

// keyString is the identity of an element: its key bytes.
func keyString(key []nft.Range) string {
	var b bytes.Buffer
	for _, r := range key {
		b.WriteByte(byte(len(r.From)))
		b.Write(r.From)
		b.Write(r.To)
	}
	return b.String()
}

package nfttest

import (
	"slices"

	"github.com/nftpolicy/nftpolicy/nft"
)

// Clone returns a deep copy of r (nil gives an empty ruleset): it shares
// no set, chain, element or byte with r.
func Clone(r *nft.Ruleset) *nft.Ruleset {
	out := nft.NewRuleset()
	if r == nil {
		return out
	}
	for name, s := range r.Sets {
		out.Sets[name] = cloneSet(s)
	}
	for name, c := range r.Chains {
		out.Chains[name] = cloneChain(c)
	}
	for name, l := range r.Limits {
		if out.Limits == nil {
			out.Limits = map[string]*nft.Limit{}
		}
		cp := *l
		out.Limits[name] = &cp
	}
	return out
}

// cloneSet copies s with all its elements' keys in two allocations (one
// for the ranges, one for their bytes) rather than several per element:
// FakeSyncer clones the table on every sync.
func cloneSet(s *nft.Set) *nft.Set {
	c := *s
	c.KeyTypes = slices.Clone(s.KeyTypes)
	c.Elements = make([]nft.Element, len(s.Elements))
	nRanges, nBytes := 0, 0
	for _, e := range s.Elements {
		nRanges += len(e.Key)
		for _, r := range e.Key {
			nBytes += len(r.From) + len(r.To)
		}
	}
	ranges := make([]nft.Range, 0, nRanges)
	buf := make([]byte, 0, nBytes)
	for i, e := range s.Elements {
		start := len(ranges)
		for _, r := range e.Key {
			from := len(buf)
			buf = append(buf, r.From...)
			mid := len(buf)
			buf = append(buf, r.To...)
			ranges = append(ranges, nft.Range{From: keepNil(r.From, buf[from:mid:mid]), To: keepNil(r.To, buf[mid:len(buf):len(buf)])})
		}
		e.Key = keepNil(s.Elements[i].Key, ranges[start:len(ranges):len(ranges)])
		c.Elements[i] = e
	}
	return &c
}

// keepNil is cp, or nil where orig was nil (as slices.Clone does).
func keepNil[T any](orig, cp []T) []T {
	if orig == nil {
		return nil
	}
	return cp
}

func cloneElement(e nft.Element) nft.Element {
	e.Key = slices.Clone(e.Key)
	for i, r := range e.Key {
		e.Key[i] = nft.Range{From: slices.Clone(r.From), To: slices.Clone(r.To)}
	}
	return e
}

func cloneChain(c *nft.Chain) *nft.Chain {
	n := *c
	if c.Hook != nil {
		h := *c.Hook
		n.Hook = &h
	}
	n.Rules = make([]nft.Rule, len(c.Rules))
	for i, r := range c.Rules {
		n.Rules[i] = cloneRule(r)
	}
	return &n
}

func cloneRule(r nft.Rule) nft.Rule {
	r.VerdictMap = cloneLookup(r.VerdictMap)
	r.Matches = slices.Clone(r.Matches)
	for i, m := range r.Matches {
		r.Matches[i].ICMPv6Type = slices.Clone(m.ICMPv6Type)
		r.Matches[i].Lookup = cloneLookup(m.Lookup)
	}
	return r
}

func cloneLookup(l *nft.Lookup) *nft.Lookup {
	if l == nil {
		return nil
	}
	return &nft.Lookup{Fields: slices.Clone(l.Fields), Set: l.Set}
}

package nft

// OnlyWidens reports whether ops, a Diff to desired, can only let more
// packets through, so that a connection allowed before is still allowed
// after they are applied. That holds when every op adds elements to a set
// that only allow-list chains look up: chains whose rules all return
// (each one a way to be allowed) but for a final unconditional drop. A
// packet that now finds an element returns where it used to go on to
// another return or to the drop, and nothing else changes. Every other
// op (removed elements, verdict map elements, rules, chains, sets) may
// deny, and the conntrack cleanup must run after it.
//
// This is what lets the commonest sync, a peer pod appearing, skip the
// cleanup.
func OnlyWidens(ops []Op, desired *Ruleset) bool {
	allowLists := map[string]bool{} // set name → only looked up by allow-list chains
	for _, c := range desired.Chains {
		isAllowList := isAllowListChain(c)
		for _, r := range c.Rules {
			for _, set := range setsOf(r) {
				prev, seen := allowLists[set]
				allowLists[set] = isAllowList && (prev || !seen)
			}
		}
	}
	for _, op := range ops {
		if op.Kind != OpAddElements {
			return false
		}
		s := desired.Sets[op.Name]
		if s == nil || s.IsVerdictMap || !allowLists[op.Name] {
			return false
		}
	}
	return true
}

// isAllowListChain: a regular chain whose rules all return, but for a last
// rule that drops unconditionally.
func isAllowListChain(c *Chain) bool {
	n := len(c.Rules)
	if c.Hook != nil || n == 0 {
		return false
	}
	last := c.Rules[n-1]
	if len(last.Matches) > 0 || last.VerdictMap != nil || last.Verdict.Kind != VerdictDrop {
		return false
	}
	for _, r := range c.Rules[:n-1] {
		if r.VerdictMap != nil || r.Verdict.Kind != VerdictReturn {
			return false
		}
	}
	return true
}

// setsOf names the sets and maps rule r looks up.
func setsOf(r Rule) []string {
	var out []string
	for _, m := range r.Matches {
		if m.Lookup != nil {
			out = append(out, m.Lookup.Set)
		}
	}
	if r.VerdictMap != nil {
		out = append(out, r.VerdictMap.Set)
	}
	return out
}

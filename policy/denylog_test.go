package policy

// IP plan: the fixture cluster (fixtures_test.go), node-1, under the
// realistic policies of the golden test and the tiers of the tiers golden.

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftpolicy/nftpolicy/nft"
)

// withoutLogRules is r with every log rule and limit object taken out, and
// every jump to a deny chain (a log rule and a drop) replaced by a drop.
func withoutLogRules(t *testing.T, r *nft.Ruleset) *nft.Ruleset {
	t.Helper()
	isDenyChain := func(name string) bool {
		c := r.Chains[name]
		return c != nil && len(c.Rules) == 2 && c.Rules[0].Log != nil && c.Rules[1].Verdict == nft.Drop &&
			len(c.Rules[1].Matches) == 0 && strings.HasPrefix(c.Rules[0].Log.Prefix, nft.DenyLogPrefix+"deny ")
	}
	out := nft.NewRuleset()
	for name, s := range r.Sets {
		cp := *s
		cp.Elements = slices.Clone(s.Elements)
		for i, e := range cp.Elements {
			if e.Verdict.Kind == nft.VerdictJump && isDenyChain(e.Verdict.Chain) {
				cp.Elements[i].Verdict = nft.Drop
			}
		}
		out.Sets[name] = &cp
	}
	for name, c := range r.Chains {
		if isDenyChain(name) {
			continue
		}
		cp := *c
		cp.Rules = nil
		for i, rule := range c.Rules {
			if rule.Log == nil {
				cp.Rules = append(cp.Rules, rule)
				continue
			}
			if i+1 == len(c.Rules) || c.Rules[i+1].Verdict != nft.Drop || len(c.Rules[i+1].Matches) > 0 {
				t.Errorf("chain %s: log rule %d is not right before an unconditional drop", name, i+1)
			}
		}
		out.Chains[name] = &cp
	}
	return out
}

// The deny log adds a log rule before each allow-list drop and turns each
// tier Deny verdict into a jump to a chain that logs and drops, and changes
// nothing else, for NetworkPolicies and tiers alike; switching it on and off
// on a long-lived NodeCompiler gives what a fresh compile gives.
func TestCompile_DenyLogOnlyAddsLogRules(t *testing.T) {
	log := &nft.DenyLog{Group: 4200, Rate: 10, Burst: 20}
	for _, tc := range []struct {
		name string
		snap *Snapshot
	}{
		{"network policies", fixtureSnapshot("node-1", realisticPolicies...)},
		{"tiers", tiersGoldenSnapshot()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain, _ := Compile(tc.snap)
			c := NewNodeCompiler(tc.snap.NodeName)
			c.LoadSnapshot(tc.snap)
			c.SetDenyLog(log)
			logged, _ := c.Compile()
			if len(logged.Limits) != 1 || logged.Limits[log.LimitName()] == nil {
				t.Errorf("limits %v, want the one of %+v", logged.Limits, log)
			}
			logRules := 0
			for _, ch := range logged.Chains {
				for _, r := range ch.Rules {
					if r.Log != nil {
						logRules++
					}
				}
			}
			if logRules == 0 {
				t.Fatal("no log rule in the logged ruleset")
			}
			if tc.name == "tiers" && len(logged.Chains) == len(plain.Chains) {
				t.Errorf("the tiers' Deny rules got no deny chain: %d chains logged and plain", len(logged.Chains))
			}
			if diff := cmp.Diff(plain.Dump(), withoutLogRules(t, logged).Dump()); diff != "" {
				t.Errorf("logged ruleset without its log rules differs (-plain +logged):\n%s", diff)
			}
			c.SetDenyLog(nil)
			off, _ := c.Compile()
			if diff := cmp.Diff(plain.Dump(), off.Dump()); diff != "" {
				t.Errorf("log switched off again (-fresh +incremental):\n%s", diff)
			}
		})
	}
}

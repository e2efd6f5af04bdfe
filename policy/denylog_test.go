package policy

// IP plan: the fixture cluster (fixtures_test.go), node-1, under the
// realistic policies of the golden test and the tiers of the tiers golden.

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftpolicy/nftpolicy/nft"
)

// withoutLogRules is r with every log rule and limit object taken out
// (each log rule must come right before an unconditional drop).
func withoutLogRules(t *testing.T, r *nft.Ruleset) *nft.Ruleset {
	t.Helper()
	out := nft.NewRuleset()
	for name, s := range r.Sets {
		out.Sets[name] = s
	}
	for name, c := range r.Chains {
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

// The deny log adds a log rule before each allow-list drop and before the
// counted drop of each tier Deny rule's chain (which the maps jump to with
// the log off too, so that its drops are counted), and changes nothing
// else, for NetworkPolicies and tiers alike; switching it on and off on a
// long-lived NodeCompiler gives what a fresh compile gives.
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
			if tc.name == "tiers" {
				denyChains := 0
				for name, ch := range plain.Chains {
					if _, ok := nft.DenyChainDirection(name); !ok {
						continue
					}
					denyChains++
					if want := []nft.Rule{{Counter: true, Verdict: nft.Drop}}; !cmp.Equal(ch.Rules, want) {
						t.Errorf("deny chain %s without the log: %v, want only a counted drop", name, ch.Rules)
					}
				}
				if denyChains == 0 {
					t.Error("the tiers' Deny rules have no deny chain without the log: their drops go uncounted")
				}
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

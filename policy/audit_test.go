package policy

// Audit mode (audit.go): each case compiles the fixture cluster for both
// nodes with the deny log on, traces connection-opening packets through
// the rulesets, and checks both the verdict and the audit records the
// packet sends against the case and against Evaluate.
//
// IP plan: fixtures_test.go's (x/a 10.244.1.10 and x/b 10.244.1.11 on
// node-1; x/c 10.244.2.12 and y/b 10.244.2.21 on node-2) and
// compile_cnp_test.go's Node objects.

import (
	"strings"
	"testing"

	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

// auditFlow is a packet, whether it connects and which audit records it
// sends: "", "egress", "ingress" or "both" for NetworkPolicies, and
// "in:policy/rule" or "out:policy/rule" for each audited
// ClusterNetworkPolicy Deny, in order, separated by commas.
type auditFlow struct {
	pkt   string
	want  bool
	audit string
}

const (
	// auditAnnotation is the metadata of an audited NetworkPolicy.
	auditAnnotation = `annotations: {nftpolicy.io/enforcement: audit}`

	xDenyIngress        = `{metadata: {namespace: x, name: deny-ingress}, spec: {podSelector: {}, policyTypes: [Ingress]}}`
	xDenyIngressAudited = `{metadata: {namespace: x, name: deny-ingress, ` + auditAnnotation + `}, spec: {podSelector: {}, policyTypes: [Ingress]}}`
	// aFromB80 admits pod=b of x to pod=a on TCP 80.
	aFromB80 = `{metadata: {namespace: x, name: a-from-b}, spec: {podSelector: {matchLabels: {pod: a}},
		ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80}]}]}}`
	aFromB80Audited = `{metadata: {namespace: x, name: a-from-b, ` + auditAnnotation + `}, spec: {podSelector: {matchLabels: {pod: a}},
		ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80}]}]}}`
	bDenyEgress        = `{metadata: {namespace: x, name: b-deny-egress}, spec: {podSelector: {matchLabels: {pod: b}}, policyTypes: [Egress]}}`
	bDenyEgressAudited = `{metadata: {namespace: x, name: b-deny-egress, ` + auditAnnotation + `}, spec: {podSelector: {matchLabels: {pod: b}}, policyTypes: [Egress]}}`
	// aFromYAudited admits all of namespace y to pod=a, audited.
	aFromYAudited = `{metadata: {namespace: x, name: a-from-y, ` + auditAnnotation + `}, spec: {podSelector: {matchLabels: {pod: a}},
		ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]}}`
)

func TestCompile_Audit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		nps      []string
		cnps     []*policyv1beta1.ClusterNetworkPolicy
		auditAll bool
		flows    []auditFlow
	}{
		{
			name: "audited default deny: every cell connects, what it would deny is recorded",
			nps:  []string{xDenyIngressAudited},
			flows: []auditFlow{
				{"10.244.1.11 -> 10.244.1.10 TCP/80", true, "ingress"}, // same node
				{"10.244.2.21 -> 10.244.1.10 UDP/53", true, "ingress"}, // across nodes
				{"10.244.1.10 -> 10.244.2.21 TCP/80", true, ""},        // y/b is not selected
			},
		},
		{
			name: "the same policy enforced: the cells the audit recorded are denied",
			nps:  []string{xDenyIngress},
			flows: []auditFlow{
				{"10.244.1.11 -> 10.244.1.10 TCP/80", false, ""},
				{"10.244.2.21 -> 10.244.1.10 UDP/53", false, ""},
				{"10.244.1.10 -> 10.244.2.21 TCP/80", true, ""},
			},
		},
		{
			name: "an audited allow-list records only what it does not admit",
			nps:  []string{aFromB80Audited},
			flows: []auditFlow{
				{"10.244.1.11 -> 10.244.1.10 TCP/80", true, ""},
				{"10.244.1.11 -> 10.244.1.10 TCP/81", true, "ingress"},
				{"10.244.2.12 -> 10.244.1.10 TCP/80", true, "ingress"},
			},
		},
		{
			name: "enforced beside audited: enforcement decides and the audit records nothing",
			nps:  []string{aFromB80, xDenyIngressAudited},
			flows: []auditFlow{
				{"10.244.1.11 -> 10.244.1.10 TCP/80", true, ""},
				{"10.244.1.11 -> 10.244.1.10 TCP/81", false, ""},
				{"10.244.2.12 -> 10.244.1.10 TCP/80", false, ""},
				// x/b is selected by the audited policy alone.
				{"10.244.1.10 -> 10.244.1.11 TCP/80", true, "ingress"},
			},
		},
		{
			name:     "audit all: enforced-looking policies only record",
			nps:      []string{aFromB80, bDenyEgress},
			auditAll: true,
			flows: []auditFlow{
				{"10.244.1.11 -> 10.244.1.10 TCP/80", true, "egress"},
				{"10.244.1.11 -> 10.244.1.10 TCP/81", true, "both"},
				{"10.244.2.12 -> 10.244.1.10 TCP/80", true, "ingress"},
			},
		},
		{
			name: "an audited egress records, then the enforced ingress drops",
			nps:  []string{bDenyEgressAudited, aFromB80},
			flows: []auditFlow{
				{"10.244.1.11 -> 10.244.1.10 TCP/81", false, "egress"},
				{"10.244.1.11 -> 10.244.1.10 TCP/80", true, "egress"},
			},
		},
		{
			name: "an enforced egress drop keeps the packet from the audited ingress",
			nps:  []string{bDenyEgress, xDenyIngressAudited},
			flows: []auditFlow{
				{"10.244.1.11 -> 10.244.1.10 TCP/80", false, ""},
				{"10.244.2.12 -> 10.244.1.10 TCP/80", true, "ingress"},
			},
		},
		{
			name: "an Admin Accept decides before the audited policies are reached",
			nps:  []string{xDenyIngressAudited},
			cnps: cnps(admin("a-from-b", 10, `subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}},
				ingress: [{action: Accept, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}}]}]`)),
			flows: []auditFlow{
				{"10.244.1.11 -> 10.244.1.10 TCP/80", true, ""},
				{"10.244.2.12 -> 10.244.1.10 TCP/80", true, "ingress"},
			},
		},
		{
			name: "an audited Admin Deny: every cell connects, the rule is recorded",
			cnps: cnps(audited(stagedNoY)),
			flows: []auditFlow{
				{"10.244.2.21 -> 10.244.1.10 TCP/80", true, "in:staged-no-y/from-y"},
				{"10.244.2.21 -> 10.244.1.11 UDP/53", true, "in:staged-no-y/from-y"},
				{"10.244.2.12 -> 10.244.1.10 TCP/80", true, ""}, // x/c is not in y
			},
		},
		{
			name: "the same policy enforced: the cells the audit recorded are denied",
			cnps: cnps(stagedNoY),
			flows: []auditFlow{
				{"10.244.2.21 -> 10.244.1.10 TCP/80", false, ""},
				{"10.244.2.21 -> 10.244.1.11 UDP/53", false, ""},
				{"10.244.2.12 -> 10.244.1.10 TCP/80", true, ""},
			},
		},
		{
			name: "audited, then an enforced Deny of a later policy: recorded, then denied",
			cnps: cnps(audited(stagedNoY), admin("no-udp-from-y", 20, subjX+`, ingress: [{action: Deny, from: [{namespaces: {matchLabels: {ns: "y"}}}], protocols: [{udp: {}}]}]`)),
			flows: []auditFlow{
				{"10.244.2.21 -> 10.244.1.10 UDP/53", false, "in:staged-no-y/from-y"},
				{"10.244.2.21 -> 10.244.1.10 TCP/80", true, "in:staged-no-y/from-y"},
			},
		},
		{
			name: "an enforced Accept before the audited Deny: it is not reached",
			cnps: cnps(admin("y-web", 5, subjX+`, ingress: [{action: Accept, from: [{namespaces: {matchLabels: {ns: "y"}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}]`),
				audited(stagedNoY)),
			flows: []auditFlow{
				{"10.244.2.21 -> 10.244.1.10 TCP/80", true, ""},
				{"10.244.2.21 -> 10.244.1.10 TCP/81", true, "in:staged-no-y/from-y"},
			},
		},
		{
			name: "an enforced Accept after the audited Deny: recorded, then accepted, the NetworkPolicy not consulted",
			nps:  []string{xDenyIngress},
			cnps: cnps(audited(stagedNoY), admin("y-web", 20, subjX+`, ingress: [{action: Accept, from: [{namespaces: {matchLabels: {ns: "y"}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}]`)),
			flows: []auditFlow{
				{"10.244.2.21 -> 10.244.1.10 TCP/80", true, "in:staged-no-y/from-y"},
				{"10.244.2.21 -> 10.244.1.10 TCP/81", false, "in:staged-no-y/from-y"},
				{"10.244.1.11 -> 10.244.1.10 TCP/80", false, ""},
			},
		},
		{
			name: "an enforced Pass after the audited Deny: recorded, then the NetworkPolicy decides",
			nps:  []string{xDenyIngress},
			cnps: cnps(audited(stagedNoY), admin("pass-y", 20, subjX+`, ingress: [{action: Pass, from: [{namespaces: {matchLabels: {ns: "y"}}}]}]`),
				admin("accept-all", 30, subjX+`, ingress: [{action: Accept, from: [{namespaces: {}}]}]`)),
			flows: []auditFlow{
				{"10.244.2.21 -> 10.244.1.10 TCP/80", false, "in:staged-no-y/from-y"},
				{"10.244.1.11 -> 10.244.1.10 TCP/80", true, ""},
			},
		},
		{
			name: "an audited Accept decides nothing: the enforced Deny after it denies, nothing recorded",
			cnps: cnps(audited(admin("staged-y-ok", 5, subjX+`, ingress: [{action: Accept, from: [{namespaces: {matchLabels: {ns: "y"}}}]}]`)), stagedNoY),
			flows: []auditFlow{
				{"10.244.2.21 -> 10.244.1.10 TCP/80", false, ""},
			},
		},
		{
			name: "an audited policy's own Accept before its Deny: that traffic is not recorded",
			cnps: cnps(audited(admin("staged", 5, subjX+`, ingress: [
				{action: Accept, from: [{namespaces: {matchLabels: {ns: "y"}}}], protocols: [{tcp: {destinationPort: {number: 80}}}]},
				{action: Deny, from: [{namespaces: {matchLabels: {ns: "y"}}}]}]`))),
			flows: []auditFlow{
				{"10.244.2.21 -> 10.244.1.10 TCP/80", true, ""},
				{"10.244.2.21 -> 10.244.1.10 TCP/81", true, "in:staged/ingress[1]"},
			},
		},
		{
			name: "audited Denies in both tiers: one record each, Admin first",
			cnps: cnps(audited(stagedNoY), audited(baseline("staged-base", 10, subjAll+`, ingress: [{name: base, action: Deny, from: [{namespaces: {}}]}]`))),
			flows: []auditFlow{
				{"10.244.2.21 -> 10.244.1.10 TCP/80", true, "in:staged-no-y/from-y,in:staged-base/base"},
				{"10.244.1.11 -> 10.244.1.10 TCP/80", true, "in:staged-base/base"},
			},
		},
		{
			name: "an audited egress Deny records on the source's node, then the enforced ingress drops",
			nps:  []string{aFromB80},
			cnps: cnps(audited(admin("staged-b-out", 10, `subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}},
				egress: [{action: Deny, to: [{networks: ["10.244.0.0/16"]}]}]`))),
			flows: []auditFlow{
				{"10.244.1.11 -> 10.244.1.10 TCP/80", true, "out:staged-b-out/egress[0]"},
				{"10.244.1.11 -> 10.244.1.10 TCP/81", false, "out:staged-b-out/egress[0]"},
				{"10.244.1.11 -> 10.244.2.21 UDP/53", true, "out:staged-b-out/egress[0]"},
			},
		},
		{
			name:     "audit all covers ClusterNetworkPolicies",
			cnps:     cnps(stagedNoY),
			auditAll: true,
			flows: []auditFlow{
				{"10.244.2.21 -> 10.244.1.10 TCP/80", true, "in:staged-no-y/from-y"},
			},
		},
		{
			name: "the Baseline tier still applies to a pod only audited policies select",
			nps:  []string{aFromYAudited},
			cnps: cnps(baseline("no-y", 10, subjAll+`, ingress: [{action: Deny, from: [{namespaces: {matchLabels: {ns: "y"}}}]}]`)),
			flows: []auditFlow{
				{"10.244.2.21 -> 10.244.1.10 TCP/80", false, ""},
				{"10.244.2.12 -> 10.244.1.10 TCP/80", true, "ingress"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := cnpFixtureSnapshot(tc.cnps, tc.nps...)
			snap.AuditAll = tc.auditAll
			rulesets := map[string]*nft.Ruleset{}
			for _, node := range []string{node1, node2} {
				s := *snap
				s.NodeName = node
				c := NewNodeCompiler(node)
				c.LoadSnapshot(&s)
				c.SetDenyLog(&nft.DenyLog{Group: 4200, Rate: 10, Burst: 20})
				rs, _ := c.Compile()
				if err := nfttest.Validate(rs); err != nil {
					t.Fatalf("%s: invalid ruleset: %v", node, err)
				}
				rulesets[node] = rs
			}
			for _, f := range tc.flows {
				p := pkt(f.pkt)
				want := auditWords(f.audit)
				if ev := Evaluate(snap, p); ev.Allowed != f.want || !ev.Audit.Equal(want) {
					t.Errorf("%s: the case wants connects=%v audit %+v, Evaluate says %+v", f.pkt, f.want, want, ev)
				}
				got, steps, logs := tracedVerdict(snap, rulesets, p)
				if got != f.want || !auditRecords(logs).Equal(want) {
					t.Errorf("%s: connects=%v audit %+v, want %v %+v; trace:\n\t%s",
						f.pkt, got, auditRecords(logs), f.want, want, strings.Join(steps, "\n\t"))
				}
			}
		})
	}
}

func auditWords(s string) AuditVerdict {
	var a AuditVerdict
	if s == "" {
		return a
	}
	for _, w := range strings.Split(s, ",") {
		switch w {
		case "egress":
			a.Egress = true
			continue
		case "ingress":
			a.Ingress = true
			continue
		case "both":
			a.Egress, a.Ingress = true, true
			continue
		}
		dir, rule, ok := strings.Cut(w, ":")
		policy, name, ok2 := strings.Cut(rule, "/")
		if !ok || !ok2 || (dir != "in" && dir != "out") {
			panic("audit records: " + s)
		}
		r := nft.DenyRule{Dir: nft.Ingress, Policy: policy, Rule: name}
		if dir == "out" {
			r.Dir = nft.Egress
		}
		a.Rules = append(a.Rules, r)
	}
	return a
}

// stagedNoY denies all of namespace y to namespace x, in the Admin tier.
var stagedNoY = admin("staged-no-y", 10, subjX+`, ingress: [{name: from-y, action: Deny, from: [{namespaces: {matchLabels: {ns: "y"}}}]}]`)

// audited is a copy of c annotated for audit mode.
func audited(c *policyv1beta1.ClusterNetworkPolicy) *policyv1beta1.ClusterNetworkPolicy {
	c = c.DeepCopy()
	c.Annotations = map[string]string{EnforcementAnnotation: EnforcementAudit}
	return c
}

// An audit chain is an allow-list chain whose tail logs with an audit
// prefix and returns: no drop. Without the deny log no audit chain is
// built (it would record nothing), and the table is the one without the
// audited policy.
func TestCompile_AuditChain(t *testing.T) {
	log := &nft.DenyLog{Group: 4200, Rate: 10, Burst: 20}
	compile := func(log *nft.DenyLog, policies ...string) *nft.Ruleset {
		c := NewNodeCompiler(node1)
		c.LoadSnapshot(fixtureSnapshot(node1, policies...))
		c.SetDenyLog(log)
		rs, _ := c.Compile()
		return rs
	}
	audited := compile(log, aFromB80Audited)
	chain := audited.Chains[nft.NamesFor(nft.Ingress, "x/a").Chain]
	if chain == nil {
		t.Fatalf("no ingress chain for x/a:\n%s", audited.Dump())
	}
	last := chain.Rules[len(chain.Rules)-1]
	if last.Log == nil || last.Log.Prefix != nft.AuditPrefix(chain.Name) || last.Verdict.Kind != nft.VerdictNone {
		t.Errorf("the audit chain's last rule is %s, want a log rule with prefix %q and no verdict", last, nft.AuditPrefix(chain.Name))
	}
	for _, r := range chain.Rules {
		if r.Verdict.Kind == nft.VerdictDrop {
			t.Errorf("the audit chain drops: %s", r)
		}
	}
	// Enforcing it (the annotation removed) keeps the chain's name and
	// sets: the change is the chain's tail.
	enforced := compile(log, aFromB80)
	if ops := nft.Diff(audited, enforced); len(ops) == 0 {
		t.Error("audit to enforced: no change")
	} else {
		for _, op := range ops {
			if op.Kind == nft.OpAddSet || op.Kind == nft.OpDeleteSet || op.Kind == nft.OpAddElements || op.Kind == nft.OpDeleteElements {
				t.Errorf("audit to enforced touches sets: %v", op)
			}
		}
	}
	if plain, without := compile(nil, aFromB80Audited).Dump(), compile(nil).Dump(); plain != without {
		t.Errorf("without the deny log an audited policy changes the table:\n%s\nwant\n%s", plain, without)
	}
}

// Toggling audit-all on a long-lived NodeCompiler gives what a fresh
// compile gives.
func TestNodeCompiler_SetAuditAll(t *testing.T) {
	log := &nft.DenyLog{Group: 4200, Rate: 10, Burst: 20}
	fresh := func(auditAll bool) string {
		snap := fixtureSnapshot(node1, aFromB80, bDenyEgress)
		snap.AuditAll = auditAll
		c := NewNodeCompiler(node1)
		c.LoadSnapshot(snap)
		c.SetDenyLog(log)
		rs, _ := c.Compile()
		return rs.Dump()
	}
	c := NewNodeCompiler(node1)
	c.LoadSnapshot(fixtureSnapshot(node1, aFromB80, bDenyEgress))
	c.SetDenyLog(log)
	for _, on := range []bool{false, true, false} {
		c.SetAuditAll(on)
		rs, _ := c.Compile()
		if got, want := rs.Dump(), fresh(on); got != want {
			t.Errorf("audit all %v: long-lived compile differs from a fresh one:\n%s\nwant\n%s", on, got, want)
		}
		if got := strings.Contains(rs.Dump(), `log prefix "nftpolicy audit `); got != on {
			t.Errorf("audit all %v: audit log rules present=%v", on, got)
		}
	}
}

// An audited ClusterNetworkPolicy's Deny boxes jump to an audit chain that
// logs and drops nothing, in the maps of the same names as enforced: the
// annotation removed, only elements and chains change. Without the deny
// log the table is the one without the policy.
func TestCompile_AuditedCNPTable(t *testing.T) {
	log := &nft.DenyLog{Group: 4200, Rate: 10, Burst: 20}
	compile := func(log *nft.DenyLog, auditAll bool, c ...*policyv1beta1.ClusterNetworkPolicy) *nft.Ruleset {
		snap := cnpFixtureSnapshot(c)
		snap.NodeName = node1
		snap.AuditAll = auditAll
		nc := NewNodeCompiler(node1)
		nc.LoadSnapshot(snap)
		nc.SetDenyLog(log)
		rs, warnings := nc.Compile()
		if len(warnings) > 0 {
			t.Errorf("warnings: %v", warnings)
		}
		if err := nfttest.Validate(rs); err != nil {
			t.Fatalf("invalid ruleset: %v", err)
		}
		return rs
	}
	rule := nft.DenyRule{Dir: nft.Ingress, Policy: "staged-no-y", Rule: "from-y"}
	staged := compile(log, false, audited(stagedNoY))
	chain := staged.Chains[nft.AuditRuleChainName([]nft.DenyRule{rule}, "")]
	if chain == nil || len(chain.Rules) != 1 || chain.Rules[0].Log == nil || chain.Rules[0].Log.Prefix != nft.AuditRulePrefix(rule) {
		t.Fatalf("no audit chain with one log rule %q:\n%s", nft.AuditRulePrefix(rule), staged.Dump())
	}
	if staged.Chains[nft.DenyChainName(rule)] != nil {
		t.Errorf("an audited rule has a deny chain:\n%s", staged.Dump())
	}
	for _, c := range staged.Chains {
		for _, r := range c.Rules {
			if r.Verdict.Kind == nft.VerdictDrop && c.Hook == nil && c.Name != nft.ChainMidStream {
				t.Errorf("chain %s drops: %s", c.Name, r)
			}
		}
	}
	enforced := compile(log, false, stagedNoY)
	for _, op := range nft.Diff(staged, enforced) {
		if op.Kind == nft.OpAddSet || op.Kind == nft.OpDeleteSet {
			t.Errorf("audit to enforced touches set definitions: %v", op)
		}
	}
	if got, want := compile(log, true, stagedNoY).Dump(), staged.Dump(); got != want {
		t.Errorf("audit all differs from the annotation:\n%s\nwant\n%s", got, want)
	}
	if plain, without := compile(nil, false, audited(stagedNoY)).Dump(), compile(nil, false).Dump(); plain != without {
		t.Errorf("without the deny log an audited ClusterNetworkPolicy changes the table:\n%s\nwant\n%s", plain, without)
	}
}

// Toggling audit-all on a long-lived NodeCompiler with a
// ClusterNetworkPolicy gives what a fresh compile gives: the tier maps
// follow.
func TestNodeCompiler_SetAuditAllCNP(t *testing.T) {
	log := &nft.DenyLog{Group: 4200, Rate: 10, Burst: 20}
	snapshot := func(auditAll bool) *Snapshot {
		snap := cnpFixtureSnapshot(cnps(stagedNoY), aFromB80)
		snap.NodeName = node1
		snap.AuditAll = auditAll
		return snap
	}
	fresh := func(auditAll bool) string {
		c := NewNodeCompiler(node1)
		c.LoadSnapshot(snapshot(auditAll))
		c.SetDenyLog(log)
		rs, _ := c.Compile()
		return rs.Dump()
	}
	c := NewNodeCompiler(node1)
	c.LoadSnapshot(snapshot(false))
	c.SetDenyLog(log)
	for _, on := range []bool{false, true, false} {
		c.SetAuditAll(on)
		rs, _ := c.Compile()
		if got, want := rs.Dump(), fresh(on); got != want {
			t.Errorf("audit all %v: long-lived compile differs from a fresh one:\n%s\nwant\n%s", on, got, want)
		}
		if got := strings.Contains(rs.Dump(), `log prefix "nftpolicy audit in staged-no-y/from-y"`); got != on {
			t.Errorf("audit all %v: the Admin Deny's audit log rule present=%v", on, got)
		}
	}
}

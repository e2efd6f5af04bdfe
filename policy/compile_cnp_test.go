package policy

// Flow tests of the ClusterNetworkPolicy tiers: each case compiles the
// fixture cluster for both nodes and traces connection-opening packets
// through the rulesets; each flow's expectation is also checked against
// Evaluate, so a case cannot state something the reference semantics do
// not.
//
// IP plan: fixtures_test.go's, plus Node objects:
//   node-1  zone=a  198.18.0.11, fd00:198::11
//   node-2  zone=b  198.18.0.12 (also host-network pod z/h's address)
// A pod's packet to its own node's address takes the input hook.

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

func fixtureNodes() []Node {
	return []Node{
		{Name: node1, Labels: map[string]string{"zone": "a"}, Addresses: ips("198.18.0.11", "fd00:198::11")},
		{Name: node2, Labels: map[string]string{"zone": "b"}, Addresses: ips("198.18.0.12")},
	}
}

type cnpFlowCase struct {
	name  string
	cnps  []*policyv1beta1.ClusterNetworkPolicy
	nps   []string // NetworkPolicies in YAML
	flows []flow
}

func cnpFixtureSnapshot(c []*policyv1beta1.ClusterNetworkPolicy, nps ...string) *Snapshot {
	snap := fixtureSnapshot(node1, nps...)
	snap.ClusterNetworkPolicies = c
	snap.Nodes = fixtureNodes()
	return snap
}

func runCNPFlowCases(t *testing.T, cases []cnpFlowCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			snap := cnpFixtureSnapshot(tc.cnps, tc.nps...)
			rulesets := map[string]*nft.Ruleset{}
			for _, node := range []string{node1, node2} {
				s := *snap
				s.NodeName = node
				rs, _ := Compile(&s)
				if err := nfttest.Validate(rs); err != nil {
					t.Fatalf("%s: invalid ruleset: %v", node, err)
				}
				rulesets[node] = rs
			}
			for _, f := range tc.flows {
				p := pkt(f.pkt)
				if ev := Evaluate(snap, p); ev.Allowed != f.want {
					t.Errorf("%s: the case wants connects=%v, Evaluate says %+v", f.pkt, f.want, ev)
				}
				got, steps, _ := tracedVerdict(snap, rulesets, p)
				if got != f.want {
					t.Errorf("%s: connects=%v, want %v; trace:\n\t%s", f.pkt, got, f.want, strings.Join(steps, "\n\t"))
				}
			}
		})
	}
}

const (
	allowAllInX = `
metadata: {namespace: x, name: allow-all-in}
spec: {podSelector: {}, ingress: [{}]}`
	allowAllOutX = `
metadata: {namespace: x, name: allow-all-out}
spec: {podSelector: {}, policyTypes: [Egress], egress: [{}]}`
	subjX = `subject: {namespaces: {matchLabels: {ns: x}}}`
)

func TestCompile_ClusterNetworkPolicy_AdminDenyOverNetworkPolicyAllow(t *testing.T) {
	runCNPFlowCases(t, []cnpFlowCase{{
		name: "an Admin Deny wins over NetworkPolicies that allow everything",
		cnps: cnps(admin("deny-y", 10, subjX+`, ingress: [{action: Deny, from: [{namespaces: {matchLabels: {ns: "y"}}}]}],
			egress: [{action: Deny, to: [{networks: [192.0.2.0/24]}]}]`)),
		nps: []string{allowAllInX, allowAllOutX},
		flows: []flow{
			{"10.244.1.20 -> 10.244.1.10 TCP/80", false}, // y/a -> x/a, same node
			{"10.244.2.21 -> 10.244.1.10 UDP/53", false}, // y/b -> x/a, across nodes
			{"10.244.1.11 -> 10.244.1.10 TCP/80", true},  // x/b: no Admin rule, the NetworkPolicy allows
			{"192.0.2.1 -> 10.244.1.10 TCP/80", true},
			{"10.244.1.10 -> 192.0.2.1 TCP/443", false}, // egress Deny over an egress allow-all
			{"10.244.1.10 -> 10.244.2.21 TCP/80", true},
		},
	}})
}

func TestCompile_ClusterNetworkPolicy_AdminAcceptOverIsolation(t *testing.T) {
	runCNPFlowCases(t, []cnpFlowCase{{
		name: "an Admin Accept admits what an isolating NetworkPolicy would drop, only that",
		cnps: cnps(admin("accept-blue", 10, subjX+`, ingress: [{action: Accept, from: [{namespaces: {matchLabels: {team: blue}}}],
			protocols: [{tcp: {destinationPort: {number: 80}}}]}]`)),
		nps: []string{denyIngressX},
		flows: []flow{
			{"10.244.1.20 -> 10.244.1.10 TCP/80", true},  // y/a (team blue)
			{"10.244.2.21 -> 10.244.1.11 TCP/80", true},  // y/b across nodes
			{"10.244.1.20 -> 10.244.1.10 TCP/81", false}, // the NetworkPolicy decides
			{"10.244.1.20 -> 10.244.1.10 UDP/80", false},
			{"10.244.1.11 -> 10.244.1.10 TCP/80", false}, // x/b is not team blue
		},
	}, {
		name: "an egress Admin Accept still leaves the destination's ingress to judge",
		cnps: cnps(admin("accept-out", 10, `subject: {namespaces: {matchLabels: {ns: "y"}}}, egress: [{action: Accept, to: [{namespaces: {}}]}]`)),
		nps:  []string{denyIngressX},
		flows: []flow{
			{"10.244.1.20 -> 10.244.1.10 TCP/80", false}, // y/a -> x/a: x/a's ingress is isolated
			{"10.244.2.21 -> 10.244.1.20 TCP/80", true},  // y/b -> y/a
		},
	}})
}

func TestCompile_ClusterNetworkPolicy_Pass(t *testing.T) {
	passY := admin("a-pass-y", 10, subjX+`, ingress: [{action: Pass, from: [{namespaces: {matchLabels: {ns: "y"}}}]}]`)
	denyPods := admin("b-deny-pods", 20, subjX+`, ingress: [{action: Deny, from: [{namespaces: {}}]}]`)
	runCNPFlowCases(t, []cnpFlowCase{
		{
			name: "Pass skips the rest of the Admin tier: no NetworkPolicy, allowed",
			cnps: cnps(passY, denyPods),
			flows: []flow{
				{"10.244.1.20 -> 10.244.1.10 TCP/80", true},  // y/a: passed
				{"10.244.1.11 -> 10.244.1.10 TCP/80", false}, // x/b: denied by the later policy
				{"192.0.2.1 -> 10.244.1.10 TCP/80", true},    // not a pod
			},
		},
		{
			name: "Pass hands over to the NetworkPolicy tier when one isolates",
			cnps: cnps(passY, denyPods),
			nps: []string{`
metadata: {namespace: x, name: from-b}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}, {namespaceSelector: {matchLabels: {ns: "y"}}, podSelector: {matchLabels: {pod: b}}}]}]`},
			flows: []flow{
				{"10.244.1.20 -> 10.244.1.10 TCP/80", false}, // y/a passed, the NetworkPolicy does not admit it
				{"10.244.2.21 -> 10.244.1.10 TCP/80", true},  // y/b passed, admitted
				{"10.244.1.11 -> 10.244.1.10 TCP/80", false}, // x/b: the Admin Deny comes first
			},
		},
		{
			name: "Pass goes on to the Baseline tier when no NetworkPolicy isolates",
			cnps: cnps(passY, baseline("deny-y", 10, subjX+`, ingress: [{action: Deny, from: [{namespaces: {matchLabels: {ns: "y"}}}],
				protocols: [{tcp: {destinationPort: {number: 80}}}]}]`)),
			flows: []flow{
				{"10.244.1.20 -> 10.244.1.10 TCP/80", false},
				{"10.244.1.20 -> 10.244.1.10 TCP/81", true},
			},
		},
		{
			name: "rules of one policy in written order: a Pass on a port before a Deny of everything",
			cnps: cnps(admin("ordered", 10, subjX+`, ingress: [
				{action: Pass, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: {start: 80, end: 81}}}}]},
				{action: Deny, from: [{namespaces: {}}]}]`)),
			flows: []flow{
				{"10.244.1.20 -> 10.244.1.10 TCP/80", true},
				{"10.244.1.20 -> 10.244.1.10 TCP/81", true},
				{"10.244.1.20 -> 10.244.1.10 TCP/82", false},
				{"10.244.1.20 -> 10.244.1.10 UDP/80", false},
				{"10.244.1.20 -> 10.244.1.10 ICMP/0", false},
			},
		},
	})
}

func TestCompile_ClusterNetworkPolicy_BaselineUnderIsolation(t *testing.T) {
	runCNPFlowCases(t, []cnpFlowCase{{
		name: "an isolating NetworkPolicy decides instead of the Baseline tier, both ways",
		cnps: cnps(
			baseline("deny-all-in", 10, subjX+`, ingress: [{action: Deny, from: [{namespaces: {}}]}]`),
			baseline("accept-y", 5, subjX+`, ingress: [{action: Accept, from: [{namespaces: {matchLabels: {ns: "y"}}}]}]`)),
		nps: []string{`
metadata: {namespace: x, name: a-from-b}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]`},
		flows: []flow{
			{"10.244.1.11 -> 10.244.1.10 TCP/80", true},  // x/b -> x/a: NetworkPolicy allows over the Baseline Deny
			{"10.244.1.20 -> 10.244.1.10 TCP/80", false}, // y/a -> x/a: the Baseline Accept does not apply
			{"10.244.1.10 -> 10.244.1.11 TCP/80", false}, // x/a -> x/b: x/b is not isolated, Baseline denies
			{"10.244.1.20 -> 10.244.1.11 TCP/80", true},  // y/a -> x/b: Baseline accepts first
			{"192.0.2.1 -> 10.244.1.11 TCP/80", true},    // no Baseline rule: allowed
		},
	}})
}

func TestCompile_ClusterNetworkPolicy_BaselineWhenIsolatedOtherDirection(t *testing.T) {
	runCNPFlowCases(t, []cnpFlowCase{{
		name: "ingress isolation leaves egress to the Baseline tier",
		cnps: cnps(baseline("deny-ext", 10, subjX+`, egress: [{action: Deny, to: [{networks: [192.0.2.0/24, "2001:db8::/32"]}]}],
			ingress: [{action: Accept, from: [{namespaces: {matchLabels: {ns: "y"}}}]}]`)),
		nps: []string{denyIngressX},
		flows: []flow{
			{"10.244.1.10 -> 192.0.2.1 TCP/80", false},         // egress: Baseline
			{"fd00:10:244:1::10 -> 2001:db8::1 UDP/53", false}, // and IPv6
			{"10.244.1.10 -> 10.244.1.20 TCP/80", true},        // no Baseline rule
			{"10.244.1.20 -> 10.244.1.10 TCP/80", false},       // ingress: the NetworkPolicy, not the Baseline Accept
			{"10.244.2.12 -> 10.244.2.21 TCP/80", true},        // x/c -> y/b
			{"10.244.2.12 -> 192.0.2.1 ICMP/0", false},         // x/c on node-2: ports absent, ICMP too
			{"192.0.2.1 -> 10.244.2.21 TCP/80", true},          // not a subject
			{"fd00:10:244:1::10 -> fd00:198::11 TCP/80", true}, // own node over IPv6: input hook
			{"10.244.1.10 -> 198.18.0.11 TCP/80", true},        // own node: input hook
		},
	}})
}

func TestCompile_ClusterNetworkPolicy_NetworksMatchPodIPs(t *testing.T) {
	runCNPFlowCases(t, []cnpFlowCase{{
		name: "a Deny of 0.0.0.0/0 blocks pods of the subject's own namespace too",
		cnps: cnps(admin("deny-v4", 10, subjX+`, egress: [{action: Deny, to: [{networks: [0.0.0.0/0]}]}]`)),
		flows: []flow{
			{"10.244.1.10 -> 10.244.1.11 TCP/80", false}, // x/a -> x/b, same namespace and node
			{"10.244.1.10 -> 10.244.2.12 TCP/80", false},
			{"10.244.1.10 -> 192.0.2.1 UDP/53", false},
			{"fd00:10:244:1::10 -> 2001:db8::1 TCP/80", true}, // IPv6 is not in 0.0.0.0/0
			{"10.244.1.20 -> 10.244.1.10 TCP/80", true},       // y/a is no subject
		},
	}, {
		name: "host bits of a network are ignored; a /32 is one pod",
		cnps: cnps(admin("deny-b", 10, subjX+`, egress: [{action: Deny, to: [{networks: [10.244.1.11/32, 10.244.2.99/24]}]}]`)),
		flows: []flow{
			{"10.244.1.10 -> 10.244.1.11 TCP/80", false},
			{"10.244.1.10 -> 10.244.1.20 TCP/80", true},
			{"10.244.1.10 -> 10.244.2.21 TCP/80", false},
		},
	}})
}

func TestCompile_ClusterNetworkPolicy_Ports(t *testing.T) {
	runCNPFlowCases(t, []cnpFlowCase{{
		name: "ranges, UDP and SCTP match their own protocol only",
		cnps: cnps(admin("deny-ports", 10, subjX+`, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [
			{tcp: {destinationPort: {range: {start: 8000, end: 8010}}}},
			{udp: {destinationPort: {number: 53}}},
			{sctp: {}}]}]`)),
		flows: []flow{
			{"10.244.1.20 -> 10.244.1.10 TCP/7999", true},
			{"10.244.1.20 -> 10.244.1.10 TCP/8000", false},
			{"10.244.1.20 -> 10.244.1.10 TCP/8010", false},
			{"10.244.1.20 -> 10.244.1.10 TCP/8011", true},
			{"10.244.1.20 -> 10.244.1.10 UDP/53", false},
			{"10.244.1.20 -> 10.244.1.10 UDP/8000", true},
			{"10.244.1.20 -> 10.244.1.10 TCP/53", true},
			{"10.244.1.20 -> 10.244.1.10 SCTP/80", false}, // every SCTP port
			{"10.244.1.20 -> 10.244.1.10 ICMP/0", true},
		},
	}, {
		name: "no protocols is every protocol and port, ICMP included; a later Accept on a port does not reopen",
		cnps: cnps(admin("deny-all", 10, subjX+`, ingress: [{action: Deny, from: [{namespaces: {matchLabels: {ns: "y"}}}]},
			{action: Accept, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}]`)),
		nps: []string{denyIngressX},
		flows: []flow{
			{"10.244.1.20 -> 10.244.1.10 ICMP/0", false},
			{"10.244.1.20 -> 10.244.1.10 TCP/80", false},
			{"10.244.1.11 -> 10.244.1.10 TCP/80", true},  // x/b: the Accept
			{"10.244.1.11 -> 10.244.1.10 TCP/81", false}, // the NetworkPolicy
		},
	}})
}

func TestCompile_ClusterNetworkPolicy_NamedPorts(t *testing.T) {
	runCNPFlowCases(t, []cnpFlowCase{{
		name: "egress: resolved on each destination pod",
		cnps: cnps(admin("deny-http", 10, `subject: {pods: {namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}},
			egress: [{action: Deny, to: [{namespaces: {}}, {networks: [192.0.2.0/24]}], protocols: [{destinationNamedPort: serve-80-tcp}]}]`)),
		flows: []flow{
			{"10.244.1.10 -> 10.244.1.20 TCP/8080", false}, // y/a names 8080 serve-80-tcp
			{"10.244.1.10 -> 10.244.1.20 TCP/80", true},
			{"10.244.1.10 -> 10.244.2.12 TCP/80", false}, // x/c names 80
			{"10.244.1.10 -> 10.244.1.11 UDP/80", true},  // the name is TCP
			{"10.244.1.10 -> 192.0.2.1 TCP/80", true},    // not a pod: nothing to resolve
		},
	}, {
		name: "ingress: resolved on the subject itself, per protocol",
		cnps: cnps(admin("accept-dns", 10, subjX+`, ingress: [{action: Accept, from: [{namespaces: {}}], protocols: [{destinationNamedPort: dns}]}]`)),
		nps:  []string{denyIngressX},
		flows: []flow{
			{"10.244.1.20 -> 10.244.1.10 UDP/53", true}, // x/a declares dns UDP/53
			{"10.244.1.20 -> 10.244.1.10 TCP/53", false},
			{"10.244.1.20 -> 10.244.1.11 UDP/53", false}, // x/b declares no dns
		},
	}})
}

func TestCompile_ClusterNetworkPolicy_NodesPeers(t *testing.T) {
	runCNPFlowCases(t, []cnpFlowCase{{
		name: "nodes peers are node addresses, the pod's own node included",
		cnps: cnps(
			admin("deny-zone-b", 10, subjX+`, egress: [{action: Deny, to: [{nodes: {matchLabels: {zone: b}}}]}]`),
			baseline("deny-nodes", 10, subjX+`, egress: [{action: Deny, to: [{nodes: {}}], protocols: [{tcp: {destinationPort: {number: 10250}}}]}]`)),
		flows: []flow{
			{"10.244.1.10 -> 198.18.0.12 TCP/80", false},           // node-2
			{"10.244.1.10 -> 198.18.0.11 TCP/80", true},            // own node, not zone b
			{"10.244.1.10 -> 198.18.0.11 TCP/10250", false},        // own node, Baseline (input hook)
			{"fd00:10:244:1::10 -> fd00:198::11 TCP/10250", false}, // and its IPv6 address
			{"10.244.1.10 -> 192.0.2.1 TCP/10250", true},           // not a node
			{"10.244.1.20 -> 198.18.0.12 TCP/80", true},            // y/a is no subject
		},
	}})
}

func TestCompile_ClusterNetworkPolicy_HostNetwork(t *testing.T) {
	runCNPFlowCases(t, []cnpFlowCase{{
		name: "a host-network pod is no namespaces or pods peer, but its address is in networks",
		cnps: cnps(admin("deny-pods", 10, `subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}],
			egress: [{action: Deny, to: [{networks: [198.18.0.12/32]}]}]`)),
		flows: []flow{
			{"198.18.0.12 -> 10.244.1.10 TCP/80", true},  // z/h is no pods peer
			{"10.244.2.12 -> 10.244.1.10 TCP/80", false}, // x/c is
			{"10.244.1.10 -> 198.18.0.12 TCP/80", false}, // networks match its address
		},
	}})
	t.Run("a host-network pod is never a subject", func(t *testing.T) {
		snap := cnpFixtureSnapshot(cnps(admin("z", 10, `subject: {namespaces: {matchLabels: {ns: z}}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]`)))
		snap.NodeName = node2
		rs, _ := Compile(snap)
		if skeleton := nft.NewSkeleton(); len(rs.Chains) != len(skeleton.Chains) {
			t.Errorf("got chains %v, want only the skeleton's %v", slices.Sorted(mapsKeys(rs.Chains)), slices.Sorted(mapsKeys(skeleton.Chains)))
		}
	})
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestCompile_ClusterNetworkPolicy_Dispatch(t *testing.T) {
	snap := cnpFixtureSnapshot(cnps(
		admin("deny-ext", 10, subjX+`, egress: [{action: Deny, to: [{networks: [192.0.2.0/24]}]}]`),
		baseline("in-only", 10, subjX+`, ingress: [{action: Deny, from: [{namespaces: {}}]}]`)))
	rs, _ := Compile(snap)
	a, b := nft.NamesFor(nft.Egress, "x/a"), nft.NamesFor(nft.Ingress, "x/b")
	jumps := func(m string) map[string]string {
		out := map[string]string{}
		for _, e := range rs.Sets[m].Elements {
			out[nft.FormatRange(nft.TypeIPv4Addr, e.Key[0])] = e.Verdict.String()
		}
		return out
	}
	// Selected only by ClusterNetworkPolicies, not isolated by any
	// NetworkPolicy: still dispatched, into their tier chains.
	want := map[string]string{"10.244.1.10": "jump " + a.Tiers, "10.244.1.11": "jump " + nft.NamesFor(nft.Egress, "x/b").Tiers}
	if diff := cmp.Diff(want, jumps(nft.MapEgressV4)); diff != "" {
		t.Errorf("egress dispatch (-want +got):\n%s", diff)
	}
	if got := jumps(nft.MapIngressV4)["10.244.1.11"]; got != "jump "+b.Tiers {
		t.Errorf("x/b ingress dispatch = %q, want a jump into %s", got, b.Tiers)
	}
	if _, ok := rs.Chains[a.Chain]; ok {
		t.Errorf("x/a has an allow-list chain %s, but no NetworkPolicy isolates it", a.Chain)
	}
	// Both pods have the same policies: one set of maps.
	var maps []string
	for name, s := range rs.Sets {
		if s.IsVerdictMap && strings.HasPrefix(name, "admin-out-") {
			maps = append(maps, name)
		}
	}
	if len(maps) != 4 {
		t.Errorf("Admin egress maps %v, want the four maps x/a and x/b share", maps)
	}
}

func TestCompile_ClusterNetworkPolicy_Warnings(t *testing.T) {
	snap := cnpFixtureSnapshot(cnps(
		admin("a-accept", 5, subjX+`, ingress: [{action: Accept, from: [{namespaces: {matchLabels: {ns: "y"}}}]}]`),
		admin("b-deny", 5, subjX+`, ingress: [{action: Deny, from: [{namespaces: {}}]}]`),
		// Same priority, but z has no pod peer (z/h is host-network): nothing
		// in common, no warning.
		admin("c-other", 5, subjX+`, ingress: [{action: Deny, from: [{namespaces: {matchLabels: {ns: z}}}]}]`),
		admin("dns", 1, subjX+`, egress: [{action: Accept, to: [{domainNames: [example.com]}, {networks: [192.0.2.0/24]}]}]`)))
	_, warnings := Compile(snap)
	want := []Warning{
		{Policy: "a-accept", Message: `ClusterNetworkPolicies "a-accept" and "b-deny", both Admin tier priority 5, have overlapping ingress rules ` +
			`for pods on this node: the API leaves their order undefined; here the name that sorts first, "a-accept", decides`},
		{Policy: "dns", Message: "egress rule 0: peer 0: domainNames peers are not supported: this peer matches nothing"},
	}
	if diff := cmp.Diff(want, warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	// The tie-break: the name that sorts first decides, the rest of the
	// rule (networks) still applies.
	runCNPFlowCases(t, []cnpFlowCase{{
		name: "equal priority: the name that sorts first",
		cnps: snap.ClusterNetworkPolicies,
		flows: []flow{
			{"10.244.1.20 -> 10.244.1.10 TCP/80", true},  // a-accept before b-deny
			{"10.244.1.11 -> 10.244.1.10 TCP/80", false}, // b-deny
		},
	}})
}

// TestCluster_ClusterNetworkPolicyChangesAreElements: a policy change and a
// peer pod arriving touch the elements of the maps they reach and nothing
// else; every other pod keeps its chains and maps by pointer, so Diff
// skips them.
func TestCluster_ClusterNetworkPolicyChangesAreElements(t *testing.T) {
	denyFrom := func(ns string) *policyv1beta1.ClusterNetworkPolicy {
		return admin("x-in", 10, subjX+`, ingress: [{action: Deny, from: [{namespaces: {matchLabels: {ns: `+ns+`}}}]}]`)
	}
	yOut := admin("y-out", 10, `subject: {namespaces: {matchLabels: {ns: "y"}}}, egress: [{action: Deny, to: [{networks: [192.0.2.0/24]}]}]`)
	c := NewNodeCompiler(node1)
	c.LoadSnapshot(cnpFixtureSnapshot(cnps(denyFrom(`"y"`), yOut)))
	before, _ := c.Compile()
	ya := nft.NamesFor(nft.Egress, "y/a")

	check := func(what string, after *nft.Ruleset, wantOps map[nft.OpKind]int) {
		t.Helper()
		if after.Chains[ya.Tiers] != before.Chains[ya.Tiers] {
			t.Errorf("%s: y/a's tier chain was rebuilt", what)
		}
		ops := nft.Diff(before, after)
		got := map[nft.OpKind]int{}
		for _, op := range ops {
			got[op.Kind]++
			if !strings.HasPrefix(op.Name, "admin-in-") {
				t.Errorf("%s: op %v outside x's Admin ingress maps", what, op)
			}
		}
		if diff := cmp.Diff(wantOps, got); diff != "" {
			t.Errorf("%s: ops (-want +got):\n%s", what, diff)
		}
		before = after
	}

	// A new peer: y/c appears on node-2 (10.244.2.30).
	c.SetPod(&Pod{Namespace: "y", Name: "c", NodeName: node2, Labels: map[string]string{"pod": "c"}, Phase: "Running", IPs: ips("10.244.2.30")})
	after, _ := c.Compile()
	check("peer pod added", after, map[nft.OpKind]int{nft.OpAddElements: 1})

	// The policy now denies z (no pod peer) instead of y: y's pods leave.
	c.SetClusterNetworkPolicy(denyFrom("z"))
	after, _ = c.Compile()
	check("policy changed", after, map[nft.OpKind]int{nft.OpDeleteElements: 1})
}

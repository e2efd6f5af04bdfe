package policy

// Flow tests: each case compiles the fixture cluster (IP plan in
// fixtures_test.go) for both nodes and traces connection-opening packets
// through the resulting rulesets. A failing flow prints its packet trace.

import (
	"strings"
	"testing"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

type flow struct {
	pkt  string // "SRC -> DST PROTO/PORT"
	want bool   // connects
}

type flowCase struct {
	name     string
	policies []string
	flows    []flow
}

func runFlowCases(t *testing.T, cases []flowCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			snap := fixtureSnapshot(node1, tc.policies...)
			for _, f := range tc.flows {
				got, steps := flowVerdict(t, snap, pkt(f.pkt))
				if got != f.want {
					t.Errorf("%s: connects=%v, want %v; trace:\n\t%s", f.pkt, got, f.want, strings.Join(steps, "\n\t"))
				}
			}
		})
	}
}

const (
	denyIngressX = `
metadata: {namespace: x, name: deny-ingress}
spec: {podSelector: {}, policyTypes: [Ingress]}`
	denyEgressX = `
metadata: {namespace: x, name: deny-egress}
spec: {podSelector: {}, policyTypes: [Egress]}`
)

func TestCompile_NoPolicyAllowsEverything(t *testing.T) {
	runFlowCases(t, []flowCase{{
		name: "no policies",
		flows: []flow{
			{"10.244.1.10 -> 10.244.1.11 TCP/80", true},
			{"10.244.1.10 -> 10.244.2.12 UDP/53", true},
			{"192.0.2.1 -> 10.244.1.11 SCTP/80", true},
			{"10.244.1.10 -> 10.244.1.11 ICMP/0", true},
		},
	}})
}

func TestCompile_DefaultDeny(t *testing.T) {
	runFlowCases(t, []flowCase{
		{
			name:     "deny ingress isolates every pod of the namespace, same node and across nodes",
			policies: []string{denyIngressX},
			flows: []flow{
				{"10.244.1.10 -> 10.244.1.11 TCP/80", false}, // x/a -> x/b same node
				{"10.244.1.20 -> 10.244.2.12 TCP/80", false}, // y/a -> x/c across nodes
				{"10.244.1.11 -> 10.244.1.20 TCP/80", true},  // x/b -> y/a: y not isolated, x egress open
				{"192.0.2.1 -> 10.244.1.10 UDP/53", false},
				{"2001:db8::1 -> fd00:10:244:1::10 TCP/80", false},
				{"10.244.1.10 -> 10.244.1.11 ICMP/0", false},
			},
		},
		{
			name:     "deny egress blocks the source, also towards non-isolated pods",
			policies: []string{denyEgressX},
			flows: []flow{
				{"10.244.1.10 -> 10.244.1.20 TCP/80", false},
				{"10.244.1.10 -> 192.0.2.1 UDP/53", false},
				{"10.244.1.20 -> 10.244.1.10 TCP/80", true},
				{"fd00:10:244:1::10 -> 2001:db8::1 TCP/443", false},
			},
		},
		{
			name: "egress-only policyTypes does not isolate ingress",
			policies: []string{`
metadata: {namespace: x, name: egress-only}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{}]`},
			flows: []flow{
				{"10.244.1.20 -> 10.244.1.10 TCP/80", true},
				{"10.244.1.10 -> 10.244.2.21 TCP/80", true},
			},
		},
	})
}

func TestCompile_BothDirectionsCount(t *testing.T) {
	allowEgressToB := `
metadata: {namespace: x, name: a-to-anything}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{}]`
	runFlowCases(t, []flowCase{{
		name:     "source egress allows, destination ingress denies: blocked on the same node",
		policies: []string{allowEgressToB, denyIngressX},
		flows: []flow{
			{"10.244.1.10 -> 10.244.1.11 TCP/80", false},
			{"10.244.1.10 -> 10.244.2.12 TCP/80", false},
			{"10.244.1.10 -> 10.244.1.20 TCP/80", true},
		},
	}, {
		name: "destination allows, source egress denies",
		policies: []string{denyEgressX, `
metadata: {namespace: y, name: allow-all-in}
spec: {podSelector: {}, ingress: [{}]}`},
		flows: []flow{
			{"10.244.1.10 -> 10.244.1.20 TCP/80", false},
			{"10.244.1.10 -> 10.244.2.21 TCP/80", false},
		},
	}})
}

func TestCompile_Selectors(t *testing.T) {
	runFlowCases(t, []flowCase{
		{
			name: "podSelector alone means the policy's own namespace",
			policies: []string{`
metadata: {namespace: x, name: from-a}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}]}]`},
			flows: []flow{
				{"10.244.1.10 -> 10.244.1.11 TCP/80", true},  // x/a
				{"10.244.1.20 -> 10.244.1.11 TCP/80", false}, // y/a: other namespace
				{"10.244.2.12 -> 10.244.1.11 TCP/80", false}, // x/c
			},
		},
		{
			name: "namespaceSelector alone means every pod of the matching namespaces",
			policies: []string{`
metadata: {namespace: x, name: from-y}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}]}]`},
			flows: []flow{
				{"10.244.1.20 -> 10.244.1.11 TCP/80", true},
				{"10.244.2.21 -> 10.244.1.10 UDP/53", true},
				{"10.244.1.10 -> 10.244.1.11 TCP/80", false},
				{"192.0.2.1 -> 10.244.1.11 TCP/80", false},
			},
		},
		{
			name: "both selectors in one peer is AND",
			policies: []string{`
metadata: {namespace: x, name: and}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}, podSelector: {matchLabels: {pod: b}}}]}]`},
			flows: []flow{
				{"10.244.2.21 -> 10.244.1.10 TCP/80", true},  // y/b
				{"10.244.1.20 -> 10.244.1.10 TCP/80", false}, // y/a
				{"10.244.1.11 -> 10.244.1.10 TCP/80", false}, // x/b
			},
		},
		{
			name: "two peers is OR",
			policies: []string{`
metadata: {namespace: x, name: or}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}, {podSelector: {matchLabels: {pod: b}}}]}]`},
			flows: []flow{
				{"10.244.2.21 -> 10.244.1.10 TCP/80", true},
				{"10.244.1.20 -> 10.244.1.10 TCP/80", true},
				{"10.244.1.11 -> 10.244.1.10 TCP/80", true},
				{"10.244.2.12 -> 10.244.1.10 TCP/80", false},
			},
		},
		{
			name: "matchExpressions",
			policies: []string{`
metadata: {namespace: x, name: expr}
spec:
  podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}
      podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [b]}]}`},
			flows: []flow{
				{"10.244.1.20 -> 10.244.1.10 TCP/80", true},  // y/a (team label)
				{"10.244.2.21 -> 10.244.1.11 TCP/80", false}, // y/b: NotIn b
				{"10.244.1.20 -> 10.244.2.12 TCP/80", true},  // x/c not selected
			},
		},
		{
			name: "empty namespaceSelector is every namespace's pods, not outside addresses",
			policies: []string{`
metadata: {namespace: x, name: all-ns}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {}}]}]`},
			flows: []flow{
				{"10.244.2.21 -> 10.244.1.10 TCP/80", true},
				{"10.244.1.11 -> 10.244.1.10 TCP/80", true},
				{"192.0.2.1 -> 10.244.1.10 TCP/80", false},
				{"198.18.0.12 -> 10.244.1.10 TCP/80", false}, // hostNetwork pod is no peer
			},
		},
		{
			name: "empty peer list admits everyone",
			policies: []string{`
metadata: {namespace: x, name: allow-all}
spec: {podSelector: {}, ingress: [{}]}`, denyIngressX},
			flows: []flow{
				{"192.0.2.1 -> 10.244.1.10 TCP/80", true},
				{"2001:db8::1 -> fd00:10:244:1::10 UDP/9", true},
				{"10.244.1.20 -> 10.244.1.11 ICMP/0", true},
			},
		},
	})
}

func TestCompile_IPBlock(t *testing.T) {
	runFlowCases(t, []flowCase{
		{
			name: "cidr with except matches pod IPs too; an IP in both is outside",
			policies: []string{`
metadata: {namespace: x, name: cidr}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.2.0/24, 10.244.1.11/32]}}]}]`},
			flows: []flow{
				{"10.244.1.10 -> 10.244.1.20 TCP/80", true},
				{"10.244.1.10 -> 10.244.1.11 TCP/80", false},
				{"10.244.1.10 -> 10.244.2.12 TCP/80", false},
				{"10.244.1.10 -> 192.0.2.1 TCP/80", false},
			},
		},
		{
			name: "except only applies to its own peer",
			policies: []string{`
metadata: {namespace: x, name: cidr2}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 10.244.0.0/16, except: [10.244.2.0/24]}
    - podSelector: {matchLabels: {pod: c}}`},
			flows: []flow{
				{"10.244.1.10 -> 10.244.2.12 TCP/80", true},
				{"10.244.1.10 -> 10.244.2.21 TCP/80", false},
			},
		},
		{
			name: "IPv6 block matches the v6 address of a dual-stack pod only",
			policies: []string{`
metadata: {namespace: x, name: v6}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{ipBlock: {cidr: "2001:db8::/32"}}]}]`},
			flows: []flow{
				{"2001:db8::1 -> fd00:10:244:1::10 TCP/80", true},
				{"192.0.2.1 -> 10.244.1.10 TCP/80", false},
			},
		},
		{
			name: "ipBlock admits a hostNetwork pod's address as a plain IP",
			policies: []string{`
metadata: {namespace: x, name: nodes}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 198.18.0.0/24}}]}]`},
			flows: []flow{
				{"198.18.0.12 -> 10.244.1.10 TCP/80", true},
				{"10.244.2.21 -> 10.244.1.10 TCP/80", false},
			},
		},
	})
}

func TestCompile_Ports(t *testing.T) {
	runFlowCases(t, []flowCase{
		{
			name: "numeric port, protocol defaults to TCP",
			policies: []string{`
metadata: {namespace: x, name: p80}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 80}]}]`},
			flows: []flow{
				{"10.244.1.20 -> 10.244.1.10 TCP/80", true},
				{"10.244.1.20 -> 10.244.1.10 TCP/81", false},
				{"10.244.1.20 -> 10.244.1.10 UDP/80", false},
				{"10.244.1.20 -> 10.244.1.10 SCTP/80", false},
				{"10.244.1.20 -> 10.244.1.10 ICMP/0", false},
			},
		},
		{
			name: "a UDP-only rule never admits TCP, SCTP is not TCP",
			policies: []string{`
metadata: {namespace: x, name: udp}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 53, protocol: UDP}, {protocol: SCTP}]}]`},
			flows: []flow{
				{"10.244.1.20 -> 10.244.1.10 UDP/53", true},
				{"10.244.1.20 -> 10.244.1.10 TCP/53", false},
				{"10.244.1.20 -> 10.244.1.10 SCTP/80", true},
				{"10.244.1.20 -> 10.244.1.10 TCP/80", false},
			},
		},
		{
			name: "endPort range is inclusive",
			policies: []string{`
metadata: {namespace: x, name: range}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 8000, endPort: 8010}]}]`},
			flows: []flow{
				{"10.244.1.20 -> 10.244.1.10 TCP/7999", false},
				{"10.244.1.20 -> 10.244.1.10 TCP/8000", true},
				{"10.244.1.20 -> 10.244.1.10 TCP/8010", true},
				{"10.244.1.20 -> 10.244.1.10 TCP/8011", false},
			},
		},
		{
			name: "ingress named port resolves on the selected pod, per protocol",
			policies: []string{`
metadata: {namespace: x, name: named}
spec:
  podSelector: {}
  ingress: [{ports: [{port: serve-81-tcp}, {port: dns, protocol: UDP}, {port: dns}]}]`},
			flows: []flow{
				{"10.244.1.20 -> 10.244.1.10 TCP/81", true},
				{"10.244.1.20 -> 10.244.1.10 UDP/53", true},
				{"10.244.1.20 -> 10.244.1.10 TCP/53", false}, // dns is declared for UDP only
				{"10.244.1.20 -> 10.244.2.12 TCP/81", false}, // x/c does not declare serve-81-tcp
				{"10.244.1.20 -> 10.244.1.10 TCP/80", false},
			},
		},
		{
			name: "egress named port resolves on each destination pod",
			policies: []string{`
metadata: {namespace: x, name: named-egress}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{ports: [{port: serve-80-tcp}]}]`},
			flows: []flow{
				{"10.244.1.10 -> 10.244.1.20 TCP/8080", true}, // y/a declares it as 8080
				{"10.244.1.10 -> 10.244.1.20 TCP/80", false},
				{"10.244.1.10 -> 10.244.2.21 TCP/80", true},
				{"10.244.1.10 -> 192.0.2.1 TCP/80", false}, // not a pod: no name to resolve
			},
		},
		{
			name: "overlapping port rules from several policies fold together",
			policies: []string{`
metadata: {namespace: x, name: one}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: "y"}}}], ports: [{port: 80, endPort: 90}]}]`, `
metadata: {namespace: x, name: two}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}], ports: [{port: 85, endPort: 100}]}, {from: [{ipBlock: {cidr: 10.244.2.21/32}}]}]`},
			flows: []flow{
				{"10.244.1.20 -> 10.244.1.10 TCP/80", true},
				{"10.244.1.20 -> 10.244.1.10 TCP/95", false},
				{"10.244.1.11 -> 10.244.1.10 TCP/95", true},
				{"10.244.1.11 -> 10.244.1.10 TCP/84", false},
				{"10.244.2.21 -> 10.244.1.10 UDP/7", true},
			},
		},
	})
}

func TestCompile_PodsOutsidePolicy(t *testing.T) {
	t.Run("hostNetwork pods are never selected", func(t *testing.T) {
		snap := fixtureSnapshot(node2, `
metadata: {namespace: z, name: deny}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}`)
		rs, _ := Compile(snap)
		if want := len(nft.NewSkeleton().Chains); len(rs.Chains) != want {
			t.Errorf("got %d chains, want only the skeleton's %d", len(rs.Chains), want)
		}
	})
	t.Run("terminated pods leave every set at once", func(t *testing.T) {
		snap := fixtureSnapshot(node1, denyIngressX, `
metadata: {namespace: y, name: from-b}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}]}]`)
		snap.Pods[1].Phase = "Succeeded" // x/b
		rs, _ := Compile(snap)
		if strings.Contains(rs.Dump(), "10.244.1.11") {
			t.Errorf("terminated pod x/b's address is still in the ruleset:\n%s", rs.Dump())
		}
		if got, _ := flowVerdict(t, snap, pkt("10.244.2.21 -> 10.244.1.20 TCP/80")); !got {
			t.Errorf("y/b -> y/a should still connect")
		}
	})
}

func TestCompile_Warnings(t *testing.T) {
	snap := fixtureSnapshot(node2, `
metadata: {namespace: x, name: named}
spec:
  podSelector: {}
  ingress: [{ports: [{port: serve-81-tcp}, {port: 80}]}]`)
	rs, warnings := Compile(snap)
	want := Warning{Namespace: "x", Policy: "named", Message: `ingress named port "serve-81-tcp"/TCP is not declared by selected pod x/c: that port entry admits nothing to it`}
	if len(warnings) != 1 || warnings[0] != want {
		t.Errorf("warnings = %+v, want [%+v]", warnings, want)
	}
	// The rest of the policy is still enforced.
	if got, _ := flowVerdict(t, snap, pkt("10.244.2.21 -> 10.244.2.12 TCP/80")); !got {
		t.Errorf("port 80 should still be admitted")
	}
	if err := nfttest.Validate(rs); err != nil {
		t.Error(err)
	}
}

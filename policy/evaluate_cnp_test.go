// IP plan of the ClusterNetworkPolicy evaluator tests (cnpFixture): the
// plan of evaluate_test.go (evalFixture), plus its nodes:
//
//	namespace prod  {team: prod, env: production}
//	namespace dev   {team: dev,  env: test}
//	namespace other {}                      (no labels)
//	namespace ghost                         (not in the snapshot)
//
//	pod             node    IPs                        labels                   ports
//	prod/web        node-a  10.0.1.10, fd00:1::10      app=web, tier=frontend   http TCP/80, dns UDP/53
//	prod/db         node-a  10.0.1.20                  app=db,  tier=backend    sql TCP/5432 (no protocol), metrics TCP/9090, stats UDP/9090
//	prod/api        node-b  10.0.2.30, fd00:2::30      app=api, tier=backend    metrics TCP/9100, sig SCTP/3868
//	dev/client      node-b  10.0.2.40, fd00:2::40      app=client, tier=frontend
//	dev/tool        node-a  10.0.1.50                  app=tool
//	other/x         node-b  10.0.2.60                  (none)
//	ghost/g         node-a  10.0.1.70                  app=web
//	prod/hostnet    node-a  192.168.0.1 (hostNetwork)  app=web                  http TCP/80
//	prod/done       node-a  10.0.1.99 (Succeeded)      app=web                  http TCP/80
//	prod/pending    node-b  (no IP yet)                app=web
//
//	node    labels                                   addresses (status.addresses)
//	node-a  zone=a, kubernetes.io/hostname=node-a    192.168.0.1 (the host-network pod's too), fd00:ff::a
//	node-b  zone=b, kubernetes.io/hostname=node-b    192.168.0.2
//
//	not pods, not nodes: 203.0.113.5 and 2001:db8::5 (external).
package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/yaml"
)

const (
	cnpIPNodeA6 = "fd00:ff::a"

	cAccept = policyv1beta1.ClusterNetworkPolicyRuleActionAccept
	cDeny   = policyv1beta1.ClusterNetworkPolicyRuleActionDeny
	cPass   = policyv1beta1.ClusterNetworkPolicyRuleActionPass

	// Subjects.
	subjAll  = `subject: {namespaces: {}}`
	subjProd = `subject: {namespaces: {matchLabels: {team: prod}}}`
	subjWeb  = `subject: {pods: {namespaceSelector: {matchLabels: {team: prod}}, podSelector: {matchLabels: {app: web}}}}`
	subjDB   = `subject: {pods: {namespaceSelector: {matchLabels: {team: prod}}, podSelector: {matchLabels: {app: db}}}}`
)

func cnpFixture() *Snapshot {
	s := evalFixture()
	s.Nodes = []Node{
		{Name: "node-a", Labels: map[string]string{"zone": "a", "kubernetes.io/hostname": "node-a"},
			Addresses: ips(evIPHostnet, cnpIPNodeA6)},
		{Name: "node-b", Labels: map[string]string{"zone": "b", "kubernetes.io/hostname": "node-b"},
			Addresses: ips(evIPNodeB)},
	}
	return s
}

func ips(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// --- builders ---

// mkCNP builds a ClusterNetworkPolicy; spec is the rest of its spec in YAML
// flow style: the subject, then ingress and/or egress.
func mkCNP(tier policyv1beta1.Tier, name string, priority int32, spec string) *policyv1beta1.ClusterNetworkPolicy {
	doc := fmt.Sprintf("{metadata: {name: %s}, spec: {tier: %s, priority: %d, %s}}", name, tier, priority, spec)
	c := &policyv1beta1.ClusterNetworkPolicy{}
	if err := yaml.UnmarshalStrict([]byte(doc), c); err != nil {
		panic(fmt.Sprintf("%v in\n%s", err, doc))
	}
	return c
}

func admin(name string, priority int32, spec string) *policyv1beta1.ClusterNetworkPolicy {
	return mkCNP(policyv1beta1.AdminTier, name, priority, spec)
}

func baseline(name string, priority int32, spec string) *policyv1beta1.ClusterNetworkPolicy {
	return mkCNP(policyv1beta1.BaselineTier, name, priority, spec)
}

func cnps(c ...*policyv1beta1.ClusterNetworkPolicy) []*policyv1beta1.ClusterNetworkPolicy { return c }

func nps(p ...*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy { return p }

// cAdm and cBase are the expected matching rule (unnamed).
func cAdm(policy string, priority int32, index int, action policyv1beta1.ClusterNetworkPolicyRuleAction) *CNPRule {
	return &CNPRule{Policy: policy, Tier: policyv1beta1.AdminTier, Priority: priority, Index: index, Action: action}
}

func cBase(policy string, priority int32, index int, action policyv1beta1.ClusterNetworkPolicyRuleAction) *CNPRule {
	return &CNPRule{Policy: policy, Tier: policyv1beta1.BaselineTier, Priority: priority, Index: index, Action: action}
}

// cv is a whole Verdict; Allowed is both directions' (not for self traffic).
func cv(egress, ingress DirectionVerdict, w ...Warning) Verdict {
	return Verdict{Allowed: egress.Allowed && ingress.Allowed, Egress: egress, Ingress: ingress, Warnings: w}
}

var cOpen = DirectionVerdict{Allowed: true}

func cWarn(policy, msg string) Warning { return Warning{Policy: policy, Message: msg} }

// --- runner ---

type cnpCase struct {
	name string
	cnps []*policyv1beta1.ClusterNetworkPolicy
	nps  []*networkingv1.NetworkPolicy
	edit func(*Snapshot) // optional change to the fixture
	pkt  Packet
	want Verdict
	// decided, when set, is "egress decider/ingress decider" (DecidedBy).
	decided string
}

func runCNPCases(t *testing.T, cases []cnpCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := cnpFixture()
			s.ClusterNetworkPolicies = tc.cnps
			s.Policies = tc.nps
			if tc.edit != nil {
				tc.edit(s)
			}
			got := Evaluate(s, tc.pkt)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Evaluate(%v) mismatch (-want +got):\n%s", tc.pkt, diff)
			}
			if tc.decided != "" {
				if d := string(got.Egress.DecidedBy()) + "/" + string(got.Ingress.DecidedBy()); d != tc.decided {
					t.Errorf("Evaluate(%v) decided by %s, want %s", tc.pkt, d, tc.decided)
				}
			}
		})
	}
}

// --- tiers ---

func TestEvaluate_ClusterNetworkPolicy_Tiers(t *testing.T) {
	npAllowDBToWeb := evIngressOnly("prod", "allow-db", evSel("app", "web"), evIn(evPeers(evPodPeer(evSel("app", "db"))), nil))
	npDenyWeb := evIngressOnly("prod", "deny-web", evSel("app", "web"))
	npDenyWebEgress := evEgressOnly("prod", "deny-web-egress", evSel("app", "web"))
	denyFromProd := admin("deny-from-prod", 10, subjWeb+`, ingress: [{action: Deny, from: [{namespaces: {matchLabels: {team: prod}}}]}]`)
	acceptFromProd := admin("accept-from-prod", 10, subjWeb+`, ingress: [{action: Accept, from: [{namespaces: {matchLabels: {team: prod}}}]}]`)
	passFromProd := admin("pass-from-prod", 10, subjWeb+`, ingress: [{action: Pass, from: [{namespaces: {matchLabels: {team: prod}}}]}]`)
	acceptAllLater := admin("accept-all", 20, subjAll+`, ingress: [{action: Accept, from: [{namespaces: {}}]}]`)
	baseDenyIngress := baseline("base-deny-in", 1, subjAll+`, ingress: [{action: Deny, from: [{namespaces: {}}]}]`)
	baseAcceptIngress := baseline("base-accept-in", 1, subjAll+`, ingress: [{action: Accept, from: [{namespaces: {}}]}]`)
	baseDenyEgress := baseline("base-deny-out", 1, subjAll+`, egress: [{action: Deny, to: [{networks: [0.0.0.0/0]}]}]`)
	dbToWeb := evPkt(evTCP, evIPDB, evIPWeb, 80)

	runCNPCases(t, []cnpCase{
		{name: "nothing at all: default allow", pkt: dbToWeb, want: cv(cOpen, cOpen), decided: "Default/Default"},
		{name: "Admin Deny over NetworkPolicy allow", cnps: cnps(denyFromProd), nps: nps(npAllowDBToWeb), pkt: dbToWeb,
			want: cv(cOpen, DirectionVerdict{Isolated: true, By: []string{"prod/allow-db"},
				Admin: cAdm("deny-from-prod", 10, 0, cDeny)}),
			decided: "Default/Admin"},
		{name: "Admin Accept over NetworkPolicy deny", cnps: cnps(acceptFromProd), nps: nps(npDenyWeb), pkt: dbToWeb,
			want:    cv(cOpen, DirectionVerdict{Isolated: true, Allowed: true, Admin: cAdm("accept-from-prod", 10, 0, cAccept)}),
			decided: "Default/Admin"},
		{name: "Admin Pass chains into NetworkPolicy, which allows", cnps: cnps(passFromProd, baseDenyIngress), nps: nps(npAllowDBToWeb), pkt: dbToWeb,
			want: cv(cOpen, DirectionVerdict{Isolated: true, Allowed: true, By: []string{"prod/allow-db"},
				Admin: cAdm("pass-from-prod", 10, 0, cPass)}),
			decided: "Default/NetworkPolicy"},
		{name: "Admin Pass skips the later Admin Accept; NetworkPolicy denies", cnps: cnps(acceptAllLater, passFromProd), nps: nps(npDenyWeb), pkt: dbToWeb,
			want:    cv(cOpen, DirectionVerdict{Isolated: true, Admin: cAdm("pass-from-prod", 10, 0, cPass)}),
			decided: "Default/NetworkPolicy"},
		{name: "without the Pass the later Admin Accept decides", cnps: cnps(acceptAllLater), nps: nps(npDenyWeb), pkt: dbToWeb,
			want: cv(cOpen, DirectionVerdict{Isolated: true, Allowed: true, Admin: cAdm("accept-all", 20, 0, cAccept)})},
		{name: "Admin Pass chains into Baseline when no NetworkPolicy isolates", cnps: cnps(passFromProd, baseDenyIngress), pkt: dbToWeb,
			want: cv(cOpen, DirectionVerdict{Admin: cAdm("pass-from-prod", 10, 0, cPass),
				Baseline: cBase("base-deny-in", 1, 0, cDeny)}),
			decided: "Default/Baseline"},
		{name: "Baseline Deny under an allowing isolating NetworkPolicy does not apply", cnps: cnps(baseDenyIngress), nps: nps(npAllowDBToWeb), pkt: dbToWeb,
			want:    cv(cOpen, DirectionVerdict{Isolated: true, Allowed: true, By: []string{"prod/allow-db"}}),
			decided: "Default/NetworkPolicy"},
		{name: "Baseline Accept under a denying isolating NetworkPolicy does not apply", cnps: cnps(baseAcceptIngress), nps: nps(npDenyWeb), pkt: dbToWeb,
			want: cv(cOpen, DirectionVerdict{Isolated: true})},
		{name: "Baseline applies to egress when NetworkPolicy isolates ingress only", cnps: cnps(baseDenyEgress), nps: nps(npDenyWeb),
			pkt:  evPkt(evTCP, evIPWeb, evIPExt, 443),
			want: cv(DirectionVerdict{Baseline: cBase("base-deny-out", 1, 0, cDeny)}, cOpen), decided: "Baseline/Default"},
		{name: "Baseline applies to ingress when NetworkPolicy isolates egress only", cnps: cnps(baseDenyIngress), nps: nps(npDenyWebEgress),
			pkt:  dbToWeb,
			want: cv(cOpen, DirectionVerdict{Baseline: cBase("base-deny-in", 1, 0, cDeny)})},
		{name: "Baseline Pass goes to the default: allow",
			cnps: cnps(baseline("base-pass", 0, subjAll+`, ingress: [{action: Pass, from: [{namespaces: {}}]}]`), baseDenyIngress),
			pkt:  dbToWeb, want: cv(cOpen, DirectionVerdict{Allowed: true, Baseline: cBase("base-pass", 0, 0, cPass)}),
			decided: "Default/Default"},
		{name: "a CNP never isolates: unmatched traffic falls through to the default",
			cnps: cnps(admin("deny-from-dev", 10, subjWeb+`, ingress: [{action: Deny, from: [{namespaces: {matchLabels: {team: dev}}}]}]`)),
			pkt:  dbToWeb, want: cv(cOpen, cOpen), decided: "Default/Default"},
		{name: "unmatched Admin falls through to Baseline",
			cnps: cnps(admin("accept-from-dev", 10, subjWeb+`, ingress: [{action: Accept, from: [{namespaces: {matchLabels: {team: dev}}}]}]`), baseDenyIngress),
			pkt:  dbToWeb, want: cv(cOpen, DirectionVerdict{Baseline: cBase("base-deny-in", 1, 0, cDeny)})},
		{name: "Admin tier first whatever the priority numbers",
			cnps: cnps(baseline("base-deny-0", 0, subjAll+`, ingress: [{action: Deny, from: [{namespaces: {}}]}]`),
				admin("admin-accept-1000", 1000, subjAll+`, ingress: [{action: Accept, from: [{namespaces: {}}]}]`)),
			pkt: dbToWeb, want: cv(cOpen, DirectionVerdict{Allowed: true, Admin: cAdm("admin-accept-1000", 1000, 0, cAccept)})},
	})
}

func TestEvaluate_ClusterNetworkPolicy_BothDirections(t *testing.T) {
	acceptEgressWeb := admin("web-out", 10, subjWeb+`, egress: [{action: Accept, to: [{namespaces: {}}]}]`)
	denyIngressDB := admin("db-in", 10, subjDB+`, ingress: [{action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}]}]`)
	baseDenyEgressClient := baseline("client-out", 5, `subject: {namespaces: {matchLabels: {team: dev}}}, egress: [{action: Deny, to: [{namespaces: {}}]}]`)
	acceptIngressWeb := admin("web-in", 10, subjWeb+`, ingress: [{action: Accept, from: [{namespaces: {}}]}]`)
	runCNPCases(t, []cnpCase{
		{name: "Admin egress Accept does not override the destination's ingress Deny",
			cnps: cnps(acceptEgressWeb, denyIngressDB), pkt: evPkt(evTCP, evIPWeb, evIPDB, 5432),
			want: cv(DirectionVerdict{Allowed: true, Admin: cAdm("web-out", 10, 0, cAccept)},
				DirectionVerdict{Admin: cAdm("db-in", 10, 0, cDeny)}),
			decided: "Admin/Admin"},
		{name: "Admin ingress Accept does not override the source's Baseline egress Deny",
			cnps: cnps(acceptIngressWeb, baseDenyEgressClient), pkt: evPkt(evTCP, evIPClient, evIPWeb, 80),
			want: cv(DirectionVerdict{Baseline: cBase("client-out", 5, 0, cDeny)},
				DirectionVerdict{Allowed: true, Admin: cAdm("web-in", 10, 0, cAccept)})},
		{name: "both Accept", cnps: cnps(acceptEgressWeb, acceptIngressWeb), pkt: evPkt(evTCP, evIPWeb, "10.0.2.11", 80),
			edit: func(s *Snapshot) { // a second pod with web's labels, to connect to
				s.Pods = append(s.Pods, Pod{Namespace: "prod", Name: "web2", NodeName: "node-b", Phase: "Running",
					IPs: ips("10.0.2.11"), Labels: map[string]string{"app": "web"}})
			},
			want: cv(DirectionVerdict{Allowed: true, Admin: cAdm("web-out", 10, 0, cAccept)},
				DirectionVerdict{Allowed: true, Admin: cAdm("web-in", 10, 0, cAccept)})},
	})
}

// --- subject ---

func TestEvaluate_ClusterNetworkPolicy_Subject(t *testing.T) {
	denyIn := func(name, subject string) *policyv1beta1.ClusterNetworkPolicy {
		return admin(name, 10, subject+`, ingress: [{action: Deny, from: [{namespaces: {}}]}]`)
	}
	denied := func(name string) DirectionVerdict { return DirectionVerdict{Admin: cAdm(name, 10, 0, cDeny)} }
	runCNPCases(t, []cnpCase{
		{name: "namespaces subject selects a pod in a matching namespace", cnps: cnps(denyIn("prod", subjProd)),
			pkt: evPkt(evTCP, evIPClient, evIPDB, 5432), want: cv(cOpen, denied("prod"))},
		{name: "namespaces subject does not select a pod elsewhere", cnps: cnps(denyIn("prod", subjProd)),
			pkt: evPkt(evTCP, evIPDB, evIPClient, 80), want: cv(cOpen, cOpen)},
		{name: "pods subject: namespace AND pod selector", cnps: cnps(denyIn("db", subjDB)),
			pkt: evPkt(evTCP, evIPClient, evIPDB, 5432), want: cv(cOpen, denied("db"))},
		{name: "pods subject: other pod of the namespace not selected", cnps: cnps(denyIn("db", subjDB)),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: cv(cOpen, cOpen)},
		{name: "pods subject: same labels in another namespace not selected",
			cnps: cnps(denyIn("web", subjWeb)), pkt: evPkt(evTCP, evIPClient, evIPGhost, 80), want: cv(cOpen, cOpen)},
		{name: "pods subject with an empty namespaceSelector: any namespace",
			cnps: cnps(denyIn("any-tool", `subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: tool}}}}`)),
			pkt:  evPkt(evTCP, evIPWeb, evIPTool, 80), want: cv(cOpen, denied("any-tool"))},
		{name: "namespace missing from the snapshot: not selected, not even by {}", cnps: cnps(denyIn("all", subjAll)),
			pkt: evPkt(evTCP, evIPWeb, evIPGhost, 80), want: cv(cOpen, cOpen)},
		{name: "host-network pod is not a subject (ingress)", cnps: cnps(denyIn("all", subjAll)),
			pkt: evPkt(evTCP, evIPWeb, evIPHostnet, 80), want: cv(cOpen, cOpen)},
		{name: "host-network pod is not a subject (egress)",
			cnps: cnps(admin("all-out", 10, subjAll+`, egress: [{action: Deny, to: [{networks: [0.0.0.0/0]}]}]`)),
			pkt:  evPkt(evTCP, evIPHostnet, evIPExt, 443), want: cv(cOpen, cOpen)},
		{name: "terminated pod is not a subject", cnps: cnps(denyIn("all", subjAll)),
			pkt: evPkt(evTCP, evIPWeb, evIPDone, 80), want: cv(cOpen, cOpen)},
		{name: "subject with both fields selects nothing",
			cnps: cnps(denyIn("both", `subject: {namespaces: {}, pods: {namespaceSelector: {}, podSelector: {}}}`)),
			pkt:  evPkt(evTCP, evIPClient, evIPDB, 5432), want: cv(cOpen, cOpen)},
		{name: "subject with no field selects nothing", cnps: cnps(denyIn("none", `subject: {}`)),
			pkt: evPkt(evTCP, evIPClient, evIPDB, 5432), want: cv(cOpen, cOpen)},
		{name: "subject label change takes effect", cnps: cnps(denyIn("prod", subjProd)),
			edit: func(s *Snapshot) { s.Namespaces[1].Labels["team"] = "prod" }, // dev joins team prod
			pkt:  evPkt(evTCP, evIPWeb, evIPClient, 80), want: cv(cOpen, denied("prod"))},
	})
}

// --- peers: namespaces, pods ---

func TestEvaluate_ClusterNetworkPolicy_PodPeers(t *testing.T) {
	denyFrom := func(peers string) *policyv1beta1.ClusterNetworkPolicy {
		return admin("deny", 10, subjDB+`, ingress: [{action: Deny, from: `+peers+`}]`)
	}
	denied := DirectionVerdict{Admin: cAdm("deny", 10, 0, cDeny)}
	runCNPCases(t, []cnpCase{
		{name: "namespaces peer matches a pod in a matching namespace", cnps: cnps(denyFrom(`[{namespaces: {matchLabels: {team: dev}}}]`)),
			pkt: evPkt(evTCP, evIPClient, evIPDB, 5432), want: cv(cOpen, denied)},
		{name: "namespaces peer does not match a pod elsewhere", cnps: cnps(denyFrom(`[{namespaces: {matchLabels: {team: dev}}}]`)),
			pkt: evPkt(evTCP, evIPWeb, evIPDB, 5432), want: cv(cOpen, cOpen)},
		{name: "namespaces peer with matchExpressions", cnps: cnps(denyFrom(`[{namespaces: {matchExpressions: [{key: env, operator: NotIn, values: [production]}]}}]`)),
			pkt: evPkt(evTCP, evIPX, evIPDB, 5432), want: cv(cOpen, denied)},
		{name: "pods peer: namespace AND pod selector", cnps: cnps(denyFrom(`[{pods: {namespaceSelector: {matchLabels: {team: dev}}, podSelector: {matchLabels: {app: tool}}}}]`)),
			pkt: evPkt(evTCP, evIPTool, evIPDB, 5432), want: cv(cOpen, denied)},
		{name: "pods peer: right namespace, wrong pod", cnps: cnps(denyFrom(`[{pods: {namespaceSelector: {matchLabels: {team: dev}}, podSelector: {matchLabels: {app: tool}}}}]`)),
			pkt: evPkt(evTCP, evIPClient, evIPDB, 5432), want: cv(cOpen, cOpen)},
		{name: "pods peer: right labels, wrong namespace", cnps: cnps(denyFrom(`[{pods: {namespaceSelector: {matchLabels: {team: dev}}, podSelector: {matchLabels: {app: web}}}}]`)),
			pkt: evPkt(evTCP, evIPWeb, evIPDB, 5432), want: cv(cOpen, cOpen)},
		{name: "two peers are OR", cnps: cnps(denyFrom(`[{namespaces: {matchLabels: {team: dev}}}, {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}]`)),
			pkt: evPkt(evTCP, evIPWeb, evIPDB, 5432), want: cv(cOpen, denied)},
		{name: "namespaces {} does not match a host-network pod", cnps: cnps(denyFrom(`[{namespaces: {}}]`)),
			pkt: evPkt(evTCP, evIPHostnet, evIPDB, 5432), want: cv(cOpen, cOpen)},
		{name: "pods {} does not match a host-network pod", cnps: cnps(denyFrom(`[{pods: {namespaceSelector: {}, podSelector: {}}}]`)),
			pkt: evPkt(evTCP, evIPHostnet, evIPDB, 5432), want: cv(cOpen, cOpen)},
		{name: "namespaces {} does not match an outside address", cnps: cnps(denyFrom(`[{namespaces: {}}]`)),
			pkt: evPkt(evTCP, evIPExt, evIPDB, 5432), want: cv(cOpen, cOpen)},
		{name: "namespaces {} does not match a pod of a namespace missing from the snapshot", cnps: cnps(denyFrom(`[{namespaces: {}}]`)),
			pkt: evPkt(evTCP, evIPGhost, evIPDB, 5432), want: cv(cOpen, cOpen)},
		{name: "egress pods peer",
			cnps: cnps(admin("out", 10, subjWeb+`, egress: [{action: Deny, to: [{pods: {namespaceSelector: {matchLabels: {team: prod}}, podSelector: {matchLabels: {tier: backend}}}}]}]`)),
			pkt:  evPkt(evTCP, evIPWeb, evIPAPI, 9100), want: cv(DirectionVerdict{Admin: cAdm("out", 10, 0, cDeny)}, cOpen)},
		{name: "egress namespaces peer, IPv6", cnps: cnps(admin("out", 10, subjWeb+`, egress: [{action: Deny, to: [{namespaces: {matchLabels: {team: dev}}}]}]`)),
			pkt: evPkt(evTCP, evIPWeb6, evIPClient6, 80), want: cv(DirectionVerdict{Admin: cAdm("out", 10, 0, cDeny)}, cOpen)},
	})
}

// --- peers: networks ---

func TestEvaluate_ClusterNetworkPolicy_Networks(t *testing.T) {
	denyTo := func(networks string) *policyv1beta1.ClusterNetworkPolicy {
		return admin("deny", 10, subjWeb+`, egress: [{action: Deny, to: [{networks: `+networks+`}]}]`)
	}
	denied := DirectionVerdict{Admin: cAdm("deny", 10, 0, cDeny)}
	runCNPCases(t, []cnpCase{
		{name: "0.0.0.0/0 matches a pod of the subject's own namespace", cnps: cnps(denyTo(`[0.0.0.0/0]`)),
			pkt: evPkt(evTCP, evIPWeb, evIPDB, 5432), want: cv(denied, cOpen)},
		{name: "a CIDR matches pod IPs of another namespace", cnps: cnps(denyTo(`[10.0.2.0/24]`)),
			pkt: evPkt(evTCP, evIPWeb, evIPClient, 80), want: cv(denied, cOpen)},
		{name: "a CIDR range: inside", cnps: cnps(denyTo(`[10.0.2.0/25]`)),
			pkt: evPkt(evTCP, evIPWeb, evIPX, 80), want: cv(denied, cOpen)},
		{name: "a CIDR range: outside", cnps: cnps(denyTo(`[10.0.2.0/28]`)),
			pkt: evPkt(evTCP, evIPWeb, evIPAPI, 80), want: cv(cOpen, cOpen)},
		{name: "a /32", cnps: cnps(denyTo(`[10.0.2.30/32]`)),
			pkt: evPkt(evTCP, evIPWeb, evIPAPI, 80), want: cv(denied, cOpen)},
		{name: "an outside address", cnps: cnps(denyTo(`[203.0.113.0/24]`)),
			pkt: evPkt(evUDP, evIPWeb, evIPExt, 53), want: cv(denied, cOpen)},
		{name: "several CIDRs are OR", cnps: cnps(denyTo(`[198.51.100.0/24, 203.0.113.0/24]`)),
			pkt: evPkt(evTCP, evIPWeb, evIPExt, 443), want: cv(denied, cOpen)},
		{name: "IPv4 CIDR does not match IPv6", cnps: cnps(denyTo(`[0.0.0.0/0]`)),
			pkt: evPkt(evTCP, evIPWeb6, evIPExt6, 443), want: cv(cOpen, cOpen)},
		{name: "IPv6 CIDR matches an IPv6 pod address", cnps: cnps(denyTo(`["fd00:2::/64"]`)),
			pkt: evPkt(evTCP, evIPWeb6, evIPAPI6, 80), want: cv(denied, cOpen)},
		{name: "::/0 matches every IPv6 destination", cnps: cnps(denyTo(`["::/0"]`)),
			pkt: evPkt(evTCP, evIPWeb6, evIPExt6, 443), want: cv(denied, cOpen)},
		{name: "matches a host-network pod's address", cnps: cnps(denyTo(`[192.168.0.0/24]`)),
			pkt: evPkt(evTCP, evIPWeb, evIPHostnet, 80), want: cv(denied, cOpen)},
		{name: "matches ICMP", cnps: cnps(denyTo(`[203.0.113.5/32]`)),
			pkt: evPkt(evICMP, evIPWeb, evIPExt, 0), want: cv(denied, cOpen)},
		{name: "host bits are ignored", cnps: cnps(denyTo(`[10.0.2.99/24]`)),
			pkt: evPkt(evTCP, evIPWeb, evIPAPI, 80), want: cv(denied, cOpen)},
		{name: "an unparseable CIDR matches nothing; the others still do", cnps: cnps(denyTo(`[not-a-cidr, 10.0.2.30/32]`)),
			pkt: evPkt(evTCP, evIPWeb, evIPAPI, 80), want: cv(denied, cOpen)},
		{name: "an unparseable CIDR alone matches nothing", cnps: cnps(denyTo(`[10.0.2.30]`)),
			pkt: evPkt(evTCP, evIPWeb, evIPAPI, 80), want: cv(cOpen, cOpen)},
		{name: "Pass pod traffic first, then Deny 0.0.0.0/0: pods are reached",
			cnps: cnps(admin("pass-pods-deny-rest", 10, subjWeb+`, egress: [{action: Pass, to: [{namespaces: {}}]}, {action: Deny, to: [{networks: [0.0.0.0/0]}]}]`)),
			pkt:  evPkt(evTCP, evIPWeb, evIPClient, 80), want: cv(DirectionVerdict{Allowed: true, Admin: cAdm("pass-pods-deny-rest", 10, 0, cPass)}, cOpen)},
		{name: "Pass pod traffic first, then Deny 0.0.0.0/0: outside is denied",
			cnps: cnps(admin("pass-pods-deny-rest", 10, subjWeb+`, egress: [{action: Pass, to: [{namespaces: {}}]}, {action: Deny, to: [{networks: [0.0.0.0/0]}]}]`)),
			pkt:  evPkt(evTCP, evIPWeb, evIPExt, 80), want: cv(DirectionVerdict{Admin: cAdm("pass-pods-deny-rest", 10, 1, cDeny)}, cOpen)},
	})
}

// --- peers: nodes ---

func TestEvaluate_ClusterNetworkPolicy_Nodes(t *testing.T) {
	denyTo := func(nodes string) *policyv1beta1.ClusterNetworkPolicy {
		return admin("deny", 10, subjWeb+`, egress: [{action: Deny, to: [{nodes: `+nodes+`}]}]`)
	}
	denied := DirectionVerdict{Admin: cAdm("deny", 10, 0, cDeny)}
	runCNPCases(t, []cnpCase{
		{name: "nodes {} matches another node's address", cnps: cnps(denyTo(`{}`)),
			pkt: evPkt(evTCP, evIPWeb, evIPNodeB, 10250), want: cv(denied, cOpen)},
		{name: "nodes {} matches the pod's own node", cnps: cnps(denyTo(`{}`)),
			pkt: evPkt(evTCP, evIPWeb, evIPHostnet, 10250), want: cv(denied, cOpen)},
		{name: "own node's IPv6 address", cnps: cnps(denyTo(`{matchLabels: {zone: a}}`)),
			pkt: evPkt(evTCP, evIPWeb6, cnpIPNodeA6, 10250), want: cv(denied, cOpen)},
		{name: "label selection: node-b's address is not zone a", cnps: cnps(denyTo(`{matchLabels: {zone: a}}`)),
			pkt: evPkt(evTCP, evIPWeb, evIPNodeB, 10250), want: cv(cOpen, cOpen)},
		{name: "matchExpressions", cnps: cnps(denyTo(`{matchExpressions: [{key: zone, operator: In, values: [b, c]}]}`)),
			pkt: evPkt(evTCP, evIPWeb, evIPNodeB, 10250), want: cv(denied, cOpen)},
		{name: "a node peer matches the host-network pod's address, which is its node's", cnps: cnps(denyTo(`{matchLabels: {kubernetes.io/hostname: node-a}}`)),
			pkt: evPkt(evTCP, evIPWeb, evIPHostnet, 80), want: cv(denied, cOpen)},
		{name: "nodes {} does not match a pod IP", cnps: cnps(denyTo(`{}`)),
			pkt: evPkt(evTCP, evIPWeb, evIPDB, 5432), want: cv(cOpen, cOpen)},
		{name: "nodes {} does not match an outside address", cnps: cnps(denyTo(`{}`)),
			pkt: evPkt(evTCP, evIPWeb, evIPExt, 443), want: cv(cOpen, cOpen)},
		{name: "a node removed from the snapshot is not matched", cnps: cnps(denyTo(`{}`)),
			edit: func(s *Snapshot) { s.Nodes = s.Nodes[:1] },
			pkt:  evPkt(evTCP, evIPWeb, evIPNodeB, 10250), want: cv(cOpen, cOpen)},
		{name: "a node label change takes effect", cnps: cnps(denyTo(`{matchLabels: {zone: a}}`)),
			edit: func(s *Snapshot) { s.Nodes[1].Labels["zone"] = "a" },
			pkt:  evPkt(evTCP, evIPWeb, evIPNodeB, 10250), want: cv(denied, cOpen)},
	})
}

// --- host-network pods, all in one place ---

func TestEvaluate_ClusterNetworkPolicy_HostNetwork(t *testing.T) {
	everything := func(action policyv1beta1.ClusterNetworkPolicyRuleAction, peer string) *policyv1beta1.ClusterNetworkPolicy {
		return admin("p", 10, subjAll+fmt.Sprintf(`, ingress: [{action: %s, from: [%s]}], egress: [{action: %s, to: [%s]}]`, action, peer, action, peer))
	}
	runCNPCases(t, []cnpCase{
		{name: "never a subject: its egress and ingress stay open", cnps: cnps(everything(cDeny, `{namespaces: {}}`)),
			pkt: evPkt(evTCP, evIPHostnet, evIPNodeB, 80), want: cv(cOpen, cOpen)},
		{name: "never a namespaces peer (egress)", cnps: cnps(everything(cDeny, `{namespaces: {}}`)),
			pkt: evPkt(evTCP, evIPDB, evIPHostnet, 80), want: cv(cOpen, cOpen)},
		{name: "never a pods peer (ingress)", cnps: cnps(everything(cDeny, `{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}`)),
			pkt: evPkt(evTCP, evIPHostnet, evIPDB, 5432), want: cv(cOpen, cOpen)},
		{name: "a networks peer matches it", cnps: cnps(admin("p", 10, subjAll+`, egress: [{action: Deny, to: [{networks: [192.168.0.1/32]}]}]`)),
			pkt: evPkt(evTCP, evIPDB, evIPHostnet, 80), want: cv(DirectionVerdict{Admin: cAdm("p", 10, 0, cDeny)}, cOpen)},
		{name: "a nodes peer matches it through its node's address", cnps: cnps(admin("p", 10, subjAll+`, egress: [{action: Deny, to: [{nodes: {matchLabels: {zone: a}}}]}]`)),
			pkt: evPkt(evTCP, evIPDB, evIPHostnet, 80), want: cv(DirectionVerdict{Admin: cAdm("p", 10, 0, cDeny)}, cOpen)},
	})
}

// --- protocols and ports ---

func TestEvaluate_ClusterNetworkPolicy_Ports(t *testing.T) {
	// web's ingress: rule 0 Accepts the protocols under test, rule 1 Denies
	// the rest, so the matching rule's index tells whether they matched.
	ingressWeb := func(protocols string) *policyv1beta1.ClusterNetworkPolicy {
		return admin("p", 10, subjWeb+`, ingress: [{action: Accept, from: [{namespaces: {}}], protocols: `+protocols+`}, {action: Deny, from: [{namespaces: {}}]}]`)
	}
	// client's egress, the same way.
	egressClient := func(protocols string) *policyv1beta1.ClusterNetworkPolicy {
		return admin("p", 10, `subject: {namespaces: {matchLabels: {team: dev}}}, egress: [{action: Accept, to: [{namespaces: {}}], protocols: `+protocols+`}, {action: Deny, to: [{namespaces: {}}]}]`)
	}
	in := func(matched bool) Verdict {
		if matched {
			return cv(cOpen, DirectionVerdict{Allowed: true, Admin: cAdm("p", 10, 0, cAccept)})
		}
		return cv(cOpen, DirectionVerdict{Admin: cAdm("p", 10, 1, cDeny)})
	}
	out := func(matched bool) Verdict {
		if matched {
			return cv(DirectionVerdict{Allowed: true, Admin: cAdm("p", 10, 0, cAccept)}, cOpen)
		}
		return cv(DirectionVerdict{Admin: cAdm("p", 10, 1, cDeny)}, cOpen)
	}
	tcp80 := `[{tcp: {destinationPort: {number: 80}}}]`
	tcpRange := `[{tcp: {destinationPort: {range: {start: 8000, end: 8080}}}}]`
	runCNPCases(t, []cnpCase{
		{name: "no protocols: any protocol and port", cnps: cnps(admin("p", 10, subjWeb+`, ingress: [{action: Deny, from: [{namespaces: {}}]}]`)),
			pkt: evPkt(evUDP, evIPDB, evIPWeb, 9999), want: cv(cOpen, DirectionVerdict{Admin: cAdm("p", 10, 0, cDeny)})},
		{name: "no protocols: ICMP too", cnps: cnps(admin("p", 10, subjWeb+`, ingress: [{action: Deny, from: [{namespaces: {}}]}]`)),
			pkt: evPkt(evICMP, evIPDB, evIPWeb, 0), want: cv(cOpen, DirectionVerdict{Admin: cAdm("p", 10, 0, cDeny)})},
		{name: "TCP port: match", cnps: cnps(ingressWeb(tcp80)), pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: in(true)},
		{name: "TCP port: other port", cnps: cnps(ingressWeb(tcp80)), pkt: evPkt(evTCP, evIPDB, evIPWeb, 81), want: in(false)},
		{name: "TCP port: UDP on the same port", cnps: cnps(ingressWeb(tcp80)), pkt: evPkt(evUDP, evIPDB, evIPWeb, 80), want: in(false)},
		{name: "TCP port: SCTP on the same port", cnps: cnps(ingressWeb(tcp80)), pkt: evPkt(evSCTP, evIPDB, evIPWeb, 80), want: in(false)},
		{name: "TCP port: ICMP", cnps: cnps(ingressWeb(tcp80)), pkt: evPkt(evICMP, evIPDB, evIPWeb, 0), want: in(false)},
		{name: "empty packet protocol is TCP", cnps: cnps(ingressWeb(tcp80)), pkt: evPkt("", evIPDB, evIPWeb, 80), want: in(true)},
		{name: "UDP port", cnps: cnps(ingressWeb(`[{udp: {destinationPort: {number: 53}}}]`)), pkt: evPkt(evUDP, evIPDB, evIPWeb, 53), want: in(true)},
		{name: "UDP port: TCP on the same port", cnps: cnps(ingressWeb(`[{udp: {destinationPort: {number: 53}}}]`)), pkt: evPkt(evTCP, evIPDB, evIPWeb, 53), want: in(false)},
		{name: "SCTP port", cnps: cnps(egressClient(`[{sctp: {destinationPort: {number: 3868}}}]`)), pkt: evPkt(evSCTP, evIPClient, evIPAPI, 3868), want: out(true)},
		{name: "SCTP port: TCP on the same port", cnps: cnps(egressClient(`[{sctp: {destinationPort: {number: 3868}}}]`)), pkt: evPkt(evTCP, evIPClient, evIPAPI, 3868), want: out(false)},
		{name: "range: first port", cnps: cnps(ingressWeb(tcpRange)), pkt: evPkt(evTCP, evIPDB, evIPWeb, 8000), want: in(true)},
		{name: "range: last port", cnps: cnps(ingressWeb(tcpRange)), pkt: evPkt(evTCP, evIPDB, evIPWeb, 8080), want: in(true)},
		{name: "range: below", cnps: cnps(ingressWeb(tcpRange)), pkt: evPkt(evTCP, evIPDB, evIPWeb, 7999), want: in(false)},
		{name: "range: above", cnps: cnps(ingressWeb(tcpRange)), pkt: evPkt(evTCP, evIPDB, evIPWeb, 8081), want: in(false)},
		{name: "UDP range", cnps: cnps(ingressWeb(`[{udp: {destinationPort: {range: {start: 1, end: 1024}}}}]`)), pkt: evPkt(evUDP, evIPDB, evIPWeb, 1024), want: in(true)},
		{name: "SCTP range", cnps: cnps(ingressWeb(`[{sctp: {destinationPort: {range: {start: 3000, end: 4000}}}}]`)), pkt: evPkt(evSCTP, evIPDB, evIPWeb, 3868), want: in(true)},
		{name: "entries are OR", cnps: cnps(ingressWeb(`[{udp: {destinationPort: {number: 53}}}, {tcp: {destinationPort: {number: 443}}}]`)),
			pkt: evPkt(evTCP, evIPDB, evIPWeb, 443), want: in(true)},
		{name: "protocols do not match ICMP", cnps: cnps(ingressWeb(`[{tcp: {destinationPort: {range: {start: 1, end: 65535}}}}, {udp: {destinationPort: {range: {start: 1, end: 65535}}}}]`)),
			pkt: evPkt(evICMP, evIPDB, evIPWeb, 0), want: in(false)},
		{name: "egress port: match", cnps: cnps(egressClient(tcp80)), pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: out(true)},
		{name: "egress port: other port", cnps: cnps(egressClient(tcp80)), pkt: evPkt(evTCP, evIPClient, evIPWeb, 8080), want: out(false)},
		// Decisions on input the CRD rejects.
		{name: "tcp without destinationPort: every TCP port", cnps: cnps(ingressWeb(`[{tcp: {}}]`)), pkt: evPkt(evTCP, evIPDB, evIPWeb, 12345), want: in(true)},
		{name: "tcp without destinationPort: not UDP", cnps: cnps(ingressWeb(`[{tcp: {}}]`)), pkt: evPkt(evUDP, evIPDB, evIPWeb, 12345), want: in(false)},
		{name: "a port with number and range matches nothing", cnps: cnps(ingressWeb(`[{tcp: {destinationPort: {number: 80, range: {start: 1, end: 100}}}}]`)),
			pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: in(false)},
		{name: "a port with neither matches nothing", cnps: cnps(ingressWeb(`[{tcp: {destinationPort: {}}}]`)), pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: in(false)},
		{name: "a range with start > end matches nothing", cnps: cnps(ingressWeb(`[{tcp: {destinationPort: {range: {start: 90, end: 70}}}}]`)),
			pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: in(false)},
		{name: "an entry with two protocols matches nothing", cnps: cnps(ingressWeb(`[{tcp: {destinationPort: {number: 80}}, udp: {destinationPort: {number: 80}}}]`)),
			pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: in(false)},
		{name: "an entry with no field matches nothing", cnps: cnps(ingressWeb(`[{}]`)), pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: in(false)},
	})
}

func TestEvaluate_ClusterNetworkPolicy_NamedPorts(t *testing.T) {
	ingressTo := func(subject, port string) *policyv1beta1.ClusterNetworkPolicy {
		return admin("p", 10, subject+`, ingress: [{action: Accept, from: [{namespaces: {}}], protocols: [{destinationNamedPort: `+port+`}]}, {action: Deny, from: [{namespaces: {}}]}]`)
	}
	egressClient := func(port string) *policyv1beta1.ClusterNetworkPolicy {
		return admin("p", 10, `subject: {namespaces: {matchLabels: {team: dev}}}, egress: [{action: Accept, to: [{namespaces: {}}], protocols: [{destinationNamedPort: `+port+`}]}, {action: Deny, to: [{namespaces: {}}, {networks: [0.0.0.0/0]}]}]`)
	}
	in := func(matched bool) Verdict {
		if matched {
			return cv(cOpen, DirectionVerdict{Allowed: true, Admin: cAdm("p", 10, 0, cAccept)})
		}
		return cv(cOpen, DirectionVerdict{Admin: cAdm("p", 10, 1, cDeny)})
	}
	out := func(matched bool) Verdict {
		if matched {
			return cv(DirectionVerdict{Allowed: true, Admin: cAdm("p", 10, 0, cAccept)}, cOpen)
		}
		return cv(DirectionVerdict{Admin: cAdm("p", 10, 1, cDeny)}, cOpen)
	}
	runCNPCases(t, []cnpCase{
		{name: "ingress: resolved on the subject", cnps: cnps(ingressTo(subjWeb, "http")), pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: in(true)},
		{name: "ingress: other port", cnps: cnps(ingressTo(subjWeb, "http")), pkt: evPkt(evTCP, evIPDB, evIPWeb, 8080), want: in(false)},
		{name: "ingress: the name's protocol only", cnps: cnps(ingressTo(subjWeb, "http")), pkt: evPkt(evUDP, evIPDB, evIPWeb, 80), want: in(false)},
		{name: "ingress: UDP named port", cnps: cnps(ingressTo(subjWeb, "dns")), pkt: evPkt(evUDP, evIPDB, evIPWeb, 53), want: in(true)},
		{name: "ingress: the subject lacks the name", cnps: cnps(ingressTo(subjDB, "http")), pkt: evPkt(evTCP, evIPWeb, evIPDB, 80), want: in(false)},
		{name: "ingress: container port without protocol is TCP", cnps: cnps(ingressTo(subjDB, "sql")), pkt: evPkt(evTCP, evIPWeb, evIPDB, 5432), want: in(true)},
		{name: "ingress: SCTP named port", cnps: cnps(ingressTo(`subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: api}}}}`, "sig")),
			pkt: evPkt(evSCTP, evIPWeb, evIPAPI, 3868), want: in(true)},
		{name: "egress: per destination pod: db's metrics is 9090", cnps: cnps(egressClient("metrics")), pkt: evPkt(evTCP, evIPClient, evIPDB, 9090), want: out(true)},
		{name: "egress: per destination pod: api's metrics is 9100", cnps: cnps(egressClient("metrics")), pkt: evPkt(evTCP, evIPClient, evIPAPI, 9100), want: out(true)},
		{name: "egress: per destination pod: api's metrics is not 9090", cnps: cnps(egressClient("metrics")), pkt: evPkt(evTCP, evIPClient, evIPAPI, 9090), want: out(false)},
		{name: "egress: per protocol: db's metrics is TCP, UDP/9090 is stats", cnps: cnps(egressClient("metrics")), pkt: evPkt(evUDP, evIPClient, evIPDB, 9090), want: out(false)},
		{name: "egress: per protocol: db's stats is UDP/9090", cnps: cnps(egressClient("stats")), pkt: evPkt(evUDP, evIPClient, evIPDB, 9090), want: out(true)},
		{name: "egress: per protocol: stats is not TCP/9090", cnps: cnps(egressClient("stats")), pkt: evPkt(evTCP, evIPClient, evIPDB, 9090), want: out(false)},
		{name: "egress: a non-pod destination has no named ports", cnps: cnps(egressClient("metrics")), pkt: evPkt(evTCP, evIPClient, evIPExt, 9090), want: out(false)},
		{name: "egress: a host-network pod has no named ports here",
			cnps: cnps(admin("p", 10, `subject: {namespaces: {matchLabels: {team: dev}}}, egress: [{action: Accept, to: [{networks: [192.168.0.1/32]}], protocols: [{destinationNamedPort: http}]}, {action: Deny, to: [{networks: [0.0.0.0/0]}]}]`)),
			pkt:  evPkt(evTCP, evIPClient, evIPHostnet, 80), want: out(false)},
		{name: "a named port next to a numbered one: OR",
			cnps: cnps(ingressTo(subjWeb, `http}, {tcp: {destinationPort: {number: 443}}`)), pkt: evPkt(evTCP, evIPDB, evIPWeb, 443), want: in(true)},
		{name: "an entry with a named port and a protocol matches nothing",
			cnps: cnps(ingressTo(subjWeb, `http, tcp: {destinationPort: {number: 80}}`)), pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: in(false)},
	})
}

// --- priority and ties ---

func TestEvaluate_ClusterNetworkPolicy_Priority(t *testing.T) {
	in := func(name string, priority int32, action policyv1beta1.ClusterNetworkPolicyRuleAction, from string) *policyv1beta1.ClusterNetworkPolicy {
		return admin(name, priority, subjDB+fmt.Sprintf(`, ingress: [{action: %s, from: [%s]}]`, action, from))
	}
	all := `{namespaces: {}}`
	dev := `{namespaces: {matchLabels: {team: dev}}}`
	prod := `{namespaces: {matchLabels: {team: prod}}}`
	fromWeb := evPkt(evTCP, evIPWeb, evIPDB, 5432)
	tieWarning := cWarn("a-accept", `ClusterNetworkPolicies "a-accept" and "b-deny", both Admin tier priority 5, both match this ingress traffic `+
		`(rule 0: Accept; rule 0: Deny): the API leaves their order undefined; here the name that sorts first, "a-accept", decides`)
	tieAccepted := cv(cOpen, DirectionVerdict{Allowed: true, Admin: cAdm("a-accept", 5, 0, cAccept)}, tieWarning)
	runCNPCases(t, []cnpCase{
		{name: "lower priority value first", cnps: cnps(in("deny-20", 20, cDeny, all), in("accept-10", 10, cAccept, all)), pkt: fromWeb,
			want: cv(cOpen, DirectionVerdict{Allowed: true, Admin: cAdm("accept-10", 10, 0, cAccept)})},
		{name: "lower priority value first, listed the other way", cnps: cnps(in("accept-10", 10, cDeny, all), in("deny-20", 20, cAccept, all)), pkt: fromWeb,
			want: cv(cOpen, DirectionVerdict{Admin: cAdm("accept-10", 10, 0, cDeny)})},
		{name: "priority 0 is the first", cnps: cnps(in("one", 1, cAccept, all), in("zero", 0, cDeny, all)), pkt: fromWeb,
			want: cv(cOpen, DirectionVerdict{Admin: cAdm("zero", 0, 0, cDeny)})},
		{name: "rules of one policy in written order",
			cnps: cnps(admin("p", 10, subjDB+`, ingress: [{action: Deny, from: [`+prod+`]}, {action: Accept, from: [`+all+`]}]`)), pkt: fromWeb,
			want: cv(cOpen, DirectionVerdict{Admin: cAdm("p", 10, 0, cDeny)})},
		{name: "rules of one policy in written order, reversed",
			cnps: cnps(admin("p", 10, subjDB+`, ingress: [{name: first, action: Accept, from: [`+all+`]}, {name: second, action: Deny, from: [`+prod+`]}]`)), pkt: fromWeb,
			want: cv(cOpen, DirectionVerdict{Allowed: true, Admin: &CNPRule{Policy: "p", Tier: policyv1beta1.AdminTier, Priority: 10, Index: 0, Name: "first", Action: cAccept}})},
		{name: "a higher-priority policy that does not match lets a lower one decide",
			cnps: cnps(in("deny-dev", 1, cDeny, dev), in("accept-all", 2, cAccept, all)), pkt: fromWeb,
			want: cv(cOpen, DirectionVerdict{Allowed: true, Admin: cAdm("accept-all", 2, 0, cAccept)})},
		{name: "equal priority, both match: the name that sorts first decides, with a warning",
			cnps: cnps(in("a-accept", 5, cAccept, all), in("b-deny", 5, cDeny, prod)), pkt: fromWeb, want: tieAccepted},
		{name: "equal priority, both match, listed the other way: same",
			cnps: cnps(in("b-deny", 5, cDeny, prod), in("a-accept", 5, cAccept, all)), pkt: fromWeb, want: tieAccepted},
		{name: "equal priority, no overlap for this packet: no warning",
			cnps: cnps(in("a-accept", 5, cAccept, dev), in("b-deny", 5, cDeny, prod)), pkt: fromWeb,
			want: cv(cOpen, DirectionVerdict{Admin: cAdm("b-deny", 5, 0, cDeny)})},
		{name: "equal priority, only one selects the pod: no warning",
			cnps: cnps(in("a-accept", 5, cAccept, all), admin("b-deny", 5, subjWeb+`, ingress: [{action: Deny, from: [`+all+`]}]`)), pkt: fromWeb,
			want: cv(cOpen, DirectionVerdict{Allowed: true, Admin: cAdm("a-accept", 5, 0, cAccept)})},
		{name: "equal priority in different tiers is no tie",
			cnps: cnps(in("a-accept", 5, cAccept, all), baseline("b-deny", 5, subjDB+`, ingress: [{action: Deny, from: [`+all+`]}]`)), pkt: fromWeb,
			want: cv(cOpen, DirectionVerdict{Allowed: true, Admin: cAdm("a-accept", 5, 0, cAccept)})},
		{name: "equal priority in the Baseline tier",
			cnps: cnps(baseline("base-y", 7, subjDB+`, ingress: [{action: Deny, from: [`+all+`]}]`), baseline("base-x", 7, subjDB+`, ingress: [{action: Pass, from: [`+all+`]}]`)),
			pkt:  fromWeb,
			want: cv(cOpen, DirectionVerdict{Allowed: true, Baseline: cBase("base-x", 7, 0, cPass)},
				cWarn("base-x", `ClusterNetworkPolicies "base-x" and "base-y", both Baseline tier priority 7, both match this ingress traffic `+
					`(rule 0: Pass; rule 0: Deny): the API leaves their order undefined; here the name that sorts first, "base-x", decides`))},
	})

	// The order of Snapshot.ClusterNetworkPolicies never matters, over a grid.
	set := cnps(in("a-accept", 5, cAccept, dev), in("b-deny", 5, cDeny, all), in("c-pass", 1, cPass, prod),
		baseline("base", 5, subjAll+`, ingress: [{action: Deny, from: [`+all+`]}], egress: [{action: Deny, to: [{networks: [10.0.2.0/24]}]}]`),
		admin("out", 3, subjProd+`, egress: [{action: Accept, to: [{nodes: {}}]}, {action: Pass, to: [{networks: [0.0.0.0/0]}]}]`))
	addrs := []string{evIPWeb, evIPDB, evIPAPI, evIPClient, evIPTool, evIPX, evIPExt, evIPNodeB, evIPHostnet}
	for _, src := range addrs {
		for _, dst := range addrs {
			p := evPkt(evTCP, src, dst, 80)
			s := cnpFixture()
			s.ClusterNetworkPolicies = set
			want := Evaluate(s, p)
			s.ClusterNetworkPolicies = slices.Clone(set)
			slices.Reverse(s.ClusterNetworkPolicies)
			if diff := cmp.Diff(want, Evaluate(s, p)); diff != "" {
				t.Errorf("reversed ClusterNetworkPolicies change %v (-want +got):\n%s", p, diff)
			}
		}
	}
}

// --- domainNames and invalid input ---

func TestEvaluate_ClusterNetworkPolicy_DomainNames(t *testing.T) {
	warn := cWarn("dns", `egress rule 0: peer 0: domainNames peers are not implemented and match nothing`)
	runCNPCases(t, []cnpCase{
		{name: "a domainNames peer matches nothing; the next rule applies, with a warning",
			cnps: cnps(admin("dns", 10, subjWeb+`, egress: [{action: Accept, to: [{domainNames: [example.com, "*.example.org"]}]}, {action: Deny, to: [{networks: [0.0.0.0/0]}]}]`)),
			pkt:  evPkt(evTCP, evIPWeb, evIPExt, 443),
			want: cv(DirectionVerdict{Admin: cAdm("dns", 10, 1, cDeny)}, cOpen, warn)},
		{name: "the rule's other peers still apply",
			cnps: cnps(admin("dns", 10, subjWeb+`, egress: [{action: Accept, to: [{domainNames: [example.com]}, {networks: [203.0.113.0/24]}]}, {action: Deny, to: [{networks: [0.0.0.0/0]}]}]`)),
			pkt:  evPkt(evTCP, evIPWeb, evIPExt, 443),
			want: cv(DirectionVerdict{Allowed: true, Admin: cAdm("dns", 10, 0, cAccept)}, cOpen, warn)},
		{name: "the rest of the policy applies; the warning comes when the rule is reached",
			cnps: cnps(admin("dns", 10, subjWeb+`, egress: [{action: Accept, to: [{domainNames: [example.com]}]}], ingress: [{action: Deny, from: [{namespaces: {}}]}]`)),
			pkt:  evPkt(evTCP, evIPWeb, evIPDB, 5432),
			want: cv(cOpen, cOpen, warn)},
		{name: "ingress of the same policy: no egress rule reached, no warning",
			cnps: cnps(admin("dns", 10, subjWeb+`, egress: [{action: Accept, to: [{domainNames: [example.com]}]}], ingress: [{action: Deny, from: [{namespaces: {}}]}]`)),
			pkt:  evPkt(evTCP, evIPDB, evIPWeb, 80),
			want: cv(cOpen, DirectionVerdict{Admin: cAdm("dns", 10, 0, cDeny)})},
		{name: "a rule before it decides: not reached, no warning",
			cnps: cnps(admin("dns", 10, subjWeb+`, egress: [{action: Deny, to: [{networks: [0.0.0.0/0]}]}, {action: Accept, to: [{domainNames: [example.com]}]}]`)),
			pkt:  evPkt(evTCP, evIPWeb, evIPExt, 443),
			want: cv(DirectionVerdict{Admin: cAdm("dns", 10, 0, cDeny)}, cOpen)},
	})
}

func TestEvaluate_ClusterNetworkPolicy_Invalid(t *testing.T) {
	out := func(action policyv1beta1.ClusterNetworkPolicyRuleAction, peers string) *policyv1beta1.ClusterNetworkPolicy {
		return admin("p", 10, subjWeb+fmt.Sprintf(`, egress: [{action: %s, to: %s}]`, action, peers))
	}
	webToExt := evPkt(evUDP, evIPWeb, evIPExt, 53)
	runCNPCases(t, []cnpCase{
		{name: "a peer with no field: an Accept rule matches nothing", cnps: cnps(out(cAccept, `[{networks: [0.0.0.0/0]}, {}]`)), pkt: webToExt,
			want: cv(cOpen, cOpen, cWarn("p", "egress rule 0: peer 1 sets no field or several: the Accept rule matches nothing (fail closed)"))},
		{name: "a peer with no field: a Deny rule denies everything", cnps: cnps(out(cDeny, `[{namespaces: {matchLabels: {team: nobody}}}, {}]`)), pkt: webToExt,
			want: cv(DirectionVerdict{Admin: cAdm("p", 10, 0, cDeny)}, cOpen,
				cWarn("p", "egress rule 0: peer 1 sets no field or several: the Deny rule denies everything (fail closed)"))},
		{name: "a peer with no field: a Pass rule denies everything", cnps: cnps(out(cPass, `[{}]`)), pkt: evPkt(evICMP, evIPWeb, evIPDB, 0),
			want: cv(DirectionVerdict{Admin: cAdm("p", 10, 0, cDeny)}, cOpen,
				cWarn("p", "egress rule 0: peer 0 sets no field or several: the Pass rule denies everything (fail closed)"))},
		{name: "a peer with two fields fails closed too", cnps: cnps(out(cDeny, `[{namespaces: {}, networks: [10.9.9.0/24]}]`)), pkt: webToExt,
			want: cv(DirectionVerdict{Admin: cAdm("p", 10, 0, cDeny)}, cOpen,
				cWarn("p", "egress rule 0: peer 0 sets no field or several: the Deny rule denies everything (fail closed)"))},
		{name: "an ingress peer with no field", cnps: cnps(admin("p", 10, subjWeb+`, ingress: [{action: Deny, from: [{}]}]`)), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80),
			want: cv(cOpen, DirectionVerdict{Admin: cAdm("p", 10, 0, cDeny)},
				cWarn("p", "ingress rule 0: peer 0 sets no field or several: the Deny rule denies everything (fail closed)"))},
		{name: "an unknown action matches nothing", cnps: cnps(out("Allow", `[{networks: [0.0.0.0/0]}]`)), pkt: webToExt,
			want: cv(cOpen, cOpen, cWarn("p", `egress rule 0: unknown action "Allow": the rule matches nothing`))},
		{name: "an empty to list matches nothing", cnps: cnps(out(cDeny, `[]`)), pkt: webToExt, want: cv(cOpen, cOpen)},
		{name: "a tier other than Admin and Baseline is ignored",
			cnps: cnps(mkCNP("Middle", "p", 10, subjWeb+`, egress: [{action: Deny, to: [{networks: [0.0.0.0/0]}]}]`)), pkt: webToExt, want: cv(cOpen, cOpen)},
		{name: "an invalid subject selector selects nothing",
			cnps: cnps(admin("p", 10, `subject: {namespaces: {matchExpressions: [{key: team, operator: Bogus}]}}, egress: [{action: Deny, to: [{networks: [0.0.0.0/0]}]}]`)),
			pkt:  webToExt, want: cv(cOpen, cOpen)},
		{name: "an invalid peer selector matches nothing",
			cnps: cnps(out(cDeny, `[{namespaces: {matchExpressions: [{key: team, operator: In}]}}]`)), pkt: evPkt(evTCP, evIPWeb, evIPDB, 5432), want: cv(cOpen, cOpen)},
		{name: "a nil policy in the list is skipped",
			edit: func(s *Snapshot) { s.ClusterNetworkPolicies = cnps(nil) }, pkt: webToExt, want: cv(cOpen, cOpen)},
		{name: "warnings of both directions, egress first, each once",
			cnps: cnps(admin("p", 10, subjAll+`, egress: [{action: Pass, to: [{}]}], ingress: [{action: Accept, from: [{}]}]`)),
			pkt:  evPkt(evTCP, evIPWeb, evIPDB, 5432),
			want: cv(DirectionVerdict{Admin: cAdm("p", 10, 0, cDeny)}, cOpen,
				cWarn("p", "egress rule 0: peer 0 sets no field or several: the Pass rule denies everything (fail closed)"),
				cWarn("p", "ingress rule 0: peer 0 sets no field or several: the Accept rule matches nothing (fail closed)"))},
	})
}

// --- self traffic ---

func TestEvaluate_ClusterNetworkPolicy_Self(t *testing.T) {
	denyAll := admin("deny-all", 10, subjAll+`, ingress: [{action: Deny, from: [{namespaces: {}}]}], egress: [{action: Deny, to: [{namespaces: {}}, {networks: [0.0.0.0/0, "::/0"]}]}]`)
	denied := DirectionVerdict{Admin: cAdm("deny-all", 10, 0, cDeny)}
	runCNPCases(t, []cnpCase{
		{name: "a pod's traffic to itself is never judged", cnps: cnps(denyAll), pkt: evPkt(evTCP, evIPWeb, evIPWeb, 80),
			want: Verdict{Allowed: true, Egress: denied, Ingress: denied}},
		{name: "over IPv6 too", cnps: cnps(denyAll), pkt: evPkt(evUDP, evIPAPI6, evIPAPI6, 53),
			want: Verdict{Allowed: true, Egress: denied, Ingress: denied}},
		{name: "another pod is judged", cnps: cnps(denyAll), pkt: evPkt(evTCP, evIPWeb, evIPDB, 80), want: cv(denied, denied)},
	})
}

// --- the trace, as people read it ---

func TestEvaluate_ClusterNetworkPolicy_Trace(t *testing.T) {
	named := &CNPRule{Policy: "deny-ext", Tier: policyv1beta1.BaselineTier, Priority: 3, Index: 1, Name: "no-outside", Action: cDeny}
	pass := cAdm("pass-prod", 10, 0, cPass)
	tests := []struct {
		name    string
		dv      DirectionVerdict
		decided Decider
		text    string
	}{
		{name: "default", dv: cOpen, decided: DecidedByDefault, text: "allowed: no tier decided"},
		{name: "Admin", dv: DirectionVerdict{Admin: cAdm("deny", 10, 2, cDeny)}, decided: DecidedByAdmin,
			text: `denied: Admin "deny" priority 10 rule 2: Deny`},
		{name: "Admin over an isolating NetworkPolicy", dv: DirectionVerdict{Isolated: true, Allowed: true, Admin: cAdm("ok", 1, 0, cAccept)},
			decided: DecidedByAdmin, text: `allowed: Admin "ok" priority 1 rule 0: Accept`},
		{name: "NetworkPolicy allows after a Pass", dv: DirectionVerdict{Isolated: true, Allowed: true, By: []string{"prod/a", "prod/b"}, Admin: pass},
			decided: DecidedByNetworkPolicy, text: `allowed: isolated by NetworkPolicy, allowed by prod/a, prod/b (after Admin "pass-prod" priority 10 rule 0: Pass)`},
		{name: "NetworkPolicy denies", dv: DirectionVerdict{Isolated: true}, decided: DecidedByNetworkPolicy,
			text: "denied: isolated by NetworkPolicy, no rule allows"},
		{name: "Baseline, named rule", dv: DirectionVerdict{Admin: pass, Baseline: named}, decided: DecidedByBaseline,
			text: `denied: Baseline "deny-ext" priority 3 rule 1 "no-outside": Deny (after Admin "pass-prod" priority 10 rule 0: Pass)`},
		{name: "two Passes", dv: DirectionVerdict{Allowed: true, Admin: pass, Baseline: cBase("bp", 0, 0, cPass)}, decided: DecidedByDefault,
			text: `allowed: no tier decided (after Admin "pass-prod" priority 10 rule 0: Pass, Baseline "bp" priority 0 rule 0: Pass)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.dv.DecidedBy(); got != tc.decided {
				t.Errorf("DecidedBy() = %s, want %s", got, tc.decided)
			}
			if diff := cmp.Diff(tc.text, tc.dv.String()); diff != "" {
				t.Errorf("String() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// Without ClusterNetworkPolicies a snapshot with Nodes evaluates as before:
// NetworkPolicy does not look at nodes.
func TestEvaluate_ClusterNetworkPolicy_NodesDoNotChangeNetworkPolicy(t *testing.T) {
	np := evEgressOnly("prod", "to-10", evSel("app", "web"), evOut(evPeers(evIPPeer("10.0.0.0/8")), nil))
	for _, dst := range []string{evIPNodeB, evIPHostnet, evIPDB, evIPExt} {
		p := evPkt(evTCP, evIPWeb, dst, 80)
		without := evalFixture()
		without.Policies = nps(np)
		with := cnpFixture()
		with.Policies = nps(np)
		if diff := cmp.Diff(Evaluate(without, p), Evaluate(with, p)); diff != "" {
			t.Errorf("Nodes change the NetworkPolicy verdict of %v (-without +with):\n%s", p, diff)
		}
	}
}

// IP plan of the reference-evaluator tests (evalFixture):
//
//	namespace prod  {team: prod, env: production}
//	namespace dev   {team: dev,  env: test}
//	namespace other {}                      (no labels)
//	namespace ghost                         (not in the snapshot)
//
//	pod             node    IPs                        labels                   ports
//	prod/web        node-a  10.0.1.10, fd00:1::10      app=web, tier=frontend   http TCP/80, dns UDP/53
//	prod/db         node-a  10.0.1.20                  app=db,  tier=backend    sql TCP/5432, metrics TCP/9090, stats UDP/9090
//	prod/api        node-b  10.0.2.30, fd00:2::30      app=api, tier=backend    metrics TCP/9100, sig SCTP/3868
//	dev/client      node-b  10.0.2.40, fd00:2::40      app=client, tier=frontend
//	dev/tool        node-a  10.0.1.50                  app=tool
//	other/x         node-b  10.0.2.60                  (none)
//	ghost/g         node-a  10.0.1.70                  app=web
//	prod/hostnet    node-a  192.168.0.1 (hostNetwork)  app=web                  http TCP/80
//	prod/done       node-a  10.0.1.99 (Succeeded)      app=web                  http TCP/80
//	prod/pending    node-b  (no IP yet)                app=web
//
//	not pods: 203.0.113.5 and 2001:db8::5 (external), 192.168.0.2 (node-b).
//
// Same node: web, db, tool, g (node-a); api, client, x (node-b).
package policy

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Addresses of the IP plan.
const (
	evIPWeb      = "10.0.1.10"
	evIPWeb6     = "fd00:1::10"
	evIPDB       = "10.0.1.20"
	evIPAPI      = "10.0.2.30"
	evIPAPI6     = "fd00:2::30"
	evIPClient   = "10.0.2.40"
	evIPClient6  = "fd00:2::40"
	evIPTool     = "10.0.1.50"
	evIPX        = "10.0.2.60"
	evIPGhost    = "10.0.1.70"
	evIPHostnet  = "192.168.0.1"
	evIPDone     = "10.0.1.99"
	evIPExt      = "203.0.113.5"
	evIPExt6     = "2001:db8::5"
	evIPNodeB    = "192.168.0.2"
	evTCP        = corev1.ProtocolTCP
	evUDP        = corev1.ProtocolUDP
	evSCTP       = corev1.ProtocolSCTP
	evICMP       = corev1.Protocol("ICMP")
	evIngressT   = networkingv1.PolicyTypeIngress
	evEgressT    = networkingv1.PolicyTypeEgress
	evFixtureLen = 10
)

func evalFixture() *Snapshot {
	ips := func(s ...string) []netip.Addr {
		var evOut []netip.Addr
		for _, a := range s {
			evOut = append(evOut, netip.MustParseAddr(a))
		}
		return evOut
	}
	running := corev1.PodRunning
	s := &Snapshot{
		NodeName: "node-a",
		Namespaces: []Namespace{
			{Name: "prod", Labels: map[string]string{"team": "prod", "env": "production"}},
			{Name: "dev", Labels: map[string]string{"team": "dev", "env": "test"}},
			{Name: "other"},
		},
		Pods: []Pod{
			{Namespace: "prod", Name: "web", NodeName: "node-a", Phase: running, IPs: ips(evIPWeb, evIPWeb6),
				Labels: map[string]string{"app": "web", "tier": "frontend"},
				Ports:  []ContainerPort{{Name: "http", Protocol: evTCP, Port: 80}, {Name: "dns", Protocol: evUDP, Port: 53}}},
			{Namespace: "prod", Name: "db", NodeName: "node-a", Phase: running, IPs: ips(evIPDB),
				Labels: map[string]string{"app": "db", "tier": "backend"},
				Ports: []ContainerPort{{Name: "sql", Port: 5432}, {Name: "metrics", Protocol: evTCP, Port: 9090},
					{Name: "stats", Protocol: evUDP, Port: 9090}}},
			{Namespace: "prod", Name: "api", NodeName: "node-b", Phase: running, IPs: ips(evIPAPI, evIPAPI6),
				Labels: map[string]string{"app": "api", "tier": "backend"},
				Ports:  []ContainerPort{{Name: "metrics", Protocol: evTCP, Port: 9100}, {Name: "sig", Protocol: evSCTP, Port: 3868}}},
			{Namespace: "dev", Name: "client", NodeName: "node-b", Phase: running, IPs: ips(evIPClient, evIPClient6),
				Labels: map[string]string{"app": "client", "tier": "frontend"}},
			{Namespace: "dev", Name: "tool", NodeName: "node-a", Phase: running, IPs: ips(evIPTool),
				Labels: map[string]string{"app": "tool"}},
			{Namespace: "other", Name: "x", NodeName: "node-b", Phase: running, IPs: ips(evIPX)},
			{Namespace: "ghost", Name: "g", NodeName: "node-a", Phase: running, IPs: ips(evIPGhost),
				Labels: map[string]string{"app": "web"}},
			{Namespace: "prod", Name: "hostnet", NodeName: "node-a", Phase: running, IPs: ips(evIPHostnet), HostNetwork: true,
				Labels: map[string]string{"app": "web"}, Ports: []ContainerPort{{Name: "http", Protocol: evTCP, Port: 80}}},
			{Namespace: "prod", Name: "done", NodeName: "node-a", Phase: corev1.PodSucceeded, IPs: ips(evIPDone),
				Labels: map[string]string{"app": "web"}, Ports: []ContainerPort{{Name: "http", Protocol: evTCP, Port: 80}}},
			{Namespace: "prod", Name: "pending", NodeName: "node-b", Phase: corev1.PodPending,
				Labels: map[string]string{"app": "web"}},
		},
	}
	if len(s.Pods) != evFixtureLen {
		panic("fixture changed: update the IP plan")
	}
	return s
}

// --- builders ---

func evPkt(proto corev1.Protocol, src, dst string, port uint16) Packet {
	return Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Protocol: proto, DstPort: port}
}

// evSel builds a selector from key, value pairs: evSel() is {}.
func evSel(kv ...string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	for i := 0; i+1 < len(kv); i += 2 {
		if s.MatchLabels == nil {
			s.MatchLabels = map[string]string{}
		}
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

func evExpr(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func evPodPeer(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: s}
}

func evNSPeer(s *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: s}
}

func evBothPeer(ns, pod *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: ns, PodSelector: pod}
}

func evIPPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func evPeers(p ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return p }

// evPort is a numeric port; proto "" leaves the protocol unset (TCP).
func evPort(proto corev1.Protocol, n int32) networkingv1.NetworkPolicyPort {
	p := networkingv1.NetworkPolicyPort{Port: new(intstr.FromInt32(n))}
	if proto != "" {
		p.Protocol = &proto
	}
	return p
}

func evPortRange(proto corev1.Protocol, first, last int32) networkingv1.NetworkPolicyPort {
	p := evPort(proto, first)
	p.EndPort = &last
	return p
}

func evNamedPort(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	p := networkingv1.NetworkPolicyPort{Port: new(intstr.FromString(name))}
	if proto != "" {
		p.Protocol = &proto
	}
	return p
}

func evAllPorts(proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto}
}

func evPorts(p ...networkingv1.NetworkPolicyPort) []networkingv1.NetworkPolicyPort { return p }

func evIn(from []networkingv1.NetworkPolicyPeer, p []networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: from, Ports: p}
}

func evOut(to []networkingv1.NetworkPolicyPeer, p []networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: to, Ports: p}
}

// evNetpol builds a policy; policyTypes nil leaves policyTypes unset (defaulted by
// Evaluate as the API server would).
func evNetpol(ns, name string, podSel *metav1.LabelSelector, policyTypes []networkingv1.PolicyType,
	ingress []networkingv1.NetworkPolicyIngressRule, egress []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: *podSel, PolicyTypes: policyTypes, Ingress: ingress, Egress: egress},
	}
}

func evTypes(t ...networkingv1.PolicyType) []networkingv1.PolicyType { return t }

// evIngressOnly isolates pods matching podSel for ingress with the given rules.
func evIngressOnly(ns, name string, podSel *metav1.LabelSelector, rules ...networkingv1.NetworkPolicyIngressRule) *networkingv1.NetworkPolicy {
	return evNetpol(ns, name, podSel, evTypes(evIngressT), rules, nil)
}

// evEgressOnly isolates pods matching podSel for egress with the given rules.
func evEgressOnly(ns, name string, podSel *metav1.LabelSelector, rules ...networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return evNetpol(ns, name, podSel, evTypes(evEgressT), nil, rules)
}

// --- runner ---

type evalCase struct {
	name     string
	policies []*networkingv1.NetworkPolicy
	edit     func(*Snapshot) // optional change to the fixture
	pkt      Packet
	want     bool
	// wantVerdict, when set, is compared whole (want is then ignored).
	wantVerdict *Verdict
}

func runEvalCases(t *testing.T, cases []evalCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := evalFixture()
			s.Policies = tc.policies
			if tc.edit != nil {
				tc.edit(s)
			}
			got := Evaluate(s, tc.pkt)
			if tc.wantVerdict != nil {
				if diff := cmp.Diff(*tc.wantVerdict, got); diff != "" {
					t.Errorf("Evaluate(%v) mismatch (-want +got):\n%s", tc.pkt, diff)
				}
				return
			}
			if got.Allowed != tc.want {
				t.Errorf("Evaluate(%v).Allowed = %v, want %v; verdict %+v", tc.pkt, got.Allowed, tc.want, got)
			}
		})
	}
}

func evDv(isolated, allowed bool, by ...string) DirectionVerdict {
	return DirectionVerdict{Isolated: isolated, Allowed: allowed, By: by}
}

var evOpen = evDv(false, true)

// --- §3.1 both directions ---

func TestEvaluate_BothDirections(t *testing.T) {
	denyEgressDB := evEgressOnly("prod", "deny-egress", evSel("app", "db"))
	denyIngressWeb := evIngressOnly("prod", "deny-ingress", evSel("app", "web"))
	allowIngressWeb := evIngressOnly("prod", "allow-db", evSel("app", "web"), evIn(evPeers(evPodPeer(evSel("app", "db"))), nil))
	allowEgressDB := evEgressOnly("prod", "allow-web", evSel("app", "db"), evOut(evPeers(evPodPeer(evSel("app", "web"))), nil))
	runEvalCases(t, []evalCase{
		{name: "no policies, same node", pkt: evPkt(evTCP, evIPDB, evIPWeb, 80),
			wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
		{name: "source egress denies although destination ingress allows (same node)",
			policies: []*networkingv1.NetworkPolicy{denyEgressDB, allowIngressWeb}, pkt: evPkt(evTCP, evIPDB, evIPWeb, 80),
			wantVerdict: &Verdict{Allowed: false, Egress: evDv(true, false), Ingress: evDv(true, true, "prod/allow-db")}},
		{name: "destination ingress denies although source egress allows (same node)",
			policies: []*networkingv1.NetworkPolicy{allowEgressDB, denyIngressWeb}, pkt: evPkt(evTCP, evIPDB, evIPWeb, 80),
			wantVerdict: &Verdict{Allowed: false, Egress: evDv(true, true, "prod/allow-web"), Ingress: evDv(true, false)}},
		{name: "both allow", policies: []*networkingv1.NetworkPolicy{allowEgressDB, allowIngressWeb}, pkt: evPkt(evTCP, evIPDB, evIPWeb, 80),
			wantVerdict: &Verdict{Allowed: true, Egress: evDv(true, true, "prod/allow-web"), Ingress: evDv(true, true, "prod/allow-db")}},
		{name: "source egress denies across nodes", policies: []*networkingv1.NetworkPolicy{denyEgressDB},
			pkt: evPkt(evTCP, evIPDB, evIPAPI, 80), want: false},
		{name: "destination ingress denies across nodes", policies: []*networkingv1.NetworkPolicy{denyIngressWeb},
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: false},
		{name: "non-pod source: only ingress counts", policies: []*networkingv1.NetworkPolicy{denyEgressDB},
			pkt: evPkt(evTCP, evIPExt, evIPDB, 5432), wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
		{name: "non-pod destination: only egress counts", policies: []*networkingv1.NetworkPolicy{denyIngressWeb},
			pkt: evPkt(evTCP, evIPWeb, evIPExt, 443), wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
		{name: "egress-isolated pod to the outside is denied", policies: []*networkingv1.NetworkPolicy{denyEgressDB},
			pkt: evPkt(evTCP, evIPDB, evIPExt, 443), want: false},
	})
}

// --- §3.2 isolation and policyTypes ---

func TestEvaluate_Isolation(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "empty ingress list denies all ingress",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "deny", evSel())}, pkt: evPkt(evTCP, evIPDB, evIPWeb, 80),
			wantVerdict: &Verdict{Allowed: false, Egress: evDv(false, true), Ingress: evDv(true, false)}},
		{name: "ingress [{}] allows all",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "all", evSel(), evIn(nil, nil))}, pkt: evPkt(evUDP, evIPExt, evIPWeb, 9999),
			wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evDv(true, true, "prod/all")}},
		{name: "ingress [{}] allows ICMP too",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "all", evSel(), evIn(nil, nil))}, pkt: evPkt(evICMP, evIPExt, evIPWeb, 0), want: true},
		{name: "empty egress list with Egress type denies all egress",
			policies: []*networkingv1.NetworkPolicy{evEgressOnly("prod", "deny", evSel())}, pkt: evPkt(evTCP, evIPWeb, evIPExt, 443),
			wantVerdict: &Verdict{Allowed: false, Egress: evDv(true, false), Ingress: evOpen}},
		{name: "egress [{}] allows all egress",
			policies: []*networkingv1.NetworkPolicy{evEgressOnly("prod", "all", evSel(), evOut(nil, nil))}, pkt: evPkt(evSCTP, evIPWeb, evIPExt, 1),
			want: true},
		{name: "egress rules without Egress in policyTypes do not isolate egress",
			policies: []*networkingv1.NetworkPolicy{evNetpol("prod", "p", evSel(), evTypes(evIngressT), nil,
				[]networkingv1.NetworkPolicyEgressRule{evOut(evPeers(evIPPeer("10.9.9.0/24")), nil)})},
			pkt: evPkt(evTCP, evIPWeb, evIPExt, 443), wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
		{name: "policyTypes [Egress] does not isolate ingress",
			policies: []*networkingv1.NetworkPolicy{evEgressOnly("prod", "deny-egress", evSel())}, pkt: evPkt(evTCP, evIPExt, evIPWeb, 80),
			wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
		{name: "policyTypes [Egress] ignores its ingress rules",
			policies: []*networkingv1.NetworkPolicy{evNetpol("prod", "p", evSel(), evTypes(evEgressT),
				[]networkingv1.NetworkPolicyIngressRule{evIn(evPeers(evIPPeer("10.9.9.0/24")), nil)}, nil)},
			pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: true},
		{name: "policyTypes [Ingress, Egress] with no rules isolates both: egress",
			policies: []*networkingv1.NetworkPolicy{evNetpol("prod", "p", evSel("app", "web"), evTypes(evIngressT, evEgressT), nil, nil)},
			pkt:      evPkt(evTCP, evIPWeb, evIPDB, 5432), wantVerdict: &Verdict{Allowed: false, Egress: evDv(true, false), Ingress: evOpen}},
		{name: "policyTypes [Ingress, Egress] with no rules isolates both: ingress",
			policies: []*networkingv1.NetworkPolicy{evNetpol("prod", "p", evSel("app", "web"), evTypes(evIngressT, evEgressT), nil, nil)},
			pkt:      evPkt(evTCP, evIPDB, evIPWeb, 80), wantVerdict: &Verdict{Allowed: false, Egress: evOpen, Ingress: evDv(true, false)}},
		{name: "defaulting: no policyTypes, no rules = Ingress only",
			policies: []*networkingv1.NetworkPolicy{evNetpol("prod", "p", evSel(), nil, nil, nil)}, pkt: evPkt(evTCP, evIPWeb, evIPDB, 5432),
			wantVerdict: &Verdict{Allowed: false, Egress: evOpen, Ingress: evDv(true, false)}},
		{name: "defaulting: no policyTypes, egress rules = Ingress and Egress",
			policies: []*networkingv1.NetworkPolicy{evNetpol("prod", "p", evSel("app", "web"), nil, nil,
				[]networkingv1.NetworkPolicyEgressRule{evOut(evPeers(evIPPeer("10.9.9.0/24")), nil)})},
			pkt: evPkt(evTCP, evIPWeb, evIPExt, 443), wantVerdict: &Verdict{Allowed: false, Egress: evDv(true, false), Ingress: evOpen}},
		{name: "defaulting: no policyTypes, egress rules, ingress isolated too",
			policies: []*networkingv1.NetworkPolicy{evNetpol("prod", "p", evSel("app", "web"), nil, nil,
				[]networkingv1.NetworkPolicyEgressRule{evOut(nil, nil)})},
			pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), wantVerdict: &Verdict{Allowed: false, Egress: evOpen, Ingress: evDv(true, false)}},
		{name: "policy in another namespace does not select the pod",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("dev", "deny", evSel())}, pkt: evPkt(evTCP, evIPExt, evIPWeb, 80),
			wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
		{name: "podSelector not matching does not isolate",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "deny", evSel("app", "db"))}, pkt: evPkt(evTCP, evIPExt, evIPWeb, 80),
			wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
		{name: "isolating policy and allowing policy: isolated but allowed",
			policies: []*networkingv1.NetworkPolicy{
				evIngressOnly("prod", "deny", evSel()),
				evIngressOnly("prod", "allow-ext", evSel("app", "web"), evIn(evPeers(evIPPeer("203.0.113.0/24")), nil))},
			pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evDv(true, true, "prod/allow-ext")}},
	})
}

// --- §3.3 peers: podSelector, namespaceSelector, both, OR ---

func TestEvaluate_PeerSelectors(t *testing.T) {
	webFrom := func(p ...networkingv1.NetworkPolicyPeer) []*networkingv1.NetworkPolicy {
		return []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "web"), evIn(evPeers(p...), nil))}
	}
	runEvalCases(t, []evalCase{
		{name: "podSelector alone: pod in the policy's namespace", policies: webFrom(evPodPeer(evSel("tier", "backend"))),
			pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: true},
		{name: "podSelector alone: same labels in another namespace do not match", policies: webFrom(evPodPeer(evSel("tier", "frontend"))),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: false},
		{name: "podSelector {} alone: every pod of the policy's namespace", policies: webFrom(evPodPeer(evSel())),
			pkt: evPkt(evTCP, evIPAPI, evIPWeb, 80), want: true},
		{name: "podSelector {} alone: not other namespaces", policies: webFrom(evPodPeer(evSel())),
			pkt: evPkt(evTCP, evIPTool, evIPWeb, 80), want: false},
		{name: "podSelector {} alone: not external IPs", policies: webFrom(evPodPeer(evSel())),
			pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: false},
		{name: "namespaceSelector alone: every pod of the matching namespace", policies: webFrom(evNSPeer(evSel("team", "dev"))),
			pkt: evPkt(evTCP, evIPTool, evIPWeb, 80), want: true},
		{name: "namespaceSelector alone: not pods of other namespaces", policies: webFrom(evNSPeer(evSel("team", "dev"))),
			pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: false},
		{name: "namespaceSelector {}: pods of all namespaces", policies: webFrom(evNSPeer(evSel())),
			pkt: evPkt(evTCP, evIPX, evIPWeb, 80), want: true},
		{name: "namespaceSelector {}: own namespace too", policies: webFrom(evNSPeer(evSel())),
			pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: true},
		{name: "namespaceSelector {}: not non-pod IPs", policies: webFrom(evNSPeer(evSel())),
			pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: false},
		{name: "namespaceSelector {}: not the node", policies: webFrom(evNSPeer(evSel())),
			pkt: evPkt(evTCP, evIPNodeB, evIPWeb, 80), want: false},
		{name: "namespaceSelector {}: not a pod whose namespace is not in the snapshot", policies: webFrom(evNSPeer(evSel())),
			pkt: evPkt(evTCP, evIPGhost, evIPWeb, 80), want: false},
		{name: "namespaceSelector and podSelector in one peer: both match", policies: webFrom(evBothPeer(evSel("team", "dev"), evSel("app", "client"))),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: true},
		{name: "namespaceSelector and podSelector in one peer: namespace matches, pod does not",
			policies: webFrom(evBothPeer(evSel("team", "dev"), evSel("app", "client"))), pkt: evPkt(evTCP, evIPTool, evIPWeb, 80), want: false},
		{name: "namespaceSelector and podSelector in one peer: pod matches, namespace does not",
			policies: webFrom(evBothPeer(evSel("team", "dev"), evSel("tier", "backend"))), pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: false},
		{name: "two peers are OR: pod from the namespace peer", policies: webFrom(evNSPeer(evSel("team", "dev")), evPodPeer(evSel("app", "client"))),
			pkt: evPkt(evTCP, evIPTool, evIPWeb, 80), want: true},
		{name: "two peers are OR: podSelector peer stays in the policy's namespace",
			policies: webFrom(evNSPeer(evSel("team", "other")), evPodPeer(evSel("app", "client"))), pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: false},
		{name: "namespaceSelector with podSelector {}: all pods of the namespace",
			policies: webFrom(evBothPeer(evSel("env", "test"), evSel())), pkt: evPkt(evTCP, evIPTool, evIPWeb, 80), want: true},
		{name: "podSelector alone works in a namespace missing from the snapshot",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("ghost", "p", evSel(), evIn(evPeers(evPodPeer(evSel("app", "web"))), nil))},
			pkt:      evPkt(evTCP, evIPGhost, evIPGhost, 80), want: true},
		{name: "egress podSelector alone: destination in the policy's namespace",
			policies: []*networkingv1.NetworkPolicy{evEgressOnly("dev", "p", evSel(), evOut(evPeers(evPodPeer(evSel("app", "tool"))), nil))},
			pkt:      evPkt(evTCP, evIPClient, evIPTool, 80), want: true},
		{name: "egress podSelector alone: destination in another namespace does not match",
			policies: []*networkingv1.NetworkPolicy{evEgressOnly("dev", "p", evSel(), evOut(evPeers(evPodPeer(evSel())), nil))},
			pkt:      evPkt(evTCP, evIPClient, evIPWeb, 80), want: false},
		{name: "egress namespaceSelector: destination in a matching namespace",
			policies: []*networkingv1.NetworkPolicy{evEgressOnly("dev", "p", evSel(), evOut(evPeers(evNSPeer(evSel("team", "prod"))), nil))},
			pkt:      evPkt(evTCP, evIPClient, evIPWeb, 80), want: true},
	})
}

func TestEvaluate_MatchExpressions(t *testing.T) {
	webFrom := func(p networkingv1.NetworkPolicyPeer) []*networkingv1.NetworkPolicy {
		return []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "web"), evIn(evPeers(p), nil))}
	}
	// A selector of the pods of all namespaces, by pod labels.
	anyNS := func(pod *metav1.LabelSelector) networkingv1.NetworkPolicyPeer { return evBothPeer(evSel(), pod) }
	runEvalCases(t, []evalCase{
		{name: "In matches", policies: webFrom(anyNS(evExpr("app", metav1.LabelSelectorOpIn, "client", "db"))),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: true},
		{name: "In does not match other values", policies: webFrom(anyNS(evExpr("app", metav1.LabelSelectorOpIn, "client", "db"))),
			pkt: evPkt(evTCP, evIPTool, evIPWeb, 80), want: false},
		{name: "In does not match a pod without the label", policies: webFrom(anyNS(evExpr("app", metav1.LabelSelectorOpIn, "client"))),
			pkt: evPkt(evTCP, evIPX, evIPWeb, 80), want: false},
		{name: "NotIn matches other values", policies: webFrom(anyNS(evExpr("app", metav1.LabelSelectorOpNotIn, "client"))),
			pkt: evPkt(evTCP, evIPTool, evIPWeb, 80), want: true},
		{name: "NotIn matches a pod without the label", policies: webFrom(anyNS(evExpr("app", metav1.LabelSelectorOpNotIn, "client"))),
			pkt: evPkt(evTCP, evIPX, evIPWeb, 80), want: true},
		{name: "NotIn excludes the listed value", policies: webFrom(anyNS(evExpr("app", metav1.LabelSelectorOpNotIn, "client"))),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: false},
		{name: "Exists matches", policies: webFrom(anyNS(evExpr("tier", metav1.LabelSelectorOpExists))),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: true},
		{name: "Exists does not match a pod without the key", policies: webFrom(anyNS(evExpr("tier", metav1.LabelSelectorOpExists))),
			pkt: evPkt(evTCP, evIPTool, evIPWeb, 80), want: false},
		{name: "DoesNotExist matches a pod without the key", policies: webFrom(anyNS(evExpr("tier", metav1.LabelSelectorOpDoesNotExist))),
			pkt: evPkt(evTCP, evIPTool, evIPWeb, 80), want: true},
		{name: "DoesNotExist does not match a pod with the key", policies: webFrom(anyNS(evExpr("tier", metav1.LabelSelectorOpDoesNotExist))),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: false},
		{name: "namespaceSelector NotIn", policies: webFrom(evNSPeer(evExpr("team", metav1.LabelSelectorOpNotIn, "prod"))),
			pkt: evPkt(evTCP, evIPX, evIPWeb, 80), want: true},
		{name: "namespaceSelector DoesNotExist excludes labelled namespaces", policies: webFrom(evNSPeer(evExpr("team", metav1.LabelSelectorOpDoesNotExist))),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: false},
		{name: "matchLabels and matchExpressions are ANDed",
			policies: webFrom(anyNS(&metav1.LabelSelector{MatchLabels: map[string]string{"tier": "frontend"},
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"client"}}}})),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: false},
		{name: "expression in the policy's podSelector",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evExpr("tier", metav1.LabelSelectorOpIn, "backend"))},
			pkt:      evPkt(evTCP, evIPExt, evIPDB, 5432), want: false},
		{name: "expression in the policy's podSelector does not select others",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evExpr("tier", metav1.LabelSelectorOpIn, "backend"))},
			pkt:      evPkt(evTCP, evIPExt, evIPWeb, 80), want: true},
	})
}

// --- §3.4 ipBlock ---

func TestEvaluate_IPBlock(t *testing.T) {
	webFrom := func(p ...networkingv1.NetworkPolicyPeer) []*networkingv1.NetworkPolicy {
		return []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "web"), evIn(evPeers(p...), nil))}
	}
	runEvalCases(t, []evalCase{
		{name: "external IP inside cidr", policies: webFrom(evIPPeer("203.0.113.0/24")), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: true},
		{name: "external IP outside cidr", policies: webFrom(evIPPeer("198.51.100.0/24")), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: false},
		{name: "/32 cidr", policies: webFrom(evIPPeer("203.0.113.5/32")), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: true},
		{name: "cidr with host bits set", policies: webFrom(evIPPeer("203.0.113.77/24")), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: true},
		{name: "ipBlock matches a pod IP (other namespace)", policies: webFrom(evIPPeer("10.0.2.0/24")), pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: true},
		{name: "ipBlock matches a pod IP on egress", policies: []*networkingv1.NetworkPolicy{
			evEgressOnly("prod", "p", evSel("app", "web"), evOut(evPeers(evIPPeer("10.0.1.20/32")), nil))}, pkt: evPkt(evTCP, evIPWeb, evIPDB, 5432), want: true},
		{name: "ipBlock matches the node IP", policies: webFrom(evIPPeer("192.168.0.0/16")), pkt: evPkt(evTCP, evIPNodeB, evIPWeb, 80), want: true},
		{name: "except removes an IP", policies: webFrom(evIPPeer("10.0.0.0/16", "10.0.2.0/24")), pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: false},
		{name: "except keeps the rest of cidr", policies: webFrom(evIPPeer("10.0.0.0/16", "10.0.2.0/24")), pkt: evPkt(evTCP, evIPTool, evIPWeb, 80), want: true},
		{name: "except /32 boundary: the next address is inside", policies: webFrom(evIPPeer("10.0.2.0/24", "10.0.2.40/32")),
			pkt: evPkt(evTCP, "10.0.2.41", evIPWeb, 80), want: true},
		{name: "IP in both cidr and except is outside the peer", policies: webFrom(evIPPeer("10.0.2.0/24", "10.0.2.40/32")),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: false},
		{name: "IP excepted in one peer is allowed by a podSelector peer",
			policies: webFrom(evIPPeer("10.0.2.0/24", "10.0.2.40/32"), evBothPeer(evSel("team", "dev"), evSel("app", "client"))),
			pkt:      evPkt(evTCP, evIPClient, evIPWeb, 80), want: true},
		{name: "except applies to its own peer only: another ipBlock allows",
			policies: webFrom(evIPPeer("10.0.2.0/24", "10.0.2.40/32"), evIPPeer("10.0.2.40/31")),
			pkt:      evPkt(evTCP, evIPClient, evIPWeb, 80), want: true},
		{name: "except applies to its own rule only: another policy allows",
			policies: append(webFrom(evIPPeer("10.0.2.0/24", "10.0.2.40/32")),
				evIngressOnly("prod", "q", evSel("app", "web"), evIn(evPeers(evIPPeer("0.0.0.0/0")), nil))),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evDv(true, true, "prod/q")}},
		{name: "0.0.0.0/0 matches every IPv4 address", policies: webFrom(evIPPeer("0.0.0.0/0")), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: true},
		{name: "0.0.0.0/0 does not match IPv6", policies: webFrom(evIPPeer("0.0.0.0/0")), pkt: evPkt(evTCP, evIPExt6, evIPWeb6, 80), want: false},
		{name: "::/0 does not match IPv4", policies: webFrom(evIPPeer("::/0")), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: false},
		{name: "::/0 matches IPv6", policies: webFrom(evIPPeer("::/0")), pkt: evPkt(evTCP, evIPExt6, evIPWeb6, 80), want: true},
		{name: "IPv6 except", policies: webFrom(evIPPeer("2001:db8::/32", "2001:db8::/64")), pkt: evPkt(evTCP, evIPExt6, evIPWeb6, 80), want: false},
		{name: "IPv4 except does not remove IPv6", policies: webFrom(evIPPeer("::/0", "0.0.0.0/0")), pkt: evPkt(evTCP, evIPExt6, evIPWeb6, 80), want: true},
		{name: "IPv4-mapped packet address is the IPv4 address", policies: webFrom(evIPPeer("203.0.113.0/24")),
			pkt: evPkt(evTCP, "::ffff:203.0.113.5", "::ffff:10.0.1.10", 80), want: true},
	})
}

// --- §3.5 ports ---

func TestEvaluate_Ports(t *testing.T) {
	webOn := func(p ...networkingv1.NetworkPolicyPort) []*networkingv1.NetworkPolicy {
		return []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel(), evIn(nil, evPorts(p...)))}
	}
	egressTo := func(p ...networkingv1.NetworkPolicyPort) []*networkingv1.NetworkPolicy {
		return []*networkingv1.NetworkPolicy{evEgressOnly("dev", "p", evSel(), evOut(nil, evPorts(p...)))}
	}
	runEvalCases(t, []evalCase{
		{name: "numeric TCP port matches", policies: webOn(evPort(evTCP, 80)), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: true},
		{name: "numeric TCP port: other port denied", policies: webOn(evPort(evTCP, 80)), pkt: evPkt(evTCP, evIPExt, evIPWeb, 81), want: false},
		{name: "protocol defaults to TCP", policies: webOn(evPort("", 80)), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: true},
		{name: "protocol defaults to TCP: UDP denied", policies: webOn(evPort("", 53)), pkt: evPkt(evUDP, evIPExt, evIPWeb, 53), want: false},
		{name: "UDP-only rule denies TCP on the same port", policies: webOn(evPort(evUDP, 53)), pkt: evPkt(evTCP, evIPExt, evIPWeb, 53), want: false},
		{name: "UDP-only rule allows UDP", policies: webOn(evPort(evUDP, 53)), pkt: evPkt(evUDP, evIPExt, evIPWeb, 53), want: true},
		{name: "SCTP rule is not TCP", policies: webOn(evPort(evSCTP, 80)), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: false},
		{name: "SCTP rule allows SCTP", policies: webOn(evPort(evSCTP, 80)), pkt: evPkt(evSCTP, evIPExt, evIPWeb, 80), want: true},
		{name: "TCP rule is not SCTP", policies: webOn(evPort(evTCP, 80)), pkt: evPkt(evSCTP, evIPExt, evIPWeb, 80), want: false},
		{name: "nil port = all ports of the protocol", policies: webOn(evAllPorts(evUDP)), pkt: evPkt(evUDP, evIPExt, evIPWeb, 65535), want: true},
		{name: "nil port = only that protocol", policies: webOn(evAllPorts(evUDP)), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: false},
		{name: "port entry with nothing set = all TCP ports", policies: webOn(networkingv1.NetworkPolicyPort{}), pkt: evPkt(evTCP, evIPExt, evIPWeb, 1), want: true},
		{name: "port entry with nothing set is not UDP", policies: webOn(networkingv1.NetworkPolicyPort{}), pkt: evPkt(evUDP, evIPExt, evIPWeb, 1), want: false},
		{name: "ICMP matches no rule with ports", policies: webOn(evAllPorts(evTCP), evAllPorts(evUDP), evAllPorts(evSCTP)), pkt: evPkt(evICMP, evIPExt, evIPWeb, 0), want: false},
		{name: "ICMP is allowed by a rule without ports",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel(), evIn(evPeers(evIPPeer("203.0.113.0/24")), nil))},
			pkt:      evPkt(evICMP, evIPExt, evIPWeb, 0), want: true},
		{name: "several ports are OR", policies: webOn(evPort(evTCP, 80), evPort(evUDP, 53)), pkt: evPkt(evUDP, evIPExt, evIPWeb, 53), want: true},
		{name: "ports and peers are AND: right port, wrong peer",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel(), evIn(evPeers(evIPPeer("198.51.100.0/24")), evPorts(evPort(evTCP, 80))))},
			pkt:      evPkt(evTCP, evIPExt, evIPWeb, 80), want: false},
		{name: "rules are OR: port from one rule, peer from another do not combine",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel(),
				evIn(evPeers(evIPPeer("198.51.100.0/24")), evPorts(evPort(evTCP, 80))), evIn(evPeers(evIPPeer("203.0.113.0/24")), evPorts(evPort(evTCP, 443))))},
			pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: false},

		// endPort
		{name: "endPort: first port", policies: webOn(evPortRange(evTCP, 8000, 8080)), pkt: evPkt(evTCP, evIPExt, evIPWeb, 8000), want: true},
		{name: "endPort: last port (inclusive)", policies: webOn(evPortRange(evTCP, 8000, 8080)), pkt: evPkt(evTCP, evIPExt, evIPWeb, 8080), want: true},
		{name: "endPort: inside", policies: webOn(evPortRange(evTCP, 8000, 8080)), pkt: evPkt(evTCP, evIPExt, evIPWeb, 8042), want: true},
		{name: "endPort: one below", policies: webOn(evPortRange(evTCP, 8000, 8080)), pkt: evPkt(evTCP, evIPExt, evIPWeb, 7999), want: false},
		{name: "endPort: one above", policies: webOn(evPortRange(evTCP, 8000, 8080)), pkt: evPkt(evTCP, evIPExt, evIPWeb, 8081), want: false},
		{name: "endPort: protocol still checked", policies: webOn(evPortRange(evUDP, 8000, 8080)), pkt: evPkt(evTCP, evIPExt, evIPWeb, 8042), want: false},
		{name: "endPort equal to port", policies: webOn(evPortRange(evTCP, 8000, 8000)), pkt: evPkt(evTCP, evIPExt, evIPWeb, 8000), want: true},
		{name: "endPort up to 65535", policies: webOn(evPortRange(evUDP, 1024, 65535)), pkt: evPkt(evUDP, evIPExt, evIPWeb, 65535), want: true},

		// named ports, ingress: resolved on the destination (isolated) pod
		{name: "named ingress port resolved on the destination pod", policies: webOn(evNamedPort("", "http")), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: true},
		{name: "named ingress port: other number denied", policies: webOn(evNamedPort("", "http")), pkt: evPkt(evTCP, evIPExt, evIPWeb, 8080), want: false},
		{name: "named ingress port: pod without that name denied", policies: webOn(evNamedPort("", "http")), pkt: evPkt(evTCP, evIPExt, evIPDB, 80), want: false},
		{name: "named ingress port: same name, per pod number (db metrics 9090)", policies: webOn(evNamedPort(evTCP, "metrics")),
			pkt: evPkt(evTCP, evIPExt, evIPDB, 9090), want: true},
		{name: "named ingress port: same name, per pod number (api metrics 9100)", policies: webOn(evNamedPort(evTCP, "metrics")),
			pkt: evPkt(evTCP, evIPExt, evIPAPI, 9100), want: true},
		{name: "named ingress port: api's number does not open db", policies: webOn(evNamedPort(evTCP, "metrics")),
			pkt: evPkt(evTCP, evIPExt, evIPDB, 9100), want: false},
		{name: "named port: container port without protocol is TCP", policies: webOn(evNamedPort(evTCP, "sql")), pkt: evPkt(evTCP, evIPExt, evIPDB, 5432), want: true},
		{name: "named port: UDP name does not match a TCP packet of the same number", policies: webOn(evNamedPort(evUDP, "stats")),
			pkt: evPkt(evTCP, evIPExt, evIPDB, 9090), want: false},
		{name: "named port: UDP name matches UDP", policies: webOn(evNamedPort(evUDP, "stats")), pkt: evPkt(evUDP, evIPExt, evIPDB, 9090), want: true},
		{name: "named port: protocol defaults to TCP, UDP container port not matched", policies: webOn(evNamedPort("", "dns")),
			pkt: evPkt(evUDP, evIPExt, evIPWeb, 53), want: false},
		{name: "named port: protocol defaults to TCP, TCP packet on the UDP port's number", policies: webOn(evNamedPort("", "dns")),
			pkt: evPkt(evTCP, evIPExt, evIPWeb, 53), want: false},
		{name: "named port: explicit UDP", policies: webOn(evNamedPort(evUDP, "dns")), pkt: evPkt(evUDP, evIPExt, evIPWeb, 53), want: true},
		{name: "named port: SCTP", policies: webOn(evNamedPort(evSCTP, "sig")), pkt: evPkt(evSCTP, evIPExt, evIPAPI, 3868), want: true},
		{name: "named port: SCTP name, TCP packet", policies: webOn(evNamedPort(evTCP, "sig")), pkt: evPkt(evTCP, evIPExt, evIPAPI, 3868), want: false},

		// named ports, egress: resolved on the destination pod of the packet
		{name: "named egress port resolved on the destination pod (db 9090)", policies: egressTo(evNamedPort(evTCP, "metrics")),
			pkt: evPkt(evTCP, evIPClient, evIPDB, 9090), want: true},
		{name: "named egress port resolved on the destination pod (api 9100)", policies: egressTo(evNamedPort(evTCP, "metrics")),
			pkt: evPkt(evTCP, evIPClient, evIPAPI, 9100), want: true},
		{name: "named egress port: db's number to api denied", policies: egressTo(evNamedPort(evTCP, "metrics")),
			pkt: evPkt(evTCP, evIPClient, evIPAPI, 9090), want: false},
		{name: "named egress port: not resolved on the source pod", policies: egressTo(evNamedPort(evTCP, "http")),
			pkt: evPkt(evTCP, evIPClient, evIPAPI, 80), want: false},
		{name: "named egress port: destination not a pod matches nothing", policies: egressTo(evNamedPort(evTCP, "http")),
			pkt: evPkt(evTCP, evIPClient, evIPExt, 80), want: false},
		{name: "named egress port: hostNetwork destination matches nothing", policies: egressTo(evNamedPort(evTCP, "http")),
			pkt: evPkt(evTCP, evIPClient, evIPHostnet, 80), want: false},
		{name: "named egress port: Succeeded destination matches nothing", policies: egressTo(evNamedPort(evTCP, "http")),
			pkt: evPkt(evTCP, evIPClient, evIPDone, 80), want: false},
		{name: "named egress port, IPv6 destination", policies: egressTo(evNamedPort(evTCP, "metrics")),
			pkt: evPkt(evTCP, evIPClient6, evIPAPI6, 9100), want: true},
	})
}

// --- §3.6 additive, order, deletion ---

func TestEvaluate_Additive(t *testing.T) {
	fromDB := evIngressOnly("prod", "from-db", evSel("app", "web"), evIn(evPeers(evPodPeer(evSel("app", "db"))), nil))
	fromDev := evIngressOnly("prod", "from-dev", evSel("tier", "frontend"), evIn(evPeers(evNSPeer(evSel("team", "dev"))), nil))
	fromDev10 := evIngressOnly("prod", "from-10", evSel(), evIn(evPeers(evIPPeer("10.0.0.0/8")), nil))
	denyAll := evIngressOnly("prod", "deny-all", evSel())
	runEvalCases(t, []evalCase{
		{name: "first policy allows its peer", policies: []*networkingv1.NetworkPolicy{fromDB, fromDev},
			pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evDv(true, true, "prod/from-db")}},
		{name: "second policy allows its peer", policies: []*networkingv1.NetworkPolicy{fromDB, fromDev},
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evDv(true, true, "prod/from-dev")}},
		{name: "neither allows", policies: []*networkingv1.NetworkPolicy{fromDB, fromDev},
			pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), wantVerdict: &Verdict{Allowed: false, Egress: evOpen, Ingress: evDv(true, false)}},
		{name: "both allow: By is sorted", policies: []*networkingv1.NetworkPolicy{fromDev10, fromDev, denyAll},
			pkt:         evPkt(evTCP, evIPClient, evIPWeb, 80),
			wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evDv(true, true, "prod/from-10", "prod/from-dev")}},
		{name: "order does not matter", policies: []*networkingv1.NetworkPolicy{denyAll, fromDev, fromDev10},
			pkt:         evPkt(evTCP, evIPClient, evIPWeb, 80),
			wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evDv(true, true, "prod/from-10", "prod/from-dev")}},
		{name: "a deny-all policy does not subtract", policies: []*networkingv1.NetworkPolicy{denyAll, fromDB},
			pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: true},
		{name: "deleting the allowing policy denies again", policies: []*networkingv1.NetworkPolicy{denyAll},
			pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: false},
		{name: "deleting every selecting policy restores access", policies: []*networkingv1.NetworkPolicy{fromDev},
			pkt: evPkt(evTCP, evIPExt, evIPDB, 5432), wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
		{name: "no policy left", policies: nil, pkt: evPkt(evTCP, evIPExt, evIPWeb, 80),
			wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
	})

	// Order independence and deletion over a whole set, for every packet of
	// a small grid.
	all := []*networkingv1.NetworkPolicy{fromDB, fromDev, fromDev10, denyAll,
		evEgressOnly("dev", "egress", evSel("app", "client"), evOut(evPeers(evNSPeer(evSel("team", "prod"))), evPorts(evPort(evTCP, 80))))}
	addrs := []string{evIPWeb, evIPDB, evIPAPI, evIPClient, evIPTool, evIPX, evIPExt, evIPWeb6, evIPClient6}
	for _, src := range addrs {
		for _, dst := range addrs {
			p := evPkt(evTCP, src, dst, 80)
			s := evalFixture()
			s.Policies = all
			want := Evaluate(s, p)
			s.Policies = slices.Clone(all)
			slices.Reverse(s.Policies)
			if diff := cmp.Diff(want, Evaluate(s, p)); diff != "" {
				t.Errorf("reversed policies change %v (-want +got):\n%s", p, diff)
			}
			s.Policies = nil
			if got := Evaluate(s, p); !got.Allowed {
				t.Errorf("after deleting every policy %v is denied: %+v", p, got)
			}
		}
	}
}

// --- §3.7 label changes ---

func TestEvaluate_LabelChanges(t *testing.T) {
	policies := []*networkingv1.NetworkPolicy{
		evIngressOnly("prod", "p", evSel("app", "web"), evIn(evPeers(evBothPeer(evSel("team", "dev"), evSel("app", "client"))), nil)),
	}
	setPodLabel := func(key, k, v string) func(*Snapshot) {
		return func(s *Snapshot) {
			for i := range s.Pods {
				if s.Pods[i].Key() == key {
					s.Pods[i].Labels = map[string]string{k: v}
				}
			}
		}
	}
	setNSLabels := func(name string, l map[string]string) func(*Snapshot) {
		return func(s *Snapshot) {
			for i := range s.Namespaces {
				if s.Namespaces[i].Name == name {
					s.Namespaces[i].Labels = l
				}
			}
		}
	}
	runEvalCases(t, []evalCase{
		{name: "before: client allowed", policies: policies, pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: true},
		{name: "source pod relabelled out of the peer", policies: policies, edit: setPodLabel("dev/client", "app", "other"),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: false},
		{name: "source pod relabelled into the peer", policies: policies, edit: setPodLabel("dev/tool", "app", "client"),
			pkt: evPkt(evTCP, evIPTool, evIPWeb, 80), want: true},
		{name: "namespace relabelled out of the peer", policies: policies, edit: setNSLabels("dev", map[string]string{"team": "qa"}),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: false},
		{name: "namespace relabelled into the peer", policies: policies,
			edit: func(s *Snapshot) {
				setNSLabels("other", map[string]string{"team": "dev"})(s)
				setPodLabel("other/x", "app", "client")(s)
			},
			pkt: evPkt(evTCP, evIPX, evIPWeb, 80), want: true},
		{name: "destination relabelled out of the policy's podSelector is no longer isolated", policies: policies,
			edit: setPodLabel("prod/web", "app", "web2"), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80),
			wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
		{name: "pod relabelled into the policy's podSelector becomes isolated", policies: policies,
			edit: setPodLabel("prod/db", "app", "web"), pkt: evPkt(evTCP, evIPExt, evIPDB, 5432),
			wantVerdict: &Verdict{Allowed: false, Egress: evOpen, Ingress: evDv(true, false)}},
	})
}

// --- §3.8 hostNetwork, and inactive pods ---

func TestEvaluate_HostNetwork(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "hostNetwork pod is not selected for egress by podSelector {}",
			policies: []*networkingv1.NetworkPolicy{evEgressOnly("prod", "deny", evSel())}, pkt: evPkt(evTCP, evIPHostnet, evIPExt, 443),
			wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
		{name: "hostNetwork pod is not selected for ingress by its labels",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "deny", evSel("app", "web"))}, pkt: evPkt(evTCP, evIPExt, evIPHostnet, 80),
			wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
		{name: "hostNetwork source is not a podSelector {} peer",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "db"), evIn(evPeers(evPodPeer(evSel())), nil))},
			pkt:      evPkt(evTCP, evIPHostnet, evIPDB, 5432), want: false},
		{name: "hostNetwork source is not a matching podSelector peer",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "db"), evIn(evPeers(evPodPeer(evSel("app", "web"))), nil))},
			pkt:      evPkt(evTCP, evIPHostnet, evIPDB, 5432), want: false},
		{name: "hostNetwork source is not a namespaceSelector {} peer",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "db"), evIn(evPeers(evNSPeer(evSel())), nil))},
			pkt:      evPkt(evTCP, evIPHostnet, evIPDB, 5432), want: false},
		{name: "hostNetwork source is not a namespace+pod peer",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "db"), evIn(evPeers(evBothPeer(evSel(), evSel())), nil))},
			pkt:      evPkt(evTCP, evIPHostnet, evIPDB, 5432), want: false},
		{name: "hostNetwork destination is not an egress podSelector peer",
			policies: []*networkingv1.NetworkPolicy{evEgressOnly("prod", "p", evSel("app", "db"), evOut(evPeers(evPodPeer(evSel("app", "web"))), nil))},
			pkt:      evPkt(evTCP, evIPDB, evIPHostnet, 80), want: false},
		{name: "hostNetwork source matched by ipBlock",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "db"), evIn(evPeers(evIPPeer("192.168.0.1/32")), nil))},
			pkt:      evPkt(evTCP, evIPHostnet, evIPDB, 5432), want: true},
		{name: "hostNetwork destination matched by egress ipBlock",
			policies: []*networkingv1.NetworkPolicy{evEgressOnly("prod", "p", evSel("app", "db"), evOut(evPeers(evIPPeer("192.168.0.0/24")), nil))},
			pkt:      evPkt(evTCP, evIPDB, evIPHostnet, 80), want: true},
	})
}

func TestEvaluate_InactivePods(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "Succeeded pod is not isolated for ingress",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "deny", evSel())}, pkt: evPkt(evTCP, evIPExt, evIPDone, 80),
			wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
		{name: "Succeeded pod is not isolated for egress",
			policies: []*networkingv1.NetworkPolicy{evEgressOnly("prod", "deny", evSel())}, pkt: evPkt(evTCP, evIPDone, evIPExt, 443),
			wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
		{name: "Succeeded pod is not a podSelector peer",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "db"), evIn(evPeers(evPodPeer(evSel("app", "web"))), nil))},
			pkt:      evPkt(evTCP, evIPDone, evIPDB, 5432), want: false},
		{name: "Succeeded pod is not a namespaceSelector peer",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "db"), evIn(evPeers(evNSPeer(evSel())), nil))},
			pkt:      evPkt(evTCP, evIPDone, evIPDB, 5432), want: false},
		{name: "Succeeded pod's IP still matches an ipBlock",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "db"), evIn(evPeers(evIPPeer("10.0.1.99/32")), nil))},
			pkt:      evPkt(evTCP, evIPDone, evIPDB, 5432), want: true},
		{name: "Failed pod is not a peer",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "db"), evIn(evPeers(evPodPeer(evSel())), nil))},
			edit:     func(s *Snapshot) { s.Pods[0].Phase = corev1.PodFailed }, pkt: evPkt(evTCP, evIPWeb, evIPDB, 5432), want: false},
		{name: "IP reused: the Succeeded pod's IP now belongs to an active pod",
			policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "db"), evIn(evPeers(evPodPeer(evSel("app", "new"))), nil))},
			edit: func(s *Snapshot) {
				s.Pods = append(s.Pods, Pod{Namespace: "prod", Name: "new", Phase: corev1.PodRunning,
					IPs: []netip.Addr{netip.MustParseAddr(evIPDone)}, Labels: map[string]string{"app": "new"}})
			},
			pkt: evPkt(evTCP, evIPDone, evIPDB, 5432), want: true},
		{name: "Pending pod with an IP is active", policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "deny", evSel())},
			edit: func(s *Snapshot) { s.Pods[9].IPs = []netip.Addr{netip.MustParseAddr("10.0.2.90")} },
			pkt:  evPkt(evTCP, evIPExt, "10.0.2.90", 80), want: false},
		{name: "pod without an IP owns nothing", policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "deny", evSel())},
			pkt: evPkt(evTCP, evIPExt, "10.0.2.90", 80), wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
	})
}

// --- §3.9 dual stack ---

func TestEvaluate_DualStack(t *testing.T) {
	webFrom := func(p ...networkingv1.NetworkPolicyPeer) []*networkingv1.NetworkPolicy {
		return []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "web"), evIn(evPeers(p...), nil))}
	}
	runEvalCases(t, []evalCase{
		{name: "IPv6 destination address selects the dual-stack pod", policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "web"))}, pkt: evPkt(evTCP, evIPExt6, evIPWeb6, 80),
			wantVerdict: &Verdict{Allowed: false, Egress: evOpen, Ingress: evDv(true, false)}},
		{name: "dual-stack pod matched by a v6 CIDR", policies: webFrom(evIPPeer("fd00:2::/64")), pkt: evPkt(evTCP, evIPClient6, evIPWeb6, 80), want: true},
		{name: "v4 CIDR of the same pod does not match its v6 address", policies: webFrom(evIPPeer("10.0.2.40/32")),
			pkt: evPkt(evTCP, evIPClient6, evIPWeb6, 80), want: false},
		{name: "v6 CIDR does not match the pod's v4 address", policies: webFrom(evIPPeer("fd00:2::/64")),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: false},
		{name: "podSelector peer matches the pod by its v6 address", policies: webFrom(evBothPeer(evSel(), evSel("app", "client"))),
			pkt: evPkt(evTCP, evIPClient6, evIPWeb6, 80), want: true},
		{name: "podSelector peer matches the pod by its v4 address", policies: webFrom(evBothPeer(evSel(), evSel("app", "client"))),
			pkt: evPkt(evTCP, evIPClient, evIPWeb, 80), want: true},
		{name: "egress isolation applies to the v6 address",
			policies: []*networkingv1.NetworkPolicy{evEgressOnly("dev", "p", evSel("app", "client"), evOut(evPeers(evIPPeer("2001:db8::/32")), nil))},
			pkt:      evPkt(evTCP, evIPClient6, evIPExt6, 443), want: true},
		{name: "egress v6-only rule denies v4",
			policies: []*networkingv1.NetworkPolicy{evEgressOnly("dev", "p", evSel("app", "client"), evOut(evPeers(evIPPeer("::/0")), nil))},
			pkt:      evPkt(evTCP, evIPClient, evIPExt, 443), want: false},
		{name: "named port on the v6 address", policies: []*networkingv1.NetworkPolicy{
			evIngressOnly("prod", "p", evSel("app", "web"), evIn(nil, evPorts(evNamedPort(evTCP, "http"))))}, pkt: evPkt(evTCP, evIPExt6, evIPWeb6, 80), want: true},
	})
}

// --- self traffic and invalid input ---

func TestEvaluate_Self(t *testing.T) {
	deny := []*networkingv1.NetworkPolicy{evNetpol("prod", "deny", evSel(), evTypes(evIngressT, evEgressT), nil, nil)}
	runEvalCases(t, []evalCase{
		{name: "a pod cannot block access to itself", policies: deny, pkt: evPkt(evTCP, evIPWeb, evIPWeb, 80),
			wantVerdict: &Verdict{Allowed: true, Egress: evDv(true, false), Ingress: evDv(true, false)}},
		{name: "itself across families", policies: deny, pkt: evPkt(evTCP, evIPWeb6, evIPWeb, 80), want: true},
		{name: "another pod is still denied", policies: deny, pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: false},
	})
}

func TestEvaluate_Invalid(t *testing.T) {
	webFrom := func(p ...networkingv1.NetworkPolicyPeer) []*networkingv1.NetworkPolicy {
		return []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel("app", "web"), evIn(evPeers(p...), nil))}
	}
	badSel := evExpr("app", metav1.LabelSelectorOpIn) // In needs values
	runEvalCases(t, []evalCase{
		{name: "unparseable cidr matches nothing", policies: webFrom(evIPPeer("203.0.113.0/33")), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: false},
		{name: "unparseable except: peer matches nothing", policies: webFrom(evIPPeer("0.0.0.0/0", "nonsense")), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: false},
		{name: "invalid peer does not hide a valid one", policies: webFrom(evIPPeer("bad"), evIPPeer("203.0.113.0/24")), pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: true},
		{name: "bad podSelector in a peer matches nothing", policies: webFrom(evPodPeer(badSel)), pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: false},
		{name: "bad namespaceSelector in a peer matches nothing", policies: webFrom(evNSPeer(badSel)), pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: false},
		{name: "ipBlock with a selector matches nothing",
			policies: webFrom(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}, PodSelector: evSel()}),
			pkt:      evPkt(evTCP, evIPDB, evIPWeb, 80), want: false},
		{name: "peer with no field matches nothing", policies: webFrom(networkingv1.NetworkPolicyPeer{}), pkt: evPkt(evTCP, evIPDB, evIPWeb, 80), want: false},
		{name: "bad policy podSelector selects no pod", policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "deny", badSel)},
			pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), wantVerdict: &Verdict{Allowed: true, Egress: evOpen, Ingress: evOpen}},
		{name: "endPort below port matches nothing", policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel(),
			evIn(nil, evPorts(evPortRange(evTCP, 90, 80))))}, pkt: evPkt(evTCP, evIPExt, evIPWeb, 85), want: false},
		{name: "endPort without port matches nothing", policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel(),
			evIn(nil, evPorts(networkingv1.NetworkPolicyPort{EndPort: new(int32(90))})))}, pkt: evPkt(evTCP, evIPExt, evIPWeb, 85), want: false},
		{name: "endPort with a named port matches nothing", policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel(),
			evIn(nil, evPorts(func() networkingv1.NetworkPolicyPort {
				p := evNamedPort(evTCP, "http")
				p.EndPort = new(int32(90))
				return p
			}())))},
			pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: false},
		{name: "unknown port protocol matches nothing", policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel(),
			evIn(nil, evPorts(evAllPorts(evICMP))))}, pkt: evPkt(evICMP, evIPExt, evIPWeb, 0), want: false},
		{name: "empty packet protocol is TCP", policies: []*networkingv1.NetworkPolicy{evIngressOnly("prod", "p", evSel(),
			evIn(nil, evPorts(evPort(evTCP, 80))))}, pkt: evPkt("", evIPExt, evIPWeb, 80), want: true},
		{name: "nil policy is ignored", policies: []*networkingv1.NetworkPolicy{nil}, pkt: evPkt(evTCP, evIPExt, evIPWeb, 80), want: true},
	})
}

package explain

// IP plan (two nodes):
//   node-1 192.168.0.1   x/a 10.244.1.10 (pod=a, serve-80-tcp=80)   x/b 10.244.1.11 (pod=b)
//   node-2 192.168.0.2   y/c 10.244.2.12 (pod=c)                    y/h host network on node-2
//   outside: 203.0.113.5
// Policies: x/deny-all isolates x for ingress; x/allow-b admits x/b to
// pod=a on TCP 80; the Admin ClusterNetworkPolicy deny-outside denies
// 203.0.113.0/24 from x's egress, after passing y's pods on to NetworkPolicy.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func pod(key, node, label string, port int32, ip string) policy.Pod {
	ns, name, _ := strings.Cut(key, "/")
	k, v, _ := strings.Cut(label, "=")
	p := policy.Pod{Namespace: ns, Name: name, NodeName: node, Labels: map[string]string{k: v}, Phase: corev1.PodRunning,
		IPs: []netip.Addr{netip.MustParseAddr(ip)}}
	if port != 0 {
		p.Ports = []policy.ContainerPort{{Name: "serve-80-tcp", Protocol: corev1.ProtocolTCP, Port: port}}
	}
	return p
}

func fixture(t *testing.T) *State {
	t.Helper()
	hostNet := pod("y/h", "node-2", "pod=h", 0, "192.168.0.2")
	hostNet.HostNetwork = true
	snap := &policy.Snapshot{
		Namespaces: []policy.Namespace{{Name: "x", Labels: map[string]string{"ns": "x"}}, {Name: "y", Labels: map[string]string{"ns": "y"}}},
		Pods: []policy.Pod{
			pod("x/a", "node-1", "pod=a", 80, "10.244.1.10"),
			pod("x/b", "node-1", "pod=b", 0, "10.244.1.11"),
			pod("y/c", "node-2", "pod=c", 0, "10.244.2.12"),
			hostNet,
		},
		Nodes: []policy.Node{
			{Name: "node-1", Addresses: []netip.Addr{netip.MustParseAddr("192.168.0.1")}},
			{Name: "node-2", Addresses: []netip.Addr{netip.MustParseAddr("192.168.0.2")}},
		},
	}
	for _, doc := range []string{
		`{metadata: {namespace: x, name: deny-all}, spec: {podSelector: {}, policyTypes: [Ingress]}}`,
		`{metadata: {namespace: x, name: allow-b}, spec: {podSelector: {matchLabels: {pod: a}}, policyTypes: [Ingress],
			ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: serve-80-tcp}]}]}}`,
	} {
		np := &networkingv1.NetworkPolicy{}
		if err := yaml.UnmarshalStrict([]byte(doc), np); err != nil {
			t.Fatal(err)
		}
		snap.Policies = append(snap.Policies, np)
	}
	cnp := &policyv1beta1.ClusterNetworkPolicy{}
	if err := yaml.UnmarshalStrict([]byte(`{metadata: {name: deny-outside}, spec: {tier: Admin, priority: 10,
		subject: {namespaces: {matchLabels: {ns: x}}},
		egress: [{name: to-y, action: Pass, to: [{namespaces: {matchLabels: {ns: "y"}}}]},
		         {name: outside, action: Deny, to: [{networks: ["203.0.113.0/24"]}]}]}}`), cnp); err != nil {
		t.Fatal(err)
	}
	snap.ClusterNetworkPolicies = append(snap.ClusterNetworkPolicies, cnp)
	return &State{Snapshot: snap, CNPCRD: true}
}

// compiledFetcher serves the compiled fixture per node, as agents in step
// with the API would (with the deny log when denyLog is set); tamper edits
// it first (drift).
func compiledFetcher(st *State, denyLog *nft.DenyLog, tamper func(node string, rs *nft.Ruleset)) RulesetFetcher {
	return func(_ context.Context, node string) (*controllers.AppliedRulesetDoc, error) {
		one := *st.Snapshot
		one.NodeName = node
		c := policy.NewNodeCompiler(node)
		c.LoadSnapshot(&one)
		c.SetDenyLog(denyLog)
		rs, _ := c.Compile()
		if tamper != nil {
			tamper(node, rs)
		}
		return &controllers.AppliedRulesetDoc{Node: node, AppliedAt: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), Ruleset: rs}, nil
	}
}

func TestExplain_Golden(t *testing.T) {
	openDrift := func(node string, rs *nft.Ruleset) {
		// Someone flushed x/a's ingress chain on node-1: it lets everything in.
		for name, c := range rs.Chains {
			if node == "node-1" && strings.HasPrefix(name, "in-") && strings.HasSuffix(name, "x/a") {
				c.Rules = nil
			}
		}
	}
	// audit puts the named NetworkPolicies of the fixture in audit mode.
	audit := func(names ...string) func(*State) {
		return func(st *State) {
			for _, np := range st.Snapshot.Policies {
				if slices.Contains(names, np.Namespace+"/"+np.Name) {
					np.Annotations = map[string]string{policy.EnforcementAnnotation: policy.EnforcementAudit}
				}
			}
		}
	}
	// auditCNP puts the named ClusterNetworkPolicies of the fixture in
	// audit mode.
	auditCNP := func(names ...string) func(*State) {
		return func(st *State) {
			for _, cnp := range st.Snapshot.ClusterNetworkPolicies {
				if slices.Contains(names, cnp.Name) {
					cnp.Annotations = map[string]string{policy.EnforcementAnnotation: policy.EnforcementAudit}
				}
			}
		}
	}
	cases := []struct {
		name   string
		q      Query
		live   bool
		tamper func(string, *nft.Ruleset)
		// state edits the fixture; the agents then run with the deny log
		// (audit records need it).
		state func(*State)
	}{
		// y/c -> x/a as in denied-no-rule-admits, with both of x/a's
		// policies audited: allowed, and what they would deny is said.
		{name: "audit-would-deny", q: Query{From: "y/c", To: "x/a", Port: 80}, live: true, state: audit("x/deny-all", "x/allow-b")},
		{name: "audit-admitted", q: Query{From: "x/b", To: "x/a", Port: 80}, live: true, state: audit("x/deny-all", "x/allow-b")},
		{name: "audit-all-would-deny", q: Query{From: "y/c", To: "x/a", Port: 80}, live: true,
			state: func(st *State) { st.Snapshot.AuditAll = true }},
		// The Admin Deny of x's egress to the outside, in audit mode: the
		// connection goes on, and the rule it would deny by is named.
		{name: "audit-cnp-would-deny", q: Query{From: "x/b", To: "203.0.113.5", Port: 443}, live: true, state: auditCNP("deny-outside")},
		// Only deny-all audited: the enforced allow-b decides.
		{name: "audit-beside-enforced", q: Query{From: "y/c", To: "x/a", Port: 80}, live: true, state: audit("x/deny-all")},
		{name: "allowed-by-networkpolicy-rule", q: Query{From: "x/b", To: "x/a", Port: 80}, live: true},
		{name: "denied-no-rule-admits", q: Query{From: "y/c", To: "x/a", Port: 80}, live: true},
		{name: "admin-deny-egress", q: Query{From: "x/b", To: "203.0.113.5", Port: 443}, live: true},
		{name: "admin-pass-then-not-isolated", q: Query{From: "x/a", To: "y/c", Protocol: corev1.ProtocolUDP, Port: 53}, live: true},
		{name: "own-node-reaches-its-pod", q: Query{From: "node/node-1", To: "x/a", Port: 80}, live: true},
		{name: "host-network-pod-on-another-node", q: Query{From: "y/h", To: "x/a", Port: 80}, live: true},
		{name: "live-table-drifted", q: Query{From: "y/c", To: "x/a", Port: 80}, live: true, tamper: openDrift},
		{name: "self", q: Query{From: "x/a", To: "10.244.1.10", Port: 80}},
		{name: "self-through-service", q: Query{From: "x/a", To: "x/a", Port: 80, ThroughService: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := fixture(t)
			var denyLog *nft.DenyLog
			if tc.state != nil {
				tc.state(st)
				denyLog = &nft.DenyLog{Group: 4200, Rate: 10, Burst: 20}
			}
			a, err := Explain(st, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if tc.live {
				TraceLive(context.Background(), a, Path(st, a), compiledFetcher(st, denyLog, tc.tamper))
				if a.LiveDisagrees != (tc.tamper != nil) {
					t.Errorf("LiveDisagrees = %v with tamper %v", a.LiveDisagrees, tc.tamper != nil)
				}
			}
			var text, js bytes.Buffer
			if err := WriteText(&text, a); err != nil {
				t.Fatal(err)
			}
			if err := WriteJSON(&js, a); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".txt", text.String())
			golden(t, tc.name+".json", js.String())
		})
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./explain -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func TestExplain_Errors(t *testing.T) {
	cases := []struct {
		name string
		q    Query
		want string
	}{
		{"unknown pod", Query{From: "x/nope", To: "x/a"}, "x/nope: no such pod"},
		{"unknown node", Query{From: "node/nope", To: "x/a"}, "node/nope: no such node"},
		{"not an endpoint", Query{From: "x", To: "x/a"}, `"x": want namespace/pod, node/NAME or an IP address`},
		{"families differ", Query{From: "x/a", To: "2001:db8::1"}, "a packet has one family"},
		{"both sides wrong, both said", Query{From: "x/nope", To: "y/nope"}, "x/nope: no such pod\ny/nope: no such pod"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Explain(fixture(t), tc.q)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	cases := []struct {
		in       string
		endpoint string
		port     uint16
		err      bool
	}{
		{"x/a:80", "x/a", 80, false},
		{"x/a", "x/a", 0, false},
		{"node/n1:9808", "node/n1", 9808, false},
		{"10.0.0.1:443", "10.0.0.1", 443, false},
		{"10.0.0.1", "10.0.0.1", 0, false},
		{"[2001:db8::1]:53", "2001:db8::1", 53, false},
		{"2001:db8::1", "2001:db8::1", 0, false},
		{"x/a:http", "", 0, true},
		{"x/a:0", "", 0, true},
		{"x/a:70000", "", 0, true},
	}
	for _, tc := range cases {
		ep, port, err := ParseTarget(tc.in)
		if (err != nil) != tc.err || ep != tc.endpoint || port != tc.port {
			t.Errorf("ParseTarget(%q) = %q, %d, %v; want %q, %d, error %v", tc.in, ep, port, err, tc.endpoint, tc.port, tc.err)
		}
	}
}

func TestTraceLive_FetchErrorIsLoud(t *testing.T) {
	st := fixture(t)
	a, err := Explain(st, Query{From: "y/c", To: "x/a", Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	TraceLive(context.Background(), a, Path(st, a), func(context.Context, string) (*controllers.AppliedRulesetDoc, error) {
		return nil, errors.New("connection refused")
	})
	var text bytes.Buffer
	if err := WriteText(&text, a); err != nil {
		t.Fatal(err)
	}
	if !a.LiveDisagrees || !strings.Contains(text.String(), "!!! THE LIVE TABLES DISAGREE") || !strings.Contains(text.String(), "connection refused") {
		t.Errorf("an unreadable table must be reported loudly, got:\n%s", text.String())
	}
}

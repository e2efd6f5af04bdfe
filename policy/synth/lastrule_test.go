package synth

// IP plan: the datapath benchmark's pods in namespace "bench": node-1 has
// the server 10.244.1.200, client-same .201 and other .202; node-2 has
// client-cross 10.244.2.201 and the outsider .202. Node addresses
// 172.16.0.1-2. The rules' own networks are in 172.24.0.0/13, which no pod
// or node uses.

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
	"github.com/nftpolicy/nftpolicy/policy"
)

func lastRuleSpec(perTier, rules int) LastRule {
	return LastRule{
		Namespace: "bench", PerTier: perTier, Rules: rules, Port: 9000,
		Clients: map[string]string{"peer": "last"}, Server: map[string]string{"app": "server"},
		LabelKey: "peer", Prefix: "bc", Labels: map[string]string{"bench": "cnp"},
	}
}

// lastRuleLayout is the benchmark's pods, without any NetworkPolicy.
func lastRuleLayout() *policy.Snapshot {
	pod := func(name, node, ip string, labels map[string]string) policy.Pod {
		return policy.Pod{Namespace: "bench", Name: name, NodeName: node, Labels: labels, Phase: corev1.PodRunning,
			IPs: []netip.Addr{netip.MustParseAddr(ip)}}
	}
	return &policy.Snapshot{
		Namespaces: []policy.Namespace{{Name: "bench", Labels: map[string]string{"kubernetes.io/metadata.name": "bench"}}},
		Nodes: []policy.Node{
			{Name: "node-1", Addresses: []netip.Addr{netip.MustParseAddr("172.16.0.1")}},
			{Name: "node-2", Addresses: []netip.Addr{netip.MustParseAddr("172.16.0.2")}},
		},
		Pods: []policy.Pod{
			pod("server", "node-1", "10.244.1.200", map[string]string{"app": "server", "tier": "bench"}),
			pod("client-same", "node-1", "10.244.1.201", map[string]string{"peer": "last"}),
			pod("other", "node-1", "10.244.1.202", map[string]string{"tier": "bench"}),
			pod("client-cross", "node-2", "10.244.2.201", map[string]string{"peer": "last"}),
			pod("outsider", "node-2", "10.244.2.202", map[string]string{"peer": "none"}),
		},
	}
}

// traced is the compiled dataplane's verdict on the first packet of a
// connection between pods: the forward hook of the source pod's node,
// then of the destination pod's node, each with its own ruleset.
func traced(t *testing.T, rulesets map[string]*nft.Ruleset, snap *policy.Snapshot, src, dst string, port uint16) (bool, []string) {
	t.Helper()
	var steps []string
	for _, ip := range []string{src, dst} {
		node := ""
		for _, p := range snap.Pods {
			if p.IPs[0].String() == ip {
				node = p.NodeName
			}
		}
		if node == "" {
			t.Fatalf("no pod has %s", ip)
		}
		res := rulesets[node].Trace(nft.Packet{Hook: nft.HookForward, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
			Proto: nft.ProtoTCP, DstPort: port, CtState: nft.CtStateNew})
		steps = append(steps, "node "+node+":")
		steps = append(steps, res.Steps...)
		if res.Verdict != nft.VerdictAccept {
			return false, steps
		}
		if src[:9] == dst[:9] { // same node: one pass through forward
			break
		}
	}
	return true, steps
}

func compileNodes(t *testing.T, snap *policy.Snapshot) map[string]*nft.Ruleset {
	t.Helper()
	out := map[string]*nft.Ruleset{}
	for _, node := range []string{"node-1", "node-2"} {
		s := *snap
		s.NodeName = node
		rs, warnings := policy.Compile(&s)
		if len(warnings) != 0 {
			t.Fatalf("%s: warnings: %+v", node, warnings)
		}
		if err := nfttest.Validate(rs); err != nil {
			t.Fatalf("%s: %v", node, err)
		}
		out[node] = rs
	}
	return out
}

func TestLastRule_DecidesTheMeasuredTraffic(t *testing.T) {
	const server, clientSame, clientCross, outsider, other = "10.244.1.200", "10.244.1.201", "10.244.2.201", "10.244.2.202", "10.244.1.202"
	for _, tc := range []struct {
		name           string
		perTier, rules int
	}{
		{name: "one policy of one rule per tier", perTier: 1, rules: 1},
		{name: "3 policies of 4 rules", perTier: 3, rules: 4},
		{name: "the benchmark: 100 policies of 25 rules per tier", perTier: 100, rules: 25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := lastRuleSpec(tc.perTier, tc.rules)
			if err := spec.Validate(); err != nil {
				t.Fatal(err)
			}
			snap := lastRuleLayout()
			snap.ClusterNetworkPolicies = spec.Policies()
			if got, want := len(snap.ClusterNetworkPolicies), 2*tc.perTier; got != want {
				t.Fatalf("%d policies, want %d", got, want)
			}
			for _, p := range snap.ClusterNetworkPolicies {
				if len(p.Spec.Ingress) != tc.rules || len(p.Spec.Egress) != tc.rules {
					t.Fatalf("%s: %d ingress and %d egress rules, want %d each", p.Name, len(p.Spec.Ingress), len(p.Spec.Egress), tc.rules)
				}
			}
			rulesets := compileNodes(t, snap)
			decider, index := spec.Deciding()
			pkt := func(src, dst string, port uint16) policy.Packet {
				return policy.Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Protocol: corev1.ProtocolTCP, DstPort: port}
			}
			for _, client := range []string{clientSame, clientCross} {
				v := policy.Evaluate(snap, pkt(client, server, 9000))
				if !v.Allowed {
					t.Errorf("%s -> server: denied: %+v", client, v)
				}
				// The first Admin rule that matches, in both directions,
				// is the deciding one: every rule before it missed.
				for dir, d := range map[string]policy.DirectionVerdict{"egress": v.Egress, "ingress": v.Ingress} {
					if d.Admin == nil || d.Admin.Policy != decider || d.Admin.Index != index || d.Admin.Action != policyv1beta1.ClusterNetworkPolicyRuleActionAccept {
						t.Errorf("%s -> server, %s: decided by %v, want %s rule %d: Accept", client, dir, d.Admin, decider, index)
					}
				}
				if got, steps := traced(t, rulesets, snap, client, server, 9000); !got {
					t.Errorf("%s -> server: the compiled dataplane drops it:\n\t%s", client, strings.Join(steps, "\n\t"))
				}
			}
			// Anyone else connecting to the server is dropped by the last
			// Baseline rule of ingress after every Admin rule missed (its
			// egress to the server is the deciding rule's too); a client
			// connecting to anyone else, by the last Baseline rule of
			// egress.
			lastBaseline := spec.Name(policyv1beta1.BaselineTier, tc.perTier-1)
			for _, c := range []struct {
				src, dst string
				dir      string
			}{{outsider, server, "ingress"}, {other, server, "ingress"}, {clientSame, other, "egress"}, {clientCross, outsider, "egress"}} {
				v := policy.Evaluate(snap, pkt(c.src, c.dst, 9000))
				d := v.Ingress
				if c.dir == "egress" {
					d = v.Egress
				}
				if v.Allowed || d.Admin != nil || d.Baseline == nil || d.Baseline.Policy != lastBaseline || d.Baseline.Index != tc.rules-1 {
					t.Errorf("%s -> %s: %+v, want denied in %s by %s rule %d", c.src, c.dst, v, c.dir, lastBaseline, tc.rules-1)
				}
			}
			for _, p := range []struct {
				src, dst string
				port     uint16
			}{{outsider, server, 9000}, {other, server, 9000}, {clientSame, other, 9000}, {clientSame, server, 9001}, {clientCross, server, 9002}, {server, clientSame, 9000}} {
				want := policy.Evaluate(snap, pkt(p.src, p.dst, p.port)).Allowed
				if got, steps := traced(t, rulesets, snap, p.src, p.dst, p.port); got != want {
					t.Errorf("%s -> %s TCP/%d: compiled %v, Evaluate %v\n\t%s", p.src, p.dst, p.port, got, want, strings.Join(steps, "\n\t"))
				}
			}

			// Without the deciding rule, the clients fall through to the
			// Baseline tier and are dropped: no other rule admits them.
			for i, p := range snap.ClusterNetworkPolicies {
				if p.Name == decider {
					q := p.DeepCopy()
					q.Spec.Ingress, q.Spec.Egress = q.Spec.Ingress[:index], q.Spec.Egress[:index]
					if index == 0 { // a policy needs a rule: one that matches nothing
						q.Spec.Ingress = []policyv1beta1.ClusterNetworkPolicyIngressRule{{Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
							From: []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Pods: spec.pods(map[string]string{"peer": "nobody"})}}}}
					}
					without := *snap
					without.ClusterNetworkPolicies = append(append([]*policyv1beta1.ClusterNetworkPolicy(nil), snap.ClusterNetworkPolicies[:i]...), q)
					without.ClusterNetworkPolicies = append(without.ClusterNetworkPolicies, snap.ClusterNetworkPolicies[i+1:]...)
					if v := policy.Evaluate(&without, pkt(clientSame, server, 9000)); v.Allowed {
						t.Errorf("without %s rule %d the client is still allowed: %+v", decider, index, v)
					}
				}
			}
		})
	}
}

func TestLastRule_Validate(t *testing.T) {
	ok := lastRuleSpec(100, 25)
	tests := []struct {
		name    string
		mod     func(*LastRule)
		wantErr string
	}{
		{name: "the benchmark", mod: func(*LastRule) {}},
		{name: "1001 per tier", mod: func(l *LastRule) { l.PerTier = 1001 }},
		{name: "no policy", mod: func(l *LastRule) { l.PerTier = 0 }, wantErr: "policies per tier"},
		{name: "too many policies", mod: func(l *LastRule) { l.PerTier = 1002 }, wantErr: "policies per tier"},
		{name: "26 rules", mod: func(l *LastRule) { l.Rules = 26 }, wantErr: "rules per direction"},
		{name: "ports beyond 65535", mod: func(l *LastRule) { l.Port = 65000 }, wantErr: "below 65536"},
		{name: "no clients", mod: func(l *LastRule) { l.Clients = nil }, wantErr: "selectors"},
		{name: "no namespace", mod: func(l *LastRule) { l.Namespace = "" }, wantErr: "must be set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := ok
			tc.mod(&l)
			err := l.Validate()
			if (err != nil) != (tc.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestLastRule_ElementsInTheMeasuredMaps(t *testing.T) {
	// The lookups the measured traffic makes are in maps with elements:
	// the clients' addresses on the other rules' ports (ingress) and the
	// server's and the rules' networks (egress).
	snap := lastRuleLayout()
	snap.ClusterNetworkPolicies = lastRuleSpec(100, 25).Policies()
	snap.NodeName = "node-1"
	rs, _ := policy.Compile(snap)
	per := map[string]int{}
	for name, s := range rs.Sets {
		for _, prefix := range []string{"admin-in-", "admin-out-", "baseline-in-", "baseline-out-"} {
			if strings.HasPrefix(name, prefix) {
				per[prefix] += len(s.Elements)
			}
		}
	}
	// 1,250 rules of each kind per tier and direction; a third of the
	// port rules are Pass (no element), and a map set is shared by the
	// pods of the namespace (one per tier and direction).
	for prefix, least := range map[string]int{"admin-in-": 1_000, "admin-out-": 1_500, "baseline-in-": 1_000, "baseline-out-": 1_500} {
		if per[prefix] < least {
			t.Errorf("%s maps: %d elements, want at least %d (all: %v)", prefix, per[prefix], least, per)
		}
	}
}

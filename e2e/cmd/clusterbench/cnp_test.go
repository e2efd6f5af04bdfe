package main

// IP plan: the benchmark's own pod layout (podLayout) on three nodes with
// the e2e cluster's podCIDRs 10.244.<index>.0/24, indexes 1 to 3 (the
// server 10.244.1.200, the clients .1.201 and .2.201, the outsider
// .2.202). No cluster: the policies are judged by policy.Evaluate and
// compiled by policy.Compile, and, with $KUBEBUILDER_ASSETS, created in
// a real kube-apiserver with the ClusterNetworkPolicy CRD.

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/internal/testenv"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
	"github.com/nftpolicy/nftpolicy/policy"
)

// layout is podLayout's pods on three nodes as a Snapshot, with policies
// nps and cnps.
func layout(t *testing.T, nps []*networkingv1.NetworkPolicy, cnps []*policyv1beta1.ClusterNetworkPolicy) (*policy.Snapshot, map[string]netip.Addr) {
	t.Helper()
	e := &env{st: &cluster.State{Nodes: []cluster.Node{{Index: 1, Name: "node-1"}, {Index: 2, Name: "node-2"}, {Index: 3, Name: "node-3"}}}}
	snap := &policy.Snapshot{
		Namespaces: []policy.Namespace{{Name: benchNS, Labels: map[string]string{"kubernetes.io/metadata.name": benchNS, "bench": "cluster"}}},
		Policies:   nps, ClusterNetworkPolicies: cnps,
	}
	ips := map[string]netip.Addr{}
	for _, s := range e.podLayout() {
		ip := netip.MustParseAddr(s.IP)
		node := "node-" + strings.Split(s.IP, ".")[2]
		snap.Pods = append(snap.Pods, policy.Pod{Namespace: s.Namespace, Name: s.Name, NodeName: node, Labels: s.Labels,
			Phase: corev1.PodRunning, IPs: []netip.Addr{ip}})
		ips[s.Name] = ip
	}
	return snap, ips
}

func tcp9000(src, dst netip.Addr) policy.Packet {
	return policy.Packet{Src: src, Dst: dst, Protocol: corev1.ProtocolTCP, DstPort: benchPort}
}

func TestLastRuleSpec_OnTheBenchLayout(t *testing.T) {
	spec := lastRuleSpec(100, 25)
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	snap, ips := layout(t, nil, spec.Policies())
	decider, index := spec.Deciding()
	for _, client := range []string{"client-same", "client-cross"} {
		v := policy.Evaluate(snap, tcp9000(ips[client], ips["server"]))
		if !v.Allowed || v.Egress.Admin == nil || v.Egress.Admin.Policy != decider || v.Egress.Admin.Index != index ||
			v.Ingress.Admin == nil || v.Ingress.Admin.Policy != decider || v.Ingress.Admin.Index != index {
			t.Errorf("%s -> server: %+v, want allowed by %s rule %d both ways", client, v, decider, index)
		}
		if len(v.Warnings) != 0 {
			t.Errorf("%s -> server: warnings %+v", client, v.Warnings)
		}
	}
	// checkEnforced: the outsider is blocked, by the last Baseline rule.
	v := policy.Evaluate(snap, tcp9000(ips["outsider"], ips["server"]))
	if v.Allowed || v.Ingress.Baseline == nil || v.Ingress.Baseline.Policy != spec.Name(policyv1beta1.BaselineTier, 99) {
		t.Errorf("outsider -> server: %+v, want denied by the last Baseline policy", v)
	}
	for _, node := range []string{"node-1", "node-2", "node-3"} {
		s := *snap
		s.NodeName = node
		rs, warnings := policy.Compile(&s)
		if len(warnings) != 0 {
			t.Errorf("%s: warnings %+v", node, warnings)
		}
		if err := nfttest.Validate(rs); err != nil {
			t.Errorf("%s: %v", node, err)
		}
	}
}

// TestDenyClientCNP follows figure 2's ClusterNetworkPolicy kinds: with
// deny-server and allow-last in place the client is allowed; the Admin
// Deny blocks it, and stops blocking it when its peer selector is off.
func TestDenyClientCNP(t *testing.T) {
	deny, allow := serverPolicies()
	nps := []*networkingv1.NetworkPolicy{deny, allow}
	for _, tc := range []struct {
		name string
		cnps []*policyv1beta1.ClusterNetworkPolicy
		want bool
	}{
		{name: "no ClusterNetworkPolicy", want: true},
		{name: "created", cnps: []*policyv1beta1.ClusterNetworkPolicy{denyClientCNP("last")}, want: false},
		{name: "peer selector off", cnps: []*policyv1beta1.ClusterNetworkPolicy{denyClientCNP("off")}, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap, ips := layout(t, nps, tc.cnps)
			if v := policy.Evaluate(snap, tcp9000(ips["client-same"], ips["server"])); v.Allowed != tc.want || len(v.Warnings) != 0 {
				t.Errorf("client-same -> server: %+v, want allowed=%v", v, tc.want)
			}
		})
	}
}

func TestAgentWant(t *testing.T) {
	m := map[string]float64{metricPolicies: 3, metricAdminCNPs: 100, metricBaselineCNPs: 100, metricCRDWatched: 1, "nftpolicy_rules": 7}
	if !hasValues(m, agentWant(3, 100, 100)) {
		t.Error("the metrics of 3 policies and 100+100 ClusterNetworkPolicies do not satisfy agentWant(3, 100, 100)")
	}
	if hasValues(m, agentWant(3, 0, 0)) || hasValues(m, agentWant(0, 100, 100)) {
		t.Error("other counts satisfied")
	}
	// An agent that never saw a ClusterNetworkPolicy has no tier series.
	if !hasValues(map[string]float64{metricPolicies: 0}, agentWant(0, 0, 0)) {
		t.Error("missing series must read 0")
	}
	if hasValues(map[string]float64{metricAdminCNPs: 1, metricBaselineCNPs: 1}, agentWant(0, 1, 1)) {
		t.Error("ClusterNetworkPolicies counted while the CRD is not watched")
	}
}

var apiServer testenv.APIServer

func TestMain(m *testing.M) {
	code := m.Run()
	apiServer.Stop()
	os.Exit(code)
}

// TestCNPs_AcceptedByTheAPIServer creates every ClusterNetworkPolicy
// clusterbench creates in a real kube-apiserver with the CRD the cluster
// gets (experimental channel: its schema and CEL rules), then deletes them
// by clusterbench's label.
func TestCNPs_AcceptedByTheAPIServer(t *testing.T) {
	cfg := apiServer.Config(t)
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme(t)})
	if err != nil {
		t.Fatal(err)
	}
	testenv.InstallCNPCRD(t, c, "experimental")
	ctx := context.Background()
	objs := append(lastRuleSpec(100, 25).Policies(), denyClientCNP("last"))
	for _, p := range objs {
		if err := c.Create(ctx, p.DeepCopy()); err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
	}
	var l policyv1beta1.ClusterNetworkPolicyList
	if err := c.List(ctx, &l, client.MatchingLabels(cnpLabel)); err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != len(objs) {
		t.Errorf("%d listed by %s, want %d", len(l.Items), cnpSelector, len(objs))
	}
	if err := c.DeleteAllOf(ctx, &policyv1beta1.ClusterNetworkPolicy{}, client.MatchingLabels(cnpLabel)); err != nil {
		t.Fatal(err)
	}
}

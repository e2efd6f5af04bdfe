package controllers

// IP plan: node-a runs x/a 10.244.1.2 and x/b 10.244.1.3 (fd00::3); y/c
// 10.244.2.4 runs on node-b; 198.18.0.9 is no pod's. x/a's ingress is
// isolated by an enforced policy and selected by an audited one; y/c's
// only by an audited one.

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
)

func TestDeniedTraffic_Resolve(t *testing.T) {
	np := func(name string, sel map[string]string, types ...networkingv1.PolicyType) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name},
			Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: sel}, PolicyTypes: types},
		}
	}
	audited := func(p *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
		p.Annotations = map[string]string{policy.EnforcementAnnotation: policy.EnforcementAudit}
		return p
	}
	inY := func(p *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy { p.Namespace = "y"; return p }
	a := newFakeAgent(t, []client.Object{
		runningPod("x", "a", "node-a", map[string]string{"app": "a"}, "10.244.1.2"),
		runningPod("x", "b", "node-a", map[string]string{"app": "b"}, "10.244.1.3", "fd00::3"),
		runningPod("y", "c", "node-b", map[string]string{"app": "c"}, "10.244.2.4"),
		np("deny-all-ingress", nil, networkingv1.PolicyTypeIngress),
		np("b-ingress", map[string]string{"app": "b"}, networkingv1.PolicyTypeIngress),
		np("a-egress", map[string]string{"app": "a"}, networkingv1.PolicyTypeEgress),
		audited(np("staged-a-egress", map[string]string{"app": "a"}, networkingv1.PolicyTypeEgress)),
		audited(inY(np("staged-deny-all", nil, networkingv1.PolicyTypeIngress))),
	}, Options{})
	d := a.r.DeniedTraffic()
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	addr := netip.MustParseAddr
	prefix := func(dir nft.Direction, pod string) string { return nft.DropPrefix(nft.NamesFor(dir, pod).Chain) }
	tests := []struct {
		name   string
		packet nft.LoggedPacket
		want   DeniedConnection
		wantOK bool
	}{
		{
			name: "remote pod to local pod, ingress",
			packet: nft.LoggedPacket{Time: at, Prefix: prefix(nft.Ingress, "x/b"), Proto: nft.ProtoTCP,
				Src: addr("10.244.2.4"), SrcPort: 40000, Dst: addr("10.244.1.3"), DstPort: 80},
			want: DeniedConnection{Time: at, Direction: "ingress", Protocol: "TCP", Src: "10.244.2.4:40000", SrcPod: "y/c",
				Dst: "10.244.1.3:80", DstPod: "x/b", Policies: []string{"b-ingress", "deny-all-ingress"}, Chain: nft.NamesFor(nft.Ingress, "x/b").Chain},
			wantOK: true,
		},
		{
			name: "local pod to an outside address, egress, over UDP",
			packet: nft.LoggedPacket{Time: at, Prefix: prefix(nft.Egress, "x/a"), Proto: nft.ProtoUDP,
				Src: addr("10.244.1.2"), SrcPort: 5353, Dst: addr("198.18.0.9"), DstPort: 53},
			want: DeniedConnection{Time: at, Direction: "egress", Protocol: "UDP", Src: "10.244.1.2:5353", SrcPod: "x/a",
				Dst: "198.18.0.9:53", Policies: []string{"a-egress"}, Chain: nft.NamesFor(nft.Egress, "x/a").Chain},
			wantOK: true,
		},
		{
			name: "IPv6, no ports for ICMPv6",
			packet: nft.LoggedPacket{Time: at, Prefix: prefix(nft.Ingress, "x/b"), Proto: nft.ProtoICMPv6,
				Src: addr("fd00::9"), Dst: addr("fd00::3")},
			want: DeniedConnection{Time: at, Direction: "ingress", Protocol: "ICMPv6", Src: "fd00::9", Dst: "fd00::3", DstPod: "x/b",
				Policies: []string{"b-ingress", "deny-all-ingress"}, Chain: nft.NamesFor(nft.Ingress, "x/b").Chain},
			wantOK: true,
		},
		{
			name: "ClusterNetworkPolicy Deny: the policy and rule from the prefix, not the isolating NetworkPolicies",
			packet: nft.LoggedPacket{Time: at, Prefix: nft.DenyPrefix(nft.DenyRule{Dir: nft.Ingress, Policy: "block-y", Rule: "from y"}),
				Proto: nft.ProtoTCP, Src: addr("10.244.2.4"), SrcPort: 40001, Dst: addr("10.244.1.3"), DstPort: 80},
			want: DeniedConnection{Time: at, Direction: "ingress", Protocol: "TCP", Src: "10.244.2.4:40001", SrcPod: "y/c",
				Dst: "10.244.1.3:80", DstPod: "x/b", Policies: []string{"block-y"}, Rule: "from y"},
			wantOK: true,
		},
		{
			name: "audit: the audited policies that would have dropped it",
			packet: nft.LoggedPacket{Time: at, Prefix: nft.AuditPrefix(nft.NamesFor(nft.Ingress, "y/c").Chain), Proto: nft.ProtoTCP,
				Src: addr("10.244.1.3"), SrcPort: 40002, Dst: addr("10.244.2.4"), DstPort: 80},
			want: DeniedConnection{Time: at, Direction: "ingress", Protocol: "TCP", Src: "10.244.1.3:40002", SrcPod: "x/b",
				Dst: "10.244.2.4:80", DstPod: "y/c", Policies: []string{"staged-deny-all"}, Chain: nft.NamesFor(nft.Ingress, "y/c").Chain, Audit: true},
			wantOK: true,
		},
		{
			name: "audit of a ClusterNetworkPolicy Deny: the audited policy and rule from the prefix",
			packet: nft.LoggedPacket{Time: at, Prefix: nft.AuditRulePrefix(nft.DenyRule{Dir: nft.Egress, Policy: "staged-block", Rule: "egress[1]"}),
				Proto: nft.ProtoUDP, Src: addr("10.244.1.3"), SrcPort: 40003, Dst: addr("10.244.2.4"), DstPort: 53},
			want: DeniedConnection{Time: at, Direction: "egress", Protocol: "UDP", Src: "10.244.1.3:40003", SrcPod: "x/b",
				Dst: "10.244.2.4:53", DstPod: "y/c", Policies: []string{"staged-block"}, Rule: "egress[1]", Audit: true},
			wantOK: true,
		},
		{
			name:   "a prefix not ours",
			packet: nft.LoggedPacket{Time: at, Prefix: "kube-router drop", Src: addr("10.244.2.4"), Dst: addr("10.244.1.3")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := d.Resolve(context.Background(), tc.packet)
			if ok != tc.wantOK {
				t.Fatalf("ok %v, want %v", ok, tc.wantOK)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Resolve (-want +got):\n%s", diff)
			}
		})
	}
}

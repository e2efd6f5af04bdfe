package policy

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftpolicy/nftpolicy/nft"
)

// BenchmarkCluster_PolicyChangeAmongMany is figure 2's worst case on the
// compile side: n policies select one local pod, each admitting its own /32
// and a selector on TCP 9000, and one more policy is updated back and forth.
// It reports the NodeCompiler's compile and the diff a sync then does.
func BenchmarkCluster_PolicyChangeAmongMany(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint("policies=", n), func(b *testing.B) {
			c := NewNodeCompiler("node-1")
			c.SetNamespace(Namespace{Name: "bench", Labels: map[string]string{"kubernetes.io/metadata.name": "bench"}})
			c.SetPod(&Pod{Namespace: "bench", Name: "server", NodeName: "node-1", Phase: corev1.PodRunning,
				Labels: map[string]string{"tier": "bench"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.1.200")}})
			c.SetPod(&Pod{Namespace: "bench", Name: "client", NodeName: "node-1", Phase: corev1.PodRunning,
				Labels: map[string]string{"peer": "last"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.1.201")}})
			for i := range n {
				c.SetPolicy(benchPolicy(i, fmt.Sprintf("p%d", i)))
			}
			prev, _ := c.Compile()
			on, off := benchPolicy(n, "last"), benchPolicy(n, "off")
			var compile, diff float64
			for i := 0; b.Loop(); i++ {
				np := on
				if i%2 == 1 {
					np = off
				}
				t := testingNow()
				c.SetPolicy(np)
				rs, _ := c.Compile()
				t2 := testingNow()
				nft.Diff(prev, rs)
				compile += t2.Sub(t).Seconds()
				diff += testingNow().Sub(t2).Seconds()
				prev = rs
			}
			b.ReportMetric(compile/float64(b.N)*1e3, "compile-ms/op")
			b.ReportMetric(diff/float64(b.N)*1e3, "diff-ms/op")
		})
	}
}

func benchPolicy(i int, peer string) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(9000)
	n := 2 * (i + 1)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bp-%05d", i), Namespace: "bench"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"tier": "bench"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
				From: []networkingv1.NetworkPolicyPeer{
					{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"peer": peer}}},
					{IPBlock: &networkingv1.IPBlock{CIDR: fmt.Sprintf("172.%d.%d.%d/32", 16+n>>16, (n>>8)&255, n&255)}},
				},
			}},
		},
	}
}

func testingNow() time.Time { return time.Now() }

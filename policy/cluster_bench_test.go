package policy_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

// BenchmarkCluster_PolicyChangeAmongMany is figure 2's worst case on the
// compile side: n background policies (synth.BackgroundPolicy) select one
// local pod, each admitting its own /32 and a selector on TCP 9000, and one
// more policy is updated back and forth. It reports the NodeCompiler's
// compile and the diff a sync then does.
func BenchmarkCluster_PolicyChangeAmongMany(b *testing.B) {
	const ns, port = "bench", 9000
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint("policies=", n), func(b *testing.B) {
			c := policy.NewNodeCompiler("node-1")
			c.SetNamespace(policy.Namespace{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns}})
			c.SetPod(&policy.Pod{Namespace: ns, Name: "server", NodeName: "node-1", Phase: corev1.PodRunning,
				Labels: map[string]string{"tier": "bench"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.1.200")}})
			c.SetPod(&policy.Pod{Namespace: ns, Name: "client", NodeName: "node-1", Phase: corev1.PodRunning,
				Labels: map[string]string{"peer": "last"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.1.201")}})
			for i := range n {
				c.SetPolicy(synth.BackgroundPolicy(ns, port, i, fmt.Sprintf("p%d", i)))
			}
			prev, _ := c.Compile()
			on, off := synth.BackgroundPolicy(ns, port, n, "last"), synth.BackgroundPolicy(ns, port, n, "off")
			var compile, diff float64
			for i := 0; b.Loop(); i++ {
				np := on
				if i%2 == 1 {
					np = off
				}
				t := time.Now()
				c.SetPolicy(np)
				rs, _ := c.Compile()
				t2 := time.Now()
				nft.Diff(prev, rs)
				compile += t2.Sub(t).Seconds()
				diff += time.Since(t2).Seconds()
				prev = rs
			}
			b.ReportMetric(compile/float64(b.N)*1e3, "compile-ms/op")
			b.ReportMetric(diff/float64(b.N)*1e3, "diff-ms/op")
		})
	}
}

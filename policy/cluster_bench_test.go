package policy_test

import (
	"fmt"
	"net/netip"
	"syscall"
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
			on, off := synth.BackgroundPolicy(ns, port, n, "last"), synth.BackgroundPolicy(ns, port, n, "off")
			benchmarkFlip(b, c, func(edit bool) {
				if edit {
					c.SetPolicy(on)
				} else {
					c.SetPolicy(off)
				}
			})
		})
	}
}

// BenchmarkCluster_PodChangeAmongMany is figure 2's pod kinds on the
// compile side, with the background of BenchmarkCluster_PolicyChangeAmongMany
// plus the policy admitting peer=last: the client's label flips between
// last (admitted) and off, or a second admitted client comes and goes.
func BenchmarkCluster_PodChangeAmongMany(b *testing.B) {
	const ns, port = "bench", 9000
	for _, kind := range []string{"label", "new-pod"} {
		for _, n := range []int{1000, 10000} {
			b.Run(fmt.Sprint(kind, "/policies=", n), func(b *testing.B) {
				c := policy.NewNodeCompiler("node-1")
				c.SetNamespace(policy.Namespace{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns}})
				c.SetPod(&policy.Pod{Namespace: ns, Name: "server", NodeName: "node-1", Phase: corev1.PodRunning,
					Labels: map[string]string{"tier": "bench"}, IPs: []netip.Addr{netip.MustParseAddr("10.244.1.200")}})
				client := func(name, label, ip string) *policy.Pod {
					return &policy.Pod{Namespace: ns, Name: name, NodeName: "node-2", Phase: corev1.PodRunning,
						Labels: map[string]string{"peer": label}, IPs: []netip.Addr{netip.MustParseAddr(ip)}}
				}
				c.SetPod(client("client", "last", "10.244.2.201"))
				for i := range n {
					c.SetPolicy(synth.BackgroundPolicy(ns, port, i, fmt.Sprintf("p%d", i)))
				}
				c.SetPolicy(synth.BackgroundPolicy(ns, port, n, "last"))
				benchmarkFlip(b, c, func(edit bool) {
					switch {
					case kind == "label" && edit:
						c.SetPod(client("client", "off", "10.244.2.201"))
					case kind == "label":
						c.SetPod(client("client", "last", "10.244.2.201"))
					case edit:
						c.SetPod(client("client-2", "last", "10.244.2.202"))
					default:
						c.DeletePod(ns, "client-2")
					}
				})
			})
		}
	}
}

// benchmarkFlip measures an agent's event in a loaded NodeCompiler: each
// iteration makes an edit (set(true)) or undoes it (set(false)), in turn,
// then compiles, and diffs against the last ruleset as a sync would. It
// reports the compile (the update included) and the diff per event, the
// process's CPU time per event (garbage collection included; on a loaded
// machine a steadier cost than the wall clock), and the diff's operations
// and elements.
func benchmarkFlip(b *testing.B, c *policy.NodeCompiler, set func(edit bool)) {
	prev, _ := c.Compile()
	var compile, diff time.Duration
	var ops, elements int
	cpu0 := processCPU(b)
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		set(i%2 == 0)
		rs, _ := c.Compile()
		t1 := time.Now()
		d := nft.Diff(prev, rs)
		diff += time.Since(t1)
		compile += t1.Sub(t0)
		ops += len(d)
		for _, op := range d {
			elements += len(op.Elements)
		}
		prev = rs
	}
	n := float64(b.N)
	b.ReportMetric((processCPU(b)-cpu0).Seconds()/n*1e3, "cpu-ms/op")
	b.ReportMetric(compile.Seconds()/n*1e3, "compile-ms/op")
	b.ReportMetric(diff.Seconds()/n*1e3, "diff-ms/op")
	b.ReportMetric(float64(ops)/n, "ops/op")
	b.ReportMetric(float64(elements)/n, "elements-changed/op")
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

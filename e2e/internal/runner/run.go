// Running scenario files: each step applied, probed and judged.

package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

// RunFiles runs every scenario file and prints the summary line.
func (r *Runner) RunFiles(ctx context.Context, files []string) (passed, failed int) {
	start := time.Now()
	skipped := 0
	defer func() { r.families = r.State.Families() }()
	for _, f := range files {
		s, err := scenario.Load(f)
		if err != nil {
			fmt.Fprintf(r.Out, "FAIL %s\n  invalid scenario: %v\n", f, err)
			failed++
			continue
		}
		t := time.Now()
		if r.families = r.scenarioFamilies(s, f); len(r.families) == 0 {
			fmt.Fprintf(r.Out, "SKIP %s (IPv4 only: %s)\n", s.Name, strings.Join(s.IPv4OnlyCIDRs(), ", "))
			skipped++
			continue
		}
		ok, err := r.Run(ctx, s)
		if err != nil {
			fmt.Fprintf(r.Out, "  error: %v\n", err)
			ok = false
		}
		word := "PASS"
		if !ok {
			word = "FAIL"
			failed++
		} else {
			passed++
		}
		fmt.Fprintf(r.Out, "%s %s [%s] (%.1fs)\n", word, s.Name, familyList(r.families), time.Since(t).Seconds())
		if ctx.Err() != nil {
			break
		}
	}
	tc := time.Now()
	if err := r.Cleanup(context.Background()); err != nil {
		fmt.Fprintf(r.Out, "cleanup: %v\n", err)
	}
	if r.Opt.Verbose {
		fmt.Fprintf(r.Out, "cleanup took %.1fs\n", time.Since(tc).Seconds())
	}
	r.printTimings(time.Since(start))
	r.printExplain()
	if r.Opt.TimingsFile != "" {
		b, _ := json.MarshalIndent(r.Timings, "", "  ")
		if err := os.WriteFile(r.Opt.TimingsFile, b, 0o644); err != nil {
			fmt.Fprintf(r.Out, "timings: %v\n", err)
		}
	}
	if len(r.ipv4Only) > 0 {
		fmt.Fprintf(r.Out, "files tied to IPv4 by literal CIDRs (run in IPv4 only):\n")
		for _, l := range r.ipv4Only {
			fmt.Fprintf(r.Out, "  %s\n", l)
		}
	}
	fmt.Fprintf(r.Out, "%d passed, %d failed", passed, failed)
	if skipped > 0 {
		fmt.Fprintf(r.Out, ", %d skipped (IPv4 only, in an IPv6 cluster)", skipped)
	}
	fmt.Fprintf(r.Out, " (families: %s)\n", familyList(r.State.Families()))
	return passed, failed
}

// scenarioFamilies are the families scenario s (from file) is probed in:
// every family of the cluster, unless a literal IPv4 CIDR ties the file to
// IPv4 (e2e/README.md, "Families"); then IPv4 alone, or none in an ipv6
// cluster. Such files are remembered for the summary.
func (r *Runner) scenarioFamilies(s *scenario.Scenario, file string) []cluster.Family {
	fams := r.State.Families()
	cidrs := s.IPv4OnlyCIDRs()
	if len(cidrs) == 0 {
		return fams
	}
	r.ipv4Only = append(r.ipv4Only, fmt.Sprintf("%s (%s)", file, strings.Join(cidrs, ", ")))
	if slices.Contains(fams, cluster.IPv4) {
		return []cluster.Family{cluster.IPv4}
	}
	return nil
}

func familyList(fs []cluster.Family) string {
	var s []string
	for _, f := range fs {
		s = append(s, f.String())
	}
	return strings.Join(s, "+")
}

// servers is what pod p serves: its own list if it has one (nftpolicy
// extension), else the scenario's.
func servers(s *scenario.Scenario, p scenario.Pod) []kubelet.Server {
	list := s.Cluster.Servers
	if len(p.Servers) > 0 {
		list = p.Servers
	}
	var out []kubelet.Server
	for _, sv := range list {
		out = append(out, kubelet.Server{Port: sv.Port, Protocol: sv.Protocol, Name: sv.Name})
	}
	return out
}

// podSpec is what the kubelet is asked for to run scenario pod wp.
func podSpec(wp scenario.Pod, svs []kubelet.Server) kubelet.PodSpec {
	return kubelet.PodSpec{Namespace: wp.Namespace, Name: wp.Name, Labels: wp.Labels, IP: wp.IP, Servers: svs,
		HostNetwork: wp.HostNetwork, Node: wp.Node}
}

// Run replays one scenario.
func (r *Runner) Run(ctx context.Context, s *scenario.Scenario) (ok bool, err error) {
	t := time.Now()
	if r.K == nil {
		// Real kubelets: the runtime hands the CNI no requested address,
		// so a pod's ip chooses its node only (kubeletpods.Pods.CreatePod).
		if cidrs := s.IPv4OnlyCIDRs(); len(cidrs) > 0 {
			return false, fmt.Errorf("literal CIDRs (%s) need pods on the addresses the file gives them, which the kubelet mode does not pin: run it in harness mode", strings.Join(cidrs, ", "))
		}
	}
	if usesClusterPolicies(s) {
		if err := r.ensureCNPCRD(ctx); err != nil {
			return false, err
		}
	}
	if err := r.checkNoForeignCNPs(ctx); err != nil {
		return false, err
	}
	defer func() {
		// Also on failure: no ClusterNetworkPolicy outlives its scenario.
		if cerr := r.deleteCreatedCNPs(context.Background()); cerr != nil {
			ok, err = false, errors.Join(err, fmt.Errorf("deleting the scenario's ClusterNetworkPolicies: %w", cerr))
		}
	}()
	if err := r.prepare(ctx, s); err != nil {
		return false, fmt.Errorf("setting up the cluster section: %w", err)
	}
	if r.Opt.Verbose {
		fmt.Fprintf(r.Out, "  %s: cluster ready in %.1fs\n", s.Name, time.Since(t).Seconds())
	}
	// With no policy every pair connects. Checking that first keeps a stale
	// rule of the previous scenario from passing this one's first step.
	if base, ok := baseline(s); ok {
		if passed, took, report := r.judge(ctx, s, base); !passed {
			fmt.Fprintf(r.Out, "  baseline (no policy, all connect): NOT converged after %.1fs\n%s", took.Seconds(), report)
			return false, errors.New("the cluster without policies does not connect every pair")
		}
	}
	ok = true
	for i, st := range s.Steps {
		if err := r.applyActions(ctx, s, st.Actions); err != nil {
			return false, fmt.Errorf("step %d (%s): %w", i+1, st.Name, err)
		}
		passed, took, report := r.judge(ctx, s, st)
		r.Timings = append(r.Timings, StepTiming{Scenario: s.Name, Step: i + 1, Converge: took, Passed: passed})
		label := fmt.Sprintf("step %d", i+1)
		if st.Name != "" {
			label += " (" + st.Name + ")"
		}
		if passed {
			if r.Opt.Verbose {
				fmt.Fprintf(r.Out, "  %s: converged in %.2fs\n", label, took.Seconds())
			}
		} else {
			ok = false
			fmt.Fprintf(r.Out, "  %s: NOT converged after %.1fs\n%s", label, took.Seconds(), report)
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
	}
	return ok, nil
}

// baseline is an all-connected matrix from every pod of the scenario to
// every pod that serves the first probe's port, on its protocol and target.
func baseline(s *scenario.Scenario) (scenario.Step, bool) {
	if len(s.Steps) == 0 || len(s.Steps[0].Probes) == 0 || len(s.Cluster.Pods) == 0 {
		return scenario.Step{}, false
	}
	p := s.Steps[0].Probes[0]
	var rows, cols []string
	for _, pod := range s.Cluster.Pods {
		rows = append(rows, pod.Key())
		if serves(servers(s, pod), p) {
			cols = append(cols, pod.Key())
		}
	}
	if len(cols) == 0 {
		return scenario.Step{}, false
	}
	m := &scenario.Matrix{Rows: rows, Cols: cols}
	for range rows {
		m.Cells = append(m.Cells, []byte(strings.Repeat(".", len(cols))))
	}
	p.Matrix = m
	return scenario.Step{Name: "baseline", Probes: []scenario.Probe{p}}, true
}

// serves reports whether a pod with servers svs serves probe p.
func serves(svs []kubelet.Server, p scenario.Probe) bool {
	for _, sv := range svs {
		if sv.Protocol == p.Protocol && (sv.Port == p.Port || (p.PortName != "" && sv.PortName() == p.PortName)) {
			return true
		}
	}
	return false
}

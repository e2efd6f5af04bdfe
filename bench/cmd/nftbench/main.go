//go:build linux

// Command nftbench measures the control plane at scale (figures 3 and 4 of
// bench/README.md) against the real kernel, in throwaway network
// namespaces, prints a table and writes bench/results.json.
//
//	nftbench [-out bench/results.json] [-pods 1000,10000,50000,150000] [-cnps 1000] [-cnp-max-pods 50000] [-reps 5] [-churn-reps 50] [-cnp-reps 10]
//	nftbench rss -pods N [-cnps M]   (child: one process per shape, prints Memory as JSON)
//	nftbench events [-pods 150000] [-events 1000]   (CPU per 1,000 pod and policy events: event_cpu)
//	nftbench latency [-background 0,10000] [-reps 100]   (figure 2's agent share; the agent_latency key)
//
// It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN for the namespaces).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nftpolicy/nftpolicy/bench/controlplane"
	"github.com/nftpolicy/nftpolicy/bench/results"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

// Goals from issue 5.
const (
	goalFullSyncSeconds = 1.0
	goalChurnSeconds    = 0.005
	goalRSSBytes        = 256 << 20
	// goalLatencySeconds is figure 2's goal, end to end (API write to
	// the new verdict); a change's compile + apply is the agent's share.
	goalLatencySeconds = 0.1
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "rss" {
		return runRSS(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "events" {
		return runEvents(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "latency" {
		return runLatency(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("nftbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", results.DefaultPath, "where to write the results (the control_plane key is replaced, other keys kept)")
	podsFlag := fs.String("pods", joinInts(synth.ScalingPods), "cluster sizes of the scaling curve, the first is the baseline")
	cnpsFlag := fs.String("cnps", "1000", "ClusterNetworkPolicy counts measured at every cluster size besides none (the baseline); empty for none")
	// The rows with ClusterNetworkPolicies at 150k pods took about six of
	// the control plane's nine minutes (one team-peers revert alone is
	// ~45 s there), which kept `make bench` over its 30-minute budget;
	// -cnp-max-pods 0 measures them at every size again.
	cnpMaxPods := fs.Int("cnp-max-pods", 50_000, "measure the -cnps rows only at cluster sizes up to this many pods (0: every size)")
	reps := fs.Int("reps", 5, "repetitions of each full-sync measurement (median reported)")
	churnReps := fs.Int("churn-reps", 50, "repetitions of the churn cycle (no-op, appear, disappear)")
	cnpReps := fs.Int("cnp-reps", 10, "with ClusterNetworkPolicies: repetitions of the churn cycle and of the change cycle (no-op, each edit made and undone)")
	churnSyncs := fs.Int("rss-churn-syncs", 10, "churn syncs the memory child does after its full sync")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "nftbench: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "nftbench: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	pods, err := parseInts(*podsFlag)
	if err != nil || len(pods) == 0 {
		fmt.Fprintf(stderr, "-pods: %v\n", err)
		return 2
	}
	var cnps []int
	if strings.TrimSpace(*cnpsFlag) != "" {
		if cnps, err = parseInts(*cnpsFlag); err != nil {
			fmt.Fprintf(stderr, "-cnps: %v\n", err)
			return 2
		}
	}
	for _, c := range cnps {
		if c < minCNPs {
			fmt.Fprintf(stderr, "-cnps: %d: the change figure edits ClusterNetworkPolicy 20, so at least %d\n", c, minCNPs)
			return 2
		}
	}
	res, err := measure(pods, cnps, *cnpMaxPods, *reps, *churnReps, *cnpReps, *churnSyncs, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "nftbench: %v\n", err)
		return 1
	}
	printTable(stdout, res)
	if err := results.WriteKeys(*out, map[string]any{"control_plane": res}); err != nil {
		fmt.Fprintf(stderr, "nftbench: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "\nwrote %s\n", *out)
	return 0
}

// minCNPs is the least ClusterNetworkPolicy count of a measured shape:
// the change figure edits synth.ClusterNetworkPolicy(20).
const minCNPs = 21

// ControlPlane is the "control_plane" key of results.json. FullSync,
// Churn and Memory have one row per shape: per cluster size, first
// without ClusterNetworkPolicies, then with each count of -cnps. Scaling
// and the goals of issue 5 read the rows without; CNPCost, CNPChange and
// goals.cnp the others.
type ControlPlane struct {
	Machine   Machine                  `json:"machine"`
	Started   time.Time                `json:"started"`
	Seconds   float64                  `json:"seconds"`
	FullSync  []controlplane.FullSync  `json:"full_sync"`
	Churn     []controlplane.Churn     `json:"churn"`
	Memory    []controlplane.Memory    `json:"memory"`
	CNPChange []controlplane.CNPChange `json:"cnp_change"`
	Scaling   []Scaling                `json:"scaling"`
	CNPCost   []CNPCost                `json:"cnp_cost"`
	Goals     Goals                    `json:"goals"`
}

// CNPGoals are the goals at the largest shape with the most
// ClusterNetworkPolicies, and the change figure's worst kind there: its
// median and p99 of compile + apply, and whether that p99 stays inside
// figure 2's end-to-end goal (100 ms from the API write to the new
// verdict), of which it is the agent's share.
type CNPGoals struct {
	Shape                   string  `json:"shape"`
	FullSyncSeconds         float64 `json:"full_sync_seconds"`
	FullSyncMet             bool    `json:"full_sync_met"` // < 1 s
	ChurnSeconds            float64 `json:"churn_seconds"` // one-pod churn, worst of appear and disappear medians
	ChurnMet                bool    `json:"churn_met"`     // < 5 ms
	PeakRSSBytes            int64   `json:"peak_rss_bytes"`
	RSSMet                  bool    `json:"rss_met"` // < 256 MiB
	ChangeKind              string  `json:"change_kind"`
	ChangeSeconds           float64 `json:"change_seconds"`
	ChangeP99Seconds        float64 `json:"change_p99_seconds"`
	ChangeWithinLatencyGoal bool    `json:"change_within_latency_goal"` // p99 < 100 ms
}

// CNPCost is one shape with ClusterNetworkPolicies, as ratios to the same
// cluster size without them, measured in the same run.
type CNPCost struct {
	Shape                  string  `json:"shape"`
	Pods                   int     `json:"pods"`
	ClusterNetworkPolicies int     `json:"cluster_network_policies"`
	CompileRatio           float64 `json:"compile_ratio"`
	ApplyRatio             float64 `json:"apply_ratio"`
	FullSyncRatio          float64 `json:"full_sync_ratio"`
	ElementsRatio          float64 `json:"elements_ratio"`
	PeakRSSRatio           float64 `json:"peak_rss_ratio"`
	SteadyRSSRatio         float64 `json:"steady_rss_ratio"`
	// ChurnTotalRatio: the one-pod churn's appear step, compile + apply.
	ChurnTotalRatio float64 `json:"churn_total_ratio"`
}

// Machine is where the figures come from.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	MemTotal  string `json:"mem_total"`
	// LoadAverage* are /proc/loadavg's 1, 5 and 15 minute load averages
	// when the run started and ended: other work on the machine (more
	// than CPUs) inflates every time in between.
	LoadAverageStart string `json:"load_average_start"`
	LoadAverageEnd   string `json:"load_average_end"`
}

// Scaling is one point of the scaling curve, as ratios to the first
// (smallest) shape measured in the same run.
type Scaling struct {
	Pods            int     `json:"pods"`
	PodsRatio       float64 `json:"pods_ratio"`
	CompileRatio    float64 `json:"compile_ratio"`
	ApplyRatio      float64 `json:"apply_ratio"`
	FullSyncRatio   float64 `json:"full_sync_ratio"`
	ElementsRatio   float64 `json:"elements_ratio"`
	OpsRatio        float64 `json:"ops_ratio"`
	PeakRSSRatio    float64 `json:"peak_rss_ratio"`
	ChurnOps        int     `json:"churn_ops"`         // appear, ops
	ChurnOpElements int     `json:"churn_op_elements"` // appear, elements
	// Exponents k of ratio = pods_ratio^k (log-log slope from the
	// baseline); k <= 1 is linear or better. 0 on the baseline row.
	FullSyncExponent float64 `json:"full_sync_exponent"`
	ElementsExponent float64 `json:"elements_exponent"`
	TimeLinear       bool    `json:"time_at_most_linear"` // full_sync_exponent <= linearSlack
	OpsLinear        bool    `json:"ops_at_most_linear"`  // elements and ops exponents <= linearSlack
}

// Goals are the goals at the largest shape, with the measured value.
type Goals struct {
	Shape                   string  `json:"shape"`
	FullSyncSeconds         float64 `json:"full_sync_seconds"`
	FullSyncMet             bool    `json:"full_sync_met"`       // < 1 s
	ChurnSeconds            float64 `json:"churn_seconds"`       // appear total, median
	ChurnMet                bool    `json:"churn_met"`           // < 5 ms
	ChurnApplySeconds       float64 `json:"churn_apply_seconds"` // apply only (Syncer.Sync), median
	ChurnApplyMet           bool    `json:"churn_apply_met"`
	ChurnOpsConstant        bool    `json:"churn_ops_constant"` // same ops and elements at every shape
	PeakRSSBytes            int64   `json:"peak_rss_bytes"`
	RSSMet                  bool    `json:"rss_met"` // < 256 MiB
	ScalingTimeAtMostLinear bool    `json:"scaling_time_at_most_linear"`
	ScalingOpsAtMostLinear  bool    `json:"scaling_ops_at_most_linear"`

	// CNP: the same goals with ClusterNetworkPolicies; nil when none
	// were measured.
	CNP *CNPGoals `json:"cnp,omitempty"`
}

func measure(pods, cnps []int, cnpMaxPods, reps, churnReps, cnpReps, churnSyncs int, log io.Writer) (*ControlPlane, error) {
	res := &ControlPlane{Machine: machine(), Started: time.Now().UTC()}
	for _, n := range pods {
		for _, c := range append([]int{0}, cnps...) {
			if c > 0 && cnpMaxPods > 0 && n > cnpMaxPods {
				fmt.Fprintf(log, "==> %d pods with %d ClusterNetworkPolicies: skipped (-cnp-max-pods %d)\n", n, c, cnpMaxPods)
				continue
			}
			shape := synth.Scaled(n).WithClusterNetworkPolicies(c)
			fmt.Fprintf(log, "==> %s: generating\n", shape)
			snap := synth.Snapshot(shape)
			r := reps
			if n >= 100_000 {
				r = max(3, reps/2)
			}
			fmt.Fprintf(log, "    full sync x%d\n", r)
			fs, err := controlplane.MeasureFullSync(shape, snap, r)
			if err != nil {
				return nil, err
			}
			res.FullSync = append(res.FullSync, fs)
			cr := churnReps
			if n >= 100_000 {
				cr = max(10, churnReps/3)
			}
			if c > 0 {
				// A step costs seconds at 150k pods with 1,000 of them.
				cr = cnpReps
				if n >= 100_000 {
					cr = max(3, cnpReps/3)
				}
			}
			fmt.Fprintf(log, "    churn x%d\n", cr)
			ch, err := controlplane.MeasureChurn(shape, snap, cr)
			if err != nil {
				return nil, err
			}
			res.Churn = append(res.Churn, ch)
			if c > 0 {
				fmt.Fprintf(log, "    ClusterNetworkPolicy changes x%d\n", cr)
				cc, err := controlplane.MeasureCNPChange(shape, snap, cr)
				if err != nil {
					return nil, err
				}
				res.CNPChange = append(res.CNPChange, cc)
			}
			fmt.Fprintf(log, "    memory (child process)\n")
			m, err := memoryChild(n, c, churnSyncs)
			if err != nil {
				return nil, err
			}
			res.Memory = append(res.Memory, m)
			runtime.GC() // drop this shape's snapshot before the next one is built
		}
	}
	res.Scaling, res.Goals = evaluate(res)
	res.CNPCost = cnpCost(res)
	cnpGoals(res)
	res.Seconds = time.Since(res.Started).Seconds()
	res.Machine.LoadAverageEnd = results.LoadAverage()
	return res, nil
}

// memoryChild runs `nftbench rss` in a fresh process of this binary.
func memoryChild(pods, cnps, churnSyncs int) (controlplane.Memory, error) {
	var m controlplane.Memory
	self, err := os.Executable()
	if err != nil {
		return m, err
	}
	cmd := exec.Command(self, "rss", "-pods", strconv.Itoa(pods), "-cnps", strconv.Itoa(cnps), "-churn-syncs", strconv.Itoa(churnSyncs))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return m, err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(5 * time.Minute):
		_ = cmd.Process.Kill()
		err = fmt.Errorf("timed out after 5m (then: %w)", <-done)
	}
	if err != nil {
		return m, fmt.Errorf("rss child: %w\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
		return m, fmt.Errorf("rss child output: %w", err)
	}
	return m, nil
}

func runRSS(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nftbench rss", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pods := fs.Int("pods", 150_000, "cluster size")
	cnps := fs.Int("cnps", 0, "ClusterNetworkPolicies")
	churn := fs.Int("churn-syncs", 10, "churn syncs after the full sync")
	heapProfile := fs.String("heapprofile", "", "write heap profiles PREFIX.cache.pprof, PREFIX.sync.pprof, PREFIX.end.pprof (see controlplane.MemoryProfiles)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the first reconcile and the churn syncs")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	m, err := controlplane.MeasureMemory(synth.Scaled(*pods).WithClusterNetworkPolicies(*cnps), *churn, controlplane.MemoryProfiles{Heap: *heapProfile, CPU: *cpuProfile})
	if err != nil {
		fmt.Fprintf(stderr, "rss: %v\n", err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(m); err != nil {
		fmt.Fprintf(stderr, "rss: %v\n", err)
		return 1
	}
	return 0
}

// withoutCNPs is the rows of res measured without ClusterNetworkPolicies.
func withoutCNPs(res *ControlPlane) *ControlPlane {
	out := &ControlPlane{}
	for i, f := range res.FullSync {
		if f.ClusterNetworkPolicies == 0 {
			out.FullSync = append(out.FullSync, f)
			out.Churn = append(out.Churn, res.Churn[i])
			out.Memory = append(out.Memory, res.Memory[i])
		}
	}
	return out
}

// evaluate computes the scaling curve and the goals of issue 5 over the
// shapes without ClusterNetworkPolicies.
func evaluate(all *ControlPlane) ([]Scaling, Goals) {
	var out []Scaling
	res := withoutCNPs(all)
	if len(res.FullSync) == 0 {
		return nil, Goals{}
	}
	b, bc, bm := res.FullSync[0], res.Churn[0], res.Memory[0]
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	opsConstant := true
	for i, f := range res.FullSync {
		c, m := res.Churn[i], res.Memory[i]
		s := Scaling{
			Pods:            f.Pods,
			PodsRatio:       ratio(float64(f.Pods), float64(b.Pods)),
			CompileRatio:    ratio(f.CompileSeconds, b.CompileSeconds),
			ApplyRatio:      ratio(f.ApplySeconds, b.ApplySeconds),
			FullSyncRatio:   ratio(f.FullSyncSeconds, b.FullSyncSeconds),
			ElementsRatio:   ratio(float64(f.Written.Elements), float64(b.Written.Elements)),
			OpsRatio:        ratio(float64(f.Written.Ops), float64(b.Written.Ops)),
			PeakRSSRatio:    ratio(float64(m.PeakRSSBytes), float64(bm.PeakRSSBytes)),
			ChurnOps:        c.Appear.Ops,
			ChurnOpElements: c.Appear.OpElements,
		}
		s.FullSyncExponent = exponent(s.FullSyncRatio, s.PodsRatio)
		s.ElementsExponent = exponent(s.ElementsRatio, s.PodsRatio)
		s.TimeLinear = s.FullSyncExponent <= linearSlack
		s.OpsLinear = s.ElementsExponent <= linearSlack && exponent(s.OpsRatio, s.PodsRatio) <= linearSlack
		if c.Appear.Ops != bc.Appear.Ops || c.Appear.OpElements != bc.Appear.OpElements ||
			c.Disappear.Ops != bc.Disappear.Ops || c.Disappear.OpElements != bc.Disappear.OpElements {
			opsConstant = false
		}
		out = append(out, s)
	}
	last := len(res.FullSync) - 1
	f, c, m := res.FullSync[last], res.Churn[last], res.Memory[last]
	churn := max(c.Appear.TotalSeconds, c.Disappear.TotalSeconds)
	kern := max(c.Appear.ApplySeconds, c.Disappear.ApplySeconds)
	g := Goals{
		Shape:           f.Shape,
		FullSyncSeconds: f.FullSyncSeconds, FullSyncMet: f.FullSyncSeconds < goalFullSyncSeconds,
		ChurnSeconds: churn, ChurnMet: churn < goalChurnSeconds,
		ChurnApplySeconds: kern, ChurnApplyMet: kern < goalChurnSeconds,
		ChurnOpsConstant: opsConstant,
		PeakRSSBytes:     m.PeakRSSBytes, RSSMet: m.PeakRSSBytes < goalRSSBytes,
		ScalingTimeAtMostLinear: true, ScalingOpsAtMostLinear: true,
	}
	for _, s := range out {
		g.ScalingTimeAtMostLinear = g.ScalingTimeAtMostLinear && s.TimeLinear
		g.ScalingOpsAtMostLinear = g.ScalingOpsAtMostLinear && s.OpsLinear
	}
	return out, g
}

// cnpCost relates each row with ClusterNetworkPolicies to the row of the
// same cluster size without.
func cnpCost(res *ControlPlane) []CNPCost {
	base := map[int]int{} // pods -> row without
	for i, f := range res.FullSync {
		if f.ClusterNetworkPolicies == 0 {
			base[f.Pods] = i
		}
	}
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	var out []CNPCost
	for i, f := range res.FullSync {
		j, ok := base[f.Pods]
		if f.ClusterNetworkPolicies == 0 || !ok {
			continue
		}
		b, m, bm := res.FullSync[j], res.Memory[i], res.Memory[j]
		out = append(out, CNPCost{
			Shape: f.Shape, Pods: f.Pods, ClusterNetworkPolicies: f.ClusterNetworkPolicies,
			CompileRatio:    ratio(f.CompileSeconds, b.CompileSeconds),
			ApplyRatio:      ratio(f.ApplySeconds, b.ApplySeconds),
			FullSyncRatio:   ratio(f.FullSyncSeconds, b.FullSyncSeconds),
			ElementsRatio:   ratio(float64(f.Written.Elements), float64(b.Written.Elements)),
			PeakRSSRatio:    ratio(float64(m.PeakRSSBytes), float64(bm.PeakRSSBytes)),
			SteadyRSSRatio:  ratio(float64(m.SteadyRSSBytes), float64(bm.SteadyRSSBytes)),
			ChurnTotalRatio: ratio(res.Churn[i].Appear.TotalSeconds, res.Churn[j].Appear.TotalSeconds),
		})
	}
	return out
}

// cnpGoals sets the goals' cnp object from the largest shape with the
// most ClusterNetworkPolicies.
func cnpGoals(res *ControlPlane) {
	best := -1
	for i, f := range res.FullSync {
		if f.ClusterNetworkPolicies == 0 {
			continue
		}
		if best < 0 || f.Pods > res.FullSync[best].Pods ||
			(f.Pods == res.FullSync[best].Pods && f.ClusterNetworkPolicies > res.FullSync[best].ClusterNetworkPolicies) {
			best = i
		}
	}
	if best < 0 {
		return
	}
	f, c, m := res.FullSync[best], res.Churn[best], res.Memory[best]
	g := &CNPGoals{Shape: f.Shape}
	g.FullSyncSeconds, g.FullSyncMet = f.FullSyncSeconds, f.FullSyncSeconds < goalFullSyncSeconds
	g.ChurnSeconds = max(c.Appear.TotalSeconds, c.Disappear.TotalSeconds)
	g.ChurnMet = g.ChurnSeconds < goalChurnSeconds
	g.PeakRSSBytes, g.RSSMet = m.PeakRSSBytes, m.PeakRSSBytes < goalRSSBytes
	for _, cc := range res.CNPChange {
		if cc.Shape == f.Shape {
			kind, step := cc.Worst()
			g.ChangeKind, g.ChangeSeconds, g.ChangeP99Seconds = kind, step.TotalSeconds, step.TotalP99Seconds
			g.ChangeWithinLatencyGoal = step.TotalP99Seconds < goalLatencySeconds
		}
	}
	res.Goals.CNP = g
}

func printTable(w io.Writer, all *ControlPlane) {
	res := withoutCNPs(all)
	fmt.Fprintf(w, "machine: %d CPUs (%s), kernel %s, %s, %s RAM; load average %s at the start, %s at the end\n\n", all.Machine.CPUs, all.Machine.CPUModel,
		all.Machine.Kernel, all.Machine.GoVersion, all.Machine.MemTotal, all.Machine.LoadAverageStart, all.Machine.LoadAverageEnd)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "Figure 3/4 — full sync (medians; apply = Syncer.Sync into a fresh netns; restart = a fresh Syncer's replace of that table, unchanged, and the elements it wrote; ratios vs the first row)")
	fmt.Fprintln(tw, "pods\tpolicies\tcompile ms\tdiff ms\tapply ms\tfull ms\trestart ms\trestart elements\tchains\trules\tsets\telements\tops\tcache RSS MiB\tpeak RSS MiB\tx pods\tx full\tx elements\tx RSS\tslope full\tslope elements\t")
	for i, f := range res.FullSync {
		m, s := res.Memory[i], all.Scaling[i]
		fmt.Fprintf(tw, "%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.2f\t%.2f\t%.2f\t\n",
			f.Pods, f.Policies, ms(f.CompileSeconds), ms(f.DiffSeconds), ms(f.ApplySeconds), ms(f.FullSyncSeconds),
			ms(f.RestartApplySeconds), f.RestartElementsAdded, f.Written.Chains, f.Written.Rules, f.Written.Sets, f.Written.Elements, f.Written.Ops,
			mib(m.CacheRSSBytes), mib(m.PeakRSSBytes), s.PodsRatio, s.FullSyncRatio, s.ElementsRatio, s.PeakRSSRatio,
			s.FullSyncExponent, s.ElementsExponent)
	}
	tw.Flush()
	if len(all.CNPCost) > 0 {
		fmt.Fprintln(w, "\nFigure 3/4 with ClusterNetworkPolicies (synth.ClusterNetworkPolicy; medians; ratios vs the same pods and policies without them, same run)")
		fmt.Fprintln(tw, "pods\tpolicies\tcnps\tcompile ms\tdiff ms\tapply ms\tfull ms\tchains\tsets\telements\ttier maps\ttier elements\tops\tcache RSS MiB\tpeak RSS MiB\tsteady RSS MiB\tx compile\tx full\tx elements\tx peak RSS\t")
		for _, c := range all.CNPCost {
			for i, f := range all.FullSync {
				if f.Shape != c.Shape {
					continue
				}
				m := all.Memory[i]
				fmt.Fprintf(tw, "%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t\n",
					f.Pods, f.Policies, f.ClusterNetworkPolicies, ms(f.CompileSeconds), ms(f.DiffSeconds), ms(f.ApplySeconds), ms(f.FullSyncSeconds),
					f.Written.Chains, f.Written.Sets, f.Written.Elements, f.Written.TierMaps, f.Written.TierElements, f.Written.Ops,
					mib(m.CacheRSSBytes), mib(m.PeakRSSBytes), mib(m.SteadyRSSBytes), c.CompileRatio, c.FullSyncRatio, c.ElementsRatio, c.PeakRSSRatio)
			}
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\nFigure 3 — one-pod churn (a remote peer admitted by one local pod appears, then disappears, in the agent's long-lived policy.NodeCompiler;")
	fmt.Fprintln(w, "compile = update + incremental NodeCompiler.Compile; scratch = policy.Compile of the whole snapshot for the same change; medians, p99 of total)")
	fmt.Fprintln(tw, "pods\tcnps\tstep\tcompile ms\tdiff ms\tapply ms\tapply p99 ms\ttotal ms\ttotal p99 ms\tops\telements\tx noop apply\tx noop total\tscratch compile ms\t")
	for _, c := range all.Churn {
		for _, st := range []struct {
			name string
			s    controlplane.ChurnStep
		}{{"noop", c.Noop}, {"appear", c.Appear}, {"disappear", c.Disappear}} {
			scratch := "-"
			if st.name == "appear" {
				scratch = fmt.Sprintf("%.2f", ms(c.ScratchCompileSeconds))
			}
			fmt.Fprintf(tw, "%d\t%d\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%.2f\t%.2f\t%s\t\n", c.Pods, c.ClusterNetworkPolicies, st.name,
				ms(st.s.CompileSeconds), ms(st.s.DiffSeconds), ms(st.s.ApplySeconds), ms(st.s.ApplyP99Seconds),
				ms(st.s.TotalSeconds), ms(st.s.TotalP99Seconds), st.s.Ops, st.s.OpElements,
				st.s.ApplySeconds/c.Noop.ApplySeconds, st.s.TotalSeconds/c.Noop.TotalSeconds, scratch)
		}
	}
	tw.Flush()
	if len(all.CNPChange) > 0 {
		fmt.Fprintln(w, "\nFigure 3 — one ClusterNetworkPolicy change (synth.ClusterNetworkPolicyChanges, made then undone in the agent's long-lived policy.NodeCompiler;")
		fmt.Fprintln(w, "compile = SetClusterNetworkPolicy + incremental NodeCompiler.Compile, apply = Syncer.Sync; medians, p99 of total; scratch = policy.Compile of the edited snapshot)")
		fmt.Fprintln(tw, "pods\tcnps\tkind\tstep\tcompile ms\tdiff ms\tapply ms\ttotal ms\ttotal p99 ms\tops\telements\tx noop total\tscratch compile ms\t")
		for _, c := range all.CNPChange {
			fmt.Fprintf(tw, "%d\t%d\t-\tnoop\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%.2f\t-\t\n", c.Pods, c.ClusterNetworkPolicies,
				ms(c.Noop.CompileSeconds), ms(c.Noop.DiffSeconds), ms(c.Noop.ApplySeconds), ms(c.Noop.TotalSeconds), ms(c.Noop.TotalP99Seconds),
				c.Noop.Ops, c.Noop.OpElements, 1.0)
			for _, k := range c.Kinds {
				for _, st := range []struct {
					name string
					s    controlplane.ChurnStep
				}{{"update", k.Update}, {"revert", k.Revert}} {
					scratch := "-"
					if st.name == "update" {
						scratch = fmt.Sprintf("%.1f", ms(k.ScratchCompileSeconds))
					}
					fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%.2f\t%s\t\n", c.Pods, c.ClusterNetworkPolicies, k.Kind, st.name,
						ms(st.s.CompileSeconds), ms(st.s.DiffSeconds), ms(st.s.ApplySeconds), ms(st.s.TotalSeconds), ms(st.s.TotalP99Seconds),
						st.s.Ops, st.s.OpElements, st.s.TotalSeconds/c.Noop.TotalSeconds, scratch)
				}
			}
		}
		tw.Flush()
	}
	g := all.Goals
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Fprintf(w, "\nGoals at %s:\n", g.Shape)
	fmt.Fprintf(w, "  full sync < 1 s:                %7.1f ms  %s\n", ms(g.FullSyncSeconds), verdict(g.FullSyncMet))
	fmt.Fprintf(w, "  churn < 5 ms (compile+apply):   %7.2f ms  %s\n", ms(g.ChurnSeconds), verdict(g.ChurnMet))
	fmt.Fprintf(w, "  churn < 5 ms (apply only):      %7.2f ms  %s\n", ms(g.ChurnApplySeconds), verdict(g.ChurnApplyMet))
	fmt.Fprintf(w, "  churn ops O(1) (same at every shape): %v\n", g.ChurnOpsConstant)
	fmt.Fprintf(w, "  peak RSS < 256 MiB:             %7.0f MiB %s\n", mib(g.PeakRSSBytes), verdict(g.RSSMet))
	fmt.Fprintf(w, "  scaling (log-log slope vs the first row <= %.2f): time at most linear: %v; elements/ops at most linear: %v\n", linearSlack,
		g.ScalingTimeAtMostLinear, g.ScalingOpsAtMostLinear)
	if c := g.CNP; c != nil {
		fmt.Fprintf(w, "\nThe same goals at %s:\n", c.Shape)
		fmt.Fprintf(w, "  full sync < 1 s:                %7.1f ms  %s\n", ms(c.FullSyncSeconds), verdict(c.FullSyncMet))
		fmt.Fprintf(w, "  pod churn < 5 ms (compile+apply): %5.2f ms  %s\n", ms(c.ChurnSeconds), verdict(c.ChurnMet))
		fmt.Fprintf(w, "  peak RSS < 256 MiB:             %7.0f MiB %s\n", mib(c.PeakRSSBytes), verdict(c.RSSMet))
		fmt.Fprintf(w, "  one ClusterNetworkPolicy change (worst kind, %s): median %.2f ms, p99 %.2f ms (compile+apply); inside figure 2's 100 ms: %v\n",
			c.ChangeKind, ms(c.ChangeSeconds), ms(c.ChangeP99Seconds), c.ChangeWithinLatencyGoal)
	}
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	m.LoadAverageStart = results.LoadAverage()
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && k == "MemTotal" {
				m.MemTotal = strings.TrimSpace(v)
			}
		}
	}
	return m
}

// linearSlack is the largest log-log slope still read as linear: the
// synthetic allow-lists grow a little faster than the pod count between
// 1k and 10k pods (elements x10.4 for pods x10, slope 1.02).
const linearSlack = 1.05

func exponent(ratio, podsRatio float64) float64 {
	if ratio <= 0 || podsRatio <= 1 {
		return 0
	}
	return math.Log(ratio) / math.Log(podsRatio)
}

func ms(s float64) float64 { return s * 1000 }
func mib(b int64) float64  { return float64(b) / (1 << 20) }
func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

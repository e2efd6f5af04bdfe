//go:build linux

package main

import (
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/nftpolicy/nftpolicy/bench/controlplane"
	"github.com/nftpolicy/nftpolicy/bench/results"
)

// goalAgentLatencySeconds is issue 13's end-to-end goal for figure 2
// (p99 from the API write to the new verdict); the agent's share must be
// well inside it.
const goalAgentLatencySeconds = 0.05

// AgentLatencyRuns is the "agent_latency" key of results.json: figure 2's
// events on the control plane alone, per count of background policies.
type AgentLatencyRuns struct {
	Machine Machine                     `json:"machine"`
	Started time.Time                   `json:"started"`
	Seconds float64                     `json:"seconds"`
	Runs    []controlplane.AgentLatency `json:"runs"`
	// Goal is the end-to-end p99 goal; AgentShareP99Seconds the worst p99
	// of any kind at the most background policies measured.
	GoalSeconds          float64 `json:"goal_seconds"`
	AgentShareP99Seconds float64 `json:"agent_share_p99_seconds"`
}

// runLatency is `nftbench latency`: figure 2's agent share (see
// controlplane.MeasureAgentLatency), table on stdout, the agent_latency
// key of results.json.
func runLatency(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nftbench latency", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", results.DefaultPath, "where to write the results (the agent_latency key is replaced, other keys kept; empty: not written)")
	backgroundFlag := fs.String("background", "0,10000", "counts of background policies selecting the server")
	reps := fs.Int("reps", 100, "events of each kind")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	background, err := parseInts(*backgroundFlag)
	if err != nil || len(background) == 0 {
		fmt.Fprintf(stderr, "-background: %v\n", err)
		return 2
	}
	res := AgentLatencyRuns{Machine: machine(), Started: time.Now().UTC(), GoalSeconds: goalAgentLatencySeconds}
	for _, n := range background {
		fmt.Fprintf(stderr, "agent latency: %d background policies, %d events of each kind\n", n, *reps)
		run, err := controlplane.MeasureAgentLatency(n, *reps)
		if err != nil {
			fmt.Fprintf(stderr, "nftbench latency: %d background policies: %v\n", n, err)
			return 1
		}
		res.Runs = append(res.Runs, run)
	}
	res.Seconds = time.Since(res.Started).Seconds()
	res.Machine.LoadAverageEnd = results.LoadAverage()
	last := res.Runs[len(res.Runs)-1]
	for _, k := range last.Kinds {
		res.AgentShareP99Seconds = max(res.AgentShareP99Seconds, k.P99Seconds)
	}
	printLatency(stdout, res)
	if *out != "" {
		if err := results.WriteKeys(*out, map[string]any{"agent_latency": res}); err != nil {
			fmt.Fprintf(stderr, "nftbench latency: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "\nwrote %s\n", *out)
	}
	return 0
}

func printLatency(w io.Writer, res AgentLatencyRuns) {
	m := res.Machine
	fmt.Fprintf(w, "machine: %d CPUs (%s), kernel %s, %s; load average %s at the start, %s at the end\n",
		m.CPUs, m.CPUModel, m.Kernel, m.GoVersion, m.LoadAverageStart, m.LoadAverageEnd)
	ms := func(s float64) string { return fmt.Sprintf("%.2f", s*1e3) }
	for _, run := range res.Runs {
		fmt.Fprintf(w, "\nFigure 2, agent share — update + compile + sync per event, server's node, %d background policies (%d allow-list elements); %d events per kind\n",
			run.BackgroundPolicies, run.AllowListElements, run.Reps)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "kind\tverdict\tn\tp50 ms\tp99 ms\tmax ms\tcompile p50 ms\tsync p50 ms\tcpu p50 ms\tops\telements\t")
		row := func(k controlplane.LatencyKind) {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t\n", k.Kind, k.Verdict, k.N, ms(k.P50Seconds), ms(k.P99Seconds),
				ms(k.MaxSeconds), ms(k.CompileP50), ms(k.SyncP50), ms(k.CPUP50Seconds), k.Ops, k.OpElements)
		}
		row(run.Noop)
		for _, k := range run.Kinds {
			row(k)
		}
		row(controlplane.LatencyKind{Kind: "all", LatencyKindSummary: run.All})
		_ = tw.Flush()
	}
	fmt.Fprintf(w, "worst p99 of a kind at %d background policies: %s ms (the end-to-end goal is p99 < %s ms)\n",
		res.Runs[len(res.Runs)-1].BackgroundPolicies, ms(res.AgentShareP99Seconds), ms(res.GoalSeconds))
}

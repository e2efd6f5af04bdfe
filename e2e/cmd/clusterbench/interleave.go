package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os/exec"
	"time"

	"github.com/nftpolicy/nftpolicy/bench/results"

	"github.com/nftpolicy/nftpolicy/bench/stats"
)

// The interleaved datapath figure (issue 13, goal 4): figure 1 measures
// each configuration once, in a row, and on a shared 2-core machine the
// drift between the first and the last configuration is as large as any
// cost of the agent. Here the two configurations that the goal compares,
// (a) no agent and (z) the agents enforcing all the run's policies, take
// turns: pair after pair, each a short run of every measurement, the
// order flipped every other pair (a b, b a, a b, ...), and each pair gives
// one ratio per measurement. The figure is the median ratio with its 95%
// bootstrap interval, and the goal (>= 0.95) is claimed for a measurement
// only where the interval's lower bound reaches it, and only from
// interleavedMinPairs pairs or more.

// interleavedGoal is the lowest ratio to the no-agent baseline that
// counts as "as fast".
const interleavedGoal = 0.95

// interleavedMinPairs is the fewest pairs a goal is claimed from (issue
// 13 asks for at least 20); fewer still give a figure, never a claim.
const interleavedMinPairs = 20

// Interleaved is results.json's `datapath_interleaved`.
type Interleaved struct {
	Started         time.Time `json:"started"`
	Seconds         float64   `json:"seconds"`
	Machine         string    `json:"machine"`
	LoadStart       string    `json:"load_average_start"`
	LoadEnd         string    `json:"load_average_end"`
	Policies        int       `json:"policies"`
	SetElements     float64   `json:"set_elements_node1"`
	Pairs           int       `json:"pairs"`
	RunSeconds      float64   `json:"run_seconds"`
	AgentStartMean  float64   `json:"agent_start_to_synced_mean_seconds"`
	Goal            string    `json:"goal"`
	Ratios          []Ratio   `json:"ratios"`
	GoalMetAll      bool      `json:"goal_met_all"`
	WorstLowerBound float64   `json:"worst_ci_low"`
}

// Ratio is one measurement's ratio (agents ÷ no agent for rates, no agent
// ÷ agents for latencies: 1.0 = as fast, less = slower).
type Ratio struct {
	Name     string         `json:"name"`
	Interval stats.Interval `json:"interval"`
	GoalMet  bool           `json:"goal_met"`
	// Baseline and Agent are the per-pair raw values (per second or
	// seconds), in pair order.
	Baseline []float64 `json:"baseline_runs"`
	Agent    []float64 `json:"agent_runs"`
}

// pairSample is one configuration's short run of every measurement.
type pairSample map[string]float64

// measurements, in the order they are taken, and whether higher is better.
var measurements = []struct {
	name   string
	higher bool
}{
	{"same_conn_per_second", true}, {"same_rr_p50", false}, {"same_rr_p99", false},
	{"cross_conn_per_second", true}, {"cross_rr_p50", false}, {"cross_rr_p99", false},
}

func (e *env) sampleOnce(ctx context.Context, d time.Duration) (pairSample, error) {
	s := pairSample{}
	for _, side := range []struct{ prefix, client string }{{"same_", "client-same"}, {"cross_", "client-cross"}} {
		c, err := e.load(ctx, side.client, "conn", d)
		if err != nil {
			return nil, err
		}
		q, err := e.load(ctx, side.client, "rr", d)
		if err != nil {
			return nil, err
		}
		if c.Count == 0 || q.Count == 0 {
			return nil, fmt.Errorf("%s: no traffic got through (conn errors %d, rr errors %d)", side.client, c.Errors, q.Errors)
		}
		s[side.prefix+"conn_per_second"] = c.PerSecond
		s[side.prefix+"rr_p50"] = q.P50Seconds
		s[side.prefix+"rr_p99"] = q.P99Seconds
	}
	return s, nil
}

// noAgent stops the agents, deletes their table on every node (the
// policies stay in the API) and checks that the outsider connects.
func (e *env) noAgent(ctx context.Context) error {
	e.stopAgents()
	for _, n := range e.st.Nodes {
		_ = exec.CommandContext(ctx, "ip", "netns", "exec", n.NetNS, "nft", "delete", "table", "inet", "nftpolicy").Run()
		if exec.CommandContext(ctx, "ip", "netns", "exec", n.NetNS, "nft", "list", "table", "inet", "nftpolicy").Run() == nil {
			return fmt.Errorf("table inet nftpolicy still on %s without an agent", n.Name)
		}
	}
	return e.checkEnforced(ctx, false)
}

// withAgents starts the agents unless they run (the pair before ended
// with them: b a, a b), waits until every one has synced all policies,
// and checks that the outsider is blocked; it returns the server node's
// metrics and how long the start took (0 when they ran already).
func (e *env) withAgents(ctx context.Context, policies int) (map[string]float64, time.Duration, error) {
	if len(e.agents) > 0 {
		m, err := e.waitAgents(ctx, agentWant(policies, 0, 0), time.Time{}, 2*time.Minute)
		if err != nil {
			return nil, 0, err
		}
		return m, 0, e.checkEnforced(ctx, true)
	}
	t := time.Now()
	if err := e.startAgents(); err != nil {
		return nil, 0, err
	}
	m, err := e.waitAgents(ctx, agentWant(policies, 0, 0), t, 2*time.Minute)
	if err != nil {
		return nil, 0, err
	}
	took := time.Since(t)
	return m, took, e.checkEnforced(ctx, true)
}

// interleaved runs the pairs with the policies of the API (policies of
// them, as figure 1 left them) and no agent running on entry; it leaves
// no agent running either.
func (e *env) interleaved(ctx context.Context, policies, pairs int, d time.Duration, resamples int, log io.Writer) (*Interleaved, error) {
	if pairs < 2 {
		return nil, fmt.Errorf("-interleaved-pairs %d: at least 2", pairs)
	}
	started := time.Now()
	iv := &Interleaved{Started: started.UTC(), Machine: machine(), LoadStart: results.LoadAverage(), Policies: policies, Pairs: pairs,
		RunSeconds: d.Seconds(), Goal: fmt.Sprintf("ratio >= %.2f where the 95%% bootstrap interval's lower bound reaches it", interleavedGoal)}
	if err := e.noAgent(ctx); err != nil {
		return nil, err
	}
	var base, agent []pairSample
	var startTotal time.Duration
	starts := 0
	for p := range pairs {
		// a b in even pairs, b a in odd ones: neither is always second.
		order := []bool{false, true}
		if p%2 == 1 {
			order = []bool{true, false}
		}
		for _, withAgent := range order {
			if withAgent {
				m, took, err := e.withAgents(ctx, policies)
				if err != nil {
					return nil, fmt.Errorf("pair %d: %w", p, err)
				}
				if took > 0 {
					startTotal += took
					starts++
				}
				iv.SetElements = m["nftpolicy_set_elements"]
			} else if err := e.noAgent(ctx); err != nil {
				return nil, fmt.Errorf("pair %d: %w", p, err)
			}
			s, err := e.sampleOnce(ctx, d)
			if err != nil {
				return nil, fmt.Errorf("pair %d (agent %v): %w", p, withAgent, err)
			}
			if withAgent {
				agent = append(agent, s)
			} else {
				base = append(base, s)
			}
		}
		fmt.Fprintf(log, "%s pair %d/%d: same conn/s %.0f vs %.0f, cross conn/s %.0f vs %.0f (no agent vs agents)\n", time.Now().Format("15:04:05.000"), p+1, pairs,
			base[p]["same_conn_per_second"], agent[p]["same_conn_per_second"], base[p]["cross_conn_per_second"], agent[p]["cross_conn_per_second"])
	}
	if err := e.noAgent(ctx); err != nil {
		return nil, err
	}
	iv.AgentStartMean = startTotal.Seconds() / float64(max(starts, 1))
	iv.Ratios, iv.GoalMetAll, iv.WorstLowerBound = pairRatios(base, agent, resamples)
	iv.LoadEnd = results.LoadAverage()
	iv.Seconds = time.Since(started).Seconds()
	return iv, nil
}

// pairRatios turns the pairs into one Ratio per measurement, and reports
// whether the goal is met for all and the lowest lower bound.
func pairRatios(base, agent []pairSample, resamples int) (out []Ratio, all bool, worstLow float64) {
	all, worstLow = true, math.Inf(1)
	for i, m := range measurements {
		r := Ratio{Name: m.name}
		for p := range min(len(base), len(agent)) {
			r.Baseline = append(r.Baseline, base[p][m.name])
			r.Agent = append(r.Agent, agent[p][m.name])
		}
		var ratios []float64
		if m.higher {
			ratios = stats.PairRatios(r.Agent, r.Baseline)
		} else {
			ratios = stats.PairRatios(r.Baseline, r.Agent)
		}
		r.Interval = stats.MedianCI(ratios, 0.95, resamples, uint64(13+i))
		r.GoalMet = len(ratios) >= interleavedMinPairs && r.Interval.AtLeast(interleavedGoal)
		all = all && r.GoalMet
		worstLow = min(worstLow, r.Interval.Low)
		out = append(out, r)
	}
	return out, all, worstLow
}

func printInterleaved(w io.Writer, iv *Interleaved) {
	fmt.Fprintf(w, "\nFigure 1, interleaved — %d policies (%.0f elements on the server's node) vs no agent; %d pairs (a b, b a, ...) of %.2fs runs; %s\n",
		iv.Policies, iv.SetElements, iv.Pairs, iv.RunSeconds, iv.Machine)
	fmt.Fprintf(w, "load average %s at the start, %s at the end; agents start to synced: %.1fs mean\n", iv.LoadStart, iv.LoadEnd, iv.AgentStartMean)
	fmt.Fprintf(w, "%-24s %8s %18s  %s\n", "ratio (1.0 = no cost)", "median", "95% interval", "goal >= 0.95")
	for _, r := range iv.Ratios {
		met := "not claimed"
		if r.GoalMet {
			met = "met"
		}
		fmt.Fprintf(w, "%-24s %8.3f   [%6.3f, %6.3f]  %s\n", r.Name, r.Interval.Median, r.Interval.Low, r.Interval.High, met)
	}
}

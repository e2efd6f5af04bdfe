package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/bench/results"
	"github.com/nftpolicy/nftpolicy/bench/stats"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

// The agent restart figure (issue 13, goal 3's new figure): how long a
// node's agent takes from its process start to its first successful sync
// on the local cluster, with the background policies of figure 1 in the
// API and with none (the baseline, same run). The server's node's agent
// is stopped (SIGTERM by its recorded PID, as the harness stops it); its
// table stays in the kernel, as it does when a DaemonSet pod restarts.
// While it is down one policy write flips the outsider's verdict at the
// server (restartProbe admits it, or is deleted again), so the old table
// gives the old verdict until the new agent's first sync: then the agent
// is started as startAgents starts it, and the figure is read three ways
// from that one clock: the agent's own log line "starting" (process and
// runtime up), its "first sync succeeded" line (the list of every object,
// the first compile and the full replace of the table in one batch; it
// carries syncSeconds, that batch alone), and the first probe from the
// outsider showing the new verdict.

// restartProbe is the policy the restart figure writes while the agent is
// down: it admits the outsider (peer=none) to the server on benchPort.
const restartProbe = "restart-probe"

// restartVerdictLimit bounds each wait for the new verdict (the prober's
// -limit) and for the agent's log line.
const restartVerdictLimit = 2 * time.Minute

// Spread is a small sample's median and extremes.
type Spread struct {
	Median float64 `json:"median_seconds"`
	Min    float64 `json:"min_seconds"`
	Max    float64 `json:"max_seconds"`
}

func spreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return Spread{Median: stats.Median(xs), Min: lo, Max: hi}
}

// RestartSample is one restart.
type RestartSample struct {
	// Verdict is the outsider's verdict the write made while the agent was
	// down (the old table kept the other one until the first sync).
	Verdict               string  `json:"verdict"`
	StartToLogSeconds     float64 `json:"start_to_log_seconds"`
	StartToSyncSeconds    float64 `json:"start_to_first_sync_seconds"`
	FirstSyncSeconds      float64 `json:"first_sync_batch_seconds"`
	StartToVerdictSeconds float64 `json:"start_to_verdict_seconds"`
}

// RestartRun is one background count of the restart figure.
type RestartRun struct {
	BackgroundPolicies int `json:"background_policies"`
	// Policies: the NetworkPolicies the agent lists at its start
	// (background + deny-server, + restart-probe in half the restarts).
	Policies    int     `json:"policies"`
	SetElements float64 `json:"set_elements_node1"`
	LoadStart   string  `json:"load_average_start"`
	LoadEnd     string  `json:"load_average_end"`
	Reps        int     `json:"reps"`
	// Medians and extremes over the restarts: see RestartSample.
	StartToLog     Spread          `json:"start_to_log"`
	StartToSync    Spread          `json:"start_to_first_sync"`
	FirstSync      Spread          `json:"first_sync_batch"`
	StartToVerdict Spread          `json:"start_to_verdict"`
	Samples        []RestartSample `json:"samples"`
}

// AgentRestart is results.json's `agent_restart`.
type AgentRestart struct {
	Started time.Time    `json:"started"`
	Seconds float64      `json:"seconds"`
	Machine string       `json:"machine"`
	Node    string       `json:"node"`
	Runs    []RestartRun `json:"runs"`
	// SyncRatio and VerdictRatio: the median start to first sync (and to
	// the verdict) with the most background policies over that with the
	// fewest, same run (0 without two runs).
	SyncRatio    float64 `json:"start_to_first_sync_ratio"`
	VerdictRatio float64 `json:"start_to_verdict_ratio"`
	Note         string  `json:"note"`
}

// agentRestart runs the restart figure once per background count, in the
// order given (largest first reuses figure 1's policies); it leaves every
// agent running.
func (e *env) agentRestart(ctx context.Context, backgrounds []int, reps int, log io.Writer) (*AgentRestart, error) {
	if reps < 2 || reps%2 != 0 {
		return nil, fmt.Errorf("-restart-reps %d: an even number, at least 2 (each restart flips the verdict)", reps)
	}
	started := time.Now()
	ar := &AgentRestart{Started: started.UTC(), Machine: machine(), Node: e.st.Nodes[0].Name,
		Note: "the server node's agent stopped by PID (its table stays), one policy write flipping the outsider's verdict, the agent started again; times from just before its exec"}
	for _, n := range backgrounds {
		run, err := e.restartRun(ctx, n, reps, log)
		if err != nil {
			return nil, fmt.Errorf("%d background policies: %w", n, err)
		}
		ar.Runs = append(ar.Runs, *run)
	}
	if len(ar.Runs) >= 2 {
		lo, hi := ar.Runs[0], ar.Runs[0]
		for _, r := range ar.Runs {
			if r.BackgroundPolicies < lo.BackgroundPolicies {
				lo = r
			}
			if r.BackgroundPolicies > hi.BackgroundPolicies {
				hi = r
			}
		}
		if lo.StartToSync.Median > 0 && lo.StartToVerdict.Median > 0 {
			ar.SyncRatio = hi.StartToSync.Median / lo.StartToSync.Median
			ar.VerdictRatio = hi.StartToVerdict.Median / lo.StartToVerdict.Median
		}
	}
	ar.Seconds = time.Since(started).Seconds()
	return ar, nil
}

// restartPolicy is restartProbe: it selects the server and admits the
// outsider on benchPort.
func restartPolicy() *networkingv1.NetworkPolicy {
	p := synth.BackgroundPolicy(benchNS, benchPort, 99998, "none")
	p.Name = restartProbe
	p.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}
	return p
}

func (e *env) restartRun(ctx context.Context, background, reps int, log io.Writer) (*RestartRun, error) {
	run := &RestartRun{BackgroundPolicies: background, Policies: background + 1, Reps: reps, LoadStart: results.LoadAverage()}
	t := time.Now() // before the writes: every agent must sync after them
	if err := e.ensureBackground(ctx, background); err != nil {
		return nil, err
	}
	np := e.cs.NetworkingV1().NetworkPolicies(benchNS)
	deny, _ := serverPolicies()
	if _, err := np.Create(ctx, deny, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if len(e.agents) == 0 {
		if err := e.startAgents(); err != nil {
			return nil, err
		}
	}
	m, err := e.waitAgents(ctx, agentWant(background+1, 0, 0), t, 5*time.Minute)
	if err != nil {
		return nil, err
	}
	run.SetElements = m["nftpolicy_set_elements"]
	pr, err := e.startProberLimit(ctx, e.pods["outsider"].NetNS, restartVerdictLimit)
	if err != nil {
		return nil, err
	}
	defer pr.stop()
	if err := pr.expect("blocked", "the outsider with "+denyServer); err != nil {
		return nil, err
	}
	var toLog, toSync, batch, toVerdict []float64
	for rep := range reps {
		want, policies := "allowed", background+2
		if rep%2 == 1 {
			want, policies = "blocked", background+1
		}
		s, err := e.restartOnce(ctx, pr, want, policies)
		if err != nil {
			return nil, fmt.Errorf("restart %d: %w", rep+1, err)
		}
		fmt.Fprintf(log, "%s restart %d/%d, %d background policies: starting %.2fs, first sync %.2fs (batch %.3fs), outsider %s %.2fs after the exec\n",
			time.Now().Format("15:04:05.000"), rep+1, reps, background, s.StartToLogSeconds, s.StartToSyncSeconds, s.FirstSyncSeconds, want, s.StartToVerdictSeconds)
		run.Samples = append(run.Samples, *s)
		toLog, toSync = append(toLog, s.StartToLogSeconds), append(toSync, s.StartToSyncSeconds)
		batch, toVerdict = append(batch, s.FirstSyncSeconds), append(toVerdict, s.StartToVerdictSeconds)
	}
	run.StartToLog, run.StartToSync, run.FirstSync, run.StartToVerdict = spreadOf(toLog), spreadOf(toSync), spreadOf(batch), spreadOf(toVerdict)
	if err := np.Delete(ctx, denyServer, metav1.DeleteOptions{}); err != nil {
		return nil, err
	}
	run.LoadEnd = results.LoadAverage()
	return run, nil
}

// restartOnce stops the server node's agent, makes the write that flips
// the outsider's verdict to want (checking that the kept table still
// gives the old one), starts the agent and times it; it returns once the
// new agent has synced every one of `policies`.
func (e *env) restartOnce(ctx context.Context, pr *prober, want string, policies int) (*RestartSample, error) {
	if err := e.cfg.Stop(e.agentName(0)); err != nil {
		return nil, err
	}
	np := e.cs.NetworkingV1().NetworkPolicies(benchNS)
	written := time.Now() // the other agents sync the write after this
	var err error
	if want == "allowed" {
		_, err = np.Create(ctx, restartPolicy(), metav1.CreateOptions{})
	} else {
		err = np.Delete(ctx, restartProbe, metav1.DeleteOptions{})
	}
	if err != nil {
		return nil, err
	}
	// Without an agent the table it left keeps the old verdict.
	if err := e.checkEnforced(ctx, want == "allowed"); err != nil {
		return nil, fmt.Errorf("agent down, table kept: %w", err)
	}
	logFile := e.agentLog(0)
	offset := int64(0)
	if fi, err := os.Stat(logFile); err == nil {
		offset = fi.Size()
	}
	if _, err := fmt.Fprintln(pr.in, want); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := e.startAgent(0); err != nil {
		return nil, err
	}
	if !pr.out.Scan() {
		return nil, fmt.Errorf("prober exited: %w", pr.out.Err())
	}
	f := strings.Fields(pr.out.Text())
	if len(f) == 0 || f[0] == "timeout" {
		return nil, fmt.Errorf("outsider not %s within %s of the agent's start", want, restartVerdictLimit)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return nil, err
	}
	s := &RestartSample{Verdict: want, StartToVerdictSeconds: time.Unix(0, ns).Sub(t0).Seconds()}
	lines, err := waitLogLines(ctx, logFile, offset, []string{"starting", "first sync succeeded"}, restartVerdictLimit)
	if err != nil {
		return nil, err
	}
	s.StartToLogSeconds = lines["starting"].Time.Sub(t0).Seconds()
	s.StartToSyncSeconds = lines["first sync succeeded"].Time.Sub(t0).Seconds()
	s.FirstSyncSeconds = lines["first sync succeeded"].SyncSeconds
	if _, err := e.waitAgents(ctx, agentWant(policies, 0, 0), written, 5*time.Minute); err != nil {
		return nil, err
	}
	return s, nil
}

// agentLogLine is what the figure reads of one of the agent's JSON log
// lines (log/slog's JSON handler: time in RFC 3339 with nanoseconds).
type agentLogLine struct {
	Time        time.Time `json:"time"`
	Msg         string    `json:"msg"`
	SyncSeconds float64   `json:"syncSeconds"`
}

// waitLogLines waits until the log file, from offset on, has a line with
// each of msgs (the first of each), bounded by limit.
func waitLogLines(ctx context.Context, file string, offset int64, msgs []string, limit time.Duration) (map[string]agentLogLine, error) {
	deadline := time.Now().Add(limit)
	for {
		found, err := readLogLines(file, offset, msgs)
		if err != nil {
			return nil, err
		}
		if len(found) == len(msgs) {
			return found, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: no %q line within %s (found %d of %d)", file, msgs, limit, len(found), len(msgs))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readLogLines returns the first line of each of msgs in file after
// offset; lines that are not JSON (the harness's own notes) are skipped.
func readLogLines(file string, offset int64, msgs []string) (map[string]agentLogLine, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	return scanLogLines(f, msgs)
}

func scanLogLines(r io.Reader, msgs []string) (map[string]agentLogLine, error) {
	found := map[string]agentLogLine{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var l agentLogLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		for _, m := range msgs {
			if _, ok := found[m]; !ok && l.Msg == m {
				found[m] = l
			}
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, err
	}
	return found, nil
}

func printRestart(w io.Writer, ar *AgentRestart) {
	fmt.Fprintf(w, "\nAgent start to first sync — %s's agent restarted (table kept, one write flipping the outsider's verdict while it was down); %s\n", ar.Node, ar.Machine)
	fmt.Fprintf(w, "%10s %8s %9s %4s | %-24s | %-24s | %-24s | %-24s | %s\n", "background", "policies", "elements", "n",
		"to 'starting' med [min-max]", "to first sync", "first sync batch", "to verdict (probe)", "load average start / end")
	sp := func(s Spread) string { return fmt.Sprintf("%6.2f [%5.2f-%5.2f]", s.Median, s.Min, s.Max) }
	for _, r := range ar.Runs {
		fmt.Fprintf(w, "%10d %8d %9.0f %4d | %-24s | %-24s | %-24s | %-24s | %s / %s\n", r.BackgroundPolicies, r.Policies, r.SetElements, r.Reps,
			sp(r.StartToLog), sp(r.StartToSync), sp(r.FirstSync), sp(r.StartToVerdict), r.LoadStart, r.LoadEnd)
	}
	if ar.SyncRatio > 0 {
		fmt.Fprintf(w, "most / fewest background policies, medians: start to first sync x%.2f, start to verdict x%.2f\n", ar.SyncRatio, ar.VerdictRatio)
	}
}

// startProberLimit starts `clusterbench probe` in network namespace
// netns, against the server's pod IP only, giving up on a verdict after
// limit.
func (e *env) startProberLimit(ctx context.Context, netns string, limit time.Duration) (*prober, error) {
	addr := fmt.Sprintf("%s:%d", e.pods["server"].IP, benchPort)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", netns, e.self, "probe", "-addr", addr,
		"-interval", "10ms", "-timeout", "20ms", "-limit", limit.String())
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &prober{cmd: cmd, in: in, out: bufio.NewScanner(out)}, nil
}

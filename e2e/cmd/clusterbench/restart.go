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
	"slices"
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
	return Spread{Median: stats.Median(xs), Min: slices.Min(xs), Max: slices.Max(xs)}
}

// RestartSample is one restart.
type RestartSample struct {
	// Verdict is the outsider's verdict the agent's first sync gives (the
	// kernel gave the other one until then).
	Verdict               string  `json:"verdict"`
	StartToLogSeconds     float64 `json:"start_to_log_seconds"`
	StartToSyncSeconds    float64 `json:"start_to_first_sync_seconds"`
	FirstSyncSeconds      float64 `json:"first_sync_batch_seconds"`
	StartToVerdictSeconds float64 `json:"start_to_verdict_seconds"`
}

// RestartStats are the restarts of one kind: medians and extremes of
// each RestartSample figure.
type RestartStats struct {
	Reps           int             `json:"reps"`
	StartToLog     Spread          `json:"start_to_log"`
	StartToSync    Spread          `json:"start_to_first_sync"`
	FirstSync      Spread          `json:"first_sync_batch"`
	StartToVerdict Spread          `json:"start_to_verdict"`
	Samples        []RestartSample `json:"samples"`
}

func (st *RestartStats) add(s RestartSample) {
	st.Samples = append(st.Samples, s)
	st.Reps = len(st.Samples)
	var toLog, toSync, batch, toVerdict []float64
	for _, s := range st.Samples {
		toLog, toSync = append(toLog, s.StartToLogSeconds), append(toSync, s.StartToSyncSeconds)
		batch, toVerdict = append(batch, s.FirstSyncSeconds), append(toVerdict, s.StartToVerdictSeconds)
	}
	st.StartToLog, st.StartToSync, st.FirstSync, st.StartToVerdict = spreadOf(toLog), spreadOf(toSync), spreadOf(batch), spreadOf(toVerdict)
}

// RestartRun is one background count of the restart figure.
type RestartRun struct {
	BackgroundPolicies int `json:"background_policies"`
	// Policies: the NetworkPolicies the agent lists at its start
	// (background + deny-server, + restart-probe in a third of the
	// restarts).
	Policies    int     `json:"policies"`
	SetElements float64 `json:"set_elements_node1"`
	LoadStart   string  `json:"load_average_start"`
	LoadEnd     string  `json:"load_average_end"`
	// Kept: restarts with the old table in the kernel (a DaemonSet pod
	// restarting: the first sync replaces its content in one batch).
	// Deleted: the table deleted while the agent was down (a rebooted
	// node, a first install: the first sync creates everything).
	Kept    RestartStats `json:"table_kept"`
	Deleted RestartStats `json:"table_deleted"`
}

// AgentRestart is results.json's `agent_restart`.
type AgentRestart struct {
	Started time.Time    `json:"started"`
	Seconds float64      `json:"seconds"`
	Machine string       `json:"machine"`
	Node    string       `json:"node"`
	Runs    []RestartRun `json:"runs"`
	// SyncRatio and VerdictRatio: the median start to first sync (and to
	// the verdict) of the restarts with the table kept, with the most
	// background policies over that with the fewest, same run (0 without
	// two runs).
	SyncRatio    float64 `json:"start_to_first_sync_ratio"`
	VerdictRatio float64 `json:"start_to_verdict_ratio"`
	Note         string  `json:"note"`
}

// newAgentRestart starts the figure; runs are added by restartRun, in
// any order of background counts, and finish computes the ratios.
func newAgentRestart(e *env) *AgentRestart {
	return &AgentRestart{Started: time.Now().UTC(), Machine: machine(), Node: e.st.Nodes[0].Name,
		Note: "the server node's agent stopped by PID; its table kept and one policy write flipping the outsider's verdict, or the table deleted (the outsider then connects); the agent started again; times from just before its exec"}
}

// finish sets the duration (from the start to now: with figure 2's runs
// in between when both run) and the ratios of the most to the fewest
// background policies.
func (ar *AgentRestart) finish() {
	ar.Seconds = time.Since(ar.Started).Seconds()
	if len(ar.Runs) < 2 {
		return
	}
	lo, hi := ar.Runs[0], ar.Runs[0]
	for _, r := range ar.Runs {
		if r.BackgroundPolicies < lo.BackgroundPolicies {
			lo = r
		}
		if r.BackgroundPolicies > hi.BackgroundPolicies {
			hi = r
		}
	}
	if lo.Kept.StartToSync.Median > 0 && lo.Kept.StartToVerdict.Median > 0 {
		ar.SyncRatio = hi.Kept.StartToSync.Median / lo.Kept.StartToSync.Median
		ar.VerdictRatio = hi.Kept.StartToVerdict.Median / lo.Kept.StartToVerdict.Median
	}
}

// restartPolicy is restartProbe: it selects the server and admits the
// outsider on benchPort.
func restartPolicy() *networkingv1.NetworkPolicy {
	p := synth.BackgroundPolicy(benchNS, benchPort, 99998, "none")
	p.Name = restartProbe
	p.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}
	return p
}

// restartKind is one kind of restart: whether the table stays while the
// agent is down, and the verdict its first sync gives the outsider.
type restartKind struct {
	keepTable bool
	want      string
}

// restartCycle is one cycle of the restart figure: with the table kept,
// restart-probe created (allowed) then deleted (blocked), then with the
// table deleted (blocked again).
var restartCycle = []restartKind{{true, "allowed"}, {true, "blocked"}, {false, "blocked"}}

// restartRun is the restart figure with background policies, cycles
// times restartCycle; it leaves every agent running.
func (e *env) restartRun(ctx context.Context, background, cycles int, log io.Writer) (*RestartRun, error) {
	if cycles < 1 {
		return nil, fmt.Errorf("-restart-reps %d: at least 1", cycles)
	}
	run := &RestartRun{BackgroundPolicies: background, Policies: background + 1, LoadStart: results.LoadAverage()}
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
	for c := range cycles {
		for _, k := range restartCycle {
			s, err := e.restartOnce(ctx, pr, k, background)
			if err != nil {
				return nil, fmt.Errorf("restart (cycle %d, table kept %v, %s): %w", c+1, k.keepTable, k.want, err)
			}
			table := "kept"
			if k.keepTable {
				run.Kept.add(*s)
			} else {
				table = "deleted"
				run.Deleted.add(*s)
			}
			fmt.Fprintf(log, "%s restart %d/%d, %d background policies, table %s: starting %.2fs, first sync %.2fs (batch %.3fs), outsider %s %.2fs after the exec\n",
				time.Now().Format("15:04:05.000"), c+1, cycles, background, table, s.StartToLogSeconds, s.StartToSyncSeconds, s.FirstSyncSeconds, k.want, s.StartToVerdictSeconds)
		}
	}
	if err := np.Delete(ctx, denyServer, metav1.DeleteOptions{}); err != nil {
		return nil, err
	}
	run.LoadEnd = results.LoadAverage()
	return run, nil
}

// blockedConnectTimeout is the prober's connect timeout while it waits
// for "blocked": long enough that a connection the loaded machine is slow
// to accept does not read as dropped (the time reported is the start of
// the first probe that timed out, so it does not add to the figure).
const blockedConnectTimeout = time.Second

// restartOnce stops the server node's agent; with the table kept it makes
// the write that flips the outsider's verdict to k.want (and checks that
// the kept table still gives the old one), else it deletes the table (the
// outsider then connects); then it starts the agent and times it. It
// returns once every agent has synced the background, deny-server and
// restart-probe when it exists.
func (e *env) restartOnce(ctx context.Context, pr *prober, k restartKind, background int) (*RestartSample, error) {
	if err := e.cfg.Stop(e.agentName(0)); err != nil {
		return nil, err
	}
	np := e.cs.NetworkingV1().NetworkPolicies(benchNS)
	// With a write, every agent syncs it after this; without one only
	// the restarted agent syncs (its first sync, seen in its log below).
	var written time.Time
	policies := background + 1
	if k.keepTable {
		written = time.Now()
		var err error
		if k.want == "allowed" {
			_, err = np.Create(ctx, restartPolicy(), metav1.CreateOptions{})
			policies++
		} else {
			err = np.Delete(ctx, restartProbe, metav1.DeleteOptions{})
		}
		if err != nil {
			return nil, err
		}
		// Without an agent the table it left keeps the old verdict.
		if err := e.checkEnforced(ctx, k.want == "allowed"); err != nil {
			return nil, fmt.Errorf("agent down, table kept: %w", err)
		}
	} else {
		node := e.st.Nodes[0]
		if out, err := exec.CommandContext(ctx, "ip", "netns", "exec", node.NetNS, "nft", "delete", "table", "inet", "nftpolicy").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("delete the table on %s: %w: %s", node.Name, err, out)
		}
		if err := e.checkEnforced(ctx, false); err != nil {
			return nil, fmt.Errorf("agent down, table deleted: %w", err)
		}
	}
	logFile := e.agentLog(0)
	offset := int64(0)
	if fi, err := os.Stat(logFile); err == nil {
		offset = fi.Size()
	}
	cmd := k.want
	if k.want == "blocked" {
		cmd += " " + blockedConnectTimeout.String()
	}
	if _, err := fmt.Fprintln(pr.in, cmd); err != nil {
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
		return nil, fmt.Errorf("outsider not %s within %s of the agent's start", k.want, restartVerdictLimit)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return nil, err
	}
	s := &RestartSample{Verdict: k.want, StartToVerdictSeconds: time.Unix(0, ns).Sub(t0).Seconds()}
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
	fmt.Fprintf(w, "\nAgent start to first sync — %s's agent restarted, its table kept (one write flipping the outsider's verdict while it was down) or deleted; %s\n", ar.Node, ar.Machine)
	fmt.Fprintf(w, "%10s %8s %9s %-7s %3s | %-22s | %-22s | %-22s | %-22s | %s\n", "background", "policies", "elements", "table", "n",
		"to 'starting' med [range]", "to first sync", "first sync batch", "to verdict (probe)", "load average start / end")
	sp := func(s Spread) string { return fmt.Sprintf("%6.2f [%5.2f-%5.2f]", s.Median, s.Min, s.Max) }
	for _, r := range ar.Runs {
		for _, k := range []struct {
			name string
			st   RestartStats
		}{{"kept", r.Kept}, {"deleted", r.Deleted}} {
			fmt.Fprintf(w, "%10d %8d %9.0f %-7s %3d | %-22s | %-22s | %-22s | %-22s | %s / %s\n", r.BackgroundPolicies, r.Policies, r.SetElements, k.name, k.st.Reps,
				sp(k.st.StartToLog), sp(k.st.StartToSync), sp(k.st.FirstSync), sp(k.st.StartToVerdict), r.LoadStart, r.LoadEnd)
		}
	}
	if ar.SyncRatio > 0 {
		fmt.Fprintf(w, "table kept, most / fewest background policies, medians: start to first sync x%.2f, start to verdict x%.2f\n", ar.SyncRatio, ar.VerdictRatio)
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

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nftpolicy/nftpolicy/bench/results"
	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/e2e/internal/runner"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

const (
	benchNS    = "nftbench"
	benchPort  = 9000
	metricsURL = "http://127.0.0.1:9808/metrics"
)

type env struct {
	cfg    *cluster.Config
	st     *cluster.State
	cs     kubernetes.Interface
	kl     *kubelet.Kubelet
	self   string
	agent  string
	pods   map[string]*kubelet.Pod
	agents []string // proc names we started
	// agentPIDs are the agents' process ids by node name (their CPU time
	// is read from /proc for the churn figure).
	agentPIDs map[string]int
	log       io.Writer
	cnp       *cnpClients // nil until the ClusterNetworkPolicy CRD is installed
	// peers are the real-peer figure's pods while they exist.
	peers []*kubelet.Pod
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func runMain(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	stateDir := fs.String("state-dir", envOr("E2E_STATE_DIR", cluster.DefaultState), "e2e state dir (the Makefile sets it for E2E_INSTANCE)")
	e2eBin := fs.String("e2e", "e2e/.bin/e2e", "the e2e binary (for the pods' podservers)")
	agentBin := fs.String("agent", "e2e/.bin/nftpolicy", "the nftpolicy binary")
	out := fs.String("out", results.DefaultPath, "results file (only datapath and programming_latency are replaced)")
	counts := fs.String("policies", "1000,10000", "policy counts for configurations (c), (d)")
	reps := fs.Int("reps", 3, "repetitions of each datapath measurement (median reported)")
	dur := fs.Duration("duration", 2*time.Second, "length of one load run (at most 5s)")
	latReps := fs.Int("latency-reps", 100, "programming latency repetitions per kind (0 = skip figure 2)")
	latGap := fs.Duration("latency-gap", 30*time.Millisecond, "pause between a verdict and the next write in figure 2")
	latBackground := fs.String("latency-background", "0,10000", "figure 2 is run once per count of background policies (largest first)")
	skipDatapath := fs.Bool("skip-datapath", false, "only figure 2")
	pairs := fs.Int("interleaved-pairs", 20, "figure 1, interleaved: pairs of no agent / agents with the largest -policies count (0 = skip)")
	pairRun := fs.Duration("interleaved-run", 500*time.Millisecond, "figure 1, interleaved: length of each load run")
	churnFor := fs.Duration("churn", 15*time.Second, "agent CPU under constant churn: length of each kind's churn, with the largest -policies count (0 = skip)")
	cnps := fs.Int("cnps", 100, "figure 1: a configuration with this many Admin and as many Baseline ClusterNetworkPolicies (synth.LastRule; 0 = none)")
	cnpRules := fs.Int("cnp-rules", 25, "figure 1: rules per direction of each ClusterNetworkPolicy (at most 25)")
	latCNP := fs.Bool("latency-cnp", true, "figure 2: also the ClusterNetworkPolicy kinds")
	cnpCRD := fs.String("cnp-crd", runner.DefaultCNPCRD, "the ClusterNetworkPolicy CRD, installed before the agents start when -cnps > 0 or -latency-cnp")
	restartReps := fs.Int("restart-reps", 3, "agent start to first sync: cycles of three restarts of the server node's agent per background count (table kept: verdict allowed, blocked; table deleted; 0 = skip)")
	restartBackground := fs.String("restart-background", "10000,0", "agent start to first sync: background policy counts (largest first)")
	realPeers := fs.Int("real-peers", 500, "figure 1 with real-pod peers: peer pods spread over the nodes (0 = skip)")
	realPeerPolicies := fs.Int("real-peer-policies", 1000, "figure 1 with real-pod peers: policies (the clients' one and rp-NNNN admitting the peers)")
	realPeerPairs := fs.Int("real-peer-pairs", 20, "figure 1 with real-pod peers: interleaved pairs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *skipDatapath {
		*cnps = 0
	}
	if *cnps > 0 {
		if err := lastRuleSpec(*cnps, *cnpRules).Validate(); err != nil {
			return fmt.Errorf("-cnps, -cnp-rules: %w", err)
		}
	}
	withCNPs := *cnps > 0 || (*latCNP && *latReps > 0)
	policyCounts, err := parseCounts(*counts)
	if err != nil {
		return fmt.Errorf("-policies: %w", err)
	}
	backgrounds, err := parseCounts(*latBackground)
	if err != nil {
		return fmt.Errorf("-latency-background: %w", err)
	}
	for _, n := range backgrounds {
		if n > 99999 { // bp-99999 is the clients' policy, never background
			return fmt.Errorf("-latency-background: %d: at most 99999", n)
		}
	}
	restartCounts, err := parseCounts(*restartBackground)
	if err != nil {
		return fmt.Errorf("-restart-background: %w", err)
	}
	for _, n := range restartCounts {
		if n > 99998 { // bp-99998 is restart-probe's /32, bp-99999 the clients' policy
			return fmt.Errorf("-restart-background: %d: at most 99998", n)
		}
	}
	// Largest first: the first run reuses the datapath's policies.
	slices.Sort(backgrounds)
	backgrounds = slices.Compact(backgrounds)
	slices.Reverse(backgrounds)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	e := &env{log: os.Stderr, pods: map[string]*kubelet.Pod{}}
	e.cfg = &cluster.Config{StateDir: *stateDir}
	st, ok := e.cfg.Healthy()
	if !ok {
		return errors.New("the e2e cluster is not up: make up AGENT=none")
	}
	if st.AgentCmd != "" {
		return fmt.Errorf("the cluster runs an agent (%q); the baseline needs `make up AGENT=none`", st.AgentCmd)
	}
	e.st = st
	e.cfg.Instance = st.Instance
	e.cfg.BinDir = st.BinDir
	cs, err := e.cfg.Client()
	if err != nil {
		return err
	}
	e.cs = cs
	if e.kl, err = kubelet.New(e.cfg, st, cs); err != nil {
		return err
	}
	for _, p := range []*string{e2eBin, agentBin} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
		if _, err := os.Stat(*p); err != nil {
			return err
		}
	}
	e.kl.Exe = *e2eBin
	e.agent = *agentBin
	if e.self, err = os.Executable(); err != nil {
		return err
	}
	if len(st.Nodes) < 2 {
		return errors.New("need at least 2 nodes")
	}
	started := time.Now()
	defer e.cleanup()
	if withCNPs {
		if err := e.installCNPCRD(ctx, *cnpCRD); err != nil {
			return err
		}
	}
	if err := e.setup(ctx); err != nil {
		return err
	}
	if !*skipDatapath {
		dp, err := e.datapath(ctx, policyCounts, *cnps, *cnpRules, *reps, *dur)
		if err != nil {
			return err
		}
		dp.Started, dp.Seconds = started.UTC(), time.Since(started).Seconds()
		printDatapath(os.Stdout, dp)
		if err := results.WriteKeys(*out, map[string]any{"datapath": dp}); err != nil {
			return err
		}
		if *pairs > 0 && len(policyCounts) > 0 {
			iv, err := e.interleaved(ctx, slices.Max(policyCounts), *pairs, *pairRun, 5000, e.log)
			if err != nil {
				return fmt.Errorf("figure 1, interleaved: %w", err)
			}
			printInterleaved(os.Stdout, iv)
			if err := results.WriteKeys(*out, map[string]any{"datapath_interleaved": iv}); err != nil {
				return err
			}
		}
		if *churnFor > 0 && len(policyCounts) > 0 {
			cc, err := e.churnCPU(ctx, slices.Max(policyCounts), *churnFor, e.log)
			if err != nil {
				return fmt.Errorf("churn CPU: %w", err)
			}
			printChurnCPU(os.Stdout, cc)
			if err := results.WriteKeys(*out, map[string]any{"churn_cpu": cc}); err != nil {
				return err
			}
		}
	}
	// Figure 2 and the restart figure, per background count, largest
	// first, so that each count's policies are created once and figure
	// 1's are reused. Every run is written as soon as it ends.
	if *latReps == 0 {
		backgrounds = nil
	}
	if *restartReps == 0 {
		restartCounts = nil
	}
	order := slices.Concat(backgrounds, restartCounts)
	slices.Sort(order)
	order = slices.Compact(order)
	slices.Reverse(order)
	var runs []*Latency
	ar := newAgentRestart(e)
	for _, n := range order {
		if slices.Contains(backgrounds, n) {
			pl, err := e.programmingLatency(ctx, *latReps, n, *latGap, *latCNP)
			if err != nil {
				return fmt.Errorf("figure 2 with %d background policies: %w", n, err)
			}
			printLatency(os.Stdout, pl)
			runs = append(runs, pl)
			slices.SortFunc(runs, func(a, b *Latency) int { return a.BackgroundPolicies - b.BackgroundPolicies })
			if err := results.WriteKeys(*out, map[string]any{"programming_latency": runs}); err != nil {
				return err
			}
		}
		if slices.Contains(restartCounts, n) {
			run, err := e.restartRun(ctx, n, *restartReps, e.log)
			if err != nil {
				return fmt.Errorf("agent start to first sync with %d background policies: %w", n, err)
			}
			ar.Runs = append(ar.Runs, *run)
			ar.finish()
			if err := results.WriteKeys(*out, map[string]any{"agent_restart": ar}); err != nil {
				return err
			}
		}
	}
	if len(ar.Runs) > 0 {
		printRestart(os.Stdout, ar)
	}
	if *realPeers > 0 {
		rp, err := e.realPeers(ctx, *realPeers, *realPeerPolicies, *realPeerPairs, *pairRun, e.log)
		if err != nil {
			return fmt.Errorf("figure 1 with real-pod peers: %w", err)
		}
		printRealPeers(os.Stdout, rp)
		if err := results.WriteKeys(*out, map[string]any{"datapath_real_peers": rp}); err != nil {
			return err
		}
	}
	return nil
}

// parseCounts parses a comma-separated list of non-negative counts.
func parseCounts(list string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, fmt.Errorf("%d: negative", n)
		}
		out = append(out, n)
	}
	return out, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// podLayout: the server and two more pods selected by every policy (one per
// node), a client on the server's node and one on another node (both admitted
// only by the last policy), and an outsider admitted by none (the check that
// the policies are enforced at all).
func (e *env) podLayout() []kubelet.PodSpec {
	ip := func(node, host int) string { return e.podIP(e.st.Nodes[node], host) }
	web := []kubelet.Server{{Port: 80, Protocol: "TCP"}}
	specs := []kubelet.PodSpec{
		{Namespace: benchNS, Name: "server", IP: ip(0, 200), Labels: map[string]string{"app": "server", "tier": "bench"}, Servers: web},
		{Namespace: benchNS, Name: "client-same", IP: ip(0, 201), Labels: map[string]string{"peer": "last"}, Servers: web},
		{Namespace: benchNS, Name: "client-cross", IP: ip(1, 201), Labels: map[string]string{"peer": "last"}, Servers: web},
		{Namespace: benchNS, Name: "outsider", IP: ip(1, 202), Labels: map[string]string{"peer": "none"}, Servers: web},
		{Namespace: benchNS, Name: "other-1", IP: ip(0, 202), Labels: map[string]string{"tier": "bench"}, Servers: web},
		{Namespace: benchNS, Name: "other-2", IP: ip(1, 203), Labels: map[string]string{"tier": "bench"}, Servers: web},
	}
	if len(e.st.Nodes) > 2 {
		specs = append(specs, kubelet.PodSpec{Namespace: benchNS, Name: "other-3", IP: ip(2, 200), Labels: map[string]string{"tier": "bench"}, Servers: web})
	}
	return specs
}

// podIP is address .host of node n's podCIDR (10.244.<index>.0/24).
func (e *env) podIP(n cluster.Node, host int) string {
	return fmt.Sprintf("10.244.%d.%d", n.Index, host)
}

func (e *env) setup(ctx context.Context) error {
	if _, err := e.cs.CoreV1().Namespaces().Get(ctx, benchNS, metav1.GetOptions{}); err == nil {
		return fmt.Errorf("namespace %s exists (a previous run?): make down && make up AGENT=none", benchNS)
	}
	if _, err := e.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS,
		Labels: map[string]string{"bench": "cluster"}}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for _, spec := range e.podLayout() {
		p, err := e.kl.CreatePod(ctx, spec)
		if err != nil {
			return err
		}
		e.pods[spec.Name] = p
		e.logf("pod %s %s on %s", spec.Name, p.IP, p.Node.Name)
	}
	// Clients close first; let them reuse TIME_WAIT ports (only in their own
	// namespaces) so back-to-back runs of up to 20k connections do not run
	// out of ephemeral ports.
	for _, n := range []string{"client-same", "client-cross"} {
		if out, err := exec.Command("ip", "netns", "exec", e.pods[n].NetNS, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1").CombinedOutput(); err != nil {
			return fmt.Errorf("sysctl: %w: %s", err, out)
		}
	}
	srv := e.pods["server"]
	if _, err := e.cfg.Start(cluster.Proc{Name: "bench-server", NetNS: srv.NetNS, LogFile: filepath.Join(e.cfg.LogDir(), "bench-server.log"),
		Args: []string{e.self, "serve", "-port", strconv.Itoa(benchPort)}}); err != nil {
		return err
	}
	for i := 0; ; i++ {
		r, err := e.load(ctx, "client-same", "rr", 100*time.Millisecond)
		if err == nil && r.Count > 0 {
			break
		}
		if i > 50 {
			return fmt.Errorf("bench server does not answer: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func (e *env) stopAgents() {
	for _, a := range e.agents {
		if err := e.cfg.Stop(a); err != nil {
			e.logf("stop %s: %v", a, err)
		}
	}
	e.agents = nil
}

func (e *env) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e.stopAgents()
	_ = e.cfg.Stop("bench-server")
	_ = e.cs.NetworkingV1().NetworkPolicies(benchNS).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	if err := e.deleteCNPs(ctx); err != nil {
		e.logf("delete ClusterNetworkPolicies: %v", err)
	}
	if err := e.deletePeers(ctx); err != nil {
		e.logf("delete peer pods: %v", err)
	}
	for _, p := range e.pods {
		if err := e.kl.DeletePod(ctx, p); err != nil {
			e.logf("delete pod %s: %v", p.Spec.Name, err)
		}
	}
	_ = e.cs.CoreV1().Namespaces().Delete(ctx, benchNS, metav1.DeleteOptions{})
	// The agents' table outlives them; leave the nodes as `up` made them.
	for _, n := range e.st.Nodes {
		_ = exec.Command("ip", "netns", "exec", n.NetNS, "nft", "delete", "table", "inet", "nftpolicy").Run()
	}
}

// load runs the load generator in a client pod against the server.
func (e *env) load(ctx context.Context, client, mode string, d time.Duration) (LoadResult, error) {
	var r LoadResult
	addr := fmt.Sprintf("%s:%d", e.pods["server"].IP, benchPort)
	ctx, cancel := context.WithTimeout(ctx, d+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", e.pods[client].NetNS, e.self, "load",
		"-addr", addr, "-mode", mode, "-duration", d.String(), "-workers", "2")
	out, err := cmd.Output()
	if err != nil {
		return r, fmt.Errorf("load %s %s: %w", client, mode, err)
	}
	return r, json.Unmarshal(out, &r)
}

// --- the agent ---

func (e *env) startAgents() error {
	for i := range e.st.Nodes {
		if err := e.startAgent(i); err != nil {
			return err
		}
	}
	return nil
}

// agentName is the process name (pid and log file) of node i's agent.
func (e *env) agentName(i int) string { return "bench-" + e.st.Nodes[i].Name + "-agent" }

// agentLog is the log file of node i's agent (appended to by every start).
func (e *env) agentLog(i int) string { return filepath.Join(e.cfg.LogDir(), e.agentName(i)+".log") }

// startAgent starts node i's agent as the harness does (its own CNI
// socket in the node's state directory: node namespaces share the host's
// file system, and the default path would take the socket of every other
// agent on this machine, other clusters' included).
func (e *env) startAgent(i int) error {
	n := e.st.Nodes[i]
	name := e.agentName(i)
	kc := filepath.Join(n.Dir, "agent.kubeconfig")
	pid, err := e.cfg.Start(cluster.Proc{Name: name, NetNS: n.NetNS, LogFile: e.agentLog(i),
		Env: []string{"NODE_NAME=" + n.Name, "KUBECONFIG=" + kc},
		// Plain-HTTP metrics on the node namespace's loopback: the
		// benchmark reads them from inside it (metricsURL), without a
		// token.
		Args: []string{e.agent, "--node-name", n.Name, "--kubeconfig", kc, "--cni-socket", n.CNISocket(),
			"--metrics-bind-address=127.0.0.1:9808", "--metrics-secure=false", "--health-probe-bind-address=:9809"}})
	if err != nil {
		return err
	}
	if !slices.Contains(e.agents, name) {
		e.agents = append(e.agents, name)
	}
	if e.agentPIDs == nil {
		e.agentPIDs = map[string]int{}
	}
	e.agentPIDs[n.Name] = pid
	return nil
}

// metrics scrapes the agent of node i (unlabelled series only, plus
// histogram buckets keyed by their full series text).
func (e *env) metrics(ctx context.Context, node int) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", e.st.Nodes[node].NetNS, e.self, "fetch", metricsURL).Output()
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, nil
}

// waitAgents waits until every agent's metrics have the values of want
// (agentWant: a series missing reads 0) and it synced after `since`, and
// node 0's element count is stable.
func (e *env) waitAgents(ctx context.Context, want map[string]float64, since time.Time, timeout time.Duration) (map[string]float64, error) {
	deadline := time.Now().Add(timeout)
	last := -1.0
	for {
		ok := true
		var m0 map[string]float64
		for i := range e.st.Nodes {
			m, err := e.metrics(ctx, i)
			if err != nil || !hasValues(m, want) ||
				m["nftpolicy_last_successful_sync_timestamp_seconds"] < float64(since.Unix()) {
				ok = false
				break
			}
			if i == 0 {
				m0 = m
			}
		}
		if ok && m0["nftpolicy_set_elements"] == last {
			return m0, nil
		}
		if ok {
			last = m0["nftpolicy_set_elements"]
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("agents did not reach %v within %s", want, timeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// hasValues reports whether m has every value of want (missing reads 0).
func hasValues(m, want map[string]float64) bool {
	for k, v := range want {
		if m[k] != v {
			return false
		}
	}
	return true
}

// --- policies ---

// createPolicies creates background policies (synth.BackgroundPolicy, in
// benchNS on TCP benchPort) of the given indexes with a few workers. Each
// admits peer=p<i>, which no pod carries, and its own address outside the
// cluster (one element each in the server's allow-list); only the last
// one by name, bp-99999, admits peer=last: the clients.
func (e *env) createPolicies(ctx context.Context, idx []int) error {
	return parallel(ctx, idx, func(i int) error {
		peer := fmt.Sprintf("p%d", i)
		if i == 99999 {
			peer = "last"
		}
		_, err := e.cs.NetworkingV1().NetworkPolicies(benchNS).Create(ctx, synth.BackgroundPolicy(benchNS, benchPort, i, peer), metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
}

// parallel runs fn on every item with 6 workers (API writes), stopping at
// the first error.
func parallel[T any](ctx context.Context, items []T, fn func(T) error) error {
	ch := make(chan T)
	var (
		mu       sync.Mutex
		firstErr error
		failed   atomic.Bool
		wg       sync.WaitGroup
	)
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				if err := fn(it); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					failed.Store(true)
				}
			}
		}()
	}
	for _, it := range items {
		if failed.Load() || ctx.Err() != nil {
			break
		}
		ch <- it
	}
	close(ch)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// --- figure 1 ---

// Pair is one client→server path in one configuration (medians over reps).
type Pair struct {
	ConnPerSecond     float64   `json:"conn_per_second"`
	ConnP50Seconds    float64   `json:"conn_p50_seconds"`
	ConnP99Seconds    float64   `json:"conn_p99_seconds"`
	ConnErrors        int       `json:"conn_errors"`
	RRPerSecond       float64   `json:"rr_per_second"`
	RRP50Seconds      float64   `json:"rr_p50_seconds"`
	RRP99Seconds      float64   `json:"rr_p99_seconds"`
	Reps              int       `json:"reps"`
	ConnPerSecondRuns []float64 `json:"conn_per_second_runs"`
	RRP50Runs         []float64 `json:"rr_p50_seconds_runs"`
}

// Config is one datapath configuration.
type Config struct {
	Name     string `json:"name"`
	Agent    bool   `json:"agent"`
	Policies int    `json:"policies"`
	// ClusterNetworkPolicies (Admin and Baseline together) and their
	// rules per direction.
	ClusterNetworkPolicies int     `json:"cluster_network_policies"`
	CNPRules               int     `json:"cnp_rules_per_direction,omitempty"`
	SetElements            float64 `json:"set_elements_node1"`
	Rules                  float64 `json:"rules_node1"`
	SetupSeconds           float64 `json:"setup_seconds"`
	SameNode               Pair    `json:"same_node"`
	CrossNode              Pair    `json:"cross_node"`
	// Ratios to configuration (a): conn/s ratio, and baseline/RTT for
	// latency (so 1.0 = as fast as without agent, lower = slower).
	Ratios map[string]float64 `json:"ratios_vs_baseline,omitempty"`
}

// Datapath is results.json's `datapath`.
type Datapath struct {
	Started         time.Time `json:"started"`
	Seconds         float64   `json:"seconds"`
	Machine         string    `json:"machine"`
	Nodes           int       `json:"nodes"`
	DurationSeconds float64   `json:"run_seconds"`
	ConnWorkers     int       `json:"conn_workers"`
	MessageBytes    int       `json:"message_bytes"`
	Configs         []Config  `json:"configs"`
	Goal            string    `json:"goal"`
	GoalMet         bool      `json:"goal_met"`
	WorstRatio      float64   `json:"worst_ratio_at_largest"`
	// The ClusterNetworkPolicy configuration's worst ratio, the same goal
	// for it, and the rule that decides its measured traffic (empty when
	// not measured).
	CNPWorstRatio   float64 `json:"cnp_worst_ratio,omitempty"`
	CNPGoalMet      bool    `json:"cnp_goal_met"`
	CNPDecidingRule string  `json:"cnp_deciding_rule,omitempty"`
	// BaselineAgain is (a) measured once more after the last configuration
	// (agents stopped, table deleted): the run's drift, not a ratio.
	BaselineAgain *Config `json:"baseline_again,omitempty"`
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func (e *env) measurePair(ctx context.Context, client string, reps int, d time.Duration) (Pair, error) {
	var conn, connP50, connP99, rrP50, rrP99, rrRate []float64
	p := Pair{Reps: reps}
	for r := 0; r < reps; r++ {
		c, err := e.load(ctx, client, "conn", d)
		if err != nil {
			return p, err
		}
		q, err := e.load(ctx, client, "rr", d)
		if err != nil {
			return p, err
		}
		if c.Count == 0 || q.Count == 0 {
			return p, fmt.Errorf("%s: no traffic got through (conn errors %d, rr errors %d)", client, c.Errors, q.Errors)
		}
		conn = append(conn, c.PerSecond)
		connP50 = append(connP50, c.P50Seconds)
		connP99 = append(connP99, c.P99Seconds)
		p.ConnErrors += c.Errors
		rrP50 = append(rrP50, q.P50Seconds)
		rrP99 = append(rrP99, q.P99Seconds)
		rrRate = append(rrRate, q.PerSecond)
	}
	p.ConnPerSecond, p.ConnP50Seconds, p.ConnP99Seconds = median(conn), median(connP50), median(connP99)
	p.RRP50Seconds, p.RRP99Seconds, p.RRPerSecond = median(rrP50), median(rrP99), median(rrRate)
	p.ConnPerSecondRuns, p.RRP50Runs = conn, rrP50
	return p, nil
}

func (e *env) measure(ctx context.Context, c *Config, reps int, d time.Duration) error {
	var err error
	if c.SameNode, err = e.measurePair(ctx, "client-same", reps, d); err != nil {
		return err
	}
	if c.CrossNode, err = e.measurePair(ctx, "client-cross", reps, d); err != nil {
		return err
	}
	e.logf("%s: same %.0f conn/s rr p50 %.1fus p99 %.1fus; cross %.0f conn/s rr p50 %.1fus p99 %.1fus", c.Name,
		c.SameNode.ConnPerSecond, c.SameNode.RRP50Seconds*1e6, c.SameNode.RRP99Seconds*1e6,
		c.CrossNode.ConnPerSecond, c.CrossNode.RRP50Seconds*1e6, c.CrossNode.RRP99Seconds*1e6)
	return nil
}

// checkEnforced: the outsider (admitted by no policy) must be blocked, so a
// configuration with policies measures a datapath that really filters.
func (e *env) checkEnforced(ctx context.Context, want bool) error {
	r, err := e.load(ctx, "outsider", "rr", 200*time.Millisecond)
	blocked := err == nil && r.Count == 0
	if blocked != want {
		return fmt.Errorf("outsider blocked=%v, want %v (err %w)", blocked, want, err)
	}
	return nil
}

func (e *env) datapath(ctx context.Context, counts []int, cnpsPerTier, cnpRules, reps int, d time.Duration) (*Datapath, error) {
	dp := &Datapath{Machine: machine(), Nodes: len(e.st.Nodes), DurationSeconds: d.Seconds(), ConnWorkers: 2, MessageBytes: msgSize,
		Goal: "every ratio >= 0.95 at the largest policy count"}
	// (a) no agent: its table must not exist anywhere.
	for _, n := range e.st.Nodes {
		if exec.Command("ip", "netns", "exec", n.NetNS, "nft", "list", "table", "inet", "nftpolicy").Run() == nil {
			return nil, fmt.Errorf("table inet nftpolicy exists on %s before the baseline", n.Name)
		}
	}
	a := Config{Name: "a: no agent"}
	if err := e.checkEnforced(ctx, false); err != nil {
		return nil, err
	}
	if err := e.measure(ctx, &a, reps, d); err != nil {
		return nil, err
	}
	dp.Configs = append(dp.Configs, a)

	t := time.Now()
	if err := e.startAgents(); err != nil {
		return nil, err
	}
	m, err := e.waitAgents(ctx, agentWant(0, 0, 0), t, 60*time.Second)
	if err != nil {
		return nil, err
	}
	b := Config{Name: "b: agent, 0 policies", Agent: true, SetElements: m["nftpolicy_set_elements"], Rules: m["nftpolicy_rules"], SetupSeconds: time.Since(t).Seconds()}
	if err := e.measure(ctx, &b, reps, d); err != nil {
		return nil, err
	}
	dp.Configs = append(dp.Configs, b)

	cnpConfig := -1
	if cnpsPerTier > 0 {
		cnpConfig = len(dp.Configs)
		if err := e.datapathCNPs(ctx, dp, cnpsPerTier, cnpRules, reps, d); err != nil {
			return nil, err
		}
	}

	have := 0
	for _, n := range counts {
		if n <= have {
			continue
		}
		t := time.Now()
		var idx []int
		if have == 0 {
			idx = append(idx, 99999) // the clients' policy first: traffic never breaks
			for i := 0; i < n-1; i++ {
				idx = append(idx, i)
			}
		} else {
			for i := have - 1; i < n-1; i++ {
				idx = append(idx, i)
			}
		}
		if err := e.createPolicies(ctx, idx); err != nil {
			return nil, err
		}
		created := time.Since(t)
		m, err := e.waitAgents(ctx, agentWant(n, 0, 0), time.Now().Add(-time.Second), 5*time.Minute)
		if err != nil {
			return nil, err
		}
		e.logf("%d policies: created in %s, agents synced after %s; elements %v", n, created.Round(time.Millisecond), time.Since(t).Round(time.Millisecond), m["nftpolicy_set_elements"])
		if err := e.checkEnforced(ctx, true); err != nil {
			return nil, err
		}
		c := Config{Name: fmt.Sprintf("%c: agent, %d policies", 'a'+len(dp.Configs), n), Agent: true, Policies: n,
			SetElements: m["nftpolicy_set_elements"], Rules: m["nftpolicy_rules"], SetupSeconds: time.Since(t).Seconds()}
		if err := e.measure(ctx, &c, reps, d); err != nil {
			return nil, err
		}
		dp.Configs = append(dp.Configs, c)
		have = n
	}
	// (a) again, at the end: the agents stopped and their table deleted, the
	// policies still in the API. Not a ratio: it shows the run's drift.
	e.stopAgents()
	for _, n := range e.st.Nodes {
		_ = exec.Command("ip", "netns", "exec", n.NetNS, "nft", "delete", "table", "inet", "nftpolicy").Run()
	}
	if err := e.checkEnforced(ctx, false); err != nil {
		return nil, err
	}
	again := Config{Name: "a': no agent (again)"}
	if err := e.measure(ctx, &again, reps, d); err != nil {
		return nil, err
	}
	dp.BaselineAgain = &again
	base := dp.Configs[0]
	dp.WorstRatio = 1e9
	for i := 1; i < len(dp.Configs); i++ {
		c := &dp.Configs[i]
		c.Ratios = map[string]float64{
			"same_conn_per_second":  c.SameNode.ConnPerSecond / base.SameNode.ConnPerSecond,
			"same_rr_p50":           base.SameNode.RRP50Seconds / c.SameNode.RRP50Seconds,
			"same_rr_p99":           base.SameNode.RRP99Seconds / c.SameNode.RRP99Seconds,
			"cross_conn_per_second": c.CrossNode.ConnPerSecond / base.CrossNode.ConnPerSecond,
			"cross_rr_p50":          base.CrossNode.RRP50Seconds / c.CrossNode.RRP50Seconds,
			"cross_rr_p99":          base.CrossNode.RRP99Seconds / c.CrossNode.RRP99Seconds,
		}
		if i == len(dp.Configs)-1 {
			for _, v := range c.Ratios {
				dp.WorstRatio = min(dp.WorstRatio, v)
			}
		}
		if i == cnpConfig {
			dp.CNPWorstRatio = 1e9
			for _, v := range c.Ratios {
				dp.CNPWorstRatio = min(dp.CNPWorstRatio, v)
			}
			dp.CNPGoalMet = dp.CNPWorstRatio >= 0.95
		}
	}
	dp.GoalMet = dp.WorstRatio >= 0.95
	return dp, nil
}

func machine() string {
	out, _ := exec.Command("uname", "-r").Output()
	return fmt.Sprintf("%d CPUs, kernel %s, %s", runtime.NumCPU(), strings.TrimSpace(string(out)), runtime.Version())
}

func printDatapath(w io.Writer, dp *Datapath) {
	fmt.Fprintf(w, "\nFigure 1 — datapath (%s; medians of %d runs of %.1fs; ratios vs (a): conn/s, and baseline RTT / RTT)\n", dp.Machine, dp.Configs[0].SameNode.Reps, dp.DurationSeconds)
	fmt.Fprintf(w, "%-24s %9s %5s %9s | %10s %9s %9s %6s %6s %6s | %10s %9s %9s %6s %6s %6s\n", "config", "policies", "cnps", "elements",
		"same c/s", "rr p50us", "rr p99us", "x c/s", "x p50", "x p99", "cross c/s", "rr p50us", "rr p99us", "x c/s", "x p50", "x p99")
	for _, c := range dp.Configs {
		r := c.Ratios
		if r == nil {
			r = map[string]float64{"same_conn_per_second": 1, "same_rr_p50": 1, "same_rr_p99": 1, "cross_conn_per_second": 1, "cross_rr_p50": 1, "cross_rr_p99": 1}
		}
		fmt.Fprintf(w, "%-24s %9d %5d %9.0f | %10.0f %9.1f %9.1f %6.2f %6.2f %6.2f | %10.0f %9.1f %9.1f %6.2f %6.2f %6.2f\n", c.Name, c.Policies, c.ClusterNetworkPolicies, c.SetElements,
			c.SameNode.ConnPerSecond, c.SameNode.RRP50Seconds*1e6, c.SameNode.RRP99Seconds*1e6, r["same_conn_per_second"], r["same_rr_p50"], r["same_rr_p99"],
			c.CrossNode.ConnPerSecond, c.CrossNode.RRP50Seconds*1e6, c.CrossNode.RRP99Seconds*1e6, r["cross_conn_per_second"], r["cross_rr_p50"], r["cross_rr_p99"])
	}
	if c := dp.BaselineAgain; c != nil {
		fmt.Fprintf(w, "%-24s %9s %5s %9s | %10.0f %9.1f %9.1f %6.2f %6.2f %6.2f | %10.0f %9.1f %9.1f %6.2f %6.2f %6.2f  (drift check)\n", c.Name, "-", "-", "-",
			c.SameNode.ConnPerSecond, c.SameNode.RRP50Seconds*1e6, c.SameNode.RRP99Seconds*1e6,
			c.SameNode.ConnPerSecond/dp.Configs[0].SameNode.ConnPerSecond, dp.Configs[0].SameNode.RRP50Seconds/c.SameNode.RRP50Seconds, dp.Configs[0].SameNode.RRP99Seconds/c.SameNode.RRP99Seconds,
			c.CrossNode.ConnPerSecond, c.CrossNode.RRP50Seconds*1e6, c.CrossNode.RRP99Seconds*1e6,
			c.CrossNode.ConnPerSecond/dp.Configs[0].CrossNode.ConnPerSecond, dp.Configs[0].CrossNode.RRP50Seconds/c.CrossNode.RRP50Seconds, dp.Configs[0].CrossNode.RRP99Seconds/c.CrossNode.RRP99Seconds)
	}
	met := "MISSED"
	if dp.GoalMet {
		met = "met"
	}
	fmt.Fprintf(w, "goal (%s): worst ratio %.3f %s\n", dp.Goal, dp.WorstRatio, met)
	if dp.CNPDecidingRule != "" {
		met = "MISSED"
		if dp.CNPGoalMet {
			met = "met"
		}
		fmt.Fprintf(w, "the same goal for the ClusterNetworkPolicy configuration (measured traffic decided by %s): worst ratio %.3f %s\n",
			dp.CNPDecidingRule, dp.CNPWorstRatio, met)
	}
}

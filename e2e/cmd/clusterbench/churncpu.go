package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nftpolicy/nftpolicy/bench/results"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/bench/stats"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

// The churn CPU figure (issue 13, goal 6): the server node's agent, with
// every background policy selecting the server, under constant churn of
// one kind of event written as fast as the API takes them, for a fixed
// time. Its CPU time (utime + stime of the process, /proc/PID/stat) is
// sampled every second: per 1,000 events (less the idle agent's rate,
// measured just before), and per second, which the reconciler's pacing
// (the next reconcile starts no earlier than twice the last one's
// duration after it) should hold to half a core, however fast events come.

// cpuCap is the share of one core the pacing allows the reconcile loop.
const cpuCap = 0.5

// ChurnCPU is one kind's entry of results.json's `churn_cpu.kinds`.
type ChurnCPU struct {
	Kind   string `json:"kind"`
	Writes string `json:"writes"`
	// Events are the API writes made (each one event for the agent);
	// Seconds the churn's length.
	Events          int     `json:"events"`
	Seconds         float64 `json:"seconds"`
	EventsPerSecond float64 `json:"events_per_second"`
	// AgentCPUSeconds is the agent's CPU time over the churn; IdleCores
	// its rate without writes just before (cores); CPUSecondsPer1000 is
	// (AgentCPUSeconds - IdleCores·Seconds) per 1,000 events.
	AgentCPUSeconds   float64 `json:"agent_cpu_seconds"`
	IdleCores         float64 `json:"idle_cores"`
	CPUSecondsPer1000 float64 `json:"cpu_seconds_per_1000_events"`
	// Cores is the agent's CPU time per wall second: mean over the churn,
	// and per one-second window (WindowCores) with its median and max.
	CoresMean      float64   `json:"cores_mean"`
	CoresMedian    float64   `json:"cores_window_median"`
	CoresMax       float64   `json:"cores_window_max"`
	WindowCores    []float64 `json:"window_cores"`
	CapHeld        bool      `json:"half_core_cap_held"`
	Reconciles     float64   `json:"reconciles"`
	EventsPerBatch float64   `json:"events_per_reconcile"`
	CompileMean    float64   `json:"compile_mean_seconds"`
	SyncMean       float64   `json:"sync_mean_seconds"`
}

// ChurnCPURun is results.json's `churn_cpu`.
type ChurnCPURun struct {
	Started     time.Time  `json:"started"`
	Machine     string     `json:"machine"`
	LoadStart   string     `json:"load_average_start"`
	LoadEnd     string     `json:"load_average_end"`
	Policies    int        `json:"policies"`
	SetElements float64    `json:"set_elements_node1"`
	Writers     int        `json:"writers"`
	Cap         float64    `json:"cap_cores"`
	Kinds       []ChurnCPU `json:"kinds"`
	Note        string     `json:"note"`
}

// agentCPU is the CPU time (user + system) of process pid so far.
func agentCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// fields after it are counted from its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// utime and stime are fields 14 and 15 of stat, 12 and 13 after the
	// name; in clock ticks of 1/100 s (USER_HZ on Linux).
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// churnCPU measures both kinds with the agents running and synced with
// policies background policies (the interleaved figure's), then stops
// them again.
func (e *env) churnCPU(ctx context.Context, policies int, d time.Duration, log io.Writer) (*ChurnCPURun, error) {
	run := &ChurnCPURun{Started: time.Now().UTC(), Machine: machine(), LoadStart: results.LoadAverage(), Policies: policies, Writers: 2, Cap: cpuCap,
		Note: "the server node's agent; every background policy selects the server, so each event recompiles and resyncs its allow-list; " +
			"CPU from /proc/PID/stat in 10 ms ticks; the local cluster holds 7 pods, not the 150k-pod shape"}
	m, _, err := e.withAgents(ctx, policies)
	if err != nil {
		return nil, err
	}
	run.SetElements = m["nftpolicy_set_elements"]
	node := e.st.Nodes[0].Name
	pid, ok := e.agentPIDs[node]
	if !ok {
		return nil, fmt.Errorf("no agent PID for %s", node)
	}
	if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || !strings.Contains(string(cmd), "nftpolicy") {
		return nil, fmt.Errorf("PID %d is not the agent of %s (%q, %w)", pid, node, cmd, err)
	}
	np := e.cs.NetworkingV1().NetworkPolicies(benchNS)
	kinds := []struct {
		kind, writes string
		write        func(ctx context.Context, worker, i int) error
	}{
		{"pod", "relabel client-cross and outsider in turn (peer=last and back): each adds or removes the pod's address in the server's allow-list",
			func(ctx context.Context, worker, i int) error {
				pod, on, off := e.pods["client-cross"], "last", "off"
				if worker == 1 {
					pod, on, off = e.pods["outsider"], "last", "none"
				}
				v := on
				if i%2 == 0 {
					v = off
				}
				return e.kl.SetLabels(ctx, pod, map[string]string{"peer": v})
			}},
		{"policy", "move the ipBlock of bp-00000 (worker 0) or bp-00001 (worker 1) to another /32 and back: two element operations on the server's allow-list",
			func(ctx context.Context, worker, i int) error {
				block := synth.BackgroundBlock(worker).String()
				if i%2 == 0 {
					block = synth.BackgroundBlock(99990 + worker).String()
				}
				name := synth.BackgroundPolicyName(worker)
				for range 5 {
					p, err := np.Get(ctx, name, metav1.GetOptions{})
					if err != nil {
						return err
					}
					p.Spec.Ingress[0].From[1].IPBlock.CIDR = block
					if _, err = np.Update(ctx, p, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
						return err
					}
				}
				return fmt.Errorf("policy %s: update keeps conflicting", name)
			}},
	}
	for _, k := range kinds {
		c, err := e.churnOnce(ctx, pid, k.kind, k.write, d, log)
		if err != nil {
			return nil, fmt.Errorf("%s churn: %w", k.kind, err)
		}
		c.Writes = k.writes
		run.Kinds = append(run.Kinds, *c)
	}
	// Back to figure 1's labels and policies (an odd write puts a
	// policy's own block back).
	for w := range 2 {
		if err := kinds[1].write(ctx, w, 1); err != nil {
			return nil, err
		}
	}
	if err := e.kl.SetLabels(ctx, e.pods["client-cross"], map[string]string{"peer": "last"}); err != nil {
		return nil, err
	}
	if err := e.kl.SetLabels(ctx, e.pods["outsider"], map[string]string{"peer": "none"}); err != nil {
		return nil, err
	}
	if err := e.noAgent(ctx); err != nil {
		return nil, err
	}
	run.LoadEnd = results.LoadAverage()
	return run, nil
}

func (e *env) churnOnce(ctx context.Context, pid int, kind string, write func(ctx context.Context, worker, i int) error, d time.Duration, log io.Writer) (*ChurnCPU, error) {
	c := &ChurnCPU{Kind: kind}
	// Idle rate: 3 s without writes, after the agents settled.
	time.Sleep(2 * time.Second)
	idle0, err := agentCPU(pid)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	time.Sleep(3 * time.Second)
	idle1, err := agentCPU(pid)
	if err != nil {
		return nil, err
	}
	c.IdleCores = (idle1 - idle0).Seconds() / time.Since(t0).Seconds()
	before, err := e.metrics(ctx, 0)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	// The writes get a context without cctx's deadline, cancelled when
	// cctx ends: client-go's rate limiter refuses at once a wait that
	// would pass a deadline ("would exceed context deadline"), which
	// ended a run as an error before its time was up.
	writeCtx, stopWrites := context.WithCancel(ctx)
	defer stopWrites()
	defer context.AfterFunc(cctx, stopWrites)()
	var (
		events   atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	start := time.Now()
	cpu0, err := agentCPU(pid)
	if err != nil {
		return nil, err
	}
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; cctx.Err() == nil; i++ {
				if err := write(writeCtx, w, i); err != nil {
					if cctx.Err() != nil {
						return
					}
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				events.Add(1)
			}
		}()
	}
	// One sample per second while the writers run.
	last, lastT := cpu0, start
	for cctx.Err() == nil {
		select {
		case <-cctx.Done():
		case <-time.After(time.Second):
			now, err := agentCPU(pid)
			if err != nil {
				cancel()
				wg.Wait()
				return nil, err
			}
			t := time.Now()
			c.WindowCores = append(c.WindowCores, (now-last).Seconds()/t.Sub(lastT).Seconds())
			last, lastT = now, t
		}
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	end := time.Now()
	cpu1, err := agentCPU(pid)
	if err != nil {
		return nil, err
	}
	// Let the last batch reach the kernel before reading the histograms.
	time.Sleep(time.Second)
	after, err := e.metrics(ctx, 0)
	if err != nil {
		return nil, err
	}
	c.Seconds = end.Sub(start).Seconds()
	c.Events = int(events.Load())
	c.EventsPerSecond = float64(c.Events) / c.Seconds
	c.AgentCPUSeconds = (cpu1 - cpu0).Seconds()
	if c.Events > 0 {
		c.CPUSecondsPer1000 = (c.AgentCPUSeconds - c.IdleCores*c.Seconds) / float64(c.Events) * 1000
	}
	c.CoresMean = c.AgentCPUSeconds / c.Seconds
	c.CoresMedian = stats.Median(c.WindowCores)
	for _, w := range c.WindowCores {
		c.CoresMax = max(c.CoresMax, w)
	}
	c.CapHeld = c.CoresMean <= cpuCap
	delta := func(name string) float64 { return after[name] - before[name] }
	c.Reconciles = delta("nftpolicy_compile_duration_seconds_count")
	if c.Reconciles > 0 {
		c.EventsPerBatch = float64(c.Events) / c.Reconciles
		c.CompileMean = delta("nftpolicy_compile_duration_seconds_sum") / c.Reconciles
	}
	if n := delta("nftpolicy_sync_duration_seconds_count"); n > 0 {
		c.SyncMean = delta("nftpolicy_sync_duration_seconds_sum") / n
	}
	fmt.Fprintf(log, "%s churn: %d events in %.1fs, agent CPU %.2fs (%.2f cores mean, window max %.2f), %.0f reconciles\n",
		kind, c.Events, c.Seconds, c.AgentCPUSeconds, c.CoresMean, c.CoresMax, c.Reconciles)
	return c, nil
}

func printChurnCPU(w io.Writer, r *ChurnCPURun) {
	fmt.Fprintf(w, "\nAgent CPU under constant churn — server node's agent, %d background policies selecting the server (%.0f elements); %d writers as fast as the API takes them; %s\n",
		r.Policies, r.SetElements, r.Writers, r.Machine)
	fmt.Fprintf(w, "load average %s at the start, %s at the end\n", r.LoadStart, r.LoadEnd)
	fmt.Fprintf(w, "%-7s %7s %7s %8s %10s %12s %10s %10s %10s %9s %11s %10s %9s\n", "kind", "events", "ev/s", "cpu s", "idle cores", "cpu s/1000ev", "cores mean", "window p50", "window max", "cap 0.5", "reconciles", "ev/recon", "sync ms")
	for _, c := range r.Kinds {
		held := "held"
		if !c.CapHeld {
			held = "EXCEEDED"
		}
		fmt.Fprintf(w, "%-7s %7d %7.0f %8.2f %10.3f %12.2f %10.2f %10.2f %10.2f %9s %11.0f %10.1f %9.1f\n", c.Kind, c.Events, c.EventsPerSecond,
			c.AgentCPUSeconds, c.IdleCores, c.CPUSecondsPer1000, c.CoresMean, c.CoresMedian, c.CoresMax, held, c.Reconciles, c.EventsPerBatch, c.SyncMean*1e3)
	}
}

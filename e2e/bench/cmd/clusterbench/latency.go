package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	typednet "k8s.io/client-go/kubernetes/typed/networking/v1"
)

// Kind is one kind of API write in figure 2.
type Kind struct {
	Kind       string    `json:"kind"`
	Want       string    `json:"verdict"`
	Reps       int       `json:"reps"`
	Timeouts   int       `json:"timeouts"`
	P50Seconds float64   `json:"p50_seconds"`
	P99Seconds float64   `json:"p99_seconds"`
	MaxSeconds float64   `json:"max_seconds"`
	APISeconds float64   `json:"api_call_p50_seconds"`
	Samples    []float64 `json:"samples_seconds"`
}

// AgentShare is the delta of the server node's agent's
// nftpolicy_event_to_sync_seconds histogram over figure 2.
type AgentShare struct {
	Count       float64 `json:"count"`
	MeanSeconds float64 `json:"mean_seconds"`
	P50LE       float64 `json:"p50_le_seconds"`
	P99LE       float64 `json:"p99_le_seconds"`
	Note        string  `json:"note"`
}

// Latency is results.json's `programming_latency`.
type Latency struct {
	Started            time.Time  `json:"started"`
	Seconds            float64    `json:"seconds"`
	BackgroundPolicies int        `json:"background_policies"`
	PollSeconds        float64    `json:"poll_interval_seconds"`
	BlockedAfter       float64    `json:"blocked_connect_timeout_seconds"`
	Kinds              []Kind     `json:"kinds"`
	All                Kind       `json:"all"`
	Agent              AgentShare `json:"agent_share"`
	Goal               string     `json:"goal"`
	GoalMet            bool       `json:"goal_met"`
}

type prober struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func (e *env) startProber(ctx context.Context, client string) (*prober, error) {
	addr := fmt.Sprintf("%s:%d", e.pods["server"].IP, benchPort)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", e.pods[client].NetNS, e.self, "probe", "-addr", addr,
		"-interval", "10ms", "-timeout", "20ms", "-limit", "5s")
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

func (p *prober) stop() {
	_ = p.in.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(7 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// measure sends the wanted verdict to the prober, then runs write, and
// returns the time from just before the write to the start of the first
// probe showing the verdict (ok=false on the prober's 5 s limit).
func (p *prober) measure(want string, write func() error) (lat, api time.Duration, ok bool, err error) {
	if _, err := fmt.Fprintln(p.in, want); err != nil {
		return 0, 0, false, err
	}
	t0 := time.Now()
	werr := write()
	api = time.Since(t0)
	if !p.out.Scan() {
		return 0, 0, false, fmt.Errorf("prober exited: %w", p.out.Err())
	}
	if werr != nil {
		return 0, 0, false, werr
	}
	f := strings.Fields(p.out.Text())
	if len(f) == 0 || f[0] == "timeout" {
		return 0, api, false, nil
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, 0, false, err
	}
	return time.Unix(0, ns).Sub(t0), api, true, nil
}

func summarize(k *Kind, lat, api []time.Duration) {
	s := slices.Clone(lat)
	slices.Sort(s)
	k.Reps = len(lat)
	if len(s) == 0 {
		return
	}
	k.P50Seconds, k.P99Seconds, k.MaxSeconds = quantile(s, 0.5).Seconds(), quantile(s, 0.99).Seconds(), s[len(s)-1].Seconds()
	a := slices.Clone(api)
	slices.Sort(a)
	k.APISeconds = quantile(a, 0.5).Seconds()
	for _, d := range lat {
		k.Samples = append(k.Samples, math.Round(d.Seconds()*1e6)/1e6)
	}
}

func (e *env) programmingLatency(ctx context.Context, reps int) (*Latency, error) {
	// A small cluster state: the datapath's policies are removed first.
	np := e.cs.NetworkingV1().NetworkPolicies(benchNS)
	if err := np.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		return nil, err
	}
	if len(e.agents) == 0 {
		if err := e.startAgents(); err != nil {
			return nil, err
		}
	}
	if _, err := e.waitAgents(ctx, 0, time.Now().Add(-time.Second), 2*time.Minute); err != nil {
		return nil, err
	}
	before, err := e.metrics(ctx, 0)
	if err != nil {
		return nil, err
	}
	pr, err := e.startProber(ctx, "client-same")
	if err != nil {
		return nil, err
	}
	defer pr.stop()
	lt := &Latency{PollSeconds: 0.01, BlockedAfter: 0.02, Goal: "p99 < 100 ms end to end"}

	deny := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny-server", Namespace: benchNS},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	allow := benchPolicy(99999, "last")
	allow.Name = "allow-last"
	allow.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}
	client := e.pods["client-same"]

	type step struct {
		kind, want string
		write      func() error
	}
	steps := [][]step{
		{
			{"policy create (deny)", "blocked", func() error {
				_, err := np.Create(ctx, deny, metav1.CreateOptions{})
				return err
			}},
			{"policy delete (deny)", "allowed", func() error { return np.Delete(ctx, deny.Name, metav1.DeleteOptions{}) }},
		},
		{
			{"pod label change (client leaves allow)", "blocked", func() error {
				return e.kl.SetLabels(ctx, client, map[string]string{"peer": "off"})
			}},
			{"pod label change (client joins allow)", "allowed", func() error {
				return e.kl.SetLabels(ctx, client, map[string]string{"peer": "last"})
			}},
		},
		{
			{"policy update (peer selector off the client)", "blocked", func() error { return setPeer(ctx, np, allow.Name, "off") }},
			{"policy update (peer selector back)", "allowed", func() error { return setPeer(ctx, np, allow.Name, "last") }},
		},
	}
	var allLat []time.Duration
	var allAPI []time.Duration
	for gi, group := range steps {
		if gi == 1 { // allow-last stays for groups 1 and 2
			if _, err := np.Create(ctx, allow, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
			time.Sleep(time.Second)
		}
		lat := make([][]time.Duration, len(group))
		api := make([][]time.Duration, len(group))
		timeouts := make([]int, len(group))
		for r := 0; r < reps; r++ {
			for si, s := range group {
				l, a, ok, err := pr.measure(s.want, s.write)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", s.kind, err)
				}
				if !ok {
					timeouts[si]++
					e.logf("%s: no verdict within 5s", s.kind)
				} else {
					lat[si] = append(lat[si], l)
					api[si] = append(api[si], a)
				}
				time.Sleep(30 * time.Millisecond)
			}
		}
		for si, s := range group {
			k := Kind{Kind: s.kind, Want: s.want, Timeouts: timeouts[si]}
			summarize(&k, lat[si], api[si])
			lt.Kinds = append(lt.Kinds, k)
			allLat = append(allLat, lat[si]...)
			allAPI = append(allAPI, api[si]...)
			e.logf("%s: n=%d p50 %.1fms p99 %.1fms max %.1fms (api p50 %.1fms) timeouts %d", s.kind, k.Reps,
				k.P50Seconds*1e3, k.P99Seconds*1e3, k.MaxSeconds*1e3, k.APISeconds*1e3, k.Timeouts)
		}
	}
	if err := np.Delete(ctx, allow.Name, metav1.DeleteOptions{}); err != nil {
		return nil, err
	}
	lt.All = Kind{Kind: "all"}
	for _, k := range lt.Kinds {
		lt.All.Timeouts += k.Timeouts
	}
	summarize(&lt.All, allLat, allAPI)
	lt.All.Samples = nil
	lt.GoalMet = lt.All.Timeouts == 0 && lt.All.P99Seconds < 0.1
	after, err := e.metrics(ctx, 0)
	if err != nil {
		return nil, err
	}
	lt.Agent = agentShare(before, after)
	return lt, nil
}

// setPeer points the first peer of policy name's first ingress rule at
// peer=value.
func setPeer(ctx context.Context, np typednet.NetworkPolicyInterface, name, value string) error {
	for i := 0; i < 5; i++ {
		p, err := np.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Spec.Ingress[0].From[0].PodSelector.MatchLabels = map[string]string{"peer": value}
		if _, err = np.Update(ctx, p, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
			return err
		}
	}
	return fmt.Errorf("policy %s: update keeps conflicting", name)
}

// agentShare computes the histogram delta of event_to_sync_seconds.
func agentShare(before, after map[string]float64) AgentShare {
	const name = "nftpolicy_event_to_sync_seconds"
	s := AgentShare{Note: "server node's agent only (it programs the server's ingress); quantiles are histogram bucket upper bounds (1ms·2^k)"}
	s.Count = after[name+"_count"] - before[name+"_count"]
	if s.Count > 0 {
		s.MeanSeconds = (after[name+"_sum"] - before[name+"_sum"]) / s.Count
	}
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range after {
		if !strings.HasPrefix(k, name+`_bucket{le="`) {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(k, name+`_bucket{le="`), `"}`), 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v - before[k]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	for _, b := range bs {
		if s.P50LE == 0 && b.n >= 0.5*s.Count {
			s.P50LE = b.le
		}
		if s.P99LE == 0 && b.n >= 0.99*s.Count {
			s.P99LE = b.le
		}
	}
	return s
}

func printLatency(w io.Writer, lt *Latency) {
	fmt.Fprintf(w, "\nFigure 2 — programming latency (API write → first probe with the new verdict; poll %.0f ms; %d background policies)\n",
		lt.PollSeconds*1e3, lt.BackgroundPolicies)
	fmt.Fprintf(w, "%-46s %8s %5s %9s %9s %9s %9s %8s\n", "kind", "verdict", "n", "p50 ms", "p99 ms", "max ms", "api ms", "timeouts")
	for _, k := range append(slices.Clone(lt.Kinds), lt.All) {
		fmt.Fprintf(w, "%-46s %8s %5d %9.1f %9.1f %9.1f %9.1f %8d\n", k.Kind, k.Want, k.Reps, k.P50Seconds*1e3, k.P99Seconds*1e3, k.MaxSeconds*1e3, k.APISeconds*1e3, k.Timeouts)
	}
	fmt.Fprintf(w, "agent share (event → sync committed, server's node): n=%.0f mean %.1f ms, p50 ≤ %.0f ms, p99 ≤ %.0f ms\n",
		lt.Agent.Count, lt.Agent.MeanSeconds*1e3, lt.Agent.P50LE*1e3, lt.Agent.P99LE*1e3)
	met := "MISSED"
	if lt.GoalMet {
		met = "met"
	}
	fmt.Fprintf(w, "goal (%s): p99 %.1f ms %s\n", lt.Goal, lt.All.P99Seconds*1e3, met)
}

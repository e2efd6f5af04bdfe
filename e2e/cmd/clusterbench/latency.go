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

	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/policy/synth"
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
	// Means of the same agent's compile and Syncer.Sync durations over
	// the run (nftpolicy_compile_duration_seconds, _sync_duration_seconds):
	// what one reconcile costs; the agent waits up to twice a reconcile's
	// duration before starting the next (--min-sync-interval).
	CompileMeanSeconds float64 `json:"compile_mean_seconds"`
	SyncMeanSeconds    float64 `json:"sync_mean_seconds"`
	Note               string  `json:"note"`
}

// Latency is one run of figure 2: one element of results.json's
// `programming_latency` list.
type Latency struct {
	Started            time.Time `json:"started"`
	Seconds            float64   `json:"seconds"`
	BackgroundPolicies int       `json:"background_policies"`
	// BackgroundSetupSeconds: from the start of the run until the
	// background policies existed and every agent had synced them.
	BackgroundSetupSeconds float64 `json:"background_setup_seconds"`
	// SetElements: the server node's nftpolicy_set_elements once synced,
	// before the measured writes (the background's share of its sets).
	SetElements  float64 `json:"set_elements_node1"`
	PollSeconds  float64 `json:"poll_interval_seconds"`
	BlockedAfter float64 `json:"blocked_connect_timeout_seconds"`
	// GapSeconds: the pause after a verdict is seen before the next write.
	GapSeconds float64 `json:"write_gap_seconds"`
	// PodPauseSeconds: from the newcomer's Pod object (Pending) to its
	// Running status (podPause).
	PodPauseSeconds float64 `json:"pod_running_pause_seconds"`
	// CNPKinds: the ClusterNetworkPolicy kinds are among Kinds.
	CNPKinds bool       `json:"cnp_kinds"`
	Kinds    []Kind     `json:"kinds"`
	All      Kind       `json:"all"`
	Agent    AgentShare `json:"agent_share"`
	Goal     string     `json:"goal"`
	GoalMet  bool       `json:"goal_met"`
}

type prober struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startProber starts `clusterbench probe` in network namespace netns,
// against the server's pod IP only, with a 5 s limit per verdict.
func (e *env) startProber(ctx context.Context, netns string) (*prober, error) {
	return e.startProberLimit(ctx, netns, 5*time.Second)
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

// expect fails unless the prober sees verdict want within its 5 s limit
// (a precondition, not a measurement); what names the state for the error.
func (p *prober) expect(want, what string) error {
	if _, err := fmt.Fprintln(p.in, want); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !p.out.Scan() {
		return fmt.Errorf("%s: prober exited: %w", what, p.out.Err())
	}
	if f := strings.Fields(p.out.Text()); len(f) == 0 || f[0] == "timeout" {
		return fmt.Errorf("%s: not %s within 5s", what, want)
	}
	return nil
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

// sample collects one kind's measurements.
type sample struct {
	kind, want string
	lat, api   []time.Duration
	timeouts   int
}

func (s *sample) add(e *env, lat, api time.Duration, ok bool) {
	if !ok {
		s.timeouts++
		e.logf("%s: no verdict within 5s", s.kind)
		return
	}
	s.lat = append(s.lat, lat)
	s.api = append(s.api, api)
}

// settle is the quiet period before the first write of each group of kinds,
// after its set-up writes: the agent waits up to twice its last reconcile's
// duration before the next one (its --min-sync-interval), so without it a
// group's first write would pay for the set-up's reconcile (~1 s with 10k
// policies).
const settle = 2 * time.Second

// Names of figure 2's own policies; the background ones are bp-NNNNN.
const (
	denyServer = "deny-server"
	allowLast  = "allow-last"
)

// serverPolicies are figure 2's own NetworkPolicies, both selecting only
// the server: deny-server (no rules) isolates it, and allow-last (a
// background policy's rule, peer=last) admits the clients.
func serverPolicies() (deny, allow *networkingv1.NetworkPolicy) {
	server := metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}
	deny = &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: denyServer, Namespace: benchNS},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: server, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	allow = synth.BackgroundPolicy(benchNS, benchPort, 99999, "last")
	allow.Name = allowLast
	allow.Spec.PodSelector = *server.DeepCopy()
	return deny, allow
}

// programmingLatency is figure 2 with `background` policies bp-00000...
// (synth.BackgroundPolicy: each selects the server and the other tier=bench pods and
// admits no existing pod, so the verdicts do not change but every sync of
// the server's node carries them). The server is isolated throughout by
// deny-server (a policy without rules), so that every kind works the same
// with and without background: a write that admits the client makes it
// allowed, one that stops admitting it makes it blocked.
func (e *env) programmingLatency(ctx context.Context, reps, background int, gap time.Duration, withCNPs bool) (*Latency, error) {
	t := time.Now()
	lt := &Latency{Started: t.UTC(), BackgroundPolicies: background, PollSeconds: 0.01, BlockedAfter: 0.02, GapSeconds: gap.Seconds(), CNPKinds: withCNPs,
		Goal: "p99 < 100 ms end to end, no timeouts"}
	if err := e.ensureBackground(ctx, background); err != nil {
		return nil, err
	}
	if len(e.agents) == 0 {
		if err := e.startAgents(); err != nil {
			return nil, err
		}
	}
	m, err := e.waitAgents(ctx, agentWant(background, 0, 0), t, 5*time.Minute)
	if err != nil {
		return nil, err
	}
	lt.BackgroundSetupSeconds, lt.SetElements = time.Since(t).Seconds(), m["nftpolicy_set_elements"]
	e.logf("figure 2, %d background policies: set up in %s, %v elements on the server's node", background,
		time.Since(t).Round(time.Millisecond), lt.SetElements)

	np := e.cs.NetworkingV1().NetworkPolicies(benchNS)
	deny, allow := serverPolicies()
	if _, err := np.Create(ctx, deny, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	client := e.pods["client-same"]
	pr, err := e.startProber(ctx, client.NetNS)
	if err != nil {
		return nil, err
	}
	defer pr.stop()
	if err := pr.expect("blocked", "client-same with "+denyServer); err != nil {
		return nil, err
	}
	before, err := e.metrics(ctx, 0)
	if err != nil {
		return nil, err
	}

	createAllow := func(pr *prober) error { // allow-last stays from here on
		if _, err := np.Create(ctx, allow, metav1.CreateOptions{}); err != nil {
			return err
		}
		return pr.expect("allowed", "client-same with "+allowLast)
	}
	groups := []group{
		{steps: []step{
			{"policy create (admits the client)", "allowed", func() error {
				_, err := np.Create(ctx, allow, metav1.CreateOptions{})
				return err
			}},
			{"policy delete (admitted the client)", "blocked", func() error { return np.Delete(ctx, allow.Name, metav1.DeleteOptions{}) }},
		}},
		{steps: []step{
			{"pod label change (client leaves allow)", "blocked", func() error {
				return e.kl.SetLabels(ctx, client, map[string]string{"peer": "off"})
			}},
			{"pod label change (client joins allow)", "allowed", func() error {
				return e.kl.SetLabels(ctx, client, map[string]string{"peer": "last"})
			}},
		}, before: createAllow},
		{steps: []step{
			{"policy update (peer selector off the client)", "blocked", func() error { return setPeer(ctx, np, allow.Name, "off") }},
			{"policy update (peer selector back)", "allowed", func() error { return setPeer(ctx, np, allow.Name, "last") }},
		}},
	}
	if withCNPs {
		groups = append(groups, e.cnpGroups(ctx)...)
	}
	var all []*sample
	for _, g := range groups {
		if g.before != nil {
			if err := g.before(pr); err != nil {
				return nil, err
			}
		}
		ss := make([]*sample, len(g.steps))
		for si, s := range g.steps {
			ss[si] = &sample{kind: s.kind, want: s.want}
		}
		time.Sleep(settle)
		for r := 0; r < reps; r++ {
			for si, s := range g.steps {
				l, a, ok, err := pr.measure(s.want, s.write)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", s.kind, err)
				}
				ss[si].add(e, l, a, ok)
				time.Sleep(gap)
			}
		}
		if g.after != nil {
			if err := g.after(pr); err != nil {
				return nil, err
			}
		}
		all = append(all, ss...)
	}
	mid, err := e.metrics(ctx, 0)
	if err != nil {
		return nil, err
	}
	pause := podPause(before, mid)
	lt.PodPauseSeconds = pause.Seconds()
	time.Sleep(settle)
	np0, err := e.newPodRunning(ctx, reps, pause)
	if err != nil {
		return nil, err
	}
	all = append(all, np0)
	after, err := e.metrics(ctx, 0)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{allowLast, denyServer} {
		if err := np.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return nil, err
		}
	}

	var allLat, allAPI []time.Duration
	lt.All = Kind{Kind: "all"}
	for _, s := range all {
		k := Kind{Kind: s.kind, Want: s.want, Timeouts: s.timeouts}
		summarize(&k, s.lat, s.api)
		lt.Kinds = append(lt.Kinds, k)
		lt.All.Timeouts += k.Timeouts
		allLat, allAPI = append(allLat, s.lat...), append(allAPI, s.api...)
		e.logf("%s: n=%d p50 %.1fms p99 %.1fms max %.1fms (api p50 %.1fms) timeouts %d", s.kind, k.Reps,
			k.P50Seconds*1e3, k.P99Seconds*1e3, k.MaxSeconds*1e3, k.APISeconds*1e3, k.Timeouts)
	}
	summarize(&lt.All, allLat, allAPI)
	lt.All.Samples = nil
	lt.GoalMet = lt.All.Timeouts == 0 && lt.All.P99Seconds < 0.1
	lt.Agent = agentShare(before, after)
	lt.Seconds = time.Since(t).Seconds()
	return lt, nil
}

// step is one kind of write of figure 2 and the verdict it must bring.
type step struct {
	kind, want string
	write      func() error
}

// group is kinds measured in turn, rep after rep; before sets up their
// state (nil: none), after undoes it.
type group struct {
	steps         []step
	before, after func(*prober) error
}

// newcomerName is the pod of the "new pod becomes Running" kind.
const newcomerName = "newcomer"

// podPause is the time between the newcomer's Pod object and its Running
// status: three times the server node agent's mean reconcile (compile +
// sync) between the two scrapes, at least 100 ms and at most 2 s. The agent
// reconciles the creation, then waits up to twice that reconcile's duration
// before the next one; after the pause the Running status finds it idle, as
// in a real cluster, where a pod takes a second or more to start.
func podPause(before, after map[string]float64) time.Duration {
	n := after["nftpolicy_compile_duration_seconds_count"] - before["nftpolicy_compile_duration_seconds_count"]
	var mean float64
	if n > 0 {
		mean = (after["nftpolicy_compile_duration_seconds_sum"] - before["nftpolicy_compile_duration_seconds_sum"] +
			after["nftpolicy_sync_duration_seconds_sum"] - before["nftpolicy_sync_duration_seconds_sum"]) / n
	}
	return min(max(time.Duration(3*mean*float64(time.Second)), 100*time.Millisecond), 2*time.Second).Round(time.Millisecond)
}

// newPodRunning measures reps times, with allow-last in place: a pod
// labelled peer=last on the server's node, whose network namespace, address
// and podserver exist and whose Pod object is Pending without an IP (the
// server drops it: its address is in no allow-list), becomes Running with its
// IP through one status update, as a kubelet's, `pause` after the Pod object
// was created; the wanted verdict is allowed, seen by a prober in its own
// namespace, which must see "blocked" before the write. The pod is deleted
// after each repetition.
func (e *env) newPodRunning(ctx context.Context, reps int, pause time.Duration) (*sample, error) {
	s := &sample{kind: "new pod becomes Running (admitted)", want: "allowed"}
	t := time.Now()
	defer func() { e.logf("%s: %d reps in %s", s.kind, reps, time.Since(t).Round(time.Millisecond)) }()
	srv := e.pods["server"] // the same node: its agent admits the newcomer
	spec := kubelet.PodSpec{Namespace: benchNS, Name: newcomerName, Labels: map[string]string{"peer": "last"},
		IP: e.podIP(srv.Node, 210), Servers: []kubelet.Server{{Port: 80, Protocol: "TCP"}}, Pending: true, NoService: true}
	for r := 0; r < reps; r++ {
		p, err := e.kl.CreatePod(ctx, spec)
		if err != nil {
			return nil, err
		}
		created := time.Now()
		e.pods[newcomerName] = p // deleted by cleanup if we fail below
		pr, err := e.startProber(ctx, p.NetNS)
		if err != nil {
			return nil, err
		}
		if err := pr.expect("blocked", newcomerName+" while Pending"); err != nil {
			pr.stop()
			return nil, err
		}
		time.Sleep(pause - time.Since(created))
		l, a, ok, err := pr.measure(s.want, func() error { return e.kl.MarkRunning(ctx, p) })
		pr.stop()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.kind, err)
		}
		s.add(e, l, a, ok)
		if err := e.kl.DeletePod(ctx, p); err != nil {
			return nil, err
		}
		delete(e.pods, newcomerName)
	}
	return s, nil
}

// ensureBackground makes the policies of benchNS exactly bp-00000 ..
// bp-<n-1> (synth.BackgroundPolicy with peer=p<i>), reusing those that exist (the
// datapath's) and deleting every other one (bp-99999, figure 2's own).
func (e *env) ensureBackground(ctx context.Context, n int) error {
	np := e.cs.NetworkingV1().NetworkPolicies(benchNS)
	if n == 0 {
		err := np.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		if err == nil {
			return nil
		}
		// A loaded API server may cut one call deleting 10,000 objects
		// off; delete what is left one by one.
		e.logf("background 0: delete collection: %v; deleting one by one", err)
	}
	list, err := np.List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	want := make(map[string]bool, n)
	for i := 0; i < n; i++ {
		want[synth.BackgroundPolicyName(i)] = true
	}
	have := map[string]bool{}
	var stale []string
	for _, p := range list.Items {
		if want[p.Name] {
			have[p.Name] = true
		} else {
			stale = append(stale, p.Name)
		}
	}
	if err := parallel(ctx, stale, func(name string) error {
		err := np.Delete(ctx, name, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}); err != nil {
		return err
	}
	var missing []int
	for i := 0; i < n; i++ {
		if !have[synth.BackgroundPolicyName(i)] {
			missing = append(missing, i)
		}
	}
	e.logf("background %d: %d reused, %d deleted, %d to create", n, len(have), len(stale), len(missing))
	return e.createPolicies(ctx, missing)
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
	s := AgentShare{Note: "server node's agent only (it programs the server's ingress), over the run's writes plus the newcomer pods' creations and deletions; quantiles are histogram bucket upper bounds (1ms·2^k)"}
	mean := func(name string) float64 {
		if n := after[name+"_count"] - before[name+"_count"]; n > 0 {
			return (after[name+"_sum"] - before[name+"_sum"]) / n
		}
		return 0
	}
	s.Count = after[name+"_count"] - before[name+"_count"]
	s.MeanSeconds = mean(name)
	s.CompileMeanSeconds = mean("nftpolicy_compile_duration_seconds")
	s.SyncMeanSeconds = mean("nftpolicy_sync_duration_seconds")
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
	fmt.Fprintf(w, "\nFigure 2 — programming latency (API write → first probe with the new verdict; poll %.0f ms; %d background policies, %.0f elements on the server's node)\n",
		lt.PollSeconds*1e3, lt.BackgroundPolicies, lt.SetElements)
	fmt.Fprintf(w, "(a write %.0f ms after the previous verdict; a new pod's Running status %.0f ms after its Pod object)\n", lt.GapSeconds*1e3, lt.PodPauseSeconds*1e3)
	fmt.Fprintf(w, "%-46s %8s %5s %9s %9s %9s %9s %8s\n", "kind", "verdict", "n", "p50 ms", "p99 ms", "max ms", "api ms", "timeouts")
	for _, k := range append(slices.Clone(lt.Kinds), lt.All) {
		fmt.Fprintf(w, "%-46s %8s %5d %9.1f %9.1f %9.1f %9.1f %8d\n", k.Kind, k.Want, k.Reps, k.P50Seconds*1e3, k.P99Seconds*1e3, k.MaxSeconds*1e3, k.APISeconds*1e3, k.Timeouts)
	}
	fmt.Fprintf(w, "agent share (event → sync committed, server's node): n=%.0f mean %.1f ms, p50 ≤ %.0f ms, p99 ≤ %.0f ms; per reconcile: compile %.1f ms, sync %.1f ms (means)\n",
		lt.Agent.Count, lt.Agent.MeanSeconds*1e3, lt.Agent.P50LE*1e3, lt.Agent.P99LE*1e3, lt.Agent.CompileMeanSeconds*1e3, lt.Agent.SyncMeanSeconds*1e3)
	met := "MISSED"
	if lt.GoalMet {
		met = "met"
	}
	fmt.Fprintf(w, "goal (%s): p99 %.1f ms %s\n", lt.Goal, lt.All.P99Seconds*1e3, met)
}

// Package runner replays netpol-scenario/v1 files against the local cluster:
// it reconciles the scenario's namespaces and pods (reusing what the previous
// scenario left when it is identical), applies each step's actions through
// the API, and probes until the matrix equals the expectation or the
// convergence bound passes.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/e2e/internal/podserver"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

// ManagedAnnotation marks namespaces the runner created. An annotation, not a
// label: labels would be visible to namespaceSelectors.
const ManagedAnnotation = "e2e.nftpolicy.io/managed"

// Options tune a run.
type Options struct {
	Converge     time.Duration // per step: probe until equal or this passes (10s)
	ProbeTimeout time.Duration // per probe (1s)
	Parallel     int           // concurrent probes
	Verbose      bool
	TimingsFile  string // if set, per-step times to converge are written there as JSON
	CNPCRD       string // the ClusterNetworkPolicy CRD file (DefaultCNPCRD)
}

// Runner holds the live state between scenarios.
type Runner struct {
	Cfg   *cluster.Config
	State *cluster.State
	CS    kubernetes.Interface
	DC    dynamic.Interface // for ClusterNetworkPolicies
	K     *kubelet.Kubelet
	Out   io.Writer
	Opt   Options

	namespaces map[string]*liveNS
	pods       map[string]*kubelet.Pod
	nodes      map[string]*kubelet.Pod // node/<name> endpoints, started on demand
	nodeMu     sync.Mutex
	servers    []kubelet.Server // the current scenario's servers (for node endpoints)
	Timings    []StepTiming
	// createdCNPs are the ClusterNetworkPolicies the current scenario
	// created (deleted when it ends); cnpCRDReady: the CRD is served.
	createdCNPs map[string]bool
	cnpCRDReady bool
}

type liveNS struct {
	labels map[string]string
	owned  bool // created by us: deleted when no longer wanted
}

// StepTiming is the time to converge of one step.
type StepTiming struct {
	Scenario string        `json:"scenario"`
	Step     int           `json:"step"`
	Converge time.Duration `json:"convergeNanos"`
	Passed   bool          `json:"passed"`
}

// New prepares a runner: it removes what an earlier, interrupted run left.
func New(ctx context.Context, cfg *cluster.Config, st *cluster.State, out io.Writer, opt Options) (*Runner, error) {
	cs, err := cfg.Client()
	if err != nil {
		return nil, err
	}
	k, err := kubelet.New(cfg, st, cs)
	if err != nil {
		return nil, err
	}
	if opt.Converge == 0 {
		opt.Converge = 10 * time.Second
	}
	if opt.ProbeTimeout == 0 {
		opt.ProbeTimeout = time.Second
	}
	if opt.Parallel == 0 {
		opt.Parallel = 24
	}
	if opt.CNPCRD == "" {
		opt.CNPCRD = DefaultCNPCRD
	}
	dc, err := newDynamic(cfg.AdminKubeconfig())
	if err != nil {
		return nil, err
	}
	r := &Runner{Cfg: cfg, State: st, CS: cs, DC: dc, K: k, Out: out, Opt: opt,
		namespaces: map[string]*liveNS{}, pods: map[string]*kubelet.Pod{}, nodes: map[string]*kubelet.Pod{},
		createdCNPs: map[string]bool{}}
	return r, r.cleanStale(ctx)
}

// cleanStale kills podservers and removes pod namespaces and managed API
// namespaces left by a previous runner process.
func (r *Runner) cleanStale(ctx context.Context) error {
	if err := r.Cfg.StopAll("pod-"); err != nil {
		return err
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && strings.HasPrefix(f[0], cluster.NSPrefix+"p-") {
			if o, err := exec.Command("ip", "netns", "del", f[0]).CombinedOutput(); err != nil {
				return fmt.Errorf("ip netns del %s: %w: %s", f[0], err, o)
			}
		}
	}
	for _, n := range r.State.Nodes {
		for _, d := range []string{"cni-ipam", "cni-flannel"} {
			if err := os.RemoveAll(filepath.Join(n.Dir, d)); err != nil {
				return err
			}
		}
	}
	nss, err := r.CS.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	// Managed namespaces that are not terminating are adopted empty: waiting
	// for a namespace deletion takes the controller manager up to a minute.
	for _, ns := range nss.Items {
		if ns.Annotations[ManagedAnnotation] != "true" || ns.DeletionTimestamp != nil {
			continue
		}
		if err := r.purgeNamespace(ctx, ns.Name); err != nil {
			return err
		}
		labels := copyMap(ns.Labels)
		delete(labels, "kubernetes.io/metadata.name")
		r.namespaces[ns.Name] = &liveNS{labels: labels, owned: true}
	}
	return nil
}

// purgeNamespace removes the pods, services, endpoint slices and policies of
// a namespace, keeping the namespace.
func (r *Runner) purgeNamespace(ctx context.Context, name string) error {
	zero := int64(0)
	var errs []error
	errs = append(errs, r.CS.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}))
	svcs, err := r.CS.CoreV1().Services(name).List(ctx, metav1.ListOptions{})
	errs = append(errs, err)
	if err == nil {
		for _, s := range svcs.Items {
			errs = append(errs, r.CS.CoreV1().Services(name).Delete(ctx, s.Name, metav1.DeleteOptions{}))
		}
	}
	errs = append(errs, r.CS.DiscoveryV1().EndpointSlices(name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}))
	errs = append(errs, r.CS.NetworkingV1().NetworkPolicies(name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}))
	return errors.Join(errs...)
}

// deleteNamespaceObjects force-deletes a managed namespace's pods (there is
// no kubelet to finish a graceful deletion) and then the namespace.
func (r *Runner) deleteNamespaceObjects(ctx context.Context, name string) error {
	zero := int64(0)
	err := r.CS.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	err = r.CS.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// RunFiles runs every scenario file and prints the summary line.
func (r *Runner) RunFiles(ctx context.Context, files []string) (passed, failed int) {
	start := time.Now()
	for _, f := range files {
		s, err := scenario.Load(f)
		if err != nil {
			fmt.Fprintf(r.Out, "FAIL %s\n  invalid scenario: %v\n", f, err)
			failed++
			continue
		}
		t := time.Now()
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
		fmt.Fprintf(r.Out, "%s %s (%.1fs)\n", word, s.Name, time.Since(t).Seconds())
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
	if r.Opt.TimingsFile != "" {
		b, _ := json.MarshalIndent(r.Timings, "", "  ")
		if err := os.WriteFile(r.Opt.TimingsFile, b, 0o644); err != nil {
			fmt.Fprintf(r.Out, "timings: %v\n", err)
		}
	}
	fmt.Fprintf(r.Out, "%d passed, %d failed\n", passed, failed)
	return passed, failed
}

func (r *Runner) printTimings(wall time.Duration) {
	var ds []time.Duration
	for _, t := range r.Timings {
		if t.Passed {
			ds = append(ds, t.Converge)
		}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	pct := func(p float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		i := int(float64(len(ds)-1) * p)
		return ds[i]
	}
	fmt.Fprintf(r.Out, "time to converge over %d converged steps (of %d): p50 %.2fs p90 %.2fs p99 %.2fs max %.2fs; wall time %.1fs\n",
		len(ds), len(r.Timings), pct(0.5).Seconds(), pct(0.9).Seconds(), pct(0.99).Seconds(), pct(1).Seconds(), wall.Seconds())
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

// prepare makes the live namespaces and pods equal to the scenario's cluster
// section, reusing pods whose namespace, name, requested IP match.
func (r *Runner) prepare(ctx context.Context, s *scenario.Scenario) error {
	// No policy survives from the previous scenario.
	for ns := range r.namespaces {
		if err := r.CS.NetworkingV1().NetworkPolicies(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	want := map[string]scenario.Namespace{}
	for _, n := range s.Cluster.Namespaces {
		want[n.Name] = n
	}
	for name := range r.namespaces {
		if _, ok := want[name]; !ok {
			if err := r.deleteNamespace(ctx, name); err != nil {
				return err
			}
		}
	}
	for _, n := range s.Cluster.Namespaces {
		if err := r.ensureNamespace(ctx, n); err != nil {
			return err
		}
	}
	wantPods := map[string]scenario.Pod{}
	for _, p := range s.Cluster.Pods {
		wantPods[p.Key()] = p
	}
	var errs []error
	r.servers = servers(s, scenario.Pod{})
	for _, np := range r.nodes {
		errs = append(errs, r.K.SetNodeServers(np, r.servers))
	}
	for key, lp := range r.pods {
		wp, ok := wantPods[key]
		if !ok || (wp.IP != "" && wp.IP != lp.IP.String()) || wp.HostNetwork != lp.Spec.HostNetwork || wp.Node != lp.Spec.Node {
			errs = append(errs, r.K.DeletePod(ctx, lp))
			delete(r.pods, key)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var mu sync.Mutex
	sem := make(chan struct{}, 3)
	var wg sync.WaitGroup
	var all []*kubelet.Pod
	for _, wp := range s.Cluster.Pods {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			svs := servers(s, wp)
			var err error
			mu.Lock()
			lp := r.pods[wp.Key()]
			mu.Unlock()
			switch {
			case lp == nil:
				lp, err = r.K.CreatePod(ctx, podSpec(wp, svs))
			case !slices.Equal(lp.Spec.Servers, svs):
				lp.Spec.Labels = copyMap(wp.Labels)
				err = r.K.SetServers(ctx, lp, svs)
			case !maps.Equal(lp.Spec.Labels, wp.Labels):
				err = r.K.SetLabels(ctx, lp, wp.Labels)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			r.pods[wp.Key()] = lp
			all = append(all, lp)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return r.K.WaitProgrammed(ctx, all, 30*time.Second)
}

func (r *Runner) ensureNamespace(ctx context.Context, n scenario.Namespace) error {
	if live, ok := r.namespaces[n.Name]; ok {
		if maps.Equal(live.labels, n.Labels) {
			return nil
		}
		return r.setNamespaceLabels(ctx, n.Name, n.Labels)
	}
	nss := r.CS.CoreV1().Namespaces()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := nss.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: copyMap(n.Labels),
			Annotations: map[string]string{ManagedAnnotation: "true"}}}, metav1.CreateOptions{})
		if err == nil {
			r.namespaces[n.Name] = &liveNS{labels: copyMap(n.Labels), owned: true}
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
		cur, err := nss.Get(ctx, n.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if cur.DeletionTimestamp == nil {
			// A namespace we did not create (e.g. default): adopt it, never delete it.
			r.namespaces[n.Name] = &liveNS{labels: cur.Labels, owned: false}
			return r.setNamespaceLabels(ctx, n.Name, n.Labels)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s stays terminating", n.Name)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (r *Runner) setNamespaceLabels(ctx context.Context, name string, labels map[string]string) error {
	nss := r.CS.CoreV1().Namespaces()
	for i := 0; i < 5; i++ {
		cur, err := nss.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Labels = copyMap(labels)
		_, err = nss.Update(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return err
		}
		if live, ok := r.namespaces[name]; ok {
			live.labels = copyMap(labels)
		}
		return nil
	}
	return fmt.Errorf("namespace %s: label update keeps conflicting", name)
}

func (r *Runner) deleteNamespace(ctx context.Context, name string) error {
	var errs []error
	for key, p := range r.pods {
		if p.Spec.Namespace == name {
			errs = append(errs, r.K.DeletePod(ctx, p))
			delete(r.pods, key)
		}
	}
	live := r.namespaces[name]
	delete(r.namespaces, name)
	if live != nil && !live.owned {
		err := r.CS.NetworkingV1().NetworkPolicies(name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		return errors.Join(append(errs, err)...)
	}
	errs = append(errs, r.deleteNamespaceObjects(ctx, name))
	return errors.Join(errs...)
}

// Cleanup removes every pod and namespace the runner made. It does not wait
// for the namespaces to disappear (the controller manager takes its time);
// a later run waits only if it needs the same names.
func (r *Runner) Cleanup(ctx context.Context) error {
	var errs []error
	for name := range r.namespaces {
		errs = append(errs, r.deleteNamespace(ctx, name))
	}
	return errors.Join(errs...)
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	return maps.Clone(m)
}

func (r *Runner) ipOf(key string) (netip.Addr, bool) {
	p, ok := r.pods[key]
	if !ok {
		return netip.Addr{}, false
	}
	return p.IP, true
}

func (r *Runner) applyActions(ctx context.Context, s *scenario.Scenario, actions []scenario.Action) error {
	var created []*kubelet.Pod
	for i, a := range actions {
		if err := r.apply(ctx, s, a, &created); err != nil {
			return fmt.Errorf("action %d %s: %w", i+1, a.Kind(), err)
		}
	}
	// Only the pods that still exist: one step may create a pod, delete it
	// and create it again under the same name (with a new Service).
	live := slices.DeleteFunc(created, func(p *kubelet.Pod) bool { return r.pods[p.Spec.Key()] != p })
	if len(live) > 0 {
		return r.K.WaitProgrammed(ctx, live, 30*time.Second)
	}
	return nil
}

func (r *Runner) apply(ctx context.Context, s *scenario.Scenario, a scenario.Action, created *[]*kubelet.Pod) error {
	switch {
	case a.CreatePolicy != nil:
		return r.createPolicy(ctx, a.CreatePolicy)
	case a.UpdatePolicy != nil:
		return r.updatePolicy(ctx, a.UpdatePolicy)
	case a.DeletePolicy != nil:
		return r.deletePolicy(ctx, *a.DeletePolicy)
	case a.DeleteAllPolicies != nil:
		return r.deleteAllPolicies(ctx, a.DeleteAllPolicies)
	case a.SetNamespaceLabels != nil:
		return r.setNamespaceLabels(ctx, a.SetNamespaceLabels.Name, a.SetNamespaceLabels.Labels)
	case a.SetPodLabels != nil:
		p, ok := r.pods[a.SetPodLabels.Namespace+"/"+a.SetPodLabels.Name]
		if !ok {
			return fmt.Errorf("no pod %s/%s", a.SetPodLabels.Namespace, a.SetPodLabels.Name)
		}
		return r.K.SetLabels(ctx, p, a.SetPodLabels.Labels)
	case a.CreateNamespace != nil:
		if _, ok := r.namespaces[a.CreateNamespace.Name]; ok {
			return fmt.Errorf("namespace %s exists", a.CreateNamespace.Name)
		}
		return r.ensureNamespace(ctx, *a.CreateNamespace)
	case a.DeleteNamespace != nil:
		return r.deleteNamespace(ctx, a.DeleteNamespace.Namespace)
	case a.CreatePod != nil:
		wp := *a.CreatePod
		if _, ok := r.pods[wp.Key()]; ok {
			return fmt.Errorf("pod %s exists", wp.Key())
		}
		lp, err := r.K.CreatePod(ctx, podSpec(wp, servers(s, wp)))
		if err != nil {
			return err
		}
		r.pods[wp.Key()] = lp
		*created = append(*created, lp)
		return nil
	case a.DeletePod != nil:
		key := a.DeletePod.Namespace + "/" + a.DeletePod.Name
		p, ok := r.pods[key]
		if !ok {
			return fmt.Errorf("no pod %s", key)
		}
		delete(r.pods, key)
		return r.K.DeletePod(ctx, p)
	}
	return errors.New("empty action")
}

func sym(b byte) string {
	switch b {
	case '.':
		return ". (connected)"
	case 'X':
		return "X (timed out)"
	case 'R':
		return "R (refused)"
	}
	return "E (error)"
}

func detail(d string) string {
	if d == "" {
		return ""
	}
	return " [" + d + "]"
}

// renderObserved prints the observed matrix of one probe; a differing cell
// is shown as its observed symbol followed by '!'.
func renderObserved(p scenario.Probe, pi int, cells []*cell) string {
	m := p.Matrix
	got := map[[2]int]*cell{}
	for _, c := range cells {
		if c.probe == pi {
			got[[2]int{c.row, c.col}] = c
		}
	}
	w := 3
	for _, n := range append(append([]string{}, m.Rows...), m.Cols...) {
		w = max(w, len(n))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "    observed %s (! = differs from expected):\n    %-*s", p.Label(), w, "-")
	for _, c := range m.Cols {
		fmt.Fprintf(&b, " %-*s", w, c)
	}
	b.WriteString("\n")
	for ri, rn := range m.Rows {
		fmt.Fprintf(&b, "    %-*s", w, rn)
		for ci := range m.Cols {
			c := got[[2]int{ri, ci}]
			v := "-"
			if c != nil {
				v = string(c.got)
				if c.got != c.want {
					v += "!"
				}
			}
			fmt.Fprintf(&b, " %-*s", w, v)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Target resolves where a probe from src to dst goes: address and port.
func (r *Runner) Target(p scenario.Probe, dst *kubelet.Pod) (string, error) {
	port := p.Port
	if p.PortName != "" {
		port = 0
		for _, sv := range dst.Spec.Servers {
			if sv.PortName() == p.PortName && sv.Protocol == p.Protocol {
				port = sv.Port
			}
		}
		if port == 0 {
			return "", fmt.Errorf("%s has no %s port named %s", dst.Spec.Key(), p.Protocol, p.PortName)
		}
	}
	ip := dst.IP.String()
	if p.Target != "pod-ip" && dst.Spec.Namespace != kubelet.NodeNamespace {
		// service-name falls back to the ClusterIP: the cluster has no DNS.
		if dst.ClusterIP == "" {
			return "", fmt.Errorf("%s has no Service (host network): probe it by pod-ip", dst.Spec.Key())
		}
		ip = dst.ClusterIP
	}
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port)).String(), nil
}

// endpoint returns the pod for key, or for "node/<name>" the node endpoint
// (nftpolicy extension: probes from and to a node's own network namespace).
func (r *Runner) endpoint(key string) (*kubelet.Pod, error) {
	if p, ok := r.pods[key]; ok {
		return p, nil
	}
	name, ok := strings.CutPrefix(key, kubelet.NodeNamespace+"/")
	if !ok {
		return nil, fmt.Errorf("no pod %s", key)
	}
	r.nodeMu.Lock()
	defer r.nodeMu.Unlock()
	if p, ok := r.nodes[name]; ok {
		return p, nil
	}
	for _, n := range r.State.Nodes {
		if n.Name == name {
			p, err := r.K.NodeServer(context.Background(), n, r.servers)
			if err != nil {
				return nil, err
			}
			r.nodes[name] = p
			return p, nil
		}
	}
	return nil, fmt.Errorf("no pod or node %s", key)
}

func (r *Runner) probe(p scenario.Probe, srcKey, dstKey string) (byte, string) {
	src, err := r.endpoint(srcKey)
	if err != nil {
		return 'E', err.Error()
	}
	dst, err := r.endpoint(dstKey)
	if err != nil {
		return 'E', err.Error()
	}
	addr, err := r.Target(p, dst)
	if err != nil {
		return 'E', err.Error()
	}
	return r.ProbeAddr(p.Protocol, src, dst, addr)
}

// ProbeAddr probes addr from src; dst is the pod expected to receive it
// (SCTP asks it whether the INIT arrived).
func (r *Runner) ProbeAddr(proto string, src, dst *kubelet.Pod, addr string) (byte, string) {
	ms := int(r.Opt.ProbeTimeout / time.Millisecond)
	tag := rand.Uint32() | 1
	resp, err := podserver.Call(src.Ctl, podserver.Request{Op: "probe", Protocol: proto, Addr: addr, Timeout: ms, Tag: tag}, r.Opt.ProbeTimeout+5*time.Second)
	if err != nil {
		return 'E', "podserver " + src.Spec.Key() + ": " + err.Error()
	}
	if proto == "SCTP" && resp.Result == podserver.Sent {
		resp, err = podserver.Call(dst.Ctl, podserver.Request{Op: "seen", Tag: tag, Timeout: ms}, r.Opt.ProbeTimeout+5*time.Second)
		if err != nil {
			return 'E', "podserver " + dst.Spec.Key() + ": " + err.Error()
		}
	}
	switch resp.Result {
	case podserver.Connected:
		if proto != "SCTP" && resp.Answer != dst.Spec.Key() {
			return 'E', fmt.Sprintf("connected, but %q answered, not %s (%s)", resp.Answer, dst.Spec.Key(), resp.Detail)
		}
		return '.', resp.Detail
	case podserver.Timeout:
		return 'X', ""
	case podserver.Refused:
		return 'R', resp.Detail
	}
	return 'E', resp.Result + " " + resp.Detail
}

// Pods returns the live pods by key.
func (r *Runner) Pods() map[string]*kubelet.Pod { return r.pods }

// Prepare sets up a scenario's cluster section (the demo uses it).
func (r *Runner) Prepare(ctx context.Context, s *scenario.Scenario) error { return r.prepare(ctx, s) }

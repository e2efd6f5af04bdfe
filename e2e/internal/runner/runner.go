// Package runner replays netpol-scenario/v1 files against the local cluster:
// it reconciles the scenario's namespaces and pods (reusing what the previous
// scenario left when it is identical), applies each step's actions through
// the API, and probes until the matrix equals the expectation or the
// convergence bound passes.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/e2e/internal/kubeletpods"
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
	// Explain also answers every judged cell with nftpolicy explain's code
	// (from the API state and through each node's /debug/ruleset) and
	// fails the step where that differs from the probe: only for our
	// agent.
	Explain bool
	// PodserverBin is the static podserver (e2e/cmd/e2e-podserver) the
	// pods' image is packed from on a kubelet-mode cluster.
	PodserverBin string
}

// Runner holds the live state between scenarios.
type Runner struct {
	Cfg   *cluster.Config
	State *cluster.State
	CS    kubernetes.Interface
	DC    dynamic.Interface // for ClusterNetworkPolicies
	// Backend runs the scenario pods: K in harness mode, real kubelets
	// (kubeletpods) on a kubelet-mode cluster.
	Backend PodBackend
	// K is the harness kubelet, nil on a kubelet-mode cluster; the checks
	// built on what only it controls (firstpacket, chaos, ...) use it.
	K   *kubelet.Kubelet
	Out io.Writer
	Opt Options

	namespaces map[string]*liveNS
	pods       map[string]*kubelet.Pod
	nodes      map[string]*kubelet.Pod // node/<name> endpoints, started on demand
	nodeMu     sync.Mutex
	servers    []kubelet.Server // the current scenario's servers (for node endpoints)
	Timings    []StepTiming
	// Explain counts the explain check (Options.Explain) over the run.
	Explain       ExplainCounts
	explainClient client.Client
	// createdCNPs are the ClusterNetworkPolicies the current scenario
	// created (deleted when it ends); cnpCRDReady: the CRD is served.
	createdCNPs map[string]bool
	cnpCRDReady bool
	// families are the families the current scenario is probed in: the
	// cluster's, or IPv4 alone for a file tied to IPv4 (see scenarioFamilies).
	families []cluster.Family
	// ipv4Only lists the files run in IPv4 only (or skipped in an ipv6
	// cluster), with the CIDRs that tie them to it.
	ipv4Only []string
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
	var k *kubelet.Kubelet
	var pods PodBackend
	if st.Kubelet {
		if pods, err = kubeletpods.New(ctx, cfg, st, cs, opt.PodserverBin); err != nil {
			return nil, err
		}
	} else {
		if k, err = kubelet.New(cfg, st, cs); err != nil {
			return nil, err
		}
		pods = k
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
	r := &Runner{Cfg: cfg, State: st, CS: cs, DC: dc, Backend: pods, K: k, Out: out, Opt: opt,
		namespaces: map[string]*liveNS{}, pods: map[string]*kubelet.Pod{}, nodes: map[string]*kubelet.Pod{},
		createdCNPs: map[string]bool{}, families: st.Families()}
	return r, r.cleanStale(ctx)
}

// cleanStale kills podservers and removes pod namespaces and managed API
// namespaces left by a previous runner process. On a kubelet-mode cluster
// there are no harness pods: the managed namespaces' pods are deleted
// through the API and their kubelets stop them.
func (r *Runner) cleanStale(ctx context.Context) error {
	if r.K != nil {
		if err := r.cleanStaleHarnessPods(); err != nil {
			return err
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

// cleanStaleHarnessPods kills the harness kubelet's podservers and removes
// its pod namespaces and CNI state.
func (r *Runner) cleanStaleHarnessPods() error {
	if err := r.Cfg.StopAll("pod-"); err != nil {
		return err
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && strings.HasPrefix(f[0], r.Cfg.Instance.NSPrefix()+"p-") {
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

// Pods returns the live pods by key.
func (r *Runner) Pods() map[string]*kubelet.Pod { return r.pods }

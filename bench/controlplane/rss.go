//go:build linux

package controlplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/policy"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

// Memory is the resident memory of a process modelling the agent at one
// shape. Run it in a fresh process (nftbench rss): the figures are the
// kernel's, for the whole process, Go runtime included.
type Memory struct {
	Shape string `json:"shape"`
	Pods  int    `json:"pods"`
	// ClusterNetworkPolicies of the shape; with any, the stores also hold
	// them and the Nodes, as the agent's watches do while the CRD is
	// served (without, the Nodes are left out, as they always were here).
	ClusterNetworkPolicies int `json:"cluster_network_policies"`
	// CacheRSSBytes is VmRSS once the process holds what the agent's
	// watches store: every pod as a controllers.PodStore record, built by
	// the agent's own informer and transform from API objects; namespaces
	// and policies as controller-runtime's cache stores them (trimmed by
	// controllers.TrimNamespace and TrimNetworkPolicy). This is the
	// baseline of the figure.
	CacheRSSBytes int64 `json:"cache_rss_bytes"`
	// PeakRSSBytes is VmHWM (peak RSS) over: loading every object into a
	// policy.NodeCompiler (the agent's first reconcile), Compile, a full Sync
	// into a fresh namespace, and ChurnSyncs incremental syncs of one-pod
	// churn, each as the agent's reconcile does it: the pod comes or goes
	// through the store's informer, then SetPod or DeletePod, Compile and
	// Sync. The peak is reset (/proc/self/clear_refs) after the stores are
	// built, so the synthetic generator's own garbage does not count.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// SteadyRSSBytes is VmRSS after the churn and a forced GC: what the
	// agent holds between events (stores, the NodeCompiler with its caches, the
	// Syncer's applied ruleset).
	SteadyRSSBytes int64 `json:"steady_rss_bytes"`
	// HeapCacheBytes, HeapPeakBytes and HeapSteadyBytes are the Go heap
	// in use (live + not yet collected, runtime.MemStats.HeapInuse) at the
	// same points; the peak is sampled after each compile and each sync.
	HeapCacheBytes  int64 `json:"heap_cache_bytes"`
	HeapPeakBytes   int64 `json:"heap_peak_bytes"`
	HeapSteadyBytes int64 `json:"heap_steady_bytes"`
	// CPUSeconds (user + system) and GCCycles are spent over the same
	// phase as the peak: what a memory limit (GOMEMLIMIT) or GOGC setting
	// trades for a lower peak.
	CPUSeconds float64 `json:"cpu_seconds"`
	GCCycles   uint32  `json:"gc_cycles"`
	ChurnSyncs int     `json:"churn_syncs"`
	GOGC       string  `json:"gogc"`
	GOMEMLIMIT string  `json:"gomemlimit"`
}

// agentStores is what the agent's watches hold.
type agentStores struct {
	pods  *controllers.PodStore
	watch *watch.FakeWatcher // later pod events
	stop  func()
	// As controller-runtime's cache stores them.
	namespaces []*corev1.Namespace
	policies   []*networkingv1.NetworkPolicy
	nodes      []*corev1.Node
	// As the agent's ClusterNetworkPolicy store keeps them.
	cnps []*policyv1beta1.ClusterNetworkPolicy
	// What the agent records of the last two that it handed to its
	// NodeCompiler (controllers.handedObjects).
	handedNodes map[string]policy.Node
	handedCNPs  map[string]*policyv1beta1.ClusterNetworkPolicy
}

// storesOf builds the agent's stores for a synthetic snapshot. Pods go
// through a real PodStore: its informer lists API objects with the fields
// an API server sends that matter here (uid, resourceVersion, a container
// with an image and its ports, status with podIPs) and stores what its
// transform makes of them.
func storesOf(snap *policy.Snapshot) (*agentStores, error) {
	st := &agentStores{}
	for i, ns := range snap.Namespaces {
		o := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: ns.Name, Labels: ns.Labels, UID: types.UID(fmt.Sprintf("ns-uid-%08d", i)), ResourceVersion: strconv.Itoa(i + 1),
		}}
		t, err := controllers.TrimNamespace(o)
		if err != nil {
			return nil, err
		}
		st.namespaces = append(st.namespaces, t.(*corev1.Namespace))
	}
	for _, np := range snap.Policies {
		t, err := controllers.TrimNetworkPolicy(np.DeepCopy())
		if err != nil {
			return nil, err
		}
		st.policies = append(st.policies, t.(*networkingv1.NetworkPolicy))
	}
	for i, n := range snap.Nodes {
		o := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: n.Name, Labels: n.Labels, UID: types.UID(fmt.Sprintf("node-uid-%08d", i)), ResourceVersion: strconv.Itoa(500_000 + i),
		}}
		for _, a := range n.Addresses {
			o.Status.Addresses = append(o.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a.String()})
		}
		o.Status.Addresses = append(o.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: n.Name})
		t, err := controllers.TrimNode(o)
		if err != nil {
			return nil, err
		}
		st.nodes = append(st.nodes, t.(*corev1.Node))
	}
	for _, p := range snap.ClusterNetworkPolicies {
		t, err := controllers.TrimClusterNetworkPolicy(p.DeepCopy())
		if err != nil {
			return nil, err
		}
		st.cnps = append(st.cnps, t.(*policyv1beta1.ClusterNetworkPolicy))
	}
	pods := make([]corev1.Pod, 0, len(snap.Pods))
	for i, p := range snap.Pods {
		pods = append(pods, *podObject(p, i))
	}
	lw, w := newPodListWatch(pods)
	st.pods, st.watch = controllers.NewPodStore(lw), w
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = st.pods.Start(ctx)
	}()
	st.stop = func() { cancel(); <-done }
	if !toolscache.WaitForCacheSync(ctx.Done(), st.pods.HasSynced) || st.pods.Len() != len(snap.Pods) {
		st.stop()
		return nil, fmt.Errorf("pod store: %d of %d pods after the initial list", st.pods.Len(), len(snap.Pods))
	}
	return st, nil
}

// podListWatch serves one list of pods, once (so that the list is garbage
// after the initial sync, as in the agent), then a fake watch for churn.
// It declares that it cannot stream the initial list over the watch, so
// the reflector lists; against an API server the agent streams it (same
// records in the end).
type podListWatch struct {
	*toolscache.ListWatch
}

func (podListWatch) IsWatchListSemanticsUnSupported() bool { return true }

func newPodListWatch(pods []corev1.Pod) (podListWatch, *watch.FakeWatcher) {
	w := watch.NewFakeWithChanSize(16, false)
	var mu sync.Mutex
	list := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: pods}
	return podListWatch{&toolscache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (kruntime.Object, error) {
			mu.Lock()
			defer mu.Unlock()
			if list == nil {
				return nil, errors.New("listed twice")
			}
			l := list
			list = nil
			return l, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			return w, nil
		},
	}}, w
}

func podObject(p policy.Pod, i int) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: p.Namespace, Name: p.Name, Labels: p.Labels,
			UID:             types.UID(fmt.Sprintf("00000000-0000-0000-0000-%012d", i)),
			ResourceVersion: strconv.Itoa(1_000_000 + i),
		},
		Spec:   corev1.PodSpec{NodeName: p.NodeName, HostNetwork: p.HostNetwork},
		Status: corev1.PodStatus{Phase: p.Phase},
	}
	c := corev1.Container{Name: "app", Image: "registry.example/app:1"}
	for _, cp := range p.Ports {
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: cp.Name, Protocol: cp.Protocol, ContainerPort: cp.Port})
	}
	pod.Spec.Containers = []corev1.Container{c}
	for _, ip := range p.IPs {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: ip.String()})
	}
	if len(p.IPs) > 0 {
		pod.Status.PodIP = p.IPs[0].String()
	}
	return pod
}

// load is the agent's first reconcile: every object into a new NodeCompiler.
// Policies are handed over as controller-runtime's List without deep
// copies returns them (shallow copies of the cached objects).
func (st *agentStores) load(nodeName string) *policy.NodeCompiler {
	c := policy.NewNodeCompiler(nodeName)
	for _, ns := range st.namespaces {
		c.SetNamespace(policy.Namespace{Name: ns.Name, Labels: ns.Labels})
	}
	items := make([]networkingv1.NetworkPolicy, len(st.policies))
	for i, np := range st.policies {
		items[i] = *np
		c.SetPolicy(&items[i])
	}
	c.ExpectPods(st.pods.Len())
	st.pods.Each(c.SetPod)
	st.handedNodes = make(map[string]policy.Node, len(st.nodes))
	for _, n := range st.nodes {
		pn := policy.Node{Name: n.Name, Labels: n.Labels}
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP {
				pn.Addresses = append(pn.Addresses, ip)
			}
		}
		c.SetNode(pn)
		st.handedNodes[pn.Name] = pn
	}
	st.handedCNPs = make(map[string]*policyv1beta1.ClusterNetworkPolicy, len(st.cnps))
	for _, p := range st.cnps {
		c.SetClusterNetworkPolicy(p)
		st.handedCNPs[p.Name] = p
	}
	return c
}

// waitPod waits until the store has (or no longer has) the pod.
func (st *agentStores) waitPod(namespace, name string, present bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for (st.pods.Get(namespace, name) != nil) != present {
		if time.Now().After(deadline) {
			return fmt.Errorf("pod %s/%s: present=%v not reached", namespace, name, present)
		}
		time.Sleep(100 * time.Microsecond)
	}
	return nil
}

// MemoryProfiles names the pprof files MeasureMemory writes; empty names
// write none. Heap is a prefix: HEAP.cache.pprof once the stores are built
// (the baseline: go tool pprof -base), HEAP.sync.pprof right after the
// first full sync (in-use as of the last collection then: the peak's live
// heap) and HEAP.end.pprof after the churn and a forced collection (the
// steady state). CPU covers the peak's phase.
type MemoryProfiles struct {
	Heap, CPU string
}

// MeasureMemory builds the agent's stores for shape, then does what the
// agent does on start and on churn, and reports the process's memory.
// Call it in a fresh process, once.
func MeasureMemory(shape synth.Shape, churnSyncs int, profiles MemoryProfiles) (Memory, error) {
	out := Memory{Shape: shape.String(), Pods: shape.Pods, ClusterNetworkPolicies: shape.ClusterNetworkPolicies, ChurnSyncs: churnSyncs, GOGC: os.Getenv("GOGC"), GOMEMLIMIT: os.Getenv("GOMEMLIMIT")}
	if out.GOGC == "" {
		out.GOGC = "100 (default)"
	}
	if out.GOMEMLIMIT == "" {
		out.GOMEMLIMIT = "none (default)"
	}
	var nodeName string
	stores, err := func() (*agentStores, error) {
		snap := synth.Snapshot(shape)
		nodeName = snap.NodeName
		return storesOf(snap)
	}()
	if err != nil {
		return out, err
	}
	defer stores.stop()
	peer := podObject(synth.ChurnPeer(shape), shape.Pods)
	runtime.GC()
	debug.FreeOSMemory()
	if err := resetPeakRSS(); err != nil {
		return out, err
	}
	if out.CacheRSSBytes, err = procStatus("VmRSS"); err != nil {
		return out, err
	}
	out.HeapCacheBytes = heapInuse()
	if err := writeHeapProfile(profiles.Heap, "cache"); err != nil {
		return out, err
	}
	if profiles.CPU != "" {
		stop, err := startCPUProfile(profiles.CPU)
		if err != nil {
			return out, err
		}
		defer stop()
	}
	cpuStart, gcStart := cpuTime(), gcCycles()

	s, closeNS, err := newSyncerInFreshNetNS()
	if err != nil {
		return out, err
	}
	defer closeNS()
	// The agent's first reconcile, with the collector's target it sets
	// for a full rebuild (controllers.Reconciler.Reconcile).
	restoreGC := controllers.LowerGCTarget(controllers.FullRebuildGCPercent)
	cluster := stores.load(nodeName)
	heapPeak := int64(0)
	syncOnce := func() error {
		rs, _ := cluster.Compile()
		heapPeak = max(heapPeak, heapInuse())
		err := s.Sync(context.Background(), rs)
		heapPeak = max(heapPeak, heapInuse())
		return err
	}
	err = syncOnce()
	restoreGC()
	if err != nil {
		return out, fmt.Errorf("full sync: %w", err)
	}
	if err := writeHeapProfile(profiles.Heap, "sync"); err != nil {
		return out, err
	}
	for i := range churnSyncs {
		if i%2 == 0 {
			p := peer.DeepCopy()
			p.ResourceVersion = strconv.Itoa(2_000_000 + i)
			stores.watch.Add(p)
			if err := stores.waitPod(p.Namespace, p.Name, true); err != nil {
				return out, err
			}
			cluster.SetPod(stores.pods.Get(p.Namespace, p.Name))
		} else {
			stores.watch.Delete(peer.DeepCopy())
			if err := stores.waitPod(peer.Namespace, peer.Name, false); err != nil {
				return out, err
			}
			cluster.DeletePod(peer.Namespace, peer.Name)
		}
		if err := syncOnce(); err != nil {
			return out, fmt.Errorf("churn sync %d: %w", i, err)
		}
	}
	if out.PeakRSSBytes, err = procStatus("VmHWM"); err != nil {
		return out, err
	}
	out.HeapPeakBytes = heapPeak
	out.CPUSeconds, out.GCCycles = (cpuTime() - cpuStart).Seconds(), gcCycles()-gcStart
	runtime.GC()
	debug.FreeOSMemory()
	if out.SteadyRSSBytes, err = procStatus("VmRSS"); err != nil {
		return out, err
	}
	out.HeapSteadyBytes = heapInuse()
	if err := writeHeapProfile(profiles.Heap, "end"); err != nil {
		return out, err
	}
	runtime.KeepAlive(cluster)
	runtime.KeepAlive(stores)
	runtime.KeepAlive(s)
	return out, nil
}

// writeHeapProfile writes prefix.point.pprof (nothing for an empty prefix).
func writeHeapProfile(prefix, point string) error {
	if prefix == "" {
		return nil
	}
	f, err := os.Create(prefix + "." + point + ".pprof")
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("heap profile %s: %w", f.Name(), err)
	}
	return f.Close()
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

func heapInuse() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

func gcCycles() uint32 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.NumGC
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS makes VmHWM start again from the current RSS.
func resetPeakRSS() error {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS: %w", err)
	}
	return nil
}

// procStatus reads a "kB" field of /proc/self/status, in bytes.
func procStatus(field string) (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/self/status %s: %w", field, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("/proc/self/status has no %s", field)
}

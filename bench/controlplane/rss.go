//go:build linux

package controlplane

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/nft/kernel"
	"github.com/nftpolicy/nftpolicy/policy"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

// Memory is the resident memory of a process modelling the agent at one
// shape. Run it in a fresh process (nftbench rss): the figures are the
// kernel's, for the whole process, Go runtime included.
type Memory struct {
	Shape string `json:"shape"`
	Pods  int    `json:"pods"`
	// CacheRSSBytes is VmRSS once the process holds the cache: every pod,
	// namespace and policy as the agent's informers store them (API
	// objects trimmed by controllers.TrimPod and friends). This is the
	// baseline of the figure.
	CacheRSSBytes int64 `json:"cache_rss_bytes"`
	// PeakRSSBytes is VmHWM (peak RSS) over: building the snapshot from
	// the cache, Compile, a full Sync into a fresh namespace, and ChurnSyncs
	// incremental syncs of one-pod churn, each with a fresh snapshot and
	// compile as the agent's reconcile does. The peak is reset
	// (/proc/self/clear_refs) after the cache is built, so the synthetic
	// generator's own garbage does not count.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// HeapCacheBytes and HeapPeakBytes are the Go heap in use (live +
	// not yet collected, runtime.MemStats.HeapInuse) at the same points.
	HeapCacheBytes int64  `json:"heap_cache_bytes"`
	HeapPeakBytes  int64  `json:"heap_peak_bytes"`
	ChurnSyncs     int    `json:"churn_syncs"`
	GOGC           string `json:"gogc"`
}

// agentCache is what the agent's informer cache holds.
type agentCache struct {
	nodeName   string
	pods       []corev1.Pod
	namespaces []corev1.Namespace
	policies   []networkingv1.NetworkPolicy
}

// cacheOf turns a synthetic snapshot into API objects as the agent's cache
// stores them: pods with the fields an API server sends that TrimPod keeps
// (uid, resourceVersion, a container with its ports, status with podIPs).
func cacheOf(snap *policy.Snapshot) (*agentCache, error) {
	c := &agentCache{nodeName: snap.NodeName}
	for i, p := range snap.Pods {
		pod := podObject(p, i)
		t, err := controllers.TrimPod(pod)
		if err != nil {
			return nil, err
		}
		c.pods = append(c.pods, *t.(*corev1.Pod))
	}
	for i, ns := range snap.Namespaces {
		o := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: ns.Name, Labels: ns.Labels, UID: types.UID(fmt.Sprintf("ns-uid-%08d", i)), ResourceVersion: strconv.Itoa(i + 1),
		}}
		t, err := controllers.TrimNamespace(o)
		if err != nil {
			return nil, err
		}
		c.namespaces = append(c.namespaces, *t.(*corev1.Namespace))
	}
	for _, np := range snap.Policies {
		t, err := controllers.TrimNetworkPolicy(np.DeepCopy())
		if err != nil {
			return nil, err
		}
		c.policies = append(c.policies, *t.(*networkingv1.NetworkPolicy))
	}
	return c, nil
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

// snapshot converts the cache the way controllers.buildSnapshot does (a
// copy of it: that function is unexported): converted pods, sorted.
func (c *agentCache) snapshot() *policy.Snapshot {
	s := &policy.Snapshot{NodeName: c.nodeName}
	for i := range c.namespaces {
		s.Namespaces = append(s.Namespaces, policy.Namespace{Name: c.namespaces[i].Name, Labels: c.namespaces[i].Labels})
	}
	s.Pods = make([]policy.Pod, 0, len(c.pods))
	for i := range c.pods {
		p := &c.pods[i]
		out := policy.Pod{
			Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, NodeName: p.Spec.NodeName,
			HostNetwork: p.Spec.HostNetwork, Phase: p.Status.Phase,
		}
		for _, ip := range p.Status.PodIPs {
			if a, err := netip.ParseAddr(ip.IP); err == nil {
				out.IPs = append(out.IPs, a.Unmap())
			}
		}
		for _, ctr := range p.Spec.Containers {
			for _, cp := range ctr.Ports {
				out.Ports = append(out.Ports, policy.ContainerPort{Name: cp.Name, Protocol: cp.Protocol, Port: cp.ContainerPort})
			}
		}
		s.Pods = append(s.Pods, out)
	}
	slices.SortFunc(s.Pods, func(a, b policy.Pod) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for i := range c.policies {
		np := c.policies[i].DeepCopy()
		s.Policies = append(s.Policies, np)
	}
	return s
}

// MeasureMemory builds the agent's cache for shape, then does what the
// agent does on start and on churn, and reports the process's memory.
// Call it in a fresh process, once.
func MeasureMemory(shape synth.Shape, churnSyncs int) (Memory, error) {
	out := Memory{Shape: shape.String(), Pods: shape.Pods, ChurnSyncs: churnSyncs, GOGC: os.Getenv("GOGC")}
	if out.GOGC == "" {
		out.GOGC = "100 (default)"
	}
	cache, err := func() (*agentCache, error) {
		return cacheOf(synth.Snapshot(shape))
	}()
	if err != nil {
		return out, err
	}
	peer := podObject(synth.ChurnPeer(shape), len(cache.pods))
	runtime.GC()
	debug.FreeOSMemory()
	if err := resetPeakRSS(); err != nil {
		return out, err
	}
	if out.CacheRSSBytes, err = procStatus("VmRSS"); err != nil {
		return out, err
	}
	out.HeapCacheBytes = heapInuse()

	ns, err := NewNetNS()
	if err != nil {
		return out, err
	}
	defer ns.Close()
	s, err := kernel.New(kernel.WithNetNSFd(ns.Fd()))
	if err != nil {
		return out, err
	}
	heapPeak := int64(0)
	syncOnce := func() error {
		rs, _ := policy.Compile(cache.snapshot())
		heapPeak = max(heapPeak, heapInuse())
		err := s.Sync(context.Background(), rs)
		heapPeak = max(heapPeak, heapInuse())
		return err
	}
	if err := syncOnce(); err != nil {
		return out, fmt.Errorf("full sync: %w", err)
	}
	base := len(cache.pods)
	for i := range churnSyncs {
		if i%2 == 0 {
			t, _ := controllers.TrimPod(peer.DeepCopy())
			cache.pods = append(cache.pods, *t.(*corev1.Pod))
		} else {
			cache.pods = cache.pods[:base]
		}
		if err := syncOnce(); err != nil {
			return out, fmt.Errorf("churn sync %d: %w", i, err)
		}
	}
	if out.PeakRSSBytes, err = procStatus("VmHWM"); err != nil {
		return out, err
	}
	out.HeapPeakBytes = heapPeak
	runtime.KeepAlive(cache)
	return out, nil
}

func heapInuse() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
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

// Package kubeletpods runs the scenario runner's pods on real kubelets
// (the kubelet-mode cluster, make up E2E_KUBELET=1). Each scenario pod is
// a Pod object bound to its node, with exactly the scenario's labels and
// named container ports, whose one container runs our podserver image
// (packed from e2e/cmd/e2e-podserver, imported into every node's
// containerd). The kubelet starts it, the node's CNI chain (Flannel, then
// nftpolicy-cni) attaches it, and its status comes from the kubelet.
//
// Probes run exactly as in harness mode: the podserver serves the
// scenario's ports and probes others from inside its own network
// namespace when asked over a unix control socket. That socket lives in a
// host directory every pod mounts (hostPath), so the runner reaches each
// pod through the file system, never through the network under test, and
// a probe costs what it costs in harness mode.
package kubeletpods

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/e2e/internal/podserver"
)

// Bounds of the waits, so that a pod the kubelet cannot run fails its
// scenario with the reason instead of hanging the run.
const (
	// StartTimeout bounds a pod's creation until it is Running with an
	// address (image present, so no pull; the CNI ADD includes the
	// nftpolicy-cni wait for the agent).
	StartTimeout = 2 * time.Minute
	// controlTimeout bounds the wait for the podserver's control socket
	// once the container runs.
	controlTimeout = 30 * time.Second
	// goneTimeout bounds the wait for a deleted Pod object to disappear.
	goneTimeout = 30 * time.Second
	pollEvery   = 200 * time.Millisecond
)

// ctlMount is where the pod sees the host's control directory.
const ctlMount = "/e2e-ctl"

// containerName is the scenario pod's one container, as in harness mode.
const containerName = "podserver"

// Pods creates and deletes scenario pods on the kubelet cluster.
type Pods struct {
	cfg   *cluster.Config
	state *cluster.State
	cs    kubernetes.Interface
	// svc manages the pods' Services and waits for kube-proxy, as the
	// harness does for its own pods.
	svc   *kubelet.Kubelet
	image string

	mu   sync.Mutex
	run  string // distinguishes control sockets of different runner processes
	gen  int
	load map[string]int
}

// New imports the podserver image packed from the static binary
// podserverBin into every node and returns the backend.
func New(ctx context.Context, cfg *cluster.Config, st *cluster.State, cs kubernetes.Interface, podserverBin string) (*Pods, error) {
	if !st.Kubelet {
		return nil, errors.New("kubeletpods needs the kubelet-mode cluster (make up E2E_KUBELET=1)")
	}
	if len(st.Families()) != 1 {
		return nil, fmt.Errorf("kubelet mode is ipv4 only, the cluster runs %v", st.Families())
	}
	image, err := cfg.ImportPodserverImage(ctx, st, podserverBin)
	if err != nil {
		return nil, fmt.Errorf("podserver image (make e2e-bin E2E_KUBELET=1 builds %s): %w", podserverBin, err)
	}
	dir := cfg.PodControlDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// Sockets of an earlier run's pods: their pods are gone or going.
	stale, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
	for _, f := range stale {
		_ = os.Remove(f)
	}
	return &Pods{cfg: cfg, state: st, cs: cs, svc: kubelet.ServicesOnly(cfg, st, cs), image: image,
		run: fmt.Sprintf("%04x", rand.IntN(0x10000)), load: map[string]int{}}, nil
}

// Image is the podserver image the pods run.
func (k *Pods) Image() string { return k.image }

// pickNode returns the node whose podCIDR holds the requested address,
// else the least loaded one.
func (k *Pods) pickNode(spec kubelet.PodSpec) (cluster.Node, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if spec.IP != "" {
		ip, err := netip.ParseAddr(spec.IP)
		if err != nil {
			return cluster.Node{}, fmt.Errorf("pod %s: ip: %w", spec.Key(), err)
		}
		n, ok := k.state.NodeFor(ip)
		if !ok {
			return cluster.Node{}, fmt.Errorf("pod %s: no node's podCIDR holds %s", spec.Key(), ip)
		}
		k.load[n.Name]++
		return n, nil
	}
	best := k.state.Nodes[0]
	for _, n := range k.state.Nodes[1:] {
		if k.load[n.Name] < k.load[best.Name] {
			best = n
		}
	}
	k.load[best.Name]++
	return best, nil
}

func (k *Pods) unload(node string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.load[node] > 0 {
		k.load[node]--
	}
}

// CreatePod creates the Pod object bound to its node, waits until the
// kubelet runs it with an address and its podserver answers, makes it
// serve spec.Servers and creates its Service. The address is the one the
// CNI gives on that node: the runtime passes no requested address to the
// CNI, so spec.IP chooses the node only.
func (k *Pods) CreatePod(ctx context.Context, spec kubelet.PodSpec) (_ *kubelet.Pod, err error) {
	switch {
	case spec.HostNetwork:
		return nil, fmt.Errorf("pod %s: host-network pods run in harness mode only", spec.Key())
	case spec.Pending:
		return nil, fmt.Errorf("pod %s: pending pods (a withheld status) exist in harness mode only", spec.Key())
	}
	node, err := k.pickNode(spec)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.gen++
	id := fmt.Sprintf("%s-%d", k.run, k.gen)
	k.mu.Unlock()
	p := &kubelet.Pod{Spec: spec, Node: node, ID: id, Ctl: filepath.Join(k.cfg.PodControlDir(), id+".sock")}
	if !spec.NoService {
		p.Service = kubelet.ServiceName(spec.Name)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, k.DeletePod(context.Background(), p))
		}
	}()
	if _, err := k.createObject(ctx, p); err != nil {
		return nil, err
	}
	obj, err := k.waitRunning(ctx, p)
	if err != nil {
		return nil, err
	}
	for _, ip := range obj.Status.PodIPs {
		a, err := netip.ParseAddr(ip.IP)
		if err != nil {
			return nil, fmt.Errorf("pod %s: status.podIPs: %w", spec.Key(), err)
		}
		p.IPs = append(p.IPs, a)
	}
	p.IP = p.IPs[0]
	if err := k.waitControl(ctx, p); err != nil {
		return nil, err
	}
	if err := serve(p); err != nil {
		return nil, err
	}
	if p.Service != "" {
		if err := k.svc.EnsureService(ctx, p, obj); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// createObject creates p's Pod object: bound to p's node (as the scheduler
// would, without waiting for it), the scenario's labels only, one
// container running the podserver with the named ports, the control
// directory mounted. The ServiceAccount admission plugin refuses pods
// until a fresh namespace's default ServiceAccount exists, so that refusal
// is retried within the start bound.
func (k *Pods) createObject(ctx context.Context, p *kubelet.Pod) (*corev1.Pod, error) {
	var ports []corev1.ContainerPort
	for _, s := range p.Spec.Servers {
		ports = append(ports, corev1.ContainerPort{Name: s.PortName(), ContainerPort: s.Port, Protocol: corev1.Protocol(s.Protocol)})
	}
	zero := int64(0)
	no := false
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Spec.Namespace, Name: p.Spec.Name, Labels: maps.Clone(p.Spec.Labels),
			Annotations: map[string]string{"e2e.nftpolicy.io/control": p.Ctl}},
		Spec: corev1.PodSpec{
			NodeName:                      p.Node.Name,
			TerminationGracePeriodSeconds: &zero,
			EnableServiceLinks:            &no,
			AutomountServiceAccountToken:  &no,
			Containers: []corev1.Container{{
				Name: containerName, Image: k.image, ImagePullPolicy: corev1.PullNever,
				Args:  []string{"--name", p.Spec.Key(), "--ctl", filepath.Join(ctlMount, filepath.Base(p.Ctl))},
				Ports: ports,
				// SCTP probes are raw IP packets (this kernel has no SCTP
				// sockets); the runtime's default set has NET_RAW, said
				// here so that it does not depend on the runtime.
				SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_RAW"}}},
				VolumeMounts:    []corev1.VolumeMount{{Name: "control", MountPath: ctlMount}},
			}},
			Volumes: []corev1.Volume{{Name: "control", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: k.cfg.PodControlDir(), Type: &dirOrCreate}}}},
		},
	}
	deadline := time.Now().Add(StartTimeout)
	for {
		created, err := k.cs.CoreV1().Pods(p.Spec.Namespace).Create(ctx, pod, metav1.CreateOptions{})
		if err == nil {
			return created, nil
		}
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "serviceaccount") || time.Now().After(deadline) {
			return nil, fmt.Errorf("create pod %s: %w", p.Spec.Key(), err)
		}
		if err := sleep(ctx, pollEvery); err != nil {
			return nil, err
		}
	}
}

// waitRunning waits until the kubelet reports the pod Running with its
// container ready and an address in every family of the cluster.
func (k *Pods) waitRunning(ctx context.Context, p *kubelet.Pod) (*corev1.Pod, error) {
	deadline := time.Now().Add(StartTimeout)
	for {
		obj, err := k.cs.CoreV1().Pods(p.Spec.Namespace).Get(ctx, p.Spec.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("pod %s: %w", p.Spec.Key(), err)
		}
		switch {
		case obj.Status.Phase == corev1.PodFailed || obj.Status.Phase == corev1.PodSucceeded:
			return nil, fmt.Errorf("pod %s ended (%s): %s", p.Spec.Key(), obj.Status.Phase, describe(obj))
		case obj.Status.Phase == corev1.PodRunning && containerReady(obj) && len(obj.Status.PodIPs) == len(k.state.Families()):
			return obj, nil
		case time.Now().After(deadline):
			return nil, fmt.Errorf("pod %s is not running after %s on %s: %s", p.Spec.Key(), StartTimeout, p.Node.Name, describe(obj))
		}
		if err := sleep(ctx, pollEvery); err != nil {
			return nil, err
		}
	}
}

func containerReady(obj *corev1.Pod) bool {
	for _, cs := range obj.Status.ContainerStatuses {
		if cs.Name == containerName {
			return cs.Ready && cs.State.Running != nil
		}
	}
	return false
}

// describe says where a pod stands: its phase, conditions that are not
// true and its container's state, for an error report.
func describe(obj *corev1.Pod) string {
	parts := []string{"phase " + string(obj.Status.Phase)}
	for _, c := range obj.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			parts = append(parts, fmt.Sprintf("%s=%s %s %s", c.Type, c.Status, c.Reason, c.Message))
		}
	}
	for _, cs := range obj.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			parts = append(parts, fmt.Sprintf("container waiting: %s %s", cs.State.Waiting.Reason, cs.State.Waiting.Message))
		case cs.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("container terminated: %s exit %d %s", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode, cs.State.Terminated.Message))
		}
		if cs.RestartCount > 0 {
			parts = append(parts, fmt.Sprintf("restarts %d", cs.RestartCount))
		}
	}
	return strings.Join(parts, "; ")
}

// waitControl waits until the pod's podserver answers on its control socket.
func (k *Pods) waitControl(ctx context.Context, p *kubelet.Pod) error {
	deadline := time.Now().Add(controlTimeout)
	for {
		_, err := podserver.Call(p.Ctl, podserver.Request{Op: "ping"}, time.Second)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("podserver of %s does not answer on %s after %s: %w", p.Spec.Key(), p.Ctl, controlTimeout, err)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// serve makes the podserver listen on exactly p's servers.
func serve(p *kubelet.Pod) error {
	var svs []podserver.Server
	for _, s := range p.Spec.Servers {
		svs = append(svs, podserver.Server{Port: s.Port, Protocol: s.Protocol})
	}
	if _, err := podserver.Call(p.Ctl, podserver.Request{Op: "serve", Servers: svs}, 5*time.Second); err != nil {
		return fmt.Errorf("pod %s: serve: %w", p.Spec.Key(), err)
	}
	return nil
}

// DeletePod deletes p's Service and Pod object (grace period 0: the
// kubelet stops the container and the CNI DEL frees the address) and
// waits until the name is free again.
func (k *Pods) DeletePod(ctx context.Context, p *kubelet.Pod) error {
	errs := []error{k.svc.DeleteService(ctx, p)}
	zero := int64(0)
	pods := k.cs.CoreV1().Pods(p.Spec.Namespace)
	err := pods.Delete(ctx, p.Spec.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	} else {
		errs = append(errs, k.waitGone(ctx, p))
	}
	if err := os.Remove(p.Ctl); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	k.unload(p.Node.Name)
	return errors.Join(errs...)
}

func (k *Pods) waitGone(ctx context.Context, p *kubelet.Pod) error {
	deadline := time.Now().Add(goneTimeout)
	for {
		_, err := k.cs.CoreV1().Pods(p.Spec.Namespace).Get(ctx, p.Spec.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("pod %s: %s after its deletion: %w", p.Spec.Key(), goneTimeout, err)
			}
			return fmt.Errorf("pod %s still exists %s after its deletion", p.Spec.Key(), goneTimeout)
		}
		if err := sleep(ctx, pollEvery); err != nil {
			return err
		}
	}
}

// SetLabels replaces the pod's labels through the API.
func (k *Pods) SetLabels(ctx context.Context, p *kubelet.Pod, labels map[string]string) error {
	return k.svc.SetLabels(ctx, p, labels)
}

// SetServers changes what p serves. Container ports are immutable, so the
// pod is deleted and created again (a new container, a new address), and
// p is updated in place.
func (k *Pods) SetServers(ctx context.Context, p *kubelet.Pod, servers []kubelet.Server) error {
	if err := k.DeletePod(ctx, p); err != nil {
		return err
	}
	spec := p.Spec
	spec.Servers = servers
	np, err := k.CreatePod(ctx, spec)
	if err != nil {
		return err
	}
	*p = *np
	return nil
}

// WaitProgrammed waits until kube-proxy on every node maps each pod's
// Service to its address.
func (k *Pods) WaitProgrammed(ctx context.Context, pods []*kubelet.Pod, timeout time.Duration) error {
	return k.svc.WaitProgrammed(ctx, pods, timeout)
}

// NodeServer refuses: probes from and to a node's own network namespace
// (node/<name> in a matrix) run in harness mode only.
func (k *Pods) NodeServer(_ context.Context, n cluster.Node, _ []kubelet.Server) (*kubelet.Pod, error) {
	return nil, fmt.Errorf("node endpoint %s/%s: node endpoints run in harness mode only", kubelet.NodeNamespace, n.Name)
}

// SetNodeServers refuses, as NodeServer.
func (k *Pods) SetNodeServers(p *kubelet.Pod, _ []kubelet.Server) error {
	return fmt.Errorf("node endpoint %s: node endpoints run in harness mode only", p.Spec.Key())
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

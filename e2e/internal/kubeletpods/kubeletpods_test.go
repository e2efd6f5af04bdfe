package kubeletpods

// IP plan: nodes e2e-node-1 (198.18.0.11, podCIDR 10.244.1.0/24) and
// e2e-node-2 (198.18.0.12, 10.244.2.0/24). The test plays the kubelet on a
// fake clientset: it reports each pod Running at the next address of its
// node's podCIDR (10.244.N.100, .101, ...) and runs the real podserver on
// the pod's control socket in a temporary directory. No network is used:
// the podservers serve SCTP only, which listens on no port (the INIT
// recorder is a raw socket that only reads).

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/e2e/internal/podserver"
)

func testState() *cluster.State {
	return &cluster.State{Stack: cluster.StackIPv4, Kubelet: true, Nodes: []cluster.Node{
		{Index: 1, Name: "e2e-node-1", IP: "198.18.0.11", IPs: []string{"198.18.0.11"}, PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"}},
		{Index: 2, Name: "e2e-node-2", IP: "198.18.0.12", IPs: []string{"198.18.0.12"}, PodCIDR: "10.244.2.0/24", PodCIDRs: []string{"10.244.2.0/24"}},
	}}
}

// fakeKubelet runs every pod the fake API server gets: status Running with
// an address of its node, and the real podserver on its control socket.
type fakeKubelet struct {
	t        *testing.T
	cs       *fake.Clientset
	ctlDir   string
	mu       sync.Mutex
	next     map[string]int  // node -> next host part
	started  map[string]bool // by control socket: one per pod created
	refusals int             // ServiceAccount refusals still to give
}

func (f *fakeKubelet) run(ctx context.Context) {
	for ctx.Err() == nil {
		pods, err := f.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range pods.Items {
				f.start(ctx, &pods.Items[i])
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fakeKubelet) start(ctx context.Context, pod *corev1.Pod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	args := pod.Spec.Containers[0].Args
	ctl := filepath.Join(f.ctlDir, filepath.Base(args[len(args)-1]))
	if f.started[ctl] || pod.Status.Phase == corev1.PodRunning {
		return
	}
	f.started[ctl] = true
	go func() { _ = podserver.Run(args[1], ctl) }()
	node := map[string]int{"e2e-node-1": 1, "e2e-node-2": 2}[pod.Spec.NodeName]
	host := 100 + f.next[pod.Spec.NodeName]
	f.next[pod.Spec.NodeName]++
	pod = pod.DeepCopy()
	ip := fmt.Sprintf("10.244.%d.%d", node, host)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}
	if _, err := f.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		f.t.Errorf("status of %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

func newTestPods(t *testing.T, refusals int) (*Pods, *fake.Clientset) {
	t.Helper()
	// A short state dir: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "kp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := &cluster.Config{StateDir: dir}
	if err := os.MkdirAll(cfg.PodControlDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	st := testState()
	cs := fake.NewClientset()
	fk := &fakeKubelet{t: t, cs: cs, ctlDir: cfg.PodControlDir(), next: map[string]int{}, started: map[string]bool{}, refusals: refusals}
	// The ServiceAccount admission plugin refuses pods of a fresh namespace
	// until its default ServiceAccount exists.
	cs.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		fk.mu.Lock()
		defer fk.mu.Unlock()
		if fk.refusals > 0 {
			fk.refusals--
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "a",
				fmt.Errorf(`error looking up service account x/default: serviceaccount "default" not found`))
		}
		return false, nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go fk.run(ctx)
	return &Pods{cfg: cfg, state: st, cs: cs, svc: kubelet.ServicesOnly(cfg, st, cs), image: PodserverTestImage,
		run: "t", load: map[string]int{}}, cs
}

// PodserverTestImage is the image name the tests' pods carry.
const PodserverTestImage = cluster.PodserverImageRepo + ":test"

// podView is what a scenario's policies and Services can see of a pod.
type podView struct {
	Node        string
	Labels      map[string]string
	Ports       []string
	Image       string
	PullPolicy  corev1.PullPolicy
	ControlPath string
	Args        []string
}

func viewOf(pod *corev1.Pod) podView {
	c := pod.Spec.Containers[0]
	v := podView{Node: pod.Spec.NodeName, Labels: pod.Labels, Image: c.Image, PullPolicy: c.ImagePullPolicy,
		ControlPath: pod.Spec.Volumes[0].HostPath.Path, Args: c.Args}
	for _, p := range c.Ports {
		v.Ports = append(v.Ports, fmt.Sprintf("%s %s/%d", p.Name, p.Protocol, p.ContainerPort))
	}
	return v
}

func TestCreateObject_BoundToItsNodeWithExactlyItsLabelsAndNamedPorts(t *testing.T) {
	k, cs := newTestPods(t, 2)
	ctx := context.Background()
	spec := kubelet.PodSpec{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, IP: "10.244.2.10",
		Servers: []kubelet.Server{{Port: 80, Protocol: "TCP"}, {Port: 81, Protocol: "UDP", Name: "my-udp"}, {Port: 12345, Protocol: "SCTP"}}}
	node, err := k.pickNode(spec)
	if err != nil {
		t.Fatal(err)
	}
	p := &kubelet.Pod{Spec: spec, Node: node, ID: "t-9", Ctl: filepath.Join(k.cfg.PodControlDir(), "t-9.sock")}
	// Two ServiceAccount refusals first: retried.
	if _, err := k.createObject(ctx, p); err != nil {
		t.Fatal(err)
	}
	obj, err := cs.CoreV1().Pods("x").Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := podView{Node: "e2e-node-2", Labels: map[string]string{"pod": "a"},
		Ports: []string{"serve-80-tcp TCP/80", "my-udp UDP/81", "s12345-sctp SCTP/12345"},
		Image: PodserverTestImage, PullPolicy: corev1.PullNever, ControlPath: k.cfg.PodControlDir(),
		Args: []string{"--name", "x/a", "--ctl", ctlMount + "/t-9.sock"}}
	if diff := cmp.Diff(want, viewOf(obj)); diff != "" {
		t.Errorf("pod object (-want +got):\n%s", diff)
	}
}

func TestCreatePod_RunningWithTheKubeletsAddressAndRecreatedForNewServers(t *testing.T) {
	k, cs := newTestPods(t, 1)
	ctx := context.Background()
	p, err := k.CreatePod(ctx, kubelet.PodSpec{Namespace: "x", Name: "a", Labels: map[string]string{"pod": "a"}, IP: "10.244.2.10", NoService: true,
		Servers: []kubelet.Server{{Port: 80, Protocol: "SCTP"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.IP, netip.MustParseAddr("10.244.2.100"); got != want {
		t.Errorf("address: got %s, want the kubelet's %s", got, want)
	}
	// What a pod serves changes through a new pod (container ports are
	// immutable): p is updated in place.
	first := p.Ctl
	if err := k.SetServers(ctx, p, []kubelet.Server{{Port: 81, Protocol: "SCTP"}}); err != nil {
		t.Fatal(err)
	}
	if got, want := p.IP, netip.MustParseAddr("10.244.2.101"); got != want {
		t.Errorf("address after SetServers: got %s, want the new pod's %s", got, want)
	}
	if p.Ctl == first {
		t.Errorf("control socket after SetServers: still the old pod's %s", first)
	}
	if _, err := os.Stat(first); !os.IsNotExist(err) {
		t.Errorf("the old pod's control socket: %v, want it removed", err)
	}
	obj, err := cs.CoreV1().Pods("x").Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := viewOf(obj).Ports, []string{"serve-81-sctp SCTP/81"}; !cmp.Equal(got, want) {
		t.Errorf("ports after SetServers: got %v, want %v", got, want)
	}
	if _, err := podserver.Call(p.Ctl, podserver.Request{Op: "ping"}, time.Second); err != nil {
		t.Errorf("the new pod's podserver: %v", err)
	}
	if err := k.DeletePod(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("x").Get(ctx, "a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod after DeletePod: %v, want NotFound", err)
	}
	if _, err := os.Stat(p.Ctl); !os.IsNotExist(err) {
		t.Errorf("control socket after DeletePod: %v, want it removed", err)
	}
}

func TestCreatePod_ServiceTargetsTheAddressTheKubeletGave(t *testing.T) {
	k, cs := newTestPods(t, 0)
	ctx := context.Background()
	p, err := k.CreatePod(ctx, kubelet.PodSpec{Namespace: "y", Name: "b", Labels: map[string]string{"pod": "b"}, IP: "10.244.1.11",
		Servers: []kubelet.Server{{Port: 80, Protocol: "SCTP"}}})
	if err != nil {
		t.Fatal(err)
	}
	slice, err := cs.DiscoveryV1().EndpointSlices("y").Get(ctx, p.Service, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slice.Endpoints[0].Addresses, []string{"10.244.1.100"}; !cmp.Equal(got, want) {
		t.Errorf("endpoint addresses: got %v, want %v", got, want)
	}
	if err := k.DeletePod(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services("y").Get(ctx, p.Service, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("service after DeletePod: %v, want NotFound", err)
	}
}

func TestCreatePod_RefusesWhatOnlyTheHarnessCanDo(t *testing.T) {
	k, _ := newTestPods(t, 0)
	for _, tc := range []struct {
		name string
		spec kubelet.PodSpec
		want string
	}{
		{"host network", kubelet.PodSpec{Namespace: "x", Name: "h", HostNetwork: true, Node: 1}, "harness mode only"},
		{"pending", kubelet.PodSpec{Namespace: "x", Name: "p", Pending: true}, "harness mode only"},
		{"address in no node's podCIDR", kubelet.PodSpec{Namespace: "x", Name: "o", IP: "10.244.9.10"}, "no node's podCIDR holds 10.244.9.10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := k.CreatePod(context.Background(), tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := k.NodeServer(context.Background(), testState().Nodes[0], nil); err == nil || !strings.Contains(err.Error(), "harness mode only") {
		t.Errorf("NodeServer: got %v, want a refusal", err)
	}
}

func TestPickNode_SpreadsPodsWithoutAddress(t *testing.T) {
	k := &Pods{state: testState(), load: map[string]int{}}
	var got []string
	for _, spec := range []kubelet.PodSpec{{IP: "10.244.1.10"}, {}, {}, {IP: "10.244.2.10"}, {}} {
		n, err := k.pickNode(spec)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n.Name)
	}
	want := []string{"e2e-node-1", "e2e-node-2", "e2e-node-1", "e2e-node-2", "e2e-node-1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
}

func TestDescribe_SaysWhyAPodDoesNotRun(t *testing.T) {
	pod := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: containerName, RestartCount: 2,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: "image not present"}}}}}}
	want := "phase Pending; Ready=False ContainersNotReady ; container waiting: ErrImageNeverPull image not present; restarts 2"
	if got := describe(pod); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

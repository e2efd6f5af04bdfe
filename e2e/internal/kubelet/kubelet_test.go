package kubelet

// IP plan: node e2e-node-1 at 198.18.0.11 with podCIDR 10.244.1.0/24; the
// pod under test is 10.244.1.50. Only the Pod, Service and EndpointSlice
// objects are exercised (a fake clientset, or the real kube-apiserver where
// resourceVersions matter): no network namespace, CNI or podserver.

import (
	"context"
	"net/netip"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/internal/testenv"
)

func testPod(spec PodSpec) *Pod {
	p := &Pod{Spec: spec, Node: cluster.Node{Index: 1, Name: "e2e-node-1", IP: "198.18.0.11", PodCIDR: "10.244.1.0/24"},
		IP: netip.MustParseAddr("10.244.1.50"), ID: "ns-a-0001", NetNS: "nftpe2e-p-ns-a-0001"}
	if !spec.NoService {
		p.Service = shortName("s-", spec.Name, 63)
	}
	return p
}

type podView struct {
	Phase  corev1.PodPhase
	PodIP  string
	HostIP string
	Ready  bool
	Labels map[string]string
}

func view(t *testing.T, k *Kubelet, p *Pod) podView {
	t.Helper()
	obj, err := k.CS.CoreV1().Pods(p.Spec.Namespace).Get(context.Background(), p.Spec.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v := podView{Phase: obj.Status.Phase, PodIP: obj.Status.PodIP, HostIP: obj.Status.HostIP, Labels: obj.Labels}
	for _, c := range obj.Status.Conditions {
		if c.Type == corev1.PodReady {
			v.Ready = c.Status == corev1.ConditionTrue
		}
	}
	return v
}

func hasService(t *testing.T, k *Kubelet, ns, name string) bool {
	t.Helper()
	_, err := k.CS.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func TestCreateObjects_PendingThenRunning(t *testing.T) {
	running := podView{Phase: corev1.PodRunning, PodIP: "10.244.1.50", HostIP: "198.18.0.11", Ready: true, Labels: map[string]string{"peer": "last"}}
	pending := podView{Labels: map[string]string{"peer": "last"}}
	tests := []struct {
		name        string
		spec        PodSpec
		wantCreated podView
		wantService bool
	}{
		{name: "running at once (CreatePod's default)", spec: PodSpec{Namespace: "ns", Name: "a", Labels: map[string]string{"peer": "last"}},
			wantCreated: running, wantService: true},
		{name: "running at once without service", spec: PodSpec{Namespace: "ns", Name: "a", Labels: map[string]string{"peer": "last"}, NoService: true},
			wantCreated: running},
		{name: "pending, then MarkRunning", spec: PodSpec{Namespace: "ns", Name: "a", Labels: map[string]string{"peer": "last"}, Pending: true},
			wantCreated: pending, wantService: true},
		{name: "pending without service, then MarkRunning", spec: PodSpec{Namespace: "ns", Name: "a", Labels: map[string]string{"peer": "last"}, Pending: true, NoService: true},
			wantCreated: pending},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			k := &Kubelet{CS: fake.NewClientset()}
			p := testPod(tc.spec)
			if err := k.createObjects(ctx, p); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantCreated, view(t, k, p)); diff != "" {
				t.Errorf("after create (-want +got):\n%s", diff)
			}
			if got := hasService(t, k, "ns", "s-a"); got != (tc.wantService && !tc.spec.Pending) {
				t.Errorf("after create: service exists %v", got)
			}
			if !tc.spec.Pending {
				if err := k.MarkRunning(ctx, p); err == nil {
					t.Error("MarkRunning of a running pod: no error")
				}
				return
			}
			if err := k.MarkRunning(ctx, p); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(running, view(t, k, p)); diff != "" {
				t.Errorf("after MarkRunning (-want +got):\n%s", diff)
			}
			if got := hasService(t, k, "ns", "s-a"); got != tc.wantService {
				t.Errorf("after MarkRunning: service exists %v, want %v", got, tc.wantService)
			}
			if p.Spec.Pending {
				t.Error("Spec.Pending still set after MarkRunning")
			}
			if err := k.MarkRunning(ctx, p); err == nil {
				t.Error("second MarkRunning: no error")
			}
		})
	}
}

var apiEnv testenv.APIServer

func TestMain(m *testing.M) {
	code := m.Run()
	apiEnv.Stop()
	os.Exit(code)
}

// A label change between creation and MarkRunning makes the object the
// kubelet holds stale: the status update must not revert the labels. The fake
// clientset has no resourceVersion conflicts, so this runs against the real
// kube-apiserver.
func TestMarkRunning_AfterLabelChange(t *testing.T) {
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(apiEnv.Config(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k := &Kubelet{CS: cs}
	p := testPod(PodSpec{Namespace: "ns", Name: "a", Labels: map[string]string{"peer": "last"}, Pending: true, NoService: true})
	if err := k.createObjects(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := k.SetLabels(ctx, p, map[string]string{"peer": "off"}); err != nil {
		t.Fatal(err)
	}
	if err := k.MarkRunning(ctx, p); err != nil {
		t.Fatal(err)
	}
	want := podView{Phase: corev1.PodRunning, PodIP: "10.244.1.50", HostIP: "198.18.0.11", Ready: true, Labels: map[string]string{"peer": "off"}}
	if diff := cmp.Diff(want, view(t, k, p)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestServerPortName(t *testing.T) {
	for _, tc := range []struct {
		sv   Server
		want string
	}{
		{Server{Port: 80, Protocol: "TCP"}, "serve-80-tcp"},
		{Server{Port: 9003, Protocol: "SCTP"}, "serve-9003-sctp"},
		{Server{Port: 34351, Protocol: "SCTP"}, "s34351-sctp"}, // serve-34351-sctp is 16 characters
		{Server{Port: 34345, Protocol: "TCP", Name: "web-34345"}, "web-34345"},
	} {
		if got := tc.sv.PortName(); got != tc.want || len(got) > 15 {
			t.Errorf("%+v: PortName() = %q, want %q (at most 15 characters)", tc.sv, got, tc.want)
		}
	}
}

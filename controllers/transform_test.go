package controllers

// IP plan: pods 10.0.1.0/24 and fd00:1::/64 (node-a); nothing is routed,
// the addresses only have to parse.

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/nftpolicy/nftpolicy/policy"
)

// addrCmp compares netip.Addr values (unexported fields).
var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func fullPod() *corev1.Pod {
	now := metav1.Now()
	always := corev1.ContainerRestartPolicyAlways
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "shop", UID: "u1", ResourceVersion: "42", Generation: 3,
			Labels:            map[string]string{"app": "web"},
			Annotations:       map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
			ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			OwnerReferences:   []metav1.OwnerReference{{Name: "rs"}},
			Finalizers:        []string{"x"},
			DeletionTimestamp: &now,
		},
		Spec: corev1.PodSpec{
			NodeName:    "node-a",
			HostNetwork: false,
			InitContainers: []corev1.Container{
				{Name: "init", Image: "busybox", Ports: []corev1.ContainerPort{{Name: "ignored", ContainerPort: 1}}},
				{Name: "proxy", Image: "envoy", RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 9901, Protocol: corev1.ProtocolTCP}}},
			},
			Containers: []corev1.Container{
				{
					Name: "app", Image: "nginx", Command: []string{"nginx"},
					Env:   []corev1.EnvVar{{Name: "A", Value: "b"}},
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP, HostPort: 80, HostIP: "1.2.3.4"}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}},
				},
				{Name: "noports", Image: "busybox"},
			},
			Volumes: []corev1.Volume{{Name: "v"}},
		},
		Status: corev1.PodStatus{
			Phase:             corev1.PodRunning,
			PodIP:             "10.0.1.5",
			PodIPs:            []corev1.PodIP{{IP: "10.0.1.5"}, {IP: "fd00:1::5"}},
			HostIP:            "192.168.0.1",
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true}},
		},
	}
}

func TestTrimPod(t *testing.T) {
	in := fullPod()
	always := corev1.ContainerRestartPolicyAlways
	want := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "shop", UID: "u1", ResourceVersion: "42",
			Labels:            map[string]string{"app": "web"},
			DeletionTimestamp: in.DeletionTimestamp,
		},
		Spec: corev1.PodSpec{
			NodeName: "node-a",
			InitContainers: []corev1.Container{
				{Name: "proxy", RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 9901, Protocol: corev1.ProtocolTCP}}},
			},
			Containers: []corev1.Container{
				{Name: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
			},
		},
		Status: corev1.PodStatus{
			Phase:  corev1.PodRunning,
			PodIP:  "10.0.1.5",
			PodIPs: []corev1.PodIP{{IP: "10.0.1.5"}, {IP: "fd00:1::5"}},
		},
	}
	got, err := TrimPod(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TrimPod (-want +got):\n%s", diff)
	}
	again, err := TrimPod(got)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, again); diff != "" {
		t.Errorf("TrimPod is not idempotent (-first +second):\n%s", diff)
	}
	// What policy sees must not change by trimming.
	if diff := cmp.Diff(snapshotPod(fullPod()), snapshotPod(got.(*corev1.Pod)), addrCmp); diff != "" {
		t.Errorf("snapshotPod of trimmed pod differs (-full +trimmed):\n%s", diff)
	}
}

func TestTransforms_PassThroughTombstones(t *testing.T) {
	tomb := cache.DeletedFinalStateUnknown{Key: "shop/web", Obj: fullPod()}
	for _, tc := range []struct {
		name string
		fn   cache.TransformFunc
	}{
		{"pod", TrimPod}, {"namespace", TrimNamespace}, {"networkpolicy", TrimNetworkPolicy}, {"node", TrimNode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.fn(tomb)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := got.(cache.DeletedFinalStateUnknown); !ok {
				t.Errorf("got %T, want the tombstone unchanged", got)
			}
		})
	}
}

func TestTrimOthers(t *testing.T) {
	meta := metav1.ObjectMeta{
		Name: "x", Namespace: "shop", ResourceVersion: "7", Labels: map[string]string{"a": "b"},
		Annotations: map[string]string{"big": "yes"}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}},
	}
	trimmedMeta := metav1.ObjectMeta{Name: "x", Namespace: "shop", ResourceVersion: "7", Labels: map[string]string{"a": "b"}}
	tcp := corev1.ProtocolTCP
	spec := networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr.To(intstr.FromString("http"))}}}},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
	}
	tests := []struct {
		name string
		fn   cache.TransformFunc
		in   any
		want any
	}{
		{
			name: "namespace",
			fn:   TrimNamespace,
			in:   &corev1.Namespace{ObjectMeta: meta, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}},
			want: &corev1.Namespace{ObjectMeta: trimmedMeta},
		},
		{
			name: "networkpolicy",
			fn:   TrimNetworkPolicy,
			in:   &networkingv1.NetworkPolicy{ObjectMeta: meta, Spec: spec},
			want: &networkingv1.NetworkPolicy{ObjectMeta: trimmedMeta, Spec: spec},
		},
		{
			name: "node",
			fn:   TrimNode,
			in: &corev1.Node{ObjectMeta: meta, Spec: corev1.NodeSpec{PodCIDR: "10.0.1.0/24", ProviderID: "p"}, Status: corev1.NodeStatus{
				Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.1"}},
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady}},
			}},
			want: &corev1.Node{ObjectMeta: trimmedMeta, Spec: corev1.NodeSpec{PodCIDR: "10.0.1.0/24"}, Status: corev1.NodeStatus{
				Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.1"}},
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.fn(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("transform (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSnapshotPod(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		name string
		in   *corev1.Pod
		want policy.Pod
	}{
		{
			name: "dual stack with sidecar ports",
			in:   fullPod(),
			want: policy.Pod{
				Namespace: "shop", Name: "web", Labels: map[string]string{"app": "web"}, NodeName: "node-a", Phase: corev1.PodRunning,
				IPs: []netip.Addr{netip.MustParseAddr("10.0.1.5"), netip.MustParseAddr("fd00:1::5")},
				Ports: []policy.ContainerPort{
					{Name: "http", Protocol: corev1.ProtocolTCP, Port: 8080},
					{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
					{Name: "admin", Protocol: corev1.ProtocolTCP, Port: 9901},
				},
			},
		},
		{
			name: "podIP only, mapped v4 is unmapped",
			in: &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "n"},
				Spec:       corev1.PodSpec{NodeName: "node-b"},
				Status:     corev1.PodStatus{Phase: corev1.PodPending, PodIP: "::ffff:10.0.1.6"},
			},
			want: policy.Pod{Namespace: "n", Name: "a", NodeName: "node-b", Phase: corev1.PodPending, IPs: []netip.Addr{netip.MustParseAddr("10.0.1.6")}},
		},
		{
			name: "garbage and duplicate IPs skipped, non-sidecar init ports ignored",
			in: &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "n"},
				Spec: corev1.PodSpec{HostNetwork: true, InitContainers: []corev1.Container{
					{Name: "i", Ports: []corev1.ContainerPort{{Name: "x", ContainerPort: 1}}},
					{Name: "s", RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "y", ContainerPort: 2}}},
				}},
				Status: corev1.PodStatus{Phase: corev1.PodSucceeded, PodIPs: []corev1.PodIP{{IP: "nope"}, {IP: "10.0.1.7"}, {IP: "10.0.1.7"}}},
			},
			want: policy.Pod{
				Namespace: "n", Name: "a", HostNetwork: true, Phase: corev1.PodSucceeded,
				IPs:   []netip.Addr{netip.MustParseAddr("10.0.1.7")},
				Ports: []policy.ContainerPort{{Name: "y", Port: 2}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, snapshotPod(tc.in), addrCmp); diff != "" {
				t.Errorf("snapshotPod (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildSnapshot_Sorted(t *testing.T) {
	pods := []corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "a"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "z"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "b"}},
	}
	nss := []corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "b"}}, {ObjectMeta: metav1.ObjectMeta{Name: "a"}}}
	nps := []networkingv1.NetworkPolicy{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "p"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "q"}},
	}
	s := buildSnapshot("node-a", pods, nss, nps)
	var got []string
	for _, p := range s.Pods {
		got = append(got, p.Key())
	}
	for _, n := range s.Namespaces {
		got = append(got, "ns:"+n.Name)
	}
	for _, p := range s.Policies {
		got = append(got, "np:"+p.Namespace+"/"+p.Name)
	}
	want := []string{"a/b", "a/z", "b/a", "ns:a", "ns:b", "np:a/q", "np:b/p"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshot order (-want +got):\n%s", diff)
	}
	if s.NodeName != "node-a" {
		t.Errorf("NodeName = %q", s.NodeName)
	}
}

func TestChanged(t *testing.T) {
	base, _ := TrimPod(fullPod())
	pod := base.(*corev1.Pod)
	withRV := func(rv string, mut func(*corev1.Pod)) *corev1.Pod {
		p := pod.DeepCopy()
		p.ResourceVersion = rv
		if mut != nil {
			mut(p)
		}
		return p
	}
	tests := []struct {
		name     string
		old, new *corev1.Pod
		want     bool
	}{
		{name: "informer resync", old: withRV("1", nil), new: withRV("1", nil), want: false},
		{name: "only resourceVersion", old: withRV("1", nil), new: withRV("2", nil), want: false},
		{name: "label", old: withRV("1", nil), new: withRV("2", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "x"} }), want: true},
		{name: "phase", old: withRV("1", nil), new: withRV("2", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), want: true},
		{name: "ip", old: withRV("1", nil), new: withRV("2", func(p *corev1.Pod) { p.Status.PodIPs = nil }), want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := changed(tc.old, tc.new); got != tc.want {
				t.Errorf("changed = %v, want %v", got, tc.want)
			}
		})
	}
}

package controllers

// IP plan: pods 10.0.1.0/24 and fd00:1::/64 (node-a), 10.0.2.0/24 (node-b);
// nothing is routed, the addresses only have to parse.

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/nftpolicy/nftpolicy/policy"
)

// recordOf runs the store's transform on p and returns the record.
func recordOf(t *testing.T, s *PodStore, p *corev1.Pod) *podRecord {
	t.Helper()
	got, err := s.transform(p)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := got.(*podRecord)
	if !ok {
		t.Fatalf("transform gave %T, want *podRecord", got)
	}
	return r
}

// TestPodRecord: the transform keeps exactly what policy needs of a pod.
func TestPodRecord(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		name   string
		in     *corev1.Pod
		want   policy.Pod
		wantRV string
	}{
		{
			name: "dual stack with sidecar ports; metadata, other containers and status dropped",
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
			wantRV: "42",
		},
		{
			name: "podIP only, mapped v4 is unmapped",
			in: &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "n", ResourceVersion: "7"},
				Spec:       corev1.PodSpec{NodeName: "node-b"},
				Status:     corev1.PodStatus{Phase: corev1.PodPending, PodIP: "::ffff:10.0.1.6"},
			},
			want:   policy.Pod{Namespace: "n", Name: "a", NodeName: "node-b", Phase: corev1.PodPending, IPs: []netip.Addr{netip.MustParseAddr("10.0.1.6")}},
			wantRV: "7",
		},
		{
			name: "podIPs win over podIP; zone dropped",
			in: &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "n"},
				Status:     corev1.PodStatus{PodIP: "10.0.1.9", PodIPs: []corev1.PodIP{{IP: "fd00:1::9%eth0"}}},
			},
			want: policy.Pod{Namespace: "n", Name: "a", IPs: []netip.Addr{netip.MustParseAddr("fd00:1::9")}},
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
		{
			name: "no IP, no labels, no ports",
			in:   &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "n", Labels: map[string]string{}}},
			want: policy.Pod{Namespace: "n", Name: "a"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := recordOf(t, NewPodStore(nil), tc.in)
			if diff := cmp.Diff(tc.want, r.Pod, addrCmp); diff != "" {
				t.Errorf("record (-want +got):\n%s", diff)
			}
			if r.resourceVersion != tc.wantRV {
				t.Errorf("resourceVersion = %q, want %q", r.resourceVersion, tc.wantRV)
			}
		})
	}
}

func TestPodStoreTransform(t *testing.T) {
	s := NewPodStore(nil)
	rec := recordOf(t, s, fullPod())
	tomb := toolscache.DeletedFinalStateUnknown{Key: "shop/web", Obj: rec}
	tests := []struct {
		name    string
		in      any
		same    bool // returns in itself
		wantErr bool
	}{
		{name: "record (idempotent)", in: rec, same: true},
		{name: "tombstone", in: tomb, same: true},
		{name: "not a pod", in: &corev1.Namespace{}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.transform(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.same && !reflect.DeepEqual(got, tc.in) {
				t.Errorf("got %#v, want the input unchanged", got)
			}
		})
	}
}

// TestPodStoreTransform_SharesRepeatedValues: two pods of one Deployment
// share their strings, labels map and port list; their own names do not
// keep the decoded object alive.
func TestPodStoreTransform_SharesRepeatedValues(t *testing.T) {
	s := NewPodStore(nil)
	p1, p2 := fullPod(), fullPod()
	p2.Name = "web-2"
	// Copies, so that sharing can only come from the interner.
	p2.Namespace, p2.Spec.NodeName = strings.Clone(p1.Namespace), strings.Clone(p1.Spec.NodeName)
	p2.Labels = map[string]string{strings.Clone("app"): strings.Clone("web")}
	a, b := recordOf(t, s, p1), recordOf(t, s, p2)
	sameString := func(x, y string) bool { return unsafe.StringData(x) == unsafe.StringData(y) }
	if !sameString(a.Namespace, b.Namespace) || !sameString(a.NodeName, b.NodeName) || !sameString(string(a.Phase), string(b.Phase)) {
		t.Error("namespace, node name or phase not shared")
	}
	if reflect.ValueOf(a.Labels).UnsafePointer() != reflect.ValueOf(b.Labels).UnsafePointer() {
		t.Error("equal label sets not shared")
	}
	if &a.Ports[0] != &b.Ports[0] {
		t.Error("equal port lists not shared")
	}
	if sameString(a.Name, p1.Name) {
		t.Error("the record's name is the decoded object's string, not a copy")
	}
	p2.Labels["app"] = "other"
	if c := recordOf(t, s, p2); c.Labels["app"] != "other" || a.Labels["app"] != "web" {
		t.Errorf("different label sets mixed up: %v, %v", c.Labels, a.Labels)
	}
}

func TestInterner_RebuildForgetsDeadValues(t *testing.T) {
	in := newInterner()
	pod := func(i int) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprint("p", i), Labels: map[string]string{"job": fmt.Sprint("job-", i)}},
			Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: fmt.Sprint("port-", i), ContainerPort: 80}}}}},
		}
	}
	live := newPodRecord(pod(0), in)
	lives := func() []*podRecord { return []*podRecord{live} }
	in.maybeRebuild(lives) // after the initial list: the baseline
	if in.limit != minInternEntries {
		t.Fatalf("limit after the initial list = %d, want the minimum %d", in.limit, minInternEntries)
	}
	for i := 1; i <= minInternEntries; i++ { // pods that come and go
		newPodRecord(pod(i), in)
	}
	if in.size() <= in.limit {
		t.Fatalf("size %d, limit %d: the test does not reach a rebuild", in.size(), in.limit)
	}
	in.maybeRebuild(lives)
	// Live: "ns", "node-a", "job", "job-0", "port-0"; one label set, one port list.
	if got, want := in.size(), 5+1+1; got != want {
		t.Errorf("after the rebuild: %d entries, want %d (%v)", got, want, in.strs)
	}
	if in.limit != minInternEntries {
		t.Errorf("limit = %d, want the minimum %d", in.limit, minInternEntries)
	}
	again := newPodRecord(pod(0), in)
	if reflect.ValueOf(again.Labels).UnsafePointer() != reflect.ValueOf(live.Labels).UnsafePointer() || &again.Ports[0] != &live.Ports[0] {
		t.Error("a live pod's label set or ports are not shared after the rebuild")
	}
	if _, ok := in.strs["job-7"]; ok {
		t.Error("a dead pod's label value survived the rebuild")
	}
}

func TestPodChanged(t *testing.T) {
	s := NewPodStore(nil)
	base := recordOf(t, s, fullPod())
	with := func(mut func(*corev1.Pod)) *podRecord {
		p := fullPod()
		p.ResourceVersion = "43"
		mut(p)
		return recordOf(t, s, p)
	}
	tests := []struct {
		name string
		new  *podRecord
		want bool
	}{
		{name: "resourceVersion only", new: with(func(*corev1.Pod) {}), want: false},
		{name: "condition (dropped)", new: with(func(p *corev1.Pod) { p.Status.Conditions = nil }), want: false},
		{name: "annotation (dropped)", new: with(func(p *corev1.Pod) { p.Annotations = map[string]string{"x": "y"} }), want: false},
		{name: "label", new: with(func(p *corev1.Pod) { p.Labels = map[string]string{"app": "x"} }), want: true},
		{name: "phase", new: with(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), want: true},
		{name: "ip", new: with(func(p *corev1.Pod) { p.Status.PodIPs = p.Status.PodIPs[:1] }), want: true},
		{name: "port", new: with(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 8081 }), want: true},
		{name: "node", new: with(func(p *corev1.Pod) { p.Spec.NodeName = "node-b" }), want: true},
		{name: "hostNetwork", new: with(func(p *corev1.Pod) { p.Spec.HostNetwork = true }), want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := podChanged(base, tc.new); got != tc.want {
				t.Errorf("podChanged = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRecordMeta: client-go reads records through meta.Accessor and keys
// them by namespace/name.
func TestRecordMeta(t *testing.T) {
	r := recordOf(t, NewPodStore(nil), fullPod())
	m, err := meta.Accessor(r)
	if err != nil {
		t.Fatal(err)
	}
	if m.GetNamespace() != "shop" || m.GetName() != "web" || m.GetResourceVersion() != "42" || m.GetLabels()["app"] != "web" {
		t.Errorf("accessor reads %s/%s rv %s labels %v", m.GetNamespace(), m.GetName(), m.GetResourceVersion(), m.GetLabels())
	}
	if key, err := toolscache.MetaNamespaceKeyFunc(r); err != nil || key != "shop/web" {
		t.Errorf("key = %q, %v; want shop/web", key, err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("SetLabels on a record did not panic")
			}
		}()
		m.SetLabels(nil)
	}()
	if r.Labels["app"] != "web" {
		t.Error("record changed")
	}
}

func TestPodKeyOf(t *testing.T) {
	r := recordOf(t, NewPodStore(nil), fullPod())
	tests := []struct {
		name   string
		in     any
		want   types.NamespacedName
		wantOK bool
	}{
		{name: "record", in: r, want: types.NamespacedName{Namespace: "shop", Name: "web"}, wantOK: true},
		{name: "tombstone", in: toolscache.DeletedFinalStateUnknown{Key: "shop/gone", Obj: r}, want: types.NamespacedName{Namespace: "shop", Name: "gone"}, wantOK: true},
		{name: "tombstone with a bad key", in: toolscache.DeletedFinalStateUnknown{Key: "a/b/c"}},
		{name: "something else", in: fullPod()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := podKeyOf(tc.in)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("podKeyOf = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// TestPodStore_Informer runs the store's informer over a fake list and
// watch: the initial list, then an add, an update and a delete.
func TestPodStore_Informer(t *testing.T) {
	a := runningPod("shop", "a", "node-a", map[string]string{"app": "web"}, "10.0.1.2")
	b := runningPod("shop", "b", "node-b", map[string]string{"app": "web"}, "10.0.2.2")
	s, w := startPodStore(t, a, b)
	if s.Len() != 2 || s.Get("shop", "a") == nil || s.Get("shop", "b") == nil {
		t.Fatalf("after the initial list: %d pods", s.Len())
	}
	if s.Get("shop", "a").NodeName != "node-a" {
		t.Errorf("shop/a = %+v", s.Get("shop", "a"))
	}

	c := runningPod("shop", "c", "node-a", nil, "10.0.1.3")
	c.ResourceVersion = "2"
	w.Add(c)
	waitStored(t, s, "shop", "c", true)

	a2 := a.DeepCopy()
	a2.ResourceVersion = "3"
	a2.Status.Phase = corev1.PodSucceeded
	w.Modify(a2)
	eventually(t, waitTimeout, nil, "shop/a updated", func() string {
		if p := s.Get("shop", "a"); p.Phase != corev1.PodSucceeded {
			return "phase " + string(p.Phase)
		}
		return ""
	})

	w.Delete(b)
	waitStored(t, s, "shop", "b", false)
	var keys []string
	s.Each(func(p *policy.Pod) { keys = append(keys, p.Key()) })
	if diff := cmp.Diff([]string{"shop/a", "shop/c"}, keys, cmpopts.SortSlices(func(x, y string) bool { return x < y })); diff != "" {
		t.Errorf("Each (-want +got):\n%s", diff)
	}
}

// TestInterner_FirstCheckOnlySetsBaseline: right after the initial list
// every value is live, so the first check scans nothing.
func TestInterner_FirstCheckOnlySetsBaseline(t *testing.T) {
	in := newInterner()
	for i := range 3 * minInternEntries {
		newPodRecord(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Labels: map[string]string{"i": fmt.Sprint(i)}}}, in)
	}
	size := in.size()
	in.maybeRebuild(func() []*podRecord {
		t.Error("the first check scanned the records")
		return nil
	})
	if in.limit != 2*size || in.size() != size {
		t.Errorf("limit %d, size %d; want limit %d and nothing forgotten", in.limit, in.size(), 2*size)
	}
}

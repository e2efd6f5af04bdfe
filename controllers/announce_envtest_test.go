package controllers

// IP plan: the agent's node has pod CIDR 10.9.0.0/24 and its own bridge
// address 10.9.0.1. The new pod's CNI gives it 10.9.0.30; its status later
// says 10.9.0.31 (a status that disagrees with the announcement wins).
// 10.9.0.40 is announced for a pod the API never shows.

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nftpolicy/nftpolicy/nft"
)

// guarded reports whether ip is in r's unknown-local guard.
func guarded(r *nft.Ruleset, ip netip.Addr) bool {
	if r == nil {
		return false
	}
	b := ip.AsSlice()
	for _, name := range []string{nft.MapUnknownLocalV4, nft.MapUnknownLocalV6} {
		for _, e := range r.Sets[name].Elements {
			if len(e.Key[0].From) == len(b) && bytes.Compare(e.Key[0].From, b) <= 0 && bytes.Compare(b, e.Key[0].To) <= 0 {
				return true
			}
		}
	}
	return false
}

// announcementsCounted reads nftpolicy_cni_announcements_total{result}.
func announcementsCounted(t *testing.T, h *harness, result string) float64 {
	t.Helper()
	var m dto.Metric
	if err := h.r.metrics.announcements.WithLabelValues(result).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestAgent_AnnouncedPodIsProgrammedBeforeAnnounceReturns(t *testing.T) {
	bridge := netip.MustParseAddr("10.9.0.1")
	h := startAgent(t, func(o *Options) {
		o.HostAddresses = func() ([]netip.Addr, error) { return []netip.Addr{bridge}, nil }
	})
	ns := h.namespace(nil)
	h.create(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default-deny"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}},
	})
	var node corev1.Node
	if err := h.c.Get(context.Background(), client.ObjectKey{Name: h.node}, &node); err != nil {
		t.Fatal(err)
	}
	node.Spec.PodCIDR, node.Spec.PodCIDRs = "10.9.0.0/24", []string{"10.9.0.0/24"}
	h.update(&node)

	announced, fromStatus := netip.MustParseAddr("10.9.0.30"), netip.MustParseAddr("10.9.0.31")
	eventually(t, waitTimeout, h.syncer.synced, "the node's pod CIDR guarded", func() string {
		r := h.syncer.latest()
		if !guarded(r, announced) || !guarded(r, fromStatus) {
			return "10.9.0.30 and .31 are not guarded yet"
		}
		if guarded(r, bridge) {
			return "the node's own bridge address is guarded"
		}
		return ""
	})

	// As the kubelet does: the Pod object exists, without addresses, when
	// the CNI runs.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "new"},
		Spec:       corev1.PodSpec{NodeName: h.node, Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/agnhost"}}},
	}
	h.create(pod)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := h.r.Announce(ctx, ns.Name, "new", []netip.Addr{announced}); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	// No waiting here: Announce returns only after the sync.
	r := h.syncer.latest()
	if guarded(r, announced) {
		t.Error("the announced address is still guarded after Announce returned")
	}
	if ok, err := isolated(r, nft.Ingress, key(pod)); !ok || err != nil {
		t.Errorf("the announced pod is not isolated for ingress after Announce returned (%v)", err)
	}
	if ok, err := isolated(r, nft.Egress, key(pod)); !ok || err != nil {
		t.Errorf("the announced pod is not isolated for egress after Announce returned (%v)", err)
	}
	if got := announcementsCounted(t, h, announceSynced); got != 1 {
		t.Errorf("announcements{result=synced} = %v, want 1", got)
	}

	// The status wins: its address is programmed, the announced one is
	// guarded again.
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fromStatus.String(), PodIPs: []corev1.PodIP{{IP: fromStatus.String()}}}
	if err := h.c.Status().Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, h.syncer.synced, "the status address wins", func() string {
		r := h.syncer.latest()
		if guarded(r, fromStatus) || !guarded(r, announced) {
			return "10.9.0.31 guarded or 10.9.0.30 open"
		}
		return ""
	})
	consistently(t, 300*time.Millisecond, "the announcement stays forgotten", func() string {
		if r := h.syncer.latest(); !guarded(r, announced) {
			return "10.9.0.30 open again"
		}
		return ""
	})
}

func TestAgent_AnnounceForAnUnknownPodTimesOutAndStaysGuarded(t *testing.T) {
	h := startAgent(t, nil)
	var node corev1.Node
	if err := h.c.Get(context.Background(), client.ObjectKey{Name: h.node}, &node); err != nil {
		t.Fatal(err)
	}
	node.Spec.PodCIDRs = []string{"10.9.0.0/24"}
	h.update(&node)
	ip := netip.MustParseAddr("10.9.0.40")
	eventually(t, waitTimeout, h.syncer.synced, "the pod CIDR guarded", func() string {
		if !guarded(h.syncer.latest(), ip) {
			return "10.9.0.40 not guarded yet"
		}
		return ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := h.r.Announce(ctx, "nowhere", "ghost", []netip.Addr{ip})
	if err == nil || !strings.Contains(err.Error(), "not in the kernel yet") {
		t.Fatalf("Announce for a pod the API does not have: %v, want a not-in-the-kernel error", err)
	}
	if !guarded(h.syncer.latest(), ip) {
		t.Error("an announcement without a Pod object opened its address")
	}
	if got := announcementsCounted(t, h, announceNotSynced); got != 1 {
		t.Errorf("announcements{result=not_synced} = %v, want 1", got)
	}
	if err := h.r.Announce(context.Background(), "", "x", nil); err == nil {
		t.Error("an announcement without namespace and addresses was accepted")
	}
}

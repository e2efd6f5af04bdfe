package synth

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftpolicy/nftpolicy/nft/nfttest"
	"github.com/nftpolicy/nftpolicy/policy"
)

func TestBackgroundBlock_OwnNonAdjacentAddresses(t *testing.T) {
	cluster := netip.MustParsePrefix("172.16.0.0/12")
	prev := netip.Addr{}
	for i := range 524_287 {
		b := BackgroundBlock(i)
		if b.Bits() != 32 || !cluster.Contains(b.Addr()) {
			t.Fatalf("BackgroundBlock(%d) = %v, want a /32 of %v", i, b, cluster)
		}
		// Two apart from the previous one: distinct, and never adjacent.
		if prev.IsValid() && b.Addr() != prev.Next().Next() {
			t.Fatalf("BackgroundBlock(%d) = %v after %v, want every other address", i, b, prev)
		}
		prev = b.Addr()
	}
}

func TestBackgroundPolicyName_SortsByIndex(t *testing.T) {
	for _, i := range []int{0, 9, 99, 999, 9_999} {
		if a, b := BackgroundPolicyName(i), BackgroundPolicyName(i+1); a >= b {
			t.Errorf("%s sorts after %s", a, b)
		}
	}
}

// TestBackgroundPolicy_AdmitsItsPeerAndItsOwnAddress judges a few
// background policies by policy.Evaluate on a server (tier=bench), and
// checks that each one adds an element of its own to the server's
// allow-list.
func TestBackgroundPolicy_AdmitsItsPeerAndItsOwnAddress(t *testing.T) {
	const ns, port, n = "bench", 9000, 5
	pod := func(name string, labels map[string]string, ip string) policy.Pod {
		return policy.Pod{Namespace: ns, Name: name, NodeName: LocalNode, Labels: labels, Phase: corev1.PodRunning,
			IPs: []netip.Addr{netip.MustParseAddr(ip)}}
	}
	server := pod("server", map[string]string{"tier": "bench"}, "10.244.1.200")
	snap := &policy.Snapshot{NodeName: LocalNode,
		Namespaces: []policy.Namespace{{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns}}},
		Pods: []policy.Pod{server,
			pod("client", map[string]string{"peer": "last"}, "10.244.1.201"),
			pod("other", map[string]string{"peer": "p1"}, "10.244.1.202")},
	}
	elements := func() int {
		rs, warnings := policy.Compile(snap)
		if len(warnings) != 0 {
			t.Fatalf("warnings: %+v", warnings)
		}
		if err := nfttest.Validate(rs); err != nil {
			t.Fatal(err)
		}
		var sum int
		for _, s := range rs.Sets {
			sum += len(s.Elements)
		}
		return sum
	}
	before := elements()
	for i := range n {
		snap.Policies = append(snap.Policies, BackgroundPolicy(ns, port, i, "p1"))
	}
	snap.Policies = append(snap.Policies, BackgroundPolicy(ns, port, n, "last"))
	after := elements()
	// One element per policy's own address, one for each admitted pod
	// (other, client: adjacent addresses, which the allow-list spells out
	// one by one), more than one policy admitting other counted once, and
	// the server's jump in the ingress dispatch map.
	if want := before + (n + 1) + 2 + 1; after != want {
		t.Errorf("%d elements with %d background policies, want %d (%d without)", after, n+1, want, before)
	}

	allowed := func(src netip.Addr, dport uint16) bool {
		return policy.Evaluate(snap, policy.Packet{Src: src, Dst: server.IPs[0], Protocol: corev1.ProtocolTCP, DstPort: dport}).Allowed
	}
	for _, tc := range []struct {
		what  string
		src   netip.Addr
		dport uint16
		want  bool
	}{
		{"the last policy's peer", netip.MustParseAddr("10.244.1.201"), port, true},
		{"the others' peer", netip.MustParseAddr("10.244.1.202"), port, true},
		{"a peer on another port", netip.MustParseAddr("10.244.1.201"), port + 1, false},
		{"the first policy's own address", BackgroundBlock(0).Addr(), port, true},
		{"the last policy's own address", BackgroundBlock(n).Addr(), port, true},
		{"the address between two own ones", BackgroundBlock(0).Addr().Next(), port, false},
		{"the next policy's own address", BackgroundBlock(n + 1).Addr(), port, false},
	} {
		if got := allowed(tc.src, tc.dport); got != tc.want {
			t.Errorf("%s (%v, TCP %d): allowed=%v, want %v", tc.what, tc.src, tc.dport, got, tc.want)
		}
	}
}

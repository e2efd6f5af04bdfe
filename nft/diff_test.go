package nft_test

// IP plan: local pods on 10.244.1.0/24 and fd00:244:1::/64 (10.244.1.N and
// fd00:244:1::N for pod N), remote peers on 10.244.2.0/24 and
// fd00:244:2::/64, external blocks in 192.0.2.0/24 and 2001:db8::/32.

import (
	"fmt"
	"math/rand"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

func podAddrs(n int) []netip.Addr {
	return []netip.Addr{
		netip.AddrFrom4([4]byte{10, 244, 1, byte(n)}),
		netip.MustParseAddr(fmt.Sprintf("fd00:244:1::%x", n)),
	}
}

func remote4(n int) nft.Range { return nft.Addr(netip.AddrFrom4([4]byte{10, 244, 2, byte(n)})) }

// normalise orders elements by key so that equal sets compare equal.
var normalise = cmp.Transformer("sortElements", nft.SortedElements)

func countOps(ops []nft.Op) map[nft.OpKind]int {
	n := map[nft.OpKind]int{}
	for _, op := range ops {
		n[op.Kind]++
	}
	return n
}

func countElements(ops []nft.Op, kind nft.OpKind) int {
	n := 0
	for _, op := range ops {
		if op.Kind == kind {
			n += len(op.Elements)
		}
	}
	return n
}

// withB is the skeleton with pod ns/b isolated for ingress, admitting the
// given remote peers on TCP 80.
func withB(peers ...int) *nft.Ruleset {
	r := nft.NewSkeleton()
	var allow nft.AllowList
	for _, p := range peers {
		allow.Ports = append(allow.Ports, nft.PortAllow{Peer: remote4(p), Proto: nft.ProtoTCP, Ports: nft.Port(80), Comment: fmt.Sprintf("peer %d", p)})
	}
	r.AddIsolatedEndpoint(nft.Ingress, "ns/b", podAddrs(2), allow)
	return r
}

func TestDiff_OpCounts(t *testing.T) {
	withC := withB(1)
	withC.AddIsolatedEndpoint(nft.Egress, "ns/c", podAddrs(3), nft.AllowList{
		AnyPort: []nft.Range{nft.PrefixRange(netip.MustParsePrefix("192.0.2.0/25"))},
		Ports: []nft.PortAllow{
			{Peer: remote4(5), Proto: nft.ProtoUDP, Ports: nft.Port(53)},
			{Peer: nft.PrefixRange(netip.MustParsePrefix("2001:db8::/32")), Proto: nft.ProtoSCTP, Ports: nft.PortRange(1000, 2000)},
		},
	})
	redirected := withB(1)
	redirected.Sets[nft.MapIngressV4].Elements[0].Verdict = nft.Jump(nft.ChainInput)
	tests := []struct {
		name      string
		old, new  *nft.Ruleset
		wantOps   map[nft.OpKind]int
		wantAdded int
		wantGone  int
	}{
		{name: "no change", old: withB(1, 2), new: withB(1, 2), wantOps: map[nft.OpKind]int{}},
		{
			name: "peer joins an existing allow-list", old: withB(1), new: withB(1, 2),
			wantOps: map[nft.OpKind]int{nft.OpAddElements: 1}, wantAdded: 1,
		},
		{
			name: "peer leaves an allow-list", old: withB(1, 2, 3), new: withB(1),
			wantOps: map[nft.OpKind]int{nft.OpDeleteElements: 1}, wantGone: 2,
		},
		{
			// 8 sets + 1 chain (+ its rules) + elements: 1 any4, 1 exact4
			// (udp/53 of one address), 1 ports6 (a /32 on a port range)
			// and the pod's 2 addresses in the egress maps.
			name: "local pod becomes isolated", old: withB(1), new: withC,
			wantOps:   map[nft.OpKind]int{nft.OpAddSet: 8, nft.OpAddChain: 1, nft.OpReplaceRules: 1, nft.OpAddElements: 5},
			wantAdded: 5,
		},
		{
			name: "local pod stops being isolated", old: withC, new: withB(1),
			wantOps:  map[nft.OpKind]int{nft.OpDeleteElements: 2, nft.OpDeleteChain: 1, nft.OpDeleteSet: 8},
			wantGone: 2,
		},
		{
			name: "changed verdict on the same key is delete plus add", old: withB(1), new: redirected,
			wantOps: map[nft.OpKind]int{nft.OpDeleteElements: 1, nft.OpAddElements: 1}, wantAdded: 1, wantGone: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops := nft.Diff(tt.old, tt.new)
			if diff := cmp.Diff(tt.wantOps, countOps(ops)); diff != "" {
				t.Errorf("op counts (-want +got):\n%s\nops: %v", diff, ops)
			}
			if got := countElements(ops, nft.OpAddElements); got != tt.wantAdded {
				t.Errorf("added elements = %d, want %d", got, tt.wantAdded)
			}
			if got := countElements(ops, nft.OpDeleteElements); got != tt.wantGone {
				t.Errorf("deleted elements = %d, want %d", got, tt.wantGone)
			}
			got, err := nfttest.Apply(tt.old, ops)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(tt.new, got, normalise); diff != "" {
				t.Errorf("applied ruleset (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDiff_ElementChangesShape widens and narrows one peer's box between
// one port and a port range, and between one peer and a range of them: the
// element leaves one of the allow-list's sets for another (exact, any or
// ports, see nft.NewIsolatedEndpoint) as element operations on those two
// sets, and the chain is never rewritten.
func TestDiff_ElementChangesShape(t *testing.T) {
	n := nft.NamesFor(nft.Ingress, "ns/b")
	with := func(allow nft.AllowList) *nft.Ruleset {
		r := nft.NewSkeleton()
		r.AddIsolatedEndpoint(nft.Ingress, "ns/b", podAddrs(2), allow)
		return r
	}
	onePort := with(nft.AllowList{Ports: []nft.PortAllow{{Peer: remote4(7), Proto: nft.ProtoTCP, Ports: nft.Port(80)}}})
	twoPorts := with(nft.AllowList{Ports: []nft.PortAllow{{Peer: remote4(7), Proto: nft.ProtoTCP, Ports: nft.PortRange(80, 81)}}})
	twoPeers := with(nft.AllowList{Ports: []nft.PortAllow{{Peer: nft.AddrRange(netip.MustParseAddr("10.244.2.7"), netip.MustParseAddr("10.244.2.8")), Proto: nft.ProtoTCP, Ports: nft.Port(80)}}})
	anyPort := with(nft.AllowList{AnyPort: []nft.Range{remote4(7)}})
	anyPorts := with(nft.AllowList{AnyPort: []nft.Range{nft.AddrRange(netip.MustParseAddr("10.244.2.7"), netip.MustParseAddr("10.244.2.8"))}})
	// More addresses than are spelled out one by one into a hash set.
	bigRange := with(nft.AllowList{Ports: []nft.PortAllow{{Peer: nft.PrefixRange(netip.MustParsePrefix("10.244.2.0/27")), Proto: nft.ProtoTCP, Ports: nft.Port(80)}}})
	anyBig := with(nft.AllowList{AnyPort: []nft.Range{nft.PrefixRange(netip.MustParsePrefix("10.244.2.0/27"))}})
	v6 := with(nft.AllowList{Ports: []nft.PortAllow{{Peer: nft.Addr(netip.MustParseAddr("fd00:244:2::7")), Proto: nft.ProtoUDP, Ports: nft.Port(53)}}})
	tests := []struct {
		name     string
		old, new *nft.Ruleset
		want     []string // Op.String of every op
	}{
		{name: "one port becomes a port range", old: onePort, new: twoPorts,
			want: []string{"delete-elements " + n.ExactV4 + " (1)", "add-elements " + n.PortsV4 + " (1)"}},
		{name: "a port range narrows to one port", old: twoPorts, new: onePort,
			want: []string{"delete-elements " + n.PortsV4 + " (1)", "add-elements " + n.ExactV4 + " (1)"}},
		{name: "a neighbour joins a peer on one port: the small range is spelled out", old: onePort, new: twoPeers,
			want: []string{"add-elements " + n.ExactV4 + " (1)"}},
		{name: "one peer becomes a range of 32", old: onePort, new: bigRange,
			want: []string{"delete-elements " + n.ExactV4 + " (1)", "add-elements " + n.PortsV4 + " (1)"}},
		{name: "a peer on one port is allowed every port", old: onePort, new: anyPort,
			want: []string{"delete-elements " + n.ExactV4 + " (1)", "add-elements " + n.AddrV4 + " (1)"}},
		{name: "a peer allowed everything gets a neighbour", old: anyPort, new: anyPorts,
			want: []string{"add-elements " + n.AddrV4 + " (1)"}},
		{name: "a peer allowed everything becomes a range of 32", old: anyPort, new: anyBig,
			want: []string{"delete-elements " + n.AddrV4 + " (1)", "add-elements " + n.AnyV4 + " (1)"}},
		{name: "IPv6 exact elements have sets of their own", old: onePort, new: v6,
			want: []string{"delete-elements " + n.ExactV4 + " (1)", "add-elements " + n.ExactV6 + " (1)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops := nft.Diff(tt.old, tt.new)
			var got []string
			for _, op := range ops {
				got = append(got, op.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ops (-want +got):\n%s", diff)
			}
			applied, err := nfttest.Apply(tt.old, ops)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(tt.new, applied, normalise); diff != "" {
				t.Errorf("applied ruleset (-want +got):\n%s", diff)
			}
			if err := nfttest.Validate(applied); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestDiff_ChangedSetElements changes one large allow-list at its head, in
// its middle, at its tail, and in its order: the diff trims the elements
// both lists share at their ends before it compares keys, and must still
// name exactly the elements that come and go.
func TestDiff_ChangedSetElements(t *testing.T) {
	peers := func(from, to int, more ...int) []int {
		var out []int
		for p := from; p <= to; p++ {
			out = append(out, p)
		}
		return append(out, more...)
	}
	reversed := peers(1, 200)
	for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
		reversed[i], reversed[j] = reversed[j], reversed[i]
	}
	tests := []struct {
		name      string
		old, new  []int
		wantAdded []string
		wantGone  []string
	}{
		{name: "peer joins at the head", old: peers(2, 200), new: peers(1, 200), wantAdded: []string{"peer 1"}},
		{name: "peer leaves the middle", old: peers(1, 200), new: append(peers(1, 99), peers(101, 200)...), wantGone: []string{"peer 100"}},
		{name: "peer joins at the tail", old: peers(1, 199), new: peers(1, 200), wantAdded: []string{"peer 200"}},
		{name: "one peer replaced by another", old: peers(1, 200), new: append(peers(1, 99), peers(101, 200, 250)...),
			wantAdded: []string{"peer 250"}, wantGone: []string{"peer 100"}},
		{name: "same peers in another order", old: peers(1, 200), new: reversed},
		{name: "every peer leaves", old: peers(1, 3), new: nil, wantGone: []string{"peer 1", "peer 2", "peer 3"}},
		{name: "every peer is new", old: nil, new: peers(1, 2), wantAdded: []string{"peer 1", "peer 2"}},
	}
	comments := func(ops []nft.Op, kind nft.OpKind) []string {
		var out []string
		for _, op := range ops {
			if op.Kind == kind {
				for _, e := range op.Elements {
					out = append(out, e.Comment)
				}
			}
		}
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, desired := withB(tt.old...), withB(tt.new...)
			ops := nft.Diff(old, desired)
			if diff := cmp.Diff(tt.wantAdded, comments(ops, nft.OpAddElements)); diff != "" {
				t.Errorf("added (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantGone, comments(ops, nft.OpDeleteElements)); diff != "" {
				t.Errorf("deleted (-want +got):\n%s", diff)
			}
			got, err := nfttest.Apply(old, ops)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(desired, got, normalise); diff != "" {
				t.Errorf("applied ruleset (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiff_FromNothing(t *testing.T) {
	want := withB(1, 2)
	ops := nft.Diff(nil, want)
	got, err := nfttest.Apply(nil, ops)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if diff := cmp.Diff(want, got, normalise); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if ops[0].Kind != nft.OpAddSet {
		t.Errorf("first op = %v, want sets first", ops[0])
	}
}

func TestDiff_NeverDeletesBaseChains(t *testing.T) {
	empty := nft.NewRuleset()
	ops := nft.Diff(withB(1), empty)
	for _, op := range ops {
		if op.Kind == nft.OpDeleteChain && (op.Name == nft.ChainForward || op.Name == nft.ChainInput) {
			t.Fatalf("Diff deletes base chain: %v", op)
		}
	}
	got, err := nfttest.Apply(withB(1), ops)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, name := range []string{nft.ChainForward, nft.ChainInput} {
		if c := got.Chains[name]; c == nil || len(c.Rules) != 0 {
			t.Errorf("base chain %s = %+v, want kept and empty", name, c)
		}
	}
}

func TestDiff_BaseChainPolicyIsARulesChange(t *testing.T) {
	closed := withB(1)
	closed.Chains[nft.ChainForward].Hook.Policy = nft.VerdictDrop
	ops := nft.Diff(withB(1), closed)
	want := []nft.Op{{Kind: nft.OpReplaceRules, Name: nft.ChainForward, Chain: closed.Chains[nft.ChainForward]}}
	if diff := cmp.Diff(want, ops); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestDiff_RehookedBaseChain moves the forward chain to another priority:
// the kernel cannot do that in place (EEXIST), so Diff replaces the chain,
// empty, before anything else and fills it again with its rules.
func TestDiff_RehookedBaseChain(t *testing.T) {
	tests := []struct {
		name string
		move func(*nft.Hook)
	}{
		{name: "priority", move: func(h *nft.Hook) { h.Priority = 10 }},
		{name: "hook", move: func(h *nft.Hook) { h.Name = nft.HookInput }},
		{name: "priority and policy", move: func(h *nft.Hook) { h.Priority, h.Policy = -5, nft.VerdictDrop }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, moved := withB(1), withB(1)
			tt.move(moved.Chains[nft.ChainForward].Hook)
			ops := nft.Diff(old, moved)
			if len(ops) < 2 || ops[0].Kind != nft.OpReplaceBaseChain || ops[0].Name != nft.ChainForward {
				t.Fatalf("ops = %v, want replace-base-chain %s first", ops, nft.ChainForward)
			}
			if diff := cmp.Diff(moved.Chains[nft.ChainForward].Hook, ops[0].Chain.Hook); diff != "" {
				t.Errorf("replacement hook (-want +got):\n%s", diff)
			}
			got, err := nfttest.Apply(old, ops)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(moved.Dump(), got.Dump()); diff != "" {
				t.Errorf("applied (-want +got):\n%s", diff)
			}
		})
	}
	// What the replacement spares the kernel: rules re-sent on a chain
	// attached elsewhere are refused, as the kernel would.
	moved := withB(1)
	moved.Chains[nft.ChainForward].Hook.Priority = 10
	if _, err := nfttest.Apply(withB(1), []nft.Op{{Kind: nft.OpReplaceRules, Name: nft.ChainForward, Chain: moved.Chains[nft.ChainForward]}}); err == nil {
		t.Error("Apply changed a base chain's priority in place, want an error")
	}
}

func TestDiff_RedefinedSet(t *testing.T) {
	old := withB(1)
	n := nft.NamesFor(nft.Ingress, "ns/b")
	// Same name, new key type: the set must be re-created, and the chain that
	// looks it up must let go of it first.
	redefined := withB()
	redefined.Sets[n.PortsV4].KeyTypes = []nft.KeyType{nft.TypeIPv4Addr, nft.TypeInetProto}
	redefined.Sets[n.PortsV4].Elements = []nft.Element{{Key: []nft.Range{remote4(9), nft.Proto(nft.ProtoUDP)}}}
	redefined.Chains[n.Chain].Rules[2].Matches[0].Lookup.Fields = []nft.Field{nft.FieldIPv4Saddr, nft.FieldL4Proto}
	got, err := nfttest.Apply(old, nft.Diff(old, redefined))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if diff := cmp.Diff(redefined, got, normalise); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// randomRuleset isolates a random subset of 6 local pods in random
// directions with random allow-lists drawn from a small pool, so that
// successive rulesets share many objects and elements.
func randomRuleset(rng *rand.Rand) *nft.Ruleset {
	r := nft.NewSkeleton()
	for pod := 1; pod <= 6; pod++ {
		for _, dir := range []nft.Direction{nft.Ingress, nft.Egress} {
			if rng.Intn(2) == 0 {
				continue
			}
			r.AddIsolatedEndpoint(dir, fmt.Sprintf("ns/p%d", pod), podAddrs(pod), randomAllow(rng))
		}
	}
	return r
}

func randomAllow(rng *rand.Rand) nft.AllowList {
	var a nft.AllowList
	for peer := 1; peer <= 8; peer++ {
		switch rng.Intn(4) {
		case 0:
			a.AnyPort = append(a.AnyPort, remote4(peer))
		case 1:
			a.Ports = append(a.Ports, nft.PortAllow{Peer: remote4(peer), Proto: nft.ProtoTCP, Ports: nft.Port(uint16(80 + rng.Intn(2)))})
		case 2:
			six := nft.Addr(netip.MustParseAddr(fmt.Sprintf("fd00:244:2::%x", peer)))
			a.Ports = append(a.Ports, nft.PortAllow{Peer: six, Proto: nft.ProtoUDP, Ports: nft.PortRange(53, 54), Comment: fmt.Sprintf("c%d", rng.Intn(2))})
		}
	}
	return a
}

func TestDiff_RandomTransitions(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 12; round++ {
		states := []*nft.Ruleset{randomRuleset(rng), randomRuleset(rng), randomRuleset(rng)}
		for _, order := range [][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}} {
			var cur *nft.Ruleset
			for _, i := range order {
				next, err := nfttest.Apply(cur, nft.Diff(cur, states[i]))
				if err != nil {
					t.Fatalf("round %d order %v step %d: %v", round, order, i, err)
				}
				cur = next
			}
			want := states[order[2]]
			if diff := cmp.Diff(want, cur, normalise); diff != "" {
				t.Fatalf("round %d order %v (-want +got):\n%s", round, order, diff)
			}
			if again := nft.Diff(cur, want); len(again) != 0 {
				t.Fatalf("round %d order %v: Diff after convergence = %v, want none", round, order, again)
			}
		}
	}
}

// TestDiff_SharedObjectsAreSkippedNotLost builds B from A's endpoints,
// sharing some by pointer (as policy.NodeCompiler does for unchanged pods) and
// building the others anew: Diff, which skips shared objects, must return
// exactly the ops of a Diff against a deep copy of A, which shares nothing.
func TestDiff_SharedObjectsAreSkippedNotLost(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	randomEndpoints := func() []*nft.IsolatedEndpoint {
		var eps []*nft.IsolatedEndpoint
		for pod := 1; pod <= 6; pod++ {
			for _, dir := range []nft.Direction{nft.Ingress, nft.Egress} {
				var e *nft.IsolatedEndpoint
				if rng.Intn(3) > 0 {
					e = nft.NewIsolatedEndpoint(dir, fmt.Sprintf("ns/p%d", pod), podAddrs(pod), randomAllow(rng), nil)
				}
				eps = append(eps, e)
			}
		}
		return eps
	}
	build := func(eps []*nft.IsolatedEndpoint) *nft.Ruleset {
		r := nft.NewSkeleton()
		for _, e := range eps {
			if e != nil {
				r.AddEndpoint(e)
			}
		}
		return r
	}
	for round := 0; round < 50; round++ {
		epsA := randomEndpoints()
		fresh := randomEndpoints()
		epsB := make([]*nft.IsolatedEndpoint, len(epsA))
		shared := 0
		for i := range epsA {
			if rng.Intn(2) == 0 {
				epsB[i] = epsA[i]
				shared++
			} else {
				epsB[i] = fresh[i]
			}
		}
		a, b := build(epsA), build(epsB)
		applied := nfttest.Clone(a) // what the kernel holds: equal to A, shares nothing
		skipping := nft.Diff(a, b)
		if diff := cmp.Diff(nft.Diff(applied, b), skipping); diff != "" {
			t.Fatalf("round %d (%d endpoints shared): Diff with shared objects differs from Diff against a copy (-copy +shared):\n%s", round, shared, diff)
		}
		got, err := nfttest.Apply(applied, skipping)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if diff := cmp.Diff(b, got, normalise); diff != "" {
			t.Fatalf("round %d: applying the ops does not give B (-want +got):\n%s", round, diff)
		}
	}
}

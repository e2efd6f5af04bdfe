package nft

// IP plan: local pods on 10.244.1.0/24 and fd00:244:1::/64 (10.244.1.N and
// fd00:244:1::N for pod N), remote peers on 10.244.2.0/24 and
// fd00:244:2::/64, external blocks in 192.0.2.0/24 and 2001:db8::/32.

import (
	"fmt"
	"math/rand"
	"net/netip"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func podAddrs(n int) []netip.Addr {
	return []netip.Addr{
		netip.AddrFrom4([4]byte{10, 244, 1, byte(n)}),
		netip.MustParseAddr(fmt.Sprintf("fd00:244:1::%x", n)),
	}
}

func remote4(n int) Range { return Addr(netip.AddrFrom4([4]byte{10, 244, 2, byte(n)})) }

// normalise orders elements by key so that equal sets compare equal.
var normalise = cmp.Transformer("sortElements", func(in []Element) []Element {
	out := append([]Element(nil), in...)
	sort.Slice(out, func(i, j int) bool { return keyString(out[i].Key) < keyString(out[j].Key) })
	return out
})

func countOps(ops []Op) map[OpKind]int {
	n := map[OpKind]int{}
	for _, op := range ops {
		n[op.Kind]++
	}
	return n
}

func countElements(ops []Op, kind OpKind) int {
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
func withB(peers ...int) *Ruleset {
	r := NewSkeleton()
	var allow AllowList
	for _, p := range peers {
		allow.Ports = append(allow.Ports, PortAllow{Peer: remote4(p), Proto: ProtoTCP, Ports: Port(80), Comment: fmt.Sprintf("peer %d", p)})
	}
	r.AddIsolatedEndpoint(Ingress, "ns/b", podAddrs(2), allow)
	return r
}

func TestDiff_OpCounts(t *testing.T) {
	withC := withB(1)
	withC.AddIsolatedEndpoint(Egress, "ns/c", podAddrs(3), AllowList{
		AnyPort: []Range{PrefixRange(netip.MustParsePrefix("192.0.2.0/25"))},
		Ports: []PortAllow{
			{Peer: remote4(5), Proto: ProtoUDP, Ports: Port(53)},
			{Peer: PrefixRange(netip.MustParsePrefix("2001:db8::/32")), Proto: ProtoSCTP, Ports: PortRange(1000, 2000)},
		},
	})
	redirected := withB(1)
	redirected.Sets[MapIngressV4].Elements[0].Verdict = Jump(ChainInput)
	tests := []struct {
		name      string
		old, new  *Ruleset
		wantOps   map[OpKind]int
		wantAdded int
		wantGone  int
	}{
		{name: "no change", old: withB(1, 2), new: withB(1, 2), wantOps: map[OpKind]int{}},
		{
			name: "peer joins an existing allow-list", old: withB(1), new: withB(1, 2),
			wantOps: map[OpKind]int{OpAddElements: 1}, wantAdded: 1,
		},
		{
			name: "peer leaves an allow-list", old: withB(1, 2, 3), new: withB(1),
			wantOps: map[OpKind]int{OpDeleteElements: 1}, wantGone: 2,
		},
		{
			// 4 sets + 1 chain (+ its rules) + elements: 1 any4, 1 ports4,
			// 1 ports6 and the pod's 2 addresses in the egress maps.
			name: "local pod becomes isolated", old: withB(1), new: withC,
			wantOps:   map[OpKind]int{OpAddSet: 4, OpAddChain: 1, OpReplaceRules: 1, OpAddElements: 5},
			wantAdded: 5,
		},
		{
			name: "local pod stops being isolated", old: withC, new: withB(1),
			wantOps:  map[OpKind]int{OpDeleteElements: 2, OpDeleteChain: 1, OpDeleteSet: 4},
			wantGone: 2,
		},
		{
			name: "changed verdict on the same key is delete plus add", old: withB(1), new: redirected,
			wantOps: map[OpKind]int{OpDeleteElements: 1, OpAddElements: 1}, wantAdded: 1, wantGone: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops := Diff(tt.old, tt.new)
			if diff := cmp.Diff(tt.wantOps, countOps(ops)); diff != "" {
				t.Errorf("op counts (-want +got):\n%s\nops: %v", diff, ops)
			}
			if got := countElements(ops, OpAddElements); got != tt.wantAdded {
				t.Errorf("added elements = %d, want %d", got, tt.wantAdded)
			}
			if got := countElements(ops, OpDeleteElements); got != tt.wantGone {
				t.Errorf("deleted elements = %d, want %d", got, tt.wantGone)
			}
			got, err := Apply(tt.old, ops)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(tt.new, got, normalise); diff != "" {
				t.Errorf("applied ruleset (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiff_FromNothing(t *testing.T) {
	want := withB(1, 2)
	ops := Diff(nil, want)
	got, err := Apply(nil, ops)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if diff := cmp.Diff(want, got, normalise); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if ops[0].Kind != OpAddSet {
		t.Errorf("first op = %v, want sets first", ops[0])
	}
}

func TestDiff_NeverDeletesBaseChains(t *testing.T) {
	empty := NewRuleset()
	ops := Diff(withB(1), empty)
	for _, op := range ops {
		if op.Kind == OpDeleteChain && (op.Name == ChainForward || op.Name == ChainInput) {
			t.Fatalf("Diff deletes base chain: %v", op)
		}
	}
	got, err := Apply(withB(1), ops)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, name := range []string{ChainForward, ChainInput} {
		if c := got.Chains[name]; c == nil || len(c.Rules) != 0 {
			t.Errorf("base chain %s = %+v, want kept and empty", name, c)
		}
	}
}

func TestDiff_BaseChainPolicyIsARulesChange(t *testing.T) {
	closed := withB(1)
	closed.Chains[ChainForward].Hook.Policy = VerdictDrop
	ops := Diff(withB(1), closed)
	want := []Op{{Kind: OpReplaceRules, Name: ChainForward, Chain: closed.Chains[ChainForward]}}
	if diff := cmp.Diff(want, ops); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestDiff_RedefinedSet(t *testing.T) {
	old := withB(1)
	n := NamesFor(Ingress, "ns/b")
	// Same name, new key type: the set must be re-created, and the chain that
	// looks it up must let go of it first.
	redefined := withB()
	redefined.Sets[n.PortsV4].KeyTypes = []KeyType{TypeIPv4Addr, TypeInetProto}
	redefined.Sets[n.PortsV4].Elements = []Element{{Key: []Range{remote4(9), Proto(ProtoUDP)}}}
	redefined.Chains[n.Chain].Rules[2].Matches[0].Lookup.Fields = []Field{FieldIPv4Saddr, FieldL4Proto}
	got, err := Apply(old, Diff(old, redefined))
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
func randomRuleset(rng *rand.Rand) *Ruleset {
	r := NewSkeleton()
	for pod := 1; pod <= 6; pod++ {
		for _, dir := range []Direction{Ingress, Egress} {
			if rng.Intn(2) == 0 {
				continue
			}
			r.AddIsolatedEndpoint(dir, fmt.Sprintf("ns/p%d", pod), podAddrs(pod), randomAllow(rng))
		}
	}
	return r
}

func randomAllow(rng *rand.Rand) AllowList {
	var a AllowList
	for peer := 1; peer <= 8; peer++ {
		switch rng.Intn(4) {
		case 0:
			a.AnyPort = append(a.AnyPort, remote4(peer))
		case 1:
			a.Ports = append(a.Ports, PortAllow{Peer: remote4(peer), Proto: ProtoTCP, Ports: Port(uint16(80 + rng.Intn(2)))})
		case 2:
			six := Addr(netip.MustParseAddr(fmt.Sprintf("fd00:244:2::%x", peer)))
			a.Ports = append(a.Ports, PortAllow{Peer: six, Proto: ProtoUDP, Ports: PortRange(53, 54), Comment: fmt.Sprintf("c%d", rng.Intn(2))})
		}
	}
	return a
}

func TestDiff_RandomTransitions(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 12; round++ {
		states := []*Ruleset{randomRuleset(rng), randomRuleset(rng), randomRuleset(rng)}
		for _, order := range [][3]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}} {
			var cur *Ruleset
			for _, i := range order {
				next, err := Apply(cur, Diff(cur, states[i]))
				if err != nil {
					t.Fatalf("round %d order %v step %d: %v", round, order, i, err)
				}
				cur = next
			}
			want := states[order[2]]
			if diff := cmp.Diff(want, cur, normalise); diff != "" {
				t.Fatalf("round %d order %v (-want +got):\n%s", round, order, diff)
			}
			if again := Diff(cur, want); len(again) != 0 {
				t.Fatalf("round %d order %v: Diff after convergence = %v, want none", round, order, again)
			}
		}
	}
}

// TestDiff_SharedObjectsAreSkippedNotLost builds B from A's endpoints,
// sharing some by pointer (as policy.Cluster does for unchanged pods) and
// building the others anew: Diff, which skips shared objects, must return
// exactly the ops of a Diff against a deep copy of A, which shares nothing.
func TestDiff_SharedObjectsAreSkippedNotLost(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	randomEndpoints := func() []*IsolatedEndpoint {
		var eps []*IsolatedEndpoint
		for pod := 1; pod <= 6; pod++ {
			for _, dir := range []Direction{Ingress, Egress} {
				var e *IsolatedEndpoint
				if rng.Intn(3) > 0 {
					e = NewIsolatedEndpoint(dir, fmt.Sprintf("ns/p%d", pod), podAddrs(pod), randomAllow(rng))
				}
				eps = append(eps, e)
			}
		}
		return eps
	}
	build := func(eps []*IsolatedEndpoint) *Ruleset {
		r := NewSkeleton()
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
		epsB := make([]*IsolatedEndpoint, len(epsA))
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
		applied := a.Clone() // what the kernel holds: equal to A, shares nothing
		skipping := Diff(a, b)
		if diff := cmp.Diff(Diff(applied, b), skipping); diff != "" {
			t.Fatalf("round %d (%d endpoints shared): Diff with shared objects differs from Diff against a copy (-copy +shared):\n%s", round, shared, diff)
		}
		got, err := Apply(applied, skipping)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if diff := cmp.Diff(b, got, normalise); diff != "" {
			t.Fatalf("round %d: applying the ops does not give B (-want +got):\n%s", round, diff)
		}
	}
}

package policy

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// FuzzNodeCompilerMatchesFreshCompile drives one long-lived NodeCompiler through a
// sequence of random cluster states, one object event at a time in a random
// order, and compiles at random points in between. Each result must equal
// what a fresh compile of the same state gives: whatever the NodeCompiler keeps
// between compiles, it never changes the outcome.
func FuzzNodeCompilerMatchesFreshCompile(f *testing.F) {
	for _, seed := range []string{
		"",
		"\x05\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",
		strings.Repeat("\x07\x03\x01", 60),
		strings.Repeat("\x13\x37\xc0\xde\x11", 50),
		strings.Repeat("\x02\x00\x01\x03", 80),
		strings.Repeat("\x01\x02\x00\x03", 120),
		strings.Repeat("\x05\x11\x23\x02\x07", 100),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(checkNodeCompilerSequence)
}

// TestCluster_RandomSequencesMatchFreshCompile runs the fuzz target's check
// over a fixed set of pseudo-random inputs, so that every `go test` covers
// thousands of event orders, not only the seed corpus.
func TestCluster_RandomSequencesMatchFreshCompile(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 200
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range n {
		data := make([]byte, r.IntN(400))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		checkNodeCompilerSequence(t, data)
		if t.Failed() {
			t.Fatalf("input %q", data)
		}
	}
}

// checkNodeCompilerSequence takes one NodeCompiler through three random states, one
// event at a time in a random order, comparing with a fresh compile at
// random points and after each state.
func checkNodeCompilerSequence(t *testing.T, data []byte) {
	ch := &chooser{data: data}
	node := node1
	if ch.intn(2) == 1 {
		node = node2
	}
	c := NewNodeCompiler(node)
	var log []string
	for range 3 {
		next := genSnapshot(ch)
		events := transition(c, next)
		// Any order is a valid watch history: objects are independent.
		for len(events) > 0 {
			i := ch.intn(len(events))
			log = append(log, events[i].what)
			events[i].apply()
			events = append(events[:i], events[i+1:]...)
			if ch.intn(3) == 0 {
				checkNodeCompilerMatchesFresh(t, c, log)
			}
		}
		checkNodeCompilerMatchesFresh(t, c, log)
	}
}

// checkNodeCompilerMatchesFresh compares c.Compile with a fresh compile of the
// same state.
func checkNodeCompilerMatchesFresh(t *testing.T, c *NodeCompiler, log []string) {
	t.Helper()
	got, gotWarnings := c.Compile()
	snap := c.Snapshot()
	fresh := NewNodeCompiler(c.NodeName())
	fresh.LoadSnapshot(snap)
	want, wantWarnings := fresh.Compile()
	if diff := cmp.Diff(want.Dump(), got.Dump()); diff != "" {
		t.Fatalf("after events %v:\nruleset differs from a fresh compile (-fresh +incremental):\n%s\nstate:\n%s", log, diff, describe(snap))
	}
	if diff := cmp.Diff(wantWarnings, gotWarnings); diff != "" {
		t.Fatalf("after events %v:\nwarnings differ from a fresh compile (-fresh +incremental):\n%s\nstate:\n%s", log, diff, describe(snap))
	}
}

type clusterEvent struct {
	what  string
	apply func()
}

// transition returns the events that take c to next: sets for every object
// of next, deletes for every object of c that next lacks.
func transition(c *NodeCompiler, next *Snapshot) []clusterEvent {
	var events []clusterEvent
	cur := c.Snapshot()
	for _, ns := range next.Namespaces {
		events = append(events, clusterEvent{"set ns " + ns.Name, func() { c.SetNamespace(ns) }})
	}
	for i := range next.Pods {
		p := &next.Pods[i]
		events = append(events, clusterEvent{"set pod " + p.Key(), func() { c.SetPod(p) }})
	}
	for _, np := range next.Policies {
		events = append(events, clusterEvent{"set policy " + np.Namespace + "/" + np.Name, func() { c.SetPolicy(np) }})
	}
	for _, n := range next.Nodes {
		events = append(events, clusterEvent{"set node " + n.Name, func() { c.SetNode(n) }})
	}
	for _, p := range next.ClusterNetworkPolicies {
		events = append(events, clusterEvent{"set cnp " + p.Name, func() { c.SetClusterNetworkPolicy(p) }})
	}
	for _, n := range cur.Nodes {
		if !slices.ContainsFunc(next.Nodes, func(x Node) bool { return x.Name == n.Name }) {
			events = append(events, clusterEvent{"delete node " + n.Name, func() { c.DeleteNode(n.Name) }})
		}
	}
	for _, p := range cur.ClusterNetworkPolicies {
		if !slices.ContainsFunc(next.ClusterNetworkPolicies, func(x *policyv1beta1.ClusterNetworkPolicy) bool { return x.Name == p.Name }) {
			events = append(events, clusterEvent{"delete cnp " + p.Name, func() { c.DeleteClusterNetworkPolicy(p.Name) }})
		}
	}
	for _, ns := range cur.Namespaces {
		if !hasNamespace(next, ns.Name) {
			events = append(events, clusterEvent{"delete ns " + ns.Name, func() { c.DeleteNamespace(ns.Name) }})
		}
	}
	for _, p := range cur.Pods {
		if !hasPod(next, p.Namespace, p.Name) {
			events = append(events, clusterEvent{"delete pod " + p.Key(), func() { c.DeletePod(p.Namespace, p.Name) }})
		}
	}
	for _, np := range cur.Policies {
		if !hasPolicy(next.Policies, np.Namespace, np.Name) {
			events = append(events, clusterEvent{"delete policy " + np.Namespace + "/" + np.Name, func() { c.DeletePolicy(np.Namespace, np.Name) }})
		}
	}
	return events
}

func hasNamespace(s *Snapshot, name string) bool {
	for _, ns := range s.Namespaces {
		if ns.Name == name {
			return true
		}
	}
	return false
}

func hasPod(s *Snapshot, namespace, name string) bool {
	for _, p := range s.Pods {
		if p.Namespace == namespace && p.Name == name {
			return true
		}
	}
	return false
}

func hasPolicy(ps []*networkingv1.NetworkPolicy, namespace, name string) bool {
	for _, np := range ps {
		if np.Namespace == namespace && np.Name == name {
			return true
		}
	}
	return false
}

func TestCluster_CompileEqualsSnapshotCompile(t *testing.T) {
	for _, node := range []string{node1, node2} {
		t.Run(node, func(t *testing.T) {
			snap := fixtureSnapshot(node, realisticPolicies...)
			c := NewNodeCompiler(node)
			c.LoadSnapshot(snap)
			got, gotW := c.Compile()
			want, wantW := Compile(snap)
			if diff := cmp.Diff(want.Dump(), got.Dump()); diff != "" {
				t.Errorf("NodeCompiler.Compile differs from Compile (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantW, gotW); diff != "" {
				t.Errorf("warnings differ (-want +got):\n%s", diff)
			}
			if n := c.Counts(); n.Pods != len(snap.Pods) || n.Policies != len(snap.Policies) || n.Namespaces != len(snap.Namespaces) {
				t.Errorf("Counts = %+v, want %d pods, %d policies, %d namespaces", n, len(snap.Pods), len(snap.Policies), len(snap.Namespaces))
			}
		})
	}
}

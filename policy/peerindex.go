package policy

import (
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// peerIndex finds the selector peers a pod can match without matching
// every one: a pod change (NodeCompiler.setActive) otherwise tries each
// cached peer against the pod's old and new labels, which with 10,000
// policies admitting peers of their own was a quarter of the event's
// compile (BenchmarkCluster_PodChangeAmongMany).
//
// A peer whose pod selector requires a label to have one of a few values
// (matchLabels, or an In expression) is filed under each of those
// key=value pairs: a pod without one of them cannot match it. Every other
// peer (no pod selector, only Exists, NotIn or DoesNotExist requirements,
// a selector that selects nothing) is tried for every pod.
type peerIndex struct {
	byLabel map[labelPair]map[string]struct{}
	always  map[string]struct{}
}

type labelPair struct{ key, value string }

func newPeerIndex() peerIndex {
	return peerIndex{byLabel: map[labelPair]map[string]struct{}{}, always: map[string]struct{}{}}
}

// anchor is the requirement a peer is filed under: the first of its pod
// selector's requirements that only some values of one label meet.
func anchor(peer compiledPeer) (key string, values []string, ok bool) {
	if peer.podSelector == nil {
		return "", nil, false
	}
	reqs, selectable := peer.podSelector.Requirements()
	if !selectable {
		return "", nil, false
	}
	for _, r := range reqs {
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			return r.Key(), r.ValuesUnsorted(), true
		}
	}
	return "", nil, false
}

func (x *peerIndex) add(key string, peer compiledPeer) {
	k, values, ok := anchor(peer)
	if !ok {
		x.always[key] = struct{}{}
		return
	}
	for _, v := range values {
		p := labelPair{k, v}
		if x.byLabel[p] == nil {
			x.byLabel[p] = map[string]struct{}{}
		}
		x.byLabel[p][key] = struct{}{}
	}
}

func (x *peerIndex) remove(key string, peer compiledPeer) {
	k, values, ok := anchor(peer)
	if !ok {
		delete(x.always, key)
		return
	}
	for _, v := range values {
		p := labelPair{k, v}
		delete(x.byLabel[p], key)
		if len(x.byLabel[p]) == 0 {
			delete(x.byLabel, p)
		}
	}
}

// candidates returns the keys of the peers that may match a or b (either
// may be nil), each once.
func (x *peerIndex) candidates(a, b labels.Set) []string {
	seen := make(map[string]struct{}, len(x.always))
	out := make([]string, 0, len(x.always))
	addAll := func(keys map[string]struct{}) {
		for k := range keys {
			if _, dup := seen[k]; !dup {
				seen[k] = struct{}{}
				out = append(out, k)
			}
		}
	}
	addAll(x.always)
	for _, l := range []labels.Set{a, b} {
		for k, v := range l {
			addAll(x.byLabel[labelPair{k, v}])
		}
	}
	return out
}

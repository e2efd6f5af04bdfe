package policy

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestPeerIndex_Candidates: a peer is left out only when a pod cannot
// match its pod selector, and every other peer is among the candidates.
func TestPeerIndex_Candidates(t *testing.T) {
	selector := func(s *metav1.LabelSelector) labels.Selector {
		sel, err := metav1.LabelSelectorAsSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		return sel
	}
	peers := map[string]compiledPeer{
		"app=web":         {podSelector: selector(&metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}})},
		"app=web,tier=fe": {podSelector: selector(&metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "tier": "fe"}})},
		"app in (db,cache)": {podSelector: selector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"db", "cache"}}}})},
		"app notin (web)": {podSelector: selector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "app", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"web"}}}})},
		"tier exists": {podSelector: selector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "tier", Operator: metav1.LabelSelectorOpExists}}})},
		"every pod":          {podSelector: selector(&metav1.LabelSelector{})},
		"namespace selector": {namespaceSelector: selector(&metav1.LabelSelector{})},
		"nothing":            {podSelector: labels.Nothing()},
	}
	x := newPeerIndex()
	for key, p := range peers {
		x.add(key, p)
	}
	always := []string{"app notin (web)", "every pod", "namespace selector", "nothing", "tier exists"}
	for _, tc := range []struct {
		name string
		a, b labels.Set
		want []string
	}{
		{"no pod", nil, nil, always},
		{"web", labels.Set{"app": "web"}, nil, append([]string{"app=web", "app=web,tier=fe"}, always...)},
		{"web becomes cache", labels.Set{"app": "web"}, labels.Set{"app": "cache"},
			append([]string{"app in (db,cache)", "app=web", "app=web,tier=fe"}, always...)},
		{"tier=fe only", nil, labels.Set{"tier": "fe"}, always},
	} {
		got := x.candidates(tc.a, tc.b)
		slices.Sort(got)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) {
			t.Errorf("%s: candidates %q, want %q", tc.name, got, want)
		}
		// Nothing left out could have matched.
		for key, p := range peers {
			if slices.Contains(got, key) || p.podSelector == nil {
				continue
			}
			for _, l := range []labels.Set{tc.a, tc.b} {
				if l != nil && p.podSelector.Matches(l) {
					t.Errorf("%s: %s matches %v but is not a candidate", tc.name, key, l)
				}
			}
		}
	}
	for key, p := range peers {
		x.remove(key, p)
	}
	if len(x.byLabel) != 0 || len(x.always) != 0 {
		t.Errorf("after removing every peer: %d label pairs, %d always left", len(x.byLabel), len(x.always))
	}
}

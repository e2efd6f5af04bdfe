package nft_test

// IP plan: pods x/a (10.244.1.10) and x/b (10.244.1.11) on the node.

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftpolicy/nftpolicy/nft"
)

func TestCounterTracker_Increments(t *testing.T) {
	var tr nft.CounterTracker
	steps := []struct {
		name     string
		readings []nft.RuleCounter
		want     map[string]nft.Count
	}{
		{"first reading counts what the rules hold", []nft.RuleCounter{
			{Chain: "c1", Handle: 4, Packets: 3, Bytes: 300},
			{Chain: "c2", Handle: 9, Packets: 0, Bytes: 0},
		}, map[string]nft.Count{"c1": {Packets: 3, Bytes: 300}}},
		{"growth counts the difference", []nft.RuleCounter{
			{Chain: "c1", Handle: 4, Packets: 5, Bytes: 500},
			{Chain: "c2", Handle: 9, Packets: 1, Bytes: 60},
		}, map[string]nft.Count{"c1": {Packets: 2, Bytes: 200}, "c2": {Packets: 1, Bytes: 60}}},
		{"a rule written again (new handle) counts from zero", []nft.RuleCounter{
			{Chain: "c1", Handle: 12, Packets: 1, Bytes: 100},
			{Chain: "c2", Handle: 9, Packets: 1, Bytes: 60},
		}, map[string]nft.Count{"c1": {Packets: 1, Bytes: 100}}},
		{"a chain gone counts nothing", []nft.RuleCounter{
			{Chain: "c1", Handle: 12, Packets: 1, Bytes: 100},
		}, map[string]nft.Count{}},
		{"a chain back under an old handle is new again", []nft.RuleCounter{
			{Chain: "c2", Handle: 9, Packets: 2, Bytes: 120},
		}, map[string]nft.Count{"c2": {Packets: 2, Bytes: 120}}},
		{"a counter that went backwards under the same handle counts whole", []nft.RuleCounter{
			{Chain: "c2", Handle: 9, Packets: 1, Bytes: 60},
		}, map[string]nft.Count{"c2": {Packets: 1, Bytes: 60}}},
	}
	for _, s := range steps {
		if diff := cmp.Diff(s.want, tr.Increments(s.readings)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, diff)
		}
	}
}

func TestRuleset_Endpoints(t *testing.T) {
	a, b := netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("10.244.1.11")
	r := nft.NewSkeleton()
	r.AddIsolatedEndpoint(nft.Ingress, "x/a", []netip.Addr{a}, nft.AllowList{})
	r.AddIsolatedEndpoint(nft.Egress, "x/a", []netip.Addr{a}, nft.AllowList{})
	// b is judged by an Admin tier and its allow-list: dispatch jumps to
	// its tier chain, which leads to the allow-list.
	allow := nft.NewIsolatedEndpoint(nft.Ingress, "x/b", []netip.Addr{b}, nft.AllowList{}, nil)
	admin := nft.NewTierMaps(nft.TierAdmin, nft.Ingress, "p", "", nft.TierVerdicts{})
	r.AddTieredEndpoint(nft.NewTieredEndpoint(nft.Ingress, "x/b", []netip.Addr{b}, admin, allow, nil))
	want := map[string]nft.Endpoint{
		nft.NamesFor(nft.Ingress, "x/a").Chain: {Dir: nft.Ingress, ID: "x/a"},
		nft.NamesFor(nft.Egress, "x/a").Chain:  {Dir: nft.Egress, ID: "x/a"},
		nft.NamesFor(nft.Ingress, "x/b").Chain: {Dir: nft.Ingress, ID: "x/b"},
	}
	if diff := cmp.Diff(want, r.Endpoints()); diff != "" {
		t.Errorf("Endpoints (-want +got):\n%s", diff)
	}
}

package nft_test

// IP plan: pod x/a 10.244.1.10 (local, isolated for ingress), peers
// 10.244.2.20 and 10.244.2.21.

import (
	"net/netip"
	"testing"

	"github.com/nftpolicy/nftpolicy/nft"
)

func TestOnlyWidens(t *testing.T) {
	pod := netip.MustParseAddr("10.244.1.10")
	peer1, peer2 := netip.MustParseAddr("10.244.2.20"), netip.MustParseAddr("10.244.2.21")
	build := func(peers ...netip.Addr) *nft.Ruleset {
		rs := nft.NewSkeleton()
		var allow nft.AllowList
		for _, p := range peers {
			allow.Ports = append(allow.Ports, nft.PortAllow{Peer: nft.Addr(p), Proto: nft.ProtoTCP, Ports: nft.Port(80)})
		}
		rs.AddIsolatedEndpoint(nft.Ingress, "x/a", []netip.Addr{pod}, allow)
		return rs
	}
	// A tier map, whose elements may drop.
	withTier := func(rs *nft.Ruleset, drop bool) *nft.Ruleset {
		m := rs.AddSet(&nft.Set{Name: "admin", KeyTypes: []nft.KeyType{nft.TypeIPv4Addr}, IsVerdictMap: true})
		if drop {
			m.Elements = []nft.Element{{Key: []nft.Range{nft.Addr(peer2)}, Verdict: nft.Drop}}
		}
		rs.AddChain(&nft.Chain{Name: "tiers", Rules: []nft.Rule{{VerdictMap: &nft.Lookup{Fields: []nft.Field{nft.FieldIPv4Saddr}, Set: "admin"}}}})
		return rs
	}
	tests := []struct {
		name     string
		old, new *nft.Ruleset
		want     bool
	}{
		{"a peer added to an allow-list", build(peer1), build(peer1, peer2), true},
		{"nothing changed", build(peer1), build(peer1), true},
		{"a peer removed", build(peer1, peer2), build(peer1), false},
		{"a pod isolated (dispatch map element)", nft.NewSkeleton(), build(), false},
		{"a drop added to a tier map", withTier(build(peer1), false), withTier(build(peer1), true), false},
		{"a full table from nothing", nil, build(peer1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nft.OnlyWidens(nft.Diff(tt.old, tt.new), tt.new); got != tt.want {
				t.Errorf("OnlyWidens = %v, want %v; ops: %v", got, tt.want, nft.Diff(tt.old, tt.new))
			}
		})
	}
}

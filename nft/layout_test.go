package nft_test

// IP plan: the pod is 10.244.1.10; peers are ranges in 10.244.2.0/24,
// fd00:2::/64 and at the very top of the IPv4 space.

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

// TestNewIsolatedEndpoint_SetsByShape checks which of the eight allow-list
// sets each box lands in, and how many elements it becomes: peer ranges of
// up to 16 addresses are spelled out address by address into the hash
// sets, larger ones stay one interval element.
func TestNewIsolatedEndpoint_SetsByShape(t *testing.T) {
	rng := func(from, to string) nft.Range {
		return nft.AddrRange(netip.MustParseAddr(from), netip.MustParseAddr(to))
	}
	tcp80 := func(peer nft.Range) nft.AllowList {
		return nft.AllowList{Ports: []nft.PortAllow{{Peer: peer, Proto: nft.ProtoTCP, Ports: nft.Port(80)}}}
	}
	n := nft.NamesFor(nft.Ingress, "x/a")
	tests := []struct {
		name  string
		allow nft.AllowList
		want  map[string]int // elements per set
	}{
		{"one address on one port", tcp80(rng("10.244.2.1", "10.244.2.1")), map[string]int{n.ExactV4: 1}},
		{"16 addresses on one port", tcp80(rng("10.244.2.0", "10.244.2.15")), map[string]int{n.ExactV4: 16}},
		{"17 addresses on one port", tcp80(rng("10.244.2.0", "10.244.2.16")), map[string]int{n.PortsV4: 1}},
		{"16 addresses across a byte boundary", tcp80(rng("10.244.2.250", "10.244.3.9")), map[string]int{n.ExactV4: 16}},
		{"3 IPv6 addresses on one port", tcp80(rng("fd00:2::ffff", "fd00:2::1:1")), map[string]int{n.ExactV6: 3}},
		{"one address on a port range", nft.AllowList{Ports: []nft.PortAllow{
			{Peer: rng("10.244.2.1", "10.244.2.1"), Proto: nft.ProtoUDP, Ports: nft.PortRange(53, 54)},
		}}, map[string]int{n.PortsV4: 1}},
		{"addresses on everything, up to the last one", nft.AllowList{AnyPort: []nft.Range{
			rng("10.244.2.1", "10.244.2.1"), rng("255.255.255.250", "255.255.255.255"),
		}}, map[string]int{n.AddrV4: 7}},
		{"a /24 and a /64 on everything", nft.AllowList{AnyPort: []nft.Range{
			nft.PrefixRange(netip.MustParsePrefix("10.244.2.0/24")), nft.PrefixRange(netip.MustParsePrefix("fd00:2::/64")),
		}}, map[string]int{n.AnyV4: 1, n.AnyV6: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := nft.NewSkeleton()
			e := nft.NewIsolatedEndpoint(nft.Ingress, "x/a", []netip.Addr{netip.MustParseAddr("10.244.1.10")}, tt.allow, nil)
			r.AddEndpoint(e)
			if err := nfttest.Validate(r); err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, s := range e.Sets {
				if len(s.Elements) > 0 {
					got[s.Name] = len(s.Elements)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("elements per set (-want +got):\n%s", diff)
			}
		})
	}
}

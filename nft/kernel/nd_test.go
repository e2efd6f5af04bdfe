//go:build linux

package kernel

import (
	"net/netip"
	"testing"

	"github.com/nftpolicy/nftpolicy/nft"
)

// TestSync_NeighbourDiscoveryUnderDefaultDeny: pods a and b on one bridge,
// both isolated in both directions, with only a → b TCP 80 allowed (a's
// egress, b's ingress). With both neighbour caches flushed, that IPv6
// connection needs a's neighbour solicitation for b (a's egress, b's
// ingress) and b's advertisement back (b's egress, a's ingress), none of
// which any allow-list admits: only the base chains' ICMPv6 neighbour
// discovery accept lets them through. Without it the connect times out.
func TestSync_NeighbourDiscoveryUnderDefaultDeny(t *testing.T) {
	requirePrivileges(t)
	tp := buildTopology(t)
	serve(t, tp.b, []int{80}, nil)
	dst := netip.AddrPortFrom(podB6, 80)
	if err := probe(tp.a, "tcp", dst); err != nil {
		t.Fatalf("baseline a to b tcp/80 over IPv6: %v", err)
	}

	r := nft.NewSkeleton()
	aAddrs, bAddrs := []netip.Addr{podA4, podA6}, []netip.Addr{podB4, podB6}
	r.AddIsolatedEndpoint(nft.Egress, "test/a", aAddrs, nft.AllowList{Ports: []nft.PortAllow{
		{Peer: nft.Addr(podB6), Proto: nft.ProtoTCP, Ports: nft.Port(80), Comment: "b"}}})
	r.AddIsolatedEndpoint(nft.Ingress, "test/a", aAddrs, nft.AllowList{})
	r.AddIsolatedEndpoint(nft.Egress, "test/b", bAddrs, nft.AllowList{})
	r.AddIsolatedEndpoint(nft.Ingress, "test/b", bAddrs, nft.AllowList{Ports: []nft.PortAllow{
		{Peer: nft.Addr(podA6), Proto: nft.ProtoTCP, Ports: nft.Port(80), Comment: "a"}}})
	s := newSyncer(t, tp.nodeFd)
	sync(t, s, r)

	for _, ns := range []string{tp.a, tp.b} {
		run(t, "ip", "netns", "exec", ns, "ip", "-6", "neigh", "flush", "dev", "eth0")
	}
	if err := probe(tp.a, "tcp", dst); err != nil {
		t.Errorf("a to b tcp/80 over IPv6 with empty neighbour caches under default deny: %v (is neighbour discovery dropped?)", err)
	}
	// The policy itself still holds: b may not reach a.
	serve(t, tp.a, []int{80}, nil)
	if err := probe(tp.b, "tcp", netip.AddrPortFrom(podA6, 80)); err == nil {
		t.Error("b to a tcp/80 over IPv6 passed; b's egress is default deny")
	}
}

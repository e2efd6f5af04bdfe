//go:build linux

package kernel

// IP plan: the topology of packets_test.go (pods a, b bridged on the node,
// c routed), with loggedPolicy's allow-lists (b admits a on TCP 80 and c on
// UDP 53; c may only send to b on UDP 53) and tierDenyPolicy's Admin Deny,
// with the deny log on and off.

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftpolicy/nftpolicy/nft"
)

// counterTotals reads the table's counters into tr and adds the
// increments to totals.
func counterTotals(t *testing.T, fd int, tr *nft.CounterTracker, totals map[string]nft.Count) {
	t.Helper()
	got, err := ReadCounters(WithNetNSFd(fd))
	if err != nil {
		t.Fatalf("ReadCounters: %v", err)
	}
	for chain, inc := range tr.Increments(got) {
		totals[chain] = totals[chain].Add(inc)
	}
}

// Every drop counts its packet in the chain that dropped it, an accepted
// new connection counts once at the end of forward, established packets
// count nowhere, and the totals go on from where they were when a sync
// writes the chain's rules again (its kernel counter restarts from zero).
func TestCounters_RealPackets(t *testing.T) {
	requirePrivileges(t)
	tp := buildTopology(t)
	serve(t, tp.b, []int{80}, []int{53, 54})
	s := newSyncer(t, tp.nodeFd)
	sync(t, s, loggedPolicy(nil))
	assertReadback(t, tp.node, loggedPolicy(nil))

	before, err := ReadCounters(WithNetNSFd(tp.nodeFd))
	if err != nil {
		t.Fatalf("ReadCounters: %v", err)
	}
	bIn := nft.NamesFor(nft.Ingress, "test/b").Chain
	cOut := nft.NamesFor(nft.Egress, "test/c").Chain
	chains := map[string]int{}
	for _, c := range before {
		chains[c.Chain]++
	}
	if want := map[string]int{nft.ChainForward: 1, bIn: 1, cOut: 1}; !cmp.Equal(chains, want) {
		t.Fatalf("counted rules per chain %v, want %v", chains, want)
	}

	var tr nft.CounterTracker
	totals := map[string]nft.Count{}
	counterTotals(t, tp.nodeFd, &tr, totals)
	clear(totals)
	// A UDP probe is one datagram of 6 bytes ("hello\n"): 34 bytes of
	// IPv4, 54 of IPv6, as the forward hook sees the packet.
	udp4, udp6 := nft.Count{Packets: 1, Bytes: 34}, nft.Count{Packets: 1, Bytes: 54}
	for _, f := range []struct {
		name    string
		from    string
		proto   string
		dst     netip.AddrPort
		allowed bool
		want    map[string]nft.Count
	}{
		{"a to b udp/53 denied by b's ingress", tp.a, "udp", netip.AddrPortFrom(podB4, 53), false, map[string]nft.Count{bIn: udp4}},
		{"a to b udp/54 over IPv6 denied by b's ingress", tp.a, "udp", netip.AddrPortFrom(podB6, 54), false, map[string]nft.Count{bIn: udp6}},
		{"c to b udp/54 denied by c's egress (routed)", tp.c, "udp", netip.AddrPortFrom(podB4, 54), false, map[string]nft.Count{cOut: udp4}},
		{"c to b udp/53 allowed: one new connection accepted", tp.c, "udp", netip.AddrPortFrom(podB4, 53), true, map[string]nft.Count{nft.ChainForward: udp4}},
	} {
		if err := probe(f.from, f.proto, f.dst); f.allowed != (err == nil) {
			t.Fatalf("%s: allowed %v, got error %v", f.name, f.allowed, err)
		}
		counterTotals(t, tp.nodeFd, &tr, totals)
		if diff := cmp.Diff(f.want, totals); diff != "" {
			t.Errorf("%s: counted (-want +got):\n%s", f.name, diff)
		}
		clear(totals)
	}

	// An allowed TCP connection: its SYN is the one new packet; the rest
	// (handshake, data both ways, close) is established.
	if err := probe(tp.a, "tcp", netip.AddrPortFrom(podB4, 80)); err != nil {
		t.Fatalf("a to b tcp/80: %v", err)
	}
	counterTotals(t, tp.nodeFd, &tr, totals)
	if got := totals[nft.ChainForward].Packets; got != 1 || len(totals) != 1 {
		t.Errorf("a to b tcp/80 counted %v, want one accepted packet at the end of forward only", totals)
	}
	clear(totals)

	// Turning the deny log on writes b's and c's rules again: new handles,
	// counters from zero. The totals carry on from there.
	logged := loggedPolicy(&nft.DenyLog{Group: testLogGroup, Rate: 100, Burst: 100})
	sync(t, s, logged)
	assertReadback(t, tp.node, logged)
	if err := probe(tp.a, "udp", netip.AddrPortFrom(podB4, 53)); err == nil {
		t.Fatal("a to b udp/53 connects")
	}
	counterTotals(t, tp.nodeFd, &tr, totals)
	if diff := cmp.Diff(map[string]nft.Count{bIn: udp4}, totals); diff != "" {
		t.Errorf("after the rules were written again (-want +got):\n%s", diff)
	}
	clear(totals)

	// A ClusterNetworkPolicy Deny counts in its rule's chain.
	tiered, rule := tierDenyPolicy(&nft.DenyLog{Group: testLogGroup, Rate: 100, Burst: 100})
	sync(t, s, tiered)
	if err := probe(tp.a, "udp", netip.AddrPortFrom(podB4, 54)); err == nil {
		t.Fatal("a to b udp/54 connects through block-a")
	}
	counterTotals(t, tp.nodeFd, &tr, totals)
	deny := nft.DenyChainName(rule)
	if diff := cmp.Diff(map[string]nft.Count{deny: udp4}, totals); diff != "" {
		t.Errorf("ClusterNetworkPolicy Deny (-want +got):\n%s", diff)
	}
	if dir, ok := nft.DenyChainDirection(deny); !ok || dir != nft.Ingress {
		t.Errorf("DenyChainDirection(%q) = %v, %v; want ingress", deny, dir, ok)
	}
	clear(totals)

	// With the deny log off it still counts there: the maps jump to the
	// rule's chain either way.
	unlogged, _ := tierDenyPolicy(nil)
	sync(t, s, unlogged)
	assertReadback(t, tp.node, unlogged)
	if err := probe(tp.a, "udp", netip.AddrPortFrom(podB4, 54)); err == nil {
		t.Fatal("a to b udp/54 connects through block-a, log off")
	}
	counterTotals(t, tp.nodeFd, &tr, totals)
	if diff := cmp.Diff(map[string]nft.Count{deny: udp4}, totals); diff != "" {
		t.Errorf("ClusterNetworkPolicy Deny, log off (-want +got):\n%s", diff)
	}
}

func TestReadCounters_NoTable(t *testing.T) {
	requirePrivileges(t)
	_, fd := newNetns(t, "nocnt")
	got, err := ReadCounters(WithNetNSFd(fd))
	if err != nil || len(got) != 0 {
		t.Errorf("ReadCounters without the table = %v, %v; want none, no error", got, err)
	}
}

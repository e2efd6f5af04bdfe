//go:build linux

package kernel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/nft"
)

// benchRuleset isolates `pods` local pods (10.244.1.x) for ingress, each
// admitting `peers` remote peers (10.244.2.y and up) on TCP 80.
func benchRuleset(pods, peers int) *nft.Ruleset {
	r := nft.NewSkeleton()
	for p := 0; p < pods; p++ {
		var allow nft.AllowList
		for q := 0; q < peers; q++ {
			peer := nft.Addr(netip.AddrFrom4([4]byte{10, 244, 2 + byte(q/250), byte(q%250 + 1)}))
			allow.Ports = append(allow.Ports, nft.PortAllow{Peer: peer, Proto: nft.ProtoTCP, Ports: nft.Port(80)})
		}
		r.AddIsolatedEndpoint(nft.Ingress, fmt.Sprintf("bench/p%d", p),
			[]netip.Addr{netip.AddrFrom4([4]byte{10, 244, 1, byte(p + 1)})}, allow)
	}
	return r
}

func BenchmarkSyncFull(b *testing.B) {
	requirePrivileges(b)
	_, fd := newNetns(b, "bench")
	r := benchRuleset(50, 100)
	for b.Loop() {
		s, err := NewSyncer(WithNetNSFd(fd))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Sync(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSyncOneElement(b *testing.B) {
	requirePrivileges(b)
	_, fd := newNetns(b, "bench")
	s, err := NewSyncer(WithNetNSFd(fd))
	if err != nil {
		b.Fatal(err)
	}
	base, more := benchRuleset(50, 100), benchRuleset(50, 100)
	name := nft.NamesFor(nft.Ingress, "bench/p0").PortsV4
	extra := nft.Element{Key: []nft.Range{nft.Addr(netip.MustParseAddr("10.244.9.9")), nft.Proto(nft.ProtoTCP), nft.Port(80)}}
	more.Sets[name].Elements = append(more.Sets[name].Elements, extra)
	if err := s.Sync(context.Background(), base); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		next := base
		if i%2 == 0 {
			next = more
		}
		i++
		if err := s.Sync(context.Background(), next); err != nil {
			b.Fatal(err)
		}
	}
}

// benchLoggedPolicy is loggedPolicy (b admits a on TCP 80; c may only send
// to b on UDP 53) with b's allow-list grown by policies more elements, the
// size 10,000 NetworkPolicies of one peer each give it.
func benchLoggedPolicy(log *nft.DenyLog, policies int) *nft.Ruleset {
	r := nft.NewSkeleton()
	r.SetDenyLog(log)
	allow := nft.AllowList{Ports: []nft.PortAllow{{Peer: nft.Addr(podA4), Proto: nft.ProtoTCP, Ports: nft.Port(80)}}}
	for i := range policies {
		peer := netip.AddrFrom4([4]byte{172, 16 + byte(i>>16), byte(i >> 8), byte(i)})
		allow.Ports = append(allow.Ports, nft.PortAllow{Peer: nft.Addr(peer), Proto: nft.ProtoTCP, Ports: nft.Port(9000)})
	}
	r.AddEndpoint(nft.NewIsolatedEndpoint(nft.Ingress, "test/b", []netip.Addr{podB4}, allow, log))
	r.AddEndpoint(nft.NewIsolatedEndpoint(nft.Egress, "test/c", []netip.Addr{podC4}, nft.AllowList{Ports: []nft.PortAllow{
		{Peer: nft.Addr(podB4), Proto: nft.ProtoUDP, Ports: nft.Port(53)},
	}}, log))
	return r
}

// BenchmarkDenyLog_AcceptPath is the deny log's cost to accepted
// connections while 20% of new connections are denied: rounds of four
// allowed TCP connections (a to b port 80: connect, echo, close) and one
// denied UDP datagram (c to b port 54, dropped and logged by c's egress
// chain), at 10,000 allow-list elements, with the log
// off and on alternately in one run (3 times each). It reports the allowed
// connections a second of each and their ratio, on/off (1 = free).
//
//	go test -run '^$' -bench DenyLog_AcceptPath -benchtime 1x ./nft/kernel/
func BenchmarkDenyLog_AcceptPath(b *testing.B) {
	requirePrivileges(b)
	tp := buildTopology(b)
	serve(b, tp.b, []int{80}, nil)
	s := newSyncer(b, tp.nodeFd)
	rec := listen(b, tp.nodeFd)
	const rounds, policies = 300, 10000
	log := &nft.DenyLog{Group: testLogGroup, Rate: 10, Burst: 20}
	var denied net.Conn
	if err := inNetns(tp.c, func() (err error) {
		denied, err = net.Dial("udp", netip.AddrPortFrom(podB4, 54).String())
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer denied.Close()
	measure := func(r *nft.Ruleset) float64 {
		sync(b, s, r)
		start := time.Now()
		for range rounds {
			for range 4 {
				if err := probe(tp.a, "tcp", netip.AddrPortFrom(podB4, 80)); err != nil {
					b.Fatalf("allowed connection: %v", err)
				}
			}
			// A dropped packet never confirms its conntrack entry, so
			// every datagram of this flow is a new connection, judged
			// (and logged, within the limit) anew.
			if _, err := denied.Write([]byte("x")); err != nil {
				b.Fatal(err)
			}
		}
		return float64(4*rounds) / time.Since(start).Seconds()
	}
	for b.Loop() {
		var off, on []float64
		for range 3 {
			off = append(off, measure(benchLoggedPolicy(nil, policies)))
			on = append(on, measure(benchLoggedPolicy(log, policies)))
		}
		slices.Sort(off)
		slices.Sort(on)
		b.ReportMetric(off[1], "conn/s-log-off")
		b.ReportMetric(on[1], "conn/s-log-on")
		b.ReportMetric(on[1]/off[1], "ratio-on/off")
	}
	b.ReportMetric(float64(len(rec.take(0))), "records")
}

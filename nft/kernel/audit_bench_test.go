//go:build linux

package kernel

// IP plan: the topology of packets_test.go (pods a, b bridged on the node,
// c routed), with benchLoggedPolicy's allow-lists.

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/nft"
)

// benchAuditPolicy is benchLoggedPolicy with b's ingress and c's egress in
// audit mode: the same chains and sets, ending in an audit log rule
// instead of a drop.
func benchAuditPolicy(log *nft.DenyLog, policies int) *nft.Ruleset {
	enforced := benchLoggedPolicy(log, policies)
	r := nft.NewSkeleton()
	r.SetDenyLog(log)
	for _, e := range []struct {
		dir  nft.Direction
		id   string
		addr netip.Addr
	}{{nft.Ingress, "test/b", podB4}, {nft.Egress, "test/c", podC4}} {
		n := nft.NamesFor(e.dir, e.id)
		var allow nft.AllowList
		for _, el := range slices.Concat(enforced.Sets[n.ExactV4].Elements, enforced.Sets[n.PortsV4].Elements) {
			allow.Ports = append(allow.Ports, nft.PortAllow{Peer: el.Key[0], Proto: el.Key[1].From[0], Ports: el.Key[2]})
		}
		r.AddEndpoint(nft.NewAuditEndpoint(e.dir, e.id, []netip.Addr{e.addr}, allow, log))
	}
	return r
}

// BenchmarkAudit_AcceptPath is what audit mode costs accepted connections
// against enforcement, with the deny log on in both: rounds of four
// allowed TCP connections (a to b port 80) and one UDP datagram from c to
// b port 54 that the allow-lists do not admit (enforced: dropped and
// logged; audited: logged and let through), at 10,000 allow-list
// elements, enforced and audited alternately in one run (5 pairs). It
// reports the median allowed connections a second of each and the median
// of the pairs' ratios, audit/enforce (1 = the same cost).
//
//	go test -run '^$' -bench Audit_AcceptPath -benchtime 1x ./nft/kernel/
func BenchmarkAudit_AcceptPath(b *testing.B) {
	requirePrivileges(b)
	tp := buildTopology(b)
	serve(b, tp.b, []int{80}, nil)
	s := newSyncer(b, tp.nodeFd)
	rec := listen(b, tp.nodeFd)
	const rounds, policies = 300, 10000
	log := &nft.DenyLog{Group: testLogGroup, Rate: 10, Burst: 20}
	var other net.Conn
	if err := inNetns(tp.c, func() (err error) {
		other, err = net.Dial("udp", netip.AddrPortFrom(podB4, 54).String())
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer other.Close()
	measure := func(r *nft.Ruleset) float64 {
		sync(b, s, r)
		start := time.Now()
		for range rounds {
			for range 4 {
				if err := probe(tp.a, "tcp", netip.AddrPortFrom(podB4, 80)); err != nil {
					b.Fatalf("allowed connection: %v", err)
				}
			}
			// Errors are expected: audited, the datagram reaches b, which
			// answers port unreachable.
			_, _ = other.Write([]byte("x"))
		}
		return float64(4*rounds) / time.Since(start).Seconds()
	}
	for b.Loop() {
		// Pairs in alternating order, so that a trend of the machine's
		// load favours neither; the ratio is the median of the pairs'.
		var enforce, audit, ratios []float64
		for i := range 5 {
			var e, a float64
			if i%2 == 0 {
				e = measure(benchLoggedPolicy(log, policies))
				a = measure(benchAuditPolicy(log, policies))
			} else {
				a = measure(benchAuditPolicy(log, policies))
				e = measure(benchLoggedPolicy(log, policies))
			}
			enforce, audit, ratios = append(enforce, e), append(audit, a), append(ratios, a/e)
		}
		for _, l := range [][]float64{enforce, audit, ratios} {
			slices.Sort(l)
		}
		b.ReportMetric(enforce[2], "conn/s-enforce")
		b.ReportMetric(audit[2], "conn/s-audit")
		b.ReportMetric(ratios[2], "ratio-audit/enforce")
	}
	b.ReportMetric(float64(len(rec.take(0))), "records")
}

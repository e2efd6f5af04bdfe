//go:build linux

package kernel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/bench/results"
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
	name := nft.NamesFor(nft.Ingress, "bench/p0").ExactV4 // one address on one port
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

// withoutCounters is r with every counter taken out: the table as it was
// before the counters, the baseline of their cost. Chains are copied; sets
// are shared.
func withoutCounters(r *nft.Ruleset) *nft.Ruleset {
	out := &nft.Ruleset{Sets: r.Sets, Chains: map[string]*nft.Chain{}, Limits: r.Limits}
	for name, c := range r.Chains {
		cc := *c
		cc.Rules = nil
		for _, rule := range c.Rules {
			if rule.Counter && rule.Verdict.Kind == nft.VerdictNone && rule.VerdictMap == nil && rule.Log == nil {
				continue // a counter alone (forward's accepted connections)
			}
			rule.Counter = false
			cc.Rules = append(cc.Rules, rule)
		}
		out.Chains[name] = &cc
	}
	return out
}

// denyLogConfigs are the tables the datapath benchmark compares, in the
// order of its first cycle: bare (neither counters nor the log), counters
// (the agent with --denied-traffic-log=false), counters and the log (the
// agent's default).
var denyLogConfigs = []string{"bare", "counters", "counters+log"}

// ratioSpread is a ratio measured once per cycle: its median, extremes and
// every sample, in cycle order.
type ratioSpread struct {
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Samples []float64 `json:"samples"`
}

func spread(samples []float64) ratioSpread {
	s := slices.Clone(samples)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return ratioSpread{Median: m, Min: s[0], Max: s[len(s)-1], Samples: samples}
}

// BenchmarkDenyLog_AcceptPath is the cost of the deny log and of the
// counters to accepted connections while 20% of new connections are
// denied (issue 11 §5): rounds of four allowed TCP connections (a to b
// port 80: connect, echo, close) and one denied UDP datagram (c to b port
// 54, dropped, counted and logged by c's egress chain), with b's
// allow-list holding 10,000 elements (what 10,000 single-peer
// NetworkPolicies give it). The three tables of denyLogConfigs are
// measured in turn, cycles times, each cycle starting with the next one
// (bare, counters, log; counters, log, bare; ...), so that load that
// comes and goes on a shared machine falls on all of them alike. Each
// cycle gives the ratios log on/off (counters+log over counters: the
// issue's figure) and counters on/off (counters over bare), as allowed
// connections a second; it reports their medians, and with BENCH_OUT set
// writes medians, extremes and samples under key deny_log_datapath of
// that results file (bench/README.md).
//
//	go test -run '^$' -bench DenyLog_AcceptPath -benchtime 1x ./nft/kernel/
//	make bench-denylog   # the same, into bench/results.json
func BenchmarkDenyLog_AcceptPath(b *testing.B) {
	requirePrivileges(b)
	tp := buildTopology(b)
	serve(b, tp.b, []int{80}, nil)
	s := newSyncer(b, tp.nodeFd)
	rec := listen(b, tp.nodeFd)
	const rounds, policies, cycles = 200, 10000, 15
	log := &nft.DenyLog{Group: testLogGroup, Rate: 10, Burst: 20}
	tables := map[string]*nft.Ruleset{
		"bare":         withoutCounters(benchLoggedPolicy(nil, policies)),
		"counters":     benchLoggedPolicy(nil, policies),
		"counters+log": benchLoggedPolicy(log, policies),
	}
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
	if strings.Contains(tables["bare"].Dump(), "counter") {
		b.Fatal("the bare table still counts")
	}
	loadStart := loadAverage()
	started := time.Now()
	var logRatios, counterRatios []float64
	rates := map[string][]float64{}
	for b.Loop() {
		for cycle := range cycles {
			got := map[string]float64{}
			for i := range denyLogConfigs {
				name := denyLogConfigs[(cycle+i)%len(denyLogConfigs)]
				got[name] = measure(tables[name])
				rates[name] = append(rates[name], got[name])
			}
			logRatios = append(logRatios, got["counters+log"]/got["counters"])
			counterRatios = append(counterRatios, got["counters"]/got["bare"])
		}
	}
	logOnOff, countersOnOff := spread(logRatios), spread(counterRatios)
	b.ReportMetric(logOnOff.Median, "ratio-log-on/off")
	b.ReportMetric(countersOnOff.Median, "ratio-counters-on/off")
	b.ReportMetric(spread(rates["counters+log"]).Median, "conn/s-log-on")
	b.ReportMetric(float64(len(rec.take(0))), "records")
	if out := os.Getenv("BENCH_OUT"); out != "" {
		medians := map[string]float64{}
		for name, r := range rates {
			medians[name] = spread(r).Median
		}
		if err := results.WriteKeys(out, map[string]any{"deny_log_datapath": map[string]any{
			"started":                 started.UTC(),
			"seconds":                 time.Since(started).Seconds(),
			"load_average_start":      loadStart,
			"load_average_end":        loadAverage(),
			"cpus":                    runtime.NumCPU(),
			"cycles":                  cycles,
			"allow_list_elements":     policies + 1,
			"allowed_per_measurement": 4 * rounds,
			"denied_share":            0.2,
			"allowed_conn_per_second": medians,
			"log_on_off":              logOnOff,
			"counters_on_off":         countersOnOff,
		}}); err != nil {
			b.Fatal(err)
		}
	}
}

// loadAverage is /proc/loadavg's 1, 5 and 15 minute figures.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

//go:build linux

// Package pktpath measures what the compiled table costs each packet in
// the kernel, apart from everything else: packets per second through one
// forward hop (sender → router → receiver, three network namespaces it
// creates) with the router holding the table compiled by policy.Compile
// for a receiver pod whose allow-list has 10³ .. 10⁶ elements, with no
// policy at all, and with no table, all measured in one run with the
// configurations interleaved round by round. Each figure is a ratio to the
// no-table hop of the same round, read through a bootstrap interval
// (bench/stats), so drift of a loaded machine shows as width, not as cost.
package pktpath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"github.com/nftpolicy/nftpolicy/bench/results"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftpolicy/nftpolicy/bench/controlplane"
	"github.com/nftpolicy/nftpolicy/bench/stats"
	"github.com/nftpolicy/nftpolicy/nft/kernel"
	"github.com/nftpolicy/nftpolicy/policy"
)

// NoTable is the Elements value of the baseline: the router holds no
// table inet nftpolicy at all.
const NoTable = -1

// Options of a run.
type Options struct {
	// Elements are the allow-list sizes to measure besides the baseline:
	// 0 is the compiled table with no policy (the receiver is not
	// isolated: the base chain's lookups miss), n > 0 one policy that
	// admits the sender and n-1 other /32s on UDP Port.
	Elements []int
	// Rounds: every configuration is measured once per round, in an order
	// rotated (and reversed every other round) so that none is always
	// first after the baseline.
	Rounds int
	// Run is the length of one measurement; MaxPackets bounds its count.
	Run        time.Duration
	MaxPackets int
	// SyncTimeout bounds loading one table into the router; a table that
	// does not commit in time is reported (Config.SetupError) and left out
	// of the rounds.
	SyncTimeout time.Duration
	// Resamples of the bootstrap; Seed makes its interval reproducible.
	Resamples int
	Seed      uint64
	Log       io.Writer
}

// Result is results.json's `datapath_kernel`.
type Result struct {
	Started      time.Time `json:"started"`
	Seconds      float64   `json:"seconds"`
	Machine      string    `json:"machine"`
	LoadStart    string    `json:"load_average_start"`
	LoadEnd      string    `json:"load_average_end"`
	Rounds       int       `json:"rounds"`
	RunSeconds   float64   `json:"run_seconds"`
	BatchPackets int       `json:"batch_packets"`
	PayloadBytes int       `json:"payload_bytes"`
	Conntrack    string    `json:"conntrack"`
	Configs      []Config  `json:"configs"`
}

// Config is one table state of the router and what went through it.
type Config struct {
	Name string `json:"name"`
	// Table: the router holds table inet nftpolicy; NominalElements is
	// the allow-list size asked for (NoTable: -1); SetElements all
	// elements of the compiled table, AllowListElements those of the
	// receiver's ingress allow-list.
	Table             bool    `json:"table"`
	NominalElements   int     `json:"nominal_elements"`
	SetElements       int     `json:"set_elements"`
	AllowListElements int     `json:"allow_list_elements"`
	CompileSeconds    float64 `json:"compile_seconds"`
	SyncSeconds       float64 `json:"sync_seconds"`
	// SetupError says why the configuration was not measured (its table
	// did not commit within the sync bound); empty when it was.
	SetupError string `json:"setup_error,omitempty"`
	// OutsiderBlocked: a second source address that no policy admits got
	// nothing through (expected exactly when the receiver is isolated).
	OutsiderBlocked bool `json:"outsider_blocked"`
	// PPSRuns is packets per second delivered per round; DeliveredRuns the
	// delivered share of what was sent.
	PPSRuns       []float64 `json:"pps_runs"`
	DeliveredRuns []float64 `json:"delivered_runs"`
	PPSMedian     float64   `json:"pps_median"`
	// RatioVsNoTable is pps ÷ the no-table hop's pps of the same round
	// (1.0 = free), median with its 95% bootstrap interval.
	RatioVsNoTable stats.Interval `json:"ratio_vs_no_table"`
	// ExtraNsPerPacket is 1/pps - 1/pps(no table) of the same round, in
	// nanoseconds: what the table adds to a packet's time on this path.
	ExtraNsPerPacket stats.Interval `json:"extra_ns_per_packet"`
}

// point is one configuration's hop, ready to measure.
type point struct {
	cfg      Config
	hop      *hop
	admitted *sender
}

// Run measures every configuration of o in one run. Everything it creates
// (namespaces, sockets) is released before it returns.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = 2 * time.Minute
	}
	if o.Rounds < 2 || o.Run <= 0 || o.MaxPackets <= 0 {
		return nil, fmt.Errorf("rounds %d, run %s, max packets %d: need at least 2 rounds and a positive run", o.Rounds, o.Run, o.MaxPackets)
	}
	res := &Result{Started: time.Now().UTC(), Machine: machineLine(), LoadStart: results.LoadAverage(), Rounds: o.Rounds, RunSeconds: o.Run.Seconds(),
		BatchPackets: batch, PayloadBytes: payload, Conntrack: "off on the router (notrack): every packet walks the whole forward chain"}
	elements := append([]int{NoTable}, o.Elements...)
	var points []*point
	defer func() {
		for _, p := range points {
			p.admitted.Close()
			p.hop.Close()
		}
	}()
	var skipped []Config
	for _, n := range elements {
		p, err := setUp(ctx, n, o)
		runtime.GC() // the compiled model of a large table is garbage now
		var slow *syncTimeoutError
		if errors.As(err, &slow) && ctx.Err() == nil {
			// A bound hit is a result, not a failure: say so and go on.
			skipped = append(skipped, Config{Name: configName(n), Table: true, NominalElements: n, SetElements: slow.elements,
				SetupError: slow.Error()})
			if o.Log != nil {
				fmt.Fprintf(o.Log, "%s: not measured: %s\n", configName(n), slow)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", configName(n), err)
		}
		points = append(points, p)
	}
	for r := range o.Rounds {
		order := rotation(len(points), r)
		for _, i := range order {
			p := points[i]
			pps, sent, got, err := p.hop.forwarded(ctx, p.admitted, o.Run, o.MaxPackets)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", r, p.cfg.Name, err)
			}
			if got == 0 {
				return nil, fmt.Errorf("round %d, %s: nothing reached the receiver (%d sent)", r, p.cfg.Name, sent)
			}
			p.cfg.PPSRuns = append(p.cfg.PPSRuns, pps)
			p.cfg.DeliveredRuns = append(p.cfg.DeliveredRuns, float64(got)/float64(max(sent, 1)))
		}
		if o.Log != nil {
			fmt.Fprintf(o.Log, "round %d/%d:", r+1, o.Rounds)
			for _, p := range points {
				fmt.Fprintf(o.Log, " %s %.0f", p.cfg.Name, p.cfg.PPSRuns[r])
			}
			fmt.Fprintln(o.Log)
		}
	}
	base := points[0].cfg.PPSRuns
	for _, p := range points {
		c := &p.cfg
		c.PPSMedian = stats.Median(c.PPSRuns)
		c.RatioVsNoTable = stats.MedianCI(stats.PairRatios(c.PPSRuns, base), 0.95, o.Resamples, o.Seed)
		extra := make([]float64, len(c.PPSRuns))
		for i := range extra {
			extra[i] = 1e9/c.PPSRuns[i] - 1e9/base[i]
		}
		c.ExtraNsPerPacket = stats.MedianCI(extra, 0.95, o.Resamples, o.Seed)
		res.Configs = append(res.Configs, *c)
	}
	res.Configs = append(res.Configs, skipped...)
	res.LoadEnd = results.LoadAverage()
	res.Seconds = time.Since(res.Started).Seconds()
	return res, nil
}

// rotation is the order of round r: rotated by r, reversed when r is odd.
func rotation(n, r int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = (i + r) % n
	}
	if r%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

func configName(n int) string {
	switch n {
	case NoTable:
		return "no table"
	case 0:
		return "table, no policy"
	default:
		return fmt.Sprintf("table, %d elements", n)
	}
}

// setUp builds one hop, loads its table (if any), and checks that the
// admitted sender gets through and the outsider exactly when it should.
func setUp(ctx context.Context, n int, o Options) (_ *point, err error) {
	p := &point{cfg: Config{Name: configName(n), Table: n != NoTable, NominalElements: n}}
	if p.hop, err = newHop(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if p.admitted != nil {
				p.admitted.Close()
			}
			p.hop.Close()
		}
	}()
	if p.hop.sink, err = sink(p.hop); err != nil {
		return nil, fmt.Errorf("receiver socket: %w", err)
	}
	if err := loadNotrack(ctx, p.hop.router); err != nil {
		return nil, err
	}
	if n != NoTable {
		snap := Snapshot(n)
		t0 := time.Now()
		rs, warnings := policy.Compile(snap)
		p.cfg.CompileSeconds = time.Since(t0).Seconds()
		if len(warnings) > 0 {
			return nil, fmt.Errorf("compile: %d warnings, first %+v", len(warnings), warnings[0])
		}
		counts := controlplane.CountRuleset(rs)
		p.cfg.SetElements = counts.Elements
		for name, s := range rs.Sets {
			if len(name) > 3 && name[:3] == "in-" {
				p.cfg.AllowListElements += len(s.Elements)
			}
		}
		s, err := kernel.NewSyncer(kernel.WithNetNSFd(p.hop.router.Fd()))
		if err != nil {
			return nil, err
		}
		syncCtx, cancel := context.WithTimeout(ctx, o.SyncTimeout)
		t0 = time.Now()
		err = s.Sync(syncCtx, rs)
		timedOut := syncCtx.Err() != nil
		cancel()
		if err != nil && timedOut {
			return nil, &syncTimeoutError{elements: p.cfg.SetElements, bound: o.SyncTimeout}
		}
		if err != nil {
			return nil, fmt.Errorf("sync: %w", err)
		}
		p.cfg.SyncSeconds = time.Since(t0).Seconds()
		if n > 0 && p.cfg.AllowListElements < n {
			return nil, fmt.Errorf("the receiver's allow-list has %d elements, want at least %d", p.cfg.AllowListElements, n)
		}
	}
	if p.admitted, err = newSender(p.hop, senderAddr); err != nil {
		return nil, err
	}
	// Warm-up: neighbour resolution on both links.
	if _, _, got, err := p.hop.forwarded(ctx, p.admitted, 50*time.Millisecond, 10_000); err != nil || got == 0 {
		return nil, fmt.Errorf("admitted sender: %d packets through in the warm-up (%w)", got, err)
	}
	outsider, err := newSender(p.hop, outsiderAddr)
	if err != nil {
		return nil, err
	}
	defer outsider.Close()
	_, sent, got, err := p.hop.forwarded(ctx, outsider, 50*time.Millisecond, 10_000)
	if err != nil {
		return nil, fmt.Errorf("outsider: %w", err)
	}
	// A stray packet or two (an ARP request of the router) reaches the
	// receiver's counter too: blocked is below 1% of what was sent.
	p.cfg.OutsiderBlocked = sent > 0 && got*100 < sent
	if wantBlocked := n > 0; p.cfg.OutsiderBlocked != wantBlocked {
		return nil, fmt.Errorf("outsider: %d of %d packets through, want blocked=%v: the table does not filter as compiled", got, sent, wantBlocked)
	}
	if o.Log != nil {
		fmt.Fprintf(o.Log, "%s: %d elements (allow-list %d), compile %.2fs, sync %.2fs, outsider blocked %v\n",
			p.cfg.Name, p.cfg.SetElements, p.cfg.AllowListElements, p.cfg.CompileSeconds, p.cfg.SyncSeconds, p.cfg.OutsiderBlocked)
	}
	return p, nil
}

// syncTimeoutError is a table that did not commit within the bound.
type syncTimeoutError struct {
	elements int
	bound    time.Duration
}

func (e *syncTimeoutError) Error() string {
	return fmt.Sprintf("the table of %d elements did not commit within %s", e.elements, e.bound)
}

// Node is the router's node name in the snapshot.
const Node = "router"

// Snapshot is the router's view of the cluster for an allow-list of n
// elements: its node with pod CIDR 10.244.1.0/24, the receiver pod
// (bench/receiver, tier=bench) as its one local pod, and for n > 0 one
// NetworkPolicy selecting the receiver that admits on UDP Port the sender
// and n-1 other /32s (every other address from 10.0.0.2 on, so that no
// two are adjacent and each is its own interval element).
func Snapshot(n int) *policy.Snapshot {
	snap := &policy.Snapshot{
		NodeName:      Node,
		Namespaces:    []policy.Namespace{{Name: "bench"}},
		Nodes:         []policy.Node{{Name: Node, PodCIDRs: []netip.Prefix{podCIDR}}},
		HostAddresses: []netip.Addr{receiverGW},
		Pods: []policy.Pod{{Namespace: "bench", Name: "receiver", NodeName: Node, Phase: corev1.PodRunning,
			Labels: map[string]string{"tier": "bench"}, IPs: []netip.Addr{receiverAddr}}},
	}
	if n <= 0 {
		return snap
	}
	from := make([]networkingv1.NetworkPolicyPeer, 0, n)
	from = append(from, ipBlock(netip.PrefixFrom(senderAddr, 32)))
	for i := range n - 1 {
		from = append(from, ipBlock(FillerBlock(i)))
	}
	udp := corev1.ProtocolUDP
	port := intstr.FromInt32(Port)
	snap.Policies = []*networkingv1.NetworkPolicy{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "allow-list"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"tier": "bench"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &port}},
				From:  from,
			}},
		},
	}}
	return snap
}

// FillerBlock is the i-th other /32 of the allow-list: every other
// address of 10.0.0.0/8 from 10.0.0.2 on (up to 8 million of them, well
// below the pod CIDR 10.244.0.0/16).
func FillerBlock(i int) netip.Prefix {
	n := 2 * (i + 1)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}), 32)
}

func ipBlock(p netip.Prefix) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: p.String()}}
}

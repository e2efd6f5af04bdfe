// The chaos run: faults injected while a fixed matrix is probed without a
// pause.

package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
)

// ChaosOptions tune a chaos run (Runner.Chaos).
type ChaosOptions struct {
	// Kills is how often the server node's agent is killed with SIGKILL
	// and started again.
	Kills int
	// NextAgentBin is another build of the agent, started after a SIGTERM
	// (an upgrade); the original build comes back the same way after it.
	NextAgentBin string
	// APIOutage is how long kube-apiserver is stopped (nothing changes
	// meanwhile), and Partition how long the nodes are cut off from it
	// while a policy changes.
	APIOutage, Partition time.Duration
	// ProbeEvery is the interval between two probes of one cell, and
	// ProbeTimeout how long a probe waits for an answer before it counts as
	// blocked.
	ProbeEvery, ProbeTimeout time.Duration
	// Settle is how long the matrix is probed before the first fault and
	// after each one (the fault's row counts those probes too).
	Settle time.Duration
	// HealBound is how long a fault may take to heal (agent ready, table
	// equal to a fresh compile, the changed policy in the table) before the
	// run fails.
	HealBound time.Duration
	// MaxProbes bounds the whole run's probes.
	MaxProbes int
}

// ChaosRow is one fault kind's line of the report.
type ChaosRow struct {
	Fault string
	Reps  int
	// Probes sent during the fault and its settle time; AllowedBlocked and
	// DeniedOpen are the wrong verdicts among them; Errors are probes that
	// saw neither an answer nor a timeout (refused, podserver errors).
	Probes, AllowedBlocked, DeniedOpen, Errors int
	// Of the wrong verdicts: Tampered were in flight while the table was
	// tampered with (from the nft command until the repair was in the
	// table), in this row's fault or the next row's; Conntrack are UDP
	// probes of a denied cell that were let through by a conntrack entry
	// left by an earlier probe of that cell from the same source port
	// while it was allowed (entries the conntrack cleanup had not yet
	// removed, README limitation 1).
	Tampered, Conntrack int
	// Cells counts the wrong verdicts per cell ("near-ok UDP").
	Cells map[string]int
	// Heal is one duration per repetition (see ChaosOptions.HealBound for
	// what healed means per fault); none where there is nothing to heal.
	Heal []time.Duration
	// Failure is set when the fault did not heal within the bound.
	Failure string
	// Evidence describes each unexplained wrong verdict: the probe's cell,
	// start and wait, placed after the fault's last event before it (the
	// signal, the agent ready, the table checked, ...), so that a defect
	// seen once can be traced in the agents' logs.
	Evidence []string
}

// WrongVerdicts is the row's number of probes that saw the wrong verdict.
func (c ChaosRow) WrongVerdicts() int { return c.AllowedBlocked + c.DeniedOpen }

// Unexplained is the number of wrong verdicts that were neither seen while
// the table was tampered with nor let through by an old conntrack entry:
// defects of the agent.
func (c ChaosRow) Unexplained() int { return c.WrongVerdicts() - c.Tampered - c.Conntrack }

const chaosNamespace = "chaos"

// chaosPolicy is the NetworkPolicy the matrix is judged against: the
// server admits the named clients on TCP and UDP port 80.
func chaosPolicy(clients ...string) *networkingv1.NetworkPolicy {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	port := intstr.FromInt32(80)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: chaosNamespace, Name: "server-clients"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "pod", Operator: metav1.LabelSelectorOpIn, Values: clients}}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}, {Protocol: &udp, Port: &port}},
			}},
		},
	}
}

// chaosScenario is the fixed cluster: the server and two clients on the
// first node, two clients on the second; the policy admits one client per
// node (near-ok, far-ok) and denies the other (near-no, far-no).
func (r *Runner) chaosScenario() *scenario.Scenario {
	s := &scenario.Scenario{Name: "chaos", IgnoreLoopback: true}
	s.Cluster.Servers = []scenario.Server{{Port: 80, Protocol: "TCP"}, {Port: 80, Protocol: "UDP"}}
	s.Cluster.Namespaces = []scenario.Namespace{{Name: chaosNamespace}}
	place := []struct {
		name string
		node int
	}{{"server", 0}, {"near-ok", 0}, {"near-no", 0}, {"far-ok", 1}, {"far-no", 1}}
	for i, p := range place {
		n := r.State.Nodes[p.node%len(r.State.Nodes)]
		ip := netip.MustParsePrefix(n.PodCIDR).Addr().As4()
		ip[3] = byte(70 + i)
		s.Cluster.Pods = append(s.Cluster.Pods, scenario.Pod{Namespace: chaosNamespace, Name: p.name,
			Labels: map[string]string{"pod": p.name}, IP: netip.AddrFrom4(ip).String()})
	}
	return s
}

// chaosCell is one probed (client, protocol) pair; the destination is
// always the server's pod IP, port 80.
type chaosCell struct {
	name     string
	src, dst *kubelet.Pod
	proto    string
	addr     string
	sameNode bool
}

// probeRecord is one probe: which cell, when it started, what it saw.
type probeRecord struct {
	cell  int
	start time.Time
	took  time.Duration
	got   byte
	// port is the source port of an answered UDP probe.
	port uint16
	// detail is what the client saw (the local address of an answered
	// probe, the error of a failed one).
	detail string
}

// chaosProber probes every cell every interval, each probe in its own
// goroutine, so that a denied cell (whose probes wait for the timeout)
// still has a probe starting every interval: a window in which the table
// is open is seen if it is longer than the interval.
type chaosProber struct {
	r       *Runner
	cells   []chaosCell
	every   time.Duration
	max     int
	mu      sync.Mutex
	records []probeRecord
	started int
	wg      sync.WaitGroup
}

// inFlightPerCell bounds the probes of one cell that wait at once.
const inFlightPerCell = 64

func (p *chaosProber) run(ctx context.Context) {
	for i := range p.cells {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			sem := make(chan struct{}, inFlightPerCell)
			tick := time.NewTicker(p.every)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				p.mu.Lock()
				full := p.started >= p.max
				if !full {
					p.started++
				}
				p.mu.Unlock()
				if full {
					return
				}
				select {
				case sem <- struct{}{}:
				default:
					continue // this cell's probes are all waiting: skip a tick
				}
				p.wg.Add(1)
				go func() {
					defer p.wg.Done()
					defer func() { <-sem }()
					c := p.cells[i]
					start := time.Now()
					got, detail := p.r.ProbeAddr(c.proto, c.src, c.dst, c.addr)
					rec := probeRecord{cell: i, start: start, took: time.Since(start), got: got, detail: detail}
					if from, ok := strings.CutPrefix(detail, "from "); ok && c.proto == "UDP" {
						if ap, err := netip.ParseAddrPort(from); err == nil {
							rec.port = ap.Port()
						}
					}
					p.mu.Lock()
					p.records = append(p.records, rec)
					p.mu.Unlock()
				}()
			}
		}()
	}
}

// between returns the probes that started in [from, to).
func (p *chaosProber) between(from, to time.Time) []probeRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []probeRecord
	for _, rec := range p.records {
		if !rec.start.Before(from) && rec.start.Before(to) {
			out = append(out, rec)
		}
	}
	return out
}

// udpConntrackLife bounds how long a UDP conntrack entry outlives its
// last packet (nf_conntrack_udp_timeout_stream, 120 s by default).
const udpConntrackLife = 120 * time.Second

// openedBefore reports whether an earlier probe of cell from the same UDP
// source port was answered less than udpConntrackLife before rec: its
// conntrack entry may still be there, and lets rec through as an
// established flow.
func (p *chaosProber) openedBefore(rec probeRecord) bool {
	if rec.port == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range p.records {
		if o.cell == rec.cell && o.port == rec.port && o.got == '.' && o.start.Before(rec.start) && rec.start.Sub(o.start) < udpConntrackLife {
			return true
		}
	}
	return false
}

// chaosRun is the state of one Runner.Chaos.
type chaosRun struct {
	r      *Runner
	opt    ChaosOptions
	cells  []chaosCell
	prober *chaosProber
	node   cluster.Node // the server's node, whose agent the faults hit
	rows   []ChaosRow
	// nextAgent: the agent on node runs NextAgentBin (the upgrade).
	nextAgent bool
	// changeAt is when the partition fault changed the policy, and landBy
	// when its change was in the server node's table: probes in between
	// may see either verdict.
	changeAt, landBy time.Time
	// tampered are the times the table was not the agent's: from each
	// nft command until the repair was in the table (or HealBound).
	tampered []interval
	windows  []window
	// events are the faults' steps as they happened, in order.
	events []chaosEvent
}

// chaosEvent is one step of a fault (a signal sent, the agent ready, ...).
type chaosEvent struct {
	at   time.Time
	what string
}

func (c *chaosRun) event(what string) { c.events = append(c.events, chaosEvent{time.Now(), what}) }

// evidence describes rec for a report: its cell, when it started relative
// to the last fault event before it, and how long it waited.
func (c *chaosRun) evidence(rec probeRecord, want byte) string {
	last := "the row's start"
	var at time.Time
	for _, e := range c.events {
		if e.at.After(rec.start) {
			break
		}
		last, at = e.what, e.at
	}
	rel := ""
	if !at.IsZero() {
		rel = fmt.Sprintf(" %.3f s after %s", rec.start.Sub(at).Seconds(), last)
	}
	detail := ""
	if rec.detail != "" {
		detail = " (" + rec.detail + ")"
	}
	return fmt.Sprintf("%s: want %c, got %c%s; started %s%s, waited %.3f s",
		c.cells[rec.cell].name, want, rec.got, detail, rec.start.UTC().Format("15:04:05.000"), rel, rec.took.Seconds())
}

// window is the time of one row's fault (and its settle time), with the
// verdicts expected: before, and for a policy change after landBy (either
// from changeAt to landBy).
type window struct {
	row              int
	from, to         time.Time
	before, after    []byte
	changeAt, landBy time.Time
}

// interval is a span of time, ends included.
type interval struct{ from, to time.Time }

// whileTampered reports whether rec was in flight while the table was
// tampered with: started before a repair and answered (or given up) after
// the nft command. A probe is judged in the row it started in, so one that
// started in the row before a tamper fault and waited into it (a TCP SYN
// retransmitted a second later) is counted here too.
func (c *chaosRun) whileTampered(rec probeRecord) bool {
	end := rec.start.Add(rec.took)
	for _, t := range c.tampered {
		if !rec.start.After(t.to) && !end.Before(t.from) {
			return true
		}
	}
	return false
}

// judge counts the probes of w into its row.
func (c *chaosRun) judge(w window) {
	row := &c.rows[w.row]
	row.Cells = map[string]int{}
	for _, rec := range c.prober.between(w.from, w.to) {
		want := c.wantAt(w, rec)
		row.Probes++
		switch {
		case rec.got != '.' && rec.got != 'X':
			row.Errors++
			continue
		case rec.got == want:
			continue
		case want == '.':
			row.AllowedBlocked++
		default:
			row.DeniedOpen++
		}
		row.Cells[c.cells[rec.cell].name]++
		switch {
		case c.whileTampered(rec):
			row.Tampered++
		case rec.got == '.' && c.prober.openedBefore(rec):
			row.Conntrack++
		default:
			row.Evidence = append(row.Evidence, c.evidence(rec, want))
		}
	}
}

// wantAt is the verdict rec should have seen.
func (c *chaosRun) wantAt(w window, rec probeRecord) byte {
	old := w.before[rec.cell]
	// A probe that started up to a timeout before the change may still
	// be waiting for its answer (a TCP SYN retransmitted) when the change
	// lands.
	if w.changeAt.IsZero() || rec.start.Before(w.changeAt.Add(-c.opt.ProbeTimeout)) {
		return old
	}
	changed := w.after[rec.cell]
	if rec.start.Before(w.landBy) && rec.got == old {
		return old // not landed yet: the old verdict is right too
	}
	return changed
}

// Chaos sets up the chaos matrix, probes it without a pause, and injects
// the faults one after the other: the agent on the server's node killed
// with SIGKILL and started again (Kills times); stopped with SIGTERM and
// started as another build (an upgrade) and back (a rollback);
// kube-apiserver stopped for APIOutage with nothing changing; the nodes
// cut off from the apiserver for Partition while the policy changes (the
// change must reach the table within HealBound of the cut ending); and
// table inet nftpolicy tampered with by hand with nft (a rule deleted, an
// accept rule added, a set flushed, the table deleted), which the agent
// must repair within HealBound. It returns one row per fault kind.
func (r *Runner) Chaos(ctx context.Context, opt ChaosOptions) ([]ChaosRow, error) {
	if len(r.State.Nodes) < 2 {
		return nil, errors.New("chaos needs at least 2 nodes")
	}
	if r.State.AgentCmd == "" {
		return nil, errors.New("chaos needs an agent (the cluster runs with --agent-cmd '')")
	}
	r.Opt.ProbeTimeout = opt.ProbeTimeout
	s := r.chaosScenario()
	if err := r.prepare(ctx, s); err != nil {
		return nil, fmt.Errorf("setting up the chaos cluster: %w", err)
	}
	if _, err := r.CS.NetworkingV1().NetworkPolicies(chaosNamespace).Create(ctx, chaosPolicy("near-ok", "far-ok"), metav1.CreateOptions{FieldManager: fieldManager}); err != nil {
		return nil, err
	}
	c := &chaosRun{r: r, opt: opt, node: r.State.Nodes[0]}
	server := r.pods[chaosNamespace+"/server"]
	for _, client := range []string{"near-ok", "near-no", "far-ok", "far-no"} {
		src := r.pods[chaosNamespace+"/"+client]
		for _, proto := range []string{"TCP", "UDP"} {
			c.cells = append(c.cells, chaosCell{name: client + " " + proto, src: src, dst: server, proto: proto,
				addr: netip.AddrPortFrom(server.IP, 80).String(), sameNode: src.Node.Name == server.Node.Name})
		}
	}
	// Every node's table is the policy's before probing starts.
	if err := c.waitTables(ctx); err != nil {
		return nil, err
	}
	c.forgetFlows(ctx, server.IP)
	probeCtx, stopProbes := context.WithCancel(ctx)
	c.prober = &chaosProber{r: r, cells: c.cells, every: opt.ProbeEvery, max: opt.MaxProbes}
	c.prober.run(probeCtx)
	defer stopProbes()

	err := c.faults(ctx)
	// Whatever failed, leave the cluster as `up` made it.
	err = errors.Join(err, c.restore(context.WithoutCancel(ctx)))
	stopProbes()
	c.prober.wg.Wait()
	for _, w := range c.windows {
		c.judge(w)
	}
	return c.rows, err
}

// forgetFlows deletes every node's conntrack entries to or from the
// server, so that flows an earlier run left (its UDP probes of cells it
// allowed) cannot let this run's probes through. The agent never deletes
// conntrack entries (README limitation 1); without the conntrack tool such
// leftovers show up as wrong verdicts, which the run says.
func (c *chaosRun) forgetFlows(ctx context.Context, ip netip.Addr) {
	for _, n := range c.r.State.Nodes {
		for _, dir := range []string{"--orig-dst", "--orig-src"} {
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", n.NetNS, "conntrack", "-D", dir, ip.String()).CombinedOutput()
			// conntrack exits 1 when nothing matched.
			if err != nil && !strings.Contains(string(out), "0 flow entries") {
				fmt.Fprintf(c.r.Out, "chaos: conntrack -D %s %s on %s: %v: %s (flows of an earlier run may let probes through)\n", dir, ip, n.Name, err, strings.TrimSpace(string(out)))
			}
		}
	}
}

// expect is the verdict policy.Evaluate gives each cell for the API's
// state now.
func (c *chaosRun) expect(ctx context.Context) ([]byte, *policy.Snapshot, error) {
	snap, err := c.r.apiSnapshot(ctx)
	if err != nil {
		return nil, nil, err
	}
	want := make([]byte, len(c.cells))
	for i, cell := range c.cells {
		v := policy.Evaluate(snap, policy.Packet{Src: cell.src.IP, Dst: cell.dst.IP, Protocol: corev1.Protocol(cell.proto), DstPort: 80})
		want[i] = 'X'
		if v.Allowed {
			want[i] = '.'
		}
	}
	return want, snap, nil
}

func (c *chaosRun) faults(ctx context.Context) error {
	steps := []struct {
		name string
		reps int
		do   func(ctx context.Context) (time.Duration, error)
	}{
		{"steady state (no fault)", 1, func(context.Context) (time.Duration, error) { return -1, nil }},
		{"agent SIGKILL, started again", c.opt.Kills, func(ctx context.Context) (time.Duration, error) {
			return c.restartAgent(ctx, syscall.SIGKILL, "")
		}},
		{"agent SIGTERM, upgraded (other build)", 1, func(ctx context.Context) (time.Duration, error) {
			return c.restartAgent(ctx, syscall.SIGTERM, c.opt.NextAgentBin)
		}},
		{"agent SIGTERM, rolled back", 1, func(ctx context.Context) (time.Duration, error) {
			return c.restartAgent(ctx, syscall.SIGTERM, "")
		}},
		{fmt.Sprintf("kube-apiserver stopped %s (no change), then a policy change", c.opt.APIOutage), 1, c.apiOutage},
		{fmt.Sprintf("nodes cut off from the API %s while a policy changes", c.opt.Partition), 1, c.partitionChange},
		{"nft: delete a rule (the server's drop)", 1, c.tamper(func(ch string) []string {
			return []string{"delete", "rule", "inet", nft.TableName, ch, "handle", "DROP"}
		})},
		{"nft: add an accept rule", 1, c.tamper(func(string) []string {
			return []string{"insert", "rule", "inet", nft.TableName, nft.ChainForward, "accept"}
		})},
		{"nft: flush a set (the server's allow-list)", 1, c.tamper(func(ch string) []string {
			// The clients' elements land in exact4 or ports4 by their
			// shape (adjacent client addresses join into a range), and
			// could be in addr4 or cidr4: flush all four, in one nft
			// transaction.
			n := nft.NamesFor(nft.Ingress, chaosNamespace+"/server")
			var args []string
			for _, set := range []string{n.ExactV4, n.AddrV4, n.AnyV4, n.PortsV4} {
				args = append(args, "flush", "set", "inet", nft.TableName, set, ";")
			}
			return args[:len(args)-1]
		})},
		{"nft: delete the table", 1, c.tamper(func(string) []string {
			return []string{"delete", "table", "inet", nft.TableName}
		})},
	}
	for _, st := range steps {
		row := ChaosRow{Fault: st.name, Reps: st.reps}
		before, _, err := c.expect(ctx)
		if err != nil {
			return err
		}
		from := time.Now()
		c.event("row \"" + st.name + "\" begins")
		if st.name == steps[0].name {
			sleepCtx(ctx, c.opt.Settle)
		}
		for range st.reps {
			heal, err := st.do(ctx)
			if heal >= 0 {
				row.Heal = append(row.Heal, heal)
			}
			if err != nil {
				row.Failure = err.Error()
				break
			}
			sleepCtx(ctx, c.opt.Settle)
		}
		w := window{row: len(c.rows), from: from, to: time.Now(), before: before}
		if !c.changeAt.IsZero() {
			w.changeAt, w.landBy = c.changeAt, c.landBy
			if w.after, _, err = c.expect(ctx); err != nil {
				return err
			}
			c.changeAt, c.landBy = time.Time{}, time.Time{}
		}
		c.rows = append(c.rows, row)
		c.windows = append(c.windows, w)
		fmt.Fprintf(c.r.Out, "chaos: %s ×%d done; heal %s\n", row.Fault, row.Reps, row.heal())
		if row.Failure != "" {
			fmt.Fprintf(c.r.Out, "chaos: %s FAILED: %s\n", row.Fault, row.Failure)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// healthPort is the agent's health port (its /readyz), read from the agent
// command of the cluster.
func (c *chaosRun) healthPort() (int, error) {
	m := regexp.MustCompile(`--health-probe-bind-address[= ]'?[^: ']*:(\d+)`).FindStringSubmatch(c.r.State.AgentCmd)
	if m == nil {
		return 0, fmt.Errorf("no --health-probe-bind-address in the agent command %q", c.r.State.AgentCmd)
	}
	var port int
	_, err := fmt.Sscan(m[1], &port)
	return port, err
}

// restartAgent stops the server node's agent with sig, starts it again
// (as bin, or the original build), and returns the time from the signal
// until the new agent is ready and the node's table equals a fresh
// compile.
func (c *chaosRun) restartAgent(ctx context.Context, sig syscall.Signal, bin string) (time.Duration, error) {
	port, err := c.healthPort()
	if err != nil {
		return -1, err
	}
	start := time.Now()
	c.event(fmt.Sprintf("%v to the agent on %s", sig, c.node.Name))
	if err := c.r.Cfg.SignalAgent(c.node.Name, sig); err != nil {
		return -1, err
	}
	if err := c.r.Cfg.StartAgent(c.node, bin); err != nil {
		return -1, err
	}
	c.event("agent started again")
	c.nextAgent = bin != ""
	deadline := start.Add(c.opt.HealBound)
	for {
		code, err := cluster.HTTPStatusInNetNS(c.node.NetNS, port, "/readyz", time.Second)
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("/readyz answers %d", code)
			}
			return time.Since(start), fmt.Errorf("agent on %s not ready %s after %v: %w", c.node.Name, c.opt.HealBound, sig, err)
		}
		if !sleepCtx(ctx, 10*time.Millisecond) {
			return -1, ctx.Err()
		}
	}
	ready := time.Since(start)
	c.event("agent ready")
	if err := c.waitTable(ctx, c.node, time.Now()); err != nil {
		return ready, err
	}
	c.event("table equals a fresh compile")
	return ready, nil
}

// waitTable waits until node's table equals a fresh compile of the API's
// state, within HealBound of since, and returns how long after since.
func (c *chaosRun) waitTable(ctx context.Context, n cluster.Node, since time.Time) error {
	_, err := c.waitTableTook(ctx, n, since)
	return err
}

func (c *chaosRun) waitTableTook(ctx context.Context, n cluster.Node, since time.Time) (time.Duration, error) {
	snap, err := c.r.apiSnapshot(ctx)
	if err != nil {
		return -1, err
	}
	bound := c.opt.HealBound - time.Since(since)
	_, diff := c.r.waitTable(ctx, snap, n.Name, n.NetNS, bound, 5*time.Millisecond)
	took := time.Since(since)
	if diff != "" {
		return took, fmt.Errorf("table of %s differs from a fresh compile %.1fs after the fault:\n%s", n.Name, took.Seconds(), diff)
	}
	return took, nil
}

// waitTables waits until every node's table equals a fresh compile.
func (c *chaosRun) waitTables(ctx context.Context) error {
	var errs []error
	for _, n := range c.r.State.Nodes {
		errs = append(errs, c.waitTable(ctx, n, time.Now()))
	}
	return errors.Join(errs...)
}

// apiOutage stops kube-apiserver for APIOutage and starts it again;
// nothing changes meanwhile, and the tables must stay what they were. As
// soon as the apiserver is ready again the policy changes, and the time
// until the server node's table holds that change is the heal time: how
// long the agents take to watch again after an outage.
func (c *chaosRun) apiOutage(ctx context.Context) (time.Duration, error) {
	c.event("kube-apiserver stopped")
	if err := c.r.Cfg.StopAPIServer(); err != nil {
		return -1, err
	}
	sleepCtx(ctx, c.opt.APIOutage)
	if err := c.r.Cfg.StartAPIServer(ctx); err != nil {
		return -1, fmt.Errorf("start kube-apiserver again: %w", err)
	}
	c.event("kube-apiserver ready again")
	if err := c.waitTables(ctx); err != nil {
		return -1, fmt.Errorf("after the outage: %w", err)
	}
	// far-no gains access.
	if err := c.changePolicy(ctx, "near-ok", "far-ok", "far-no"); err != nil {
		return -1, err
	}
	return c.landed(ctx, c.changeAt)
}

// partitionChange cuts every node off from the apiserver (the relay the
// node namespaces reach it through stops; the apiserver keeps serving the
// host), changes the policy through the admin client, which the agents
// cannot see, ends the cut after Partition, and returns the time from then
// until the server node's table holds the change.
func (c *chaosRun) partitionChange(ctx context.Context) (time.Duration, error) {
	c.event("nodes cut off from the API")
	if err := c.r.Cfg.StopRelay(); err != nil {
		return -1, err
	}
	// near-ok and far-no lose access, near-no gains it.
	if err := c.changePolicy(ctx, "near-no", "far-ok"); err != nil {
		return -1, err
	}
	sleepCtx(ctx, c.opt.Partition)
	back := time.Now()
	c.event("nodes reach the API again")
	if err := c.r.Cfg.StartRelay(ctx, c.r.State); err != nil {
		return -1, fmt.Errorf("start the relay again: %w", err)
	}
	return c.landed(ctx, back)
}

// changePolicy replaces the admitted clients of the chaos policy and
// notes when: from then on a changed cell may show either verdict until
// the change has landed.
func (c *chaosRun) changePolicy(ctx context.Context, clients ...string) error {
	pols := c.r.CS.NetworkingV1().NetworkPolicies(chaosNamespace)
	cur, err := pols.Get(ctx, "server-clients", metav1.GetOptions{})
	if err != nil {
		return err
	}
	upd := chaosPolicy(clients...)
	upd.ResourceVersion = cur.ResourceVersion
	c.changeAt = time.Now()
	c.event("policy changed to admit " + strings.Join(clients, ", "))
	c.landBy = c.changeAt.Add(c.opt.HealBound + c.opt.Partition + c.opt.APIOutage)
	if _, err := pols.Update(ctx, upd, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("update the chaos policy: %w", err)
	}
	return nil
}

// landed waits until the server node's table holds the policy change, and
// returns the time since since.
func (c *chaosRun) landed(ctx context.Context, since time.Time) (time.Duration, error) {
	took, err := c.waitTableTook(ctx, c.node, since)
	if err == nil {
		c.landBy = since.Add(took)
		c.event("the change is in the table")
	}
	return took, err
}

// tamper returns a fault that runs `nft args(chain)` in the server node's
// namespace, chain being the server's ingress chain and a "DROP" argument
// the handle of that chain's final drop, and returns the time from nft's
// return until the table equals a fresh compile again.
func (c *chaosRun) tamper(args func(chain string) []string) func(context.Context) (time.Duration, error) {
	return func(ctx context.Context) (time.Duration, error) {
		chain := nft.NamesFor(nft.Ingress, chaosNamespace+"/server").Chain
		a := args(chain)
		if i := slices.Index(a, "DROP"); i >= 0 {
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", c.node.NetNS, "nft", "-a", "list", "chain", "inet", nft.TableName, chain).CombinedOutput()
			if err != nil {
				return -1, fmt.Errorf("nft -a list chain %s: %w: %s", chain, err, out)
			}
			m := regexp.MustCompile(`(?m)^\s*(?:counter packets \d+ bytes \d+ )?drop # handle (\d+)$`).FindSubmatch(out)
			if m == nil {
				return -1, fmt.Errorf("no final drop in chain %s:\n%s", chain, out)
			}
			a[i] = string(m[1])
		}
		cmd := append([]string{"ip", "netns", "exec", c.node.NetNS, "nft"}, a...)
		from := time.Now()
		c.event("nft " + strings.Join(a, " "))
		c.tampered = append(c.tampered, interval{from, from.Add(c.opt.HealBound)})
		this := len(c.tampered) - 1
		if out, err := exec.CommandContext(ctx, cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			return -1, fmt.Errorf("%s: %w: %s", strings.Join(cmd, " "), err, out)
		}
		took, err := c.waitTableTook(ctx, c.node, time.Now())
		if err == nil {
			c.tampered[this].to = time.Now()
			c.event("table repaired")
		}
		return took, err
	}
}

// restore leaves the cluster as `up` made it: the apiserver and relay
// running, the agent the original build.
func (c *chaosRun) restore(ctx context.Context) error {
	var errs []error
	if !c.r.Cfg.Alive("kube-apiserver") {
		errs = append(errs, c.r.Cfg.StartAPIServer(ctx))
	}
	if !c.r.Cfg.Alive("relay") {
		errs = append(errs, c.r.Cfg.StartRelay(ctx, c.r.State))
	}
	if c.nextAgent || !c.r.Cfg.Alive(cluster.AgentProc(c.node.Name)) {
		if c.r.Cfg.Alive(cluster.AgentProc(c.node.Name)) {
			errs = append(errs, c.r.Cfg.SignalAgent(c.node.Name, syscall.SIGTERM))
		}
		errs = append(errs, c.r.Cfg.StartAgent(c.node, ""))
	}
	return errors.Join(errs...)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// heal summarises a row's heal times: the one, or the median and maximum.
func (c ChaosRow) heal() string {
	if len(c.Heal) == 0 {
		return "—"
	}
	h := slices.Clone(c.Heal)
	slices.Sort(h)
	if len(h) == 1 {
		return fmt.Sprintf("%.3f s", h[0].Seconds())
	}
	return fmt.Sprintf("median %.3f s, max %.3f s", h[len(h)/2].Seconds(), h[len(h)-1].Seconds())
}

// explained says which of the wrong verdicts were seen while the table
// was tampered with, or through an old conntrack entry.
func (c ChaosRow) explained() string {
	var parts []string
	if c.Tampered > 0 {
		parts = append(parts, fmt.Sprintf("%d while tampered", c.Tampered))
	}
	if c.Conntrack > 0 {
		parts = append(parts, fmt.Sprintf("%d via old conntrack entries", c.Conntrack))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// cellList names the cells that saw wrong verdicts, with their counts.
func (c ChaosRow) cellList() string {
	var names []string
	for n := range c.Cells {
		names = append(names, n)
	}
	slices.Sort(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d", n, c.Cells[n]))
	}
	return strings.Join(parts, ", ")
}

// WriteChaosDetails lists, per row with wrong verdicts, the cells that
// saw them.
func WriteChaosDetails(w io.Writer, rows []ChaosRow) {
	for _, c := range rows {
		if c.WrongVerdicts() > 0 {
			fmt.Fprintf(w, "  %s: wrong verdicts by cell: %s%s\n", c.Fault, c.cellList(), c.explained())
		}
		for _, e := range c.Evidence {
			fmt.Fprintf(w, "    unexplained: %s\n", e)
		}
	}
}

// WriteChaosTable writes rows as the Markdown table the README shows.
func WriteChaosTable(w io.Writer, rows []ChaosRow) {
	fmt.Fprintln(w, "| fault | times | probes | allowed cell blocked | denied cell open | errors | time to heal |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|")
	for _, c := range rows {
		heal := c.heal()
		if c.Failure != "" {
			heal += " (FAILED)"
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d%s | %d | %s |\n", c.Fault, c.Reps, c.Probes, c.AllowedBlocked, c.DeniedOpen, c.explained(), c.Errors, heal)
	}
}

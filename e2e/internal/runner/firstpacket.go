// The first-packet check: a pod created in a namespace under default deny
// is unreachable, and cannot reach out, from its first packet, while the
// agent knows it only from the CNI plugin's announcement (its status never
// carries its address during the window); and with the node's agent frozen,
// pod creation still completes within the plugin's bound and the pod stays
// dropped.

package runner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

// FirstPacketOptions tune the check.
type FirstPacketOptions struct {
	// Window is how long the new pod stays without an address in its
	// status after its servers are up (the kubelet's status update
	// delayed), probed all along. Default 2s.
	Window time.Duration
	// ProbeTimeout bounds one probe; a tight loop of short probes makes
	// each new connection a new first packet. Default 150ms.
	ProbeTimeout time.Duration
}

// Namespaces and ports of the check.
const (
	fpDenyNS  = "fp-deny" // default deny, both directions
	fpOpenNS  = "fp-open" // no policy: the probing peers
	fpTCPPort = 80
	fpUDPPort = 81
	// fpMaxProbes bounds each probe loop whatever the timings.
	fpMaxProbes = 5000
)

// fpTotals add up the probe loops of one condition (agent running or
// frozen) for the summary.
type fpTotals struct{ loops, probes, connected int }

// probeTally counts one probe loop's results.
type probeTally struct {
	mu                       sync.Mutex
	sent, connected, noRoute int
	firstSent, lastSent      time.Time
	leaks                    []string // what connected, with when
	stopped                  chan struct{}
	done                     chan struct{}
	name                     string
}

func (t *probeTally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprintf("%s: %d probes over %.1fs (%d before the address existed), %d connected",
		t.name, t.sent, t.lastSent.Sub(t.firstSent).Seconds(), t.noRoute, t.connected)
}

// FirstPacket runs the check on every node and reports what it saw; ok is
// false when any probe connected during a window, a positive control
// failed, or pod creation with the agent frozen exceeded its bound.
func (r *Runner) FirstPacket(ctx context.Context, opt FirstPacketOptions) (ok bool, err error) {
	if opt.Window == 0 {
		opt.Window = 2 * time.Second
	}
	if opt.ProbeTimeout == 0 {
		opt.ProbeTimeout = 150 * time.Millisecond
	}
	if r.K.ChainPlugin == "" {
		return false, errors.New("the cluster does not run nftpolicy with its CNI plugin (AGENT=nftpolicy)")
	}
	defer func() { r.K.BeforeCNI = nil }()
	servers := []kubelet.Server{{Port: fpTCPPort, Protocol: "TCP"}, {Port: fpUDPPort, Protocol: "UDP"}}
	for _, ns := range []string{fpDenyNS, fpOpenNS} {
		if err := r.ensureNamespace(ctx, scenario.Namespace{Name: ns, Labels: map[string]string{"fp": ns}}); err != nil {
			return false, err
		}
	}
	if _, err := r.CS.NetworkingV1().NetworkPolicies(fpDenyNS).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "default-deny"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}},
	}, metav1.CreateOptions{}); err != nil {
		return false, fmt.Errorf("default deny: %w", err)
	}
	// One open peer per node (probe sources and targets), and one
	// sentinel per node under default deny: once every sentinel is
	// unreachable, every node's agent enforces the policy, so what follows
	// tests the new pods, not how fast policies propagate.
	peers := map[string]*kubelet.Pod{}
	var sentinels []*kubelet.Pod
	for _, n := range r.State.Nodes {
		for _, spec := range []kubelet.PodSpec{
			{Namespace: fpOpenNS, Name: "peer-" + n.Name, IP: hostInCIDR(n.PodCIDR, 240), Servers: servers, NoService: true},
			{Namespace: fpDenyNS, Name: "sentinel-" + n.Name, IP: hostInCIDR(n.PodCIDR, 241), Servers: servers, NoService: true},
		} {
			p, err := r.K.CreatePod(ctx, spec)
			if err != nil {
				return false, err
			}
			r.pods[spec.Key()] = p
			if spec.Namespace == fpOpenNS {
				peers[n.Name] = p
			} else {
				sentinels = append(sentinels, p)
			}
		}
	}
	for _, s := range sentinels {
		peer := peers[otherNode(r.State.Nodes, s.Node.Name)]
		if err := waitConnect(ctx, peer.NetNS, netip.AddrPortFrom(s.IP, fpTCPPort), false, 20*time.Second); err != nil {
			return false, fmt.Errorf("default deny never reached %s's node: %w", s.Spec.Key(), err)
		}
	}
	// The probes can see a connection: peers reach each other.
	for _, n := range r.State.Nodes {
		p, q := peers[n.Name], peers[otherNode(r.State.Nodes, n.Name)]
		if err := waitConnect(ctx, p.NetNS, netip.AddrPortFrom(q.IP, fpTCPPort), true, 10*time.Second); err != nil {
			return false, fmt.Errorf("control: %s cannot reach %s: %w", p.Spec.Key(), q.Spec.Key(), err)
		}
	}

	ok = true
	var created []*kubelet.Pod
	var running, frozen fpTotals
	defer func() {
		if err == nil {
			fmt.Fprintf(r.Out, "first-packet: agent running: %d probe loops, %d probes, %d connected; agent frozen: %d loops, %d probes, %d connected\n",
				running.loops, running.probes, running.connected, frozen.loops, frozen.probes, frozen.connected)
		}
	}()
	for i, n := range r.State.Nodes {
		p, good, err := r.firstPacketPod(ctx, opt, n, peers, servers, fmt.Sprintf("new-%d", i+1), 200+i, false, &running)
		if err != nil {
			return false, err
		}
		ok = ok && good
		created = append(created, p)
	}
	// The agent frozen (SIGSTOP, the worst case: its socket accepts, but
	// nothing answers) on the first node.
	p, good, err := r.firstPacketPod(ctx, opt, r.State.Nodes[0], peers, servers, "agent-stopped", 210, true, &frozen)
	if err != nil {
		return false, err
	}
	ok = ok && good
	created = append(created, p)

	// Positive control: once a policy admits them, the same probes reach
	// the new pods and the new pods reach out; so the zeros above are
	// drops, not probes that could never connect.
	if _, err := r.CS.NetworkingV1().NetworkPolicies(fpDenyNS).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "allow-open"},
		Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"fp": fpOpenNS}}}}}},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"fp": fpOpenNS}}}}}},
		},
	}, metav1.CreateOptions{}); err != nil {
		return false, fmt.Errorf("allow policy: %w", err)
	}
	for _, p := range created {
		peer := peers[otherNode(r.State.Nodes, p.Node.Name)]
		if err := waitConnect(ctx, peer.NetNS, netip.AddrPortFrom(p.IP, fpTCPPort), true, 10*time.Second); err != nil {
			ok = false
			fmt.Fprintf(r.Out, "FAIL first-packet control: %s never reached %s once allowed: %v\n", peer.Spec.Key(), p.Spec.Key(), err)
		}
		if err := waitConnect(ctx, p.NetNS, netip.AddrPortFrom(peer.IP, fpTCPPort), true, 10*time.Second); err != nil {
			ok = false
			fmt.Fprintf(r.Out, "FAIL first-packet control: %s never reached %s once allowed: %v\n", p.Spec.Key(), peer.Spec.Key(), err)
		}
	}
	return ok, nil
}

// firstPacketPod creates one pod under default deny on node n, at the
// address .host of its pod CIDR, probing it from both peers and from
// inside it from before it has an address until the window after its
// servers are up has passed (then it is marked Running). With frozen, the
// node's agent is stopped around the creation.
func (r *Runner) firstPacketPod(ctx context.Context, opt FirstPacketOptions, n cluster.Node, peers map[string]*kubelet.Pod,
	servers []kubelet.Server, name string, host int, frozen bool, totals *fpTotals) (*kubelet.Pod, bool, error) {
	ip := netip.MustParseAddr(hostInCIDR(n.PodCIDR, host))
	other := peers[otherNode(r.State.Nodes, n.Name)]
	var tallies []*probeTally
	start := func(t *probeTally, netnsName string, dst netip.AddrPort, udp bool) {
		t.stopped, t.done = make(chan struct{}), make(chan struct{})
		tallies = append(tallies, t)
		go probeLoop(t, netnsName, dst, udp, opt.ProbeTimeout)
	}
	// Into the new pod, from the same node and from another node.
	for _, src := range []*kubelet.Pod{peers[n.Name], other} {
		start(&probeTally{name: fmt.Sprintf("%s -> %s tcp", src.Spec.Key(), name)}, src.NetNS, netip.AddrPortFrom(ip, fpTCPPort), false)
		start(&probeTally{name: fmt.Sprintf("%s -> %s udp", src.Spec.Key(), name)}, src.NetNS, netip.AddrPortFrom(ip, fpUDPPort), true)
	}
	// Out of the new pod, from the moment its namespace exists (before
	// the CNI gives it an address).
	r.K.BeforeCNI = func(p *kubelet.Pod) {
		for _, dst := range []*kubelet.Pod{peers[n.Name], other} {
			start(&probeTally{name: fmt.Sprintf("%s -> %s tcp", name, dst.Spec.Key())}, p.NetNS, netip.AddrPortFrom(dst.IP, fpTCPPort), false)
			start(&probeTally{name: fmt.Sprintf("%s -> %s udp", name, dst.Spec.Key())}, p.NetNS, netip.AddrPortFrom(dst.IP, fpUDPPort), true)
		}
	}
	stopAll := func() {
		for _, t := range tallies {
			close(t.stopped)
			<-t.done
		}
	}
	agent := n.Name + "-agent"
	if frozen {
		if err := r.Cfg.Signal(agent, syscall.SIGSTOP); err != nil {
			stopAll()
			return nil, false, err
		}
	}
	createStart := time.Now()
	p, err := r.K.CreatePod(ctx, kubelet.PodSpec{Namespace: fpDenyNS, Name: name, IP: ip.String(), Servers: servers, Pending: true, NoService: true})
	created := time.Since(createStart)
	r.K.BeforeCNI = nil
	if err != nil {
		if frozen {
			_ = r.Cfg.Signal(agent, syscall.SIGCONT)
		}
		stopAll()
		return nil, false, err
	}
	r.pods[p.Spec.Key()] = p
	// The widened window: servers up, the status without an address.
	sleepCtx(ctx, opt.Window)
	if frozen {
		if err := r.Cfg.Signal(agent, syscall.SIGCONT); err != nil {
			stopAll()
			return p, false, err
		}
		// Thawed, the agent programs the pod it was told of (default
		// deny): probing goes on meanwhile.
		sleepCtx(ctx, opt.Window)
	}
	if err := r.K.MarkRunning(ctx, p); err != nil {
		stopAll()
		return p, false, err
	}
	sleepCtx(ctx, opt.Window/2)
	stopAll()

	ok := true
	what := "agent running"
	if frozen {
		what = "agent frozen (SIGSTOP)"
	}
	fmt.Fprintf(r.Out, "first-packet %s on %s (%s): pod creation %.2fs, of it CNI ADD %.2fs\n", p.Spec.Key(), n.Name, what, created.Seconds(), p.CNIAdd.Seconds())
	if frozen {
		// The plugin gives up after its timeout: creation must not wait
		// longer than that and the rest of the pod's setup (generous:
		// this machine is shared).
		if bound := kubelet.ChainPluginTimeout + 5*time.Second; p.CNIAdd > bound {
			ok = false
			fmt.Fprintf(r.Out, "FAIL first-packet: CNI ADD with the agent frozen took %.2fs, bound %v\n", p.CNIAdd.Seconds(), bound)
		}
	}
	for _, t := range tallies {
		fmt.Fprintf(r.Out, "    %s\n", t)
		totals.loops++
		totals.probes += t.sent - t.noRoute
		totals.connected += t.connected
		if t.sent-t.noRoute == 0 {
			ok = false
			fmt.Fprintf(r.Out, "FAIL first-packet: %s never probed the pod's address\n", t.name)
		}
		for _, l := range t.leaks {
			ok = false
			fmt.Fprintf(r.Out, "FAIL first-packet: %s connected %s\n", t.name, l)
		}
	}
	return p, ok, nil
}

// probeLoop probes dst from network namespace netnsName until t.stopped
// closes (or fpMaxProbes): TCP connects, or UDP datagrams waiting for the
// answer; each probe is a new connection, so its first packet meets the
// rules. A connection is a leak.
func probeLoop(t *probeTally, netnsName string, dst netip.AddrPort, udp bool, timeout time.Duration) {
	defer close(t.done)
	start := time.Now()
	for i := 0; i < fpMaxProbes; i++ {
		select {
		case <-t.stopped:
			return
		default:
		}
		sent := time.Now()
		connected, noRoute := probeOnce(netnsName, dst, udp, timeout)
		t.mu.Lock()
		if t.sent == 0 {
			t.firstSent = sent
		}
		t.sent++
		t.lastSent = sent
		switch {
		case connected:
			t.connected++
			if len(t.leaks) < 5 {
				t.leaks = append(t.leaks, fmt.Sprintf("at +%.3fs", sent.Sub(start).Seconds()))
			}
		case noRoute:
			t.noRoute++
		}
		t.mu.Unlock()
		if noRoute {
			// No address or route yet: do not spin.
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// probeOnce makes one probe from inside netnsName. noRoute: the namespace
// has no address or route to dst yet (the probe sent nothing).
func probeOnce(netnsName string, dst netip.AddrPort, udp bool, timeout time.Duration) (connected, noRoute bool) {
	network := "tcp"
	if udp {
		network = "udp"
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := cluster.DialInNetNS(ctx, netnsName, network, dst.String())
	if err != nil {
		return false, errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EADDRNOTAVAIL)
	}
	defer c.Close()
	if !udp {
		// The handshake completed: the SYN passed every rule.
		return true, false
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("first-packet\n")); err != nil {
		return false, errors.Is(err, syscall.ENETUNREACH)
	}
	// The podserver answers each datagram with its name.
	buf := make([]byte, 256)
	nr, err := c.Read(buf)
	return err == nil && nr > 0 && strings.Contains(string(buf[:nr]), "/"), false
}

// waitConnect probes addr over TCP from netnsName until the outcome is
// want (connected or not), for at most bound.
func waitConnect(ctx context.Context, netnsName string, addr netip.AddrPort, want bool, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for {
		connected, _ := probeOnce(netnsName, addr, false, 300*time.Millisecond)
		if connected == want {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: connected=%v after %v, want %v", addr, connected, bound, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hostInCIDR is address number host of an IPv4 /24 (the local cluster's
// pod CIDRs).
func hostInCIDR(cidr string, host int) string {
	p := netip.MustParsePrefix(cidr).Masked().Addr().As4()
	p[3] = byte(host)
	return netip.AddrFrom4(p).String()
}

// otherNode names a node other than name (the next one).
func otherNode(nodes []cluster.Node, name string) string {
	for i, n := range nodes {
		if n.Name == name {
			return nodes[(i+1)%len(nodes)].Name
		}
	}
	return nodes[0].Name
}

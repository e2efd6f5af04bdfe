//go:build linux

package kernel

// IP plan (real traffic, all inside throwaway namespaces):
//   node: bridge cni0 10.244.1.1/24, fd00:244:1::1/64; veth to c 10.244.9.1/24
//   pod a: 10.244.1.2, fd00:244:1::2 on cni0 (bridged, same node)
//   pod b: 10.244.1.3, fd00:244:1::3 on cni0 (bridged, same node)
//   pod c: 10.244.9.2, routed through the node (no bridge)
// b and a both serve TCP 80 and 81 (echo) and UDP 53 and 54 (echo).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/nftpolicy/nftpolicy/nft"
)

const probeTimeout = time.Second

// inNetns runs fn on an OS thread switched into namespace ns. The thread
// stays locked and is discarded when the goroutine ends, so no other
// goroutine ever runs in the pod's namespace. Sockets created by fn stay
// in ns wherever they are used later.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// topology is one node namespace with three pod namespaces.
type topology struct {
	node, a, b, c string
	nodeFd        int
}

func buildTopology(t testing.TB) topology {
	t.Helper()
	var tp topology
	tp.node, tp.nodeFd = newNetns(t, "node")
	tp.a, _ = newNetns(t, "a")
	tp.b, _ = newNetns(t, "b")
	tp.c, _ = newNetns(t, "c")
	inNode := func(args ...string) { run(t, append([]string{"ip", "netns", "exec", tp.node}, args...)...) }
	inNode("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	// Same-node pods are bridged: without these the inet forward hook never
	// sees their packets (br_netfilter).
	inNode("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1")
	inNode("ip", "link", "add", "cni0", "type", "bridge")
	inNode("ip", "addr", "add", "10.244.1.1/24", "dev", "cni0")
	inNode("ip", "addr", "add", "fd00:244:1::1/64", "dev", "cni0", "nodad")
	inNode("ip", "link", "set", "cni0", "up")
	for _, p := range []struct{ ns, veth, v4, v6 string }{
		{tp.a, "veth-a", "10.244.1.2/24", "fd00:244:1::2/64"},
		{tp.b, "veth-b", "10.244.1.3/24", "fd00:244:1::3/64"},
	} {
		attachPod(t, tp.node, p.ns, p.veth, p.v4, p.v6, "10.244.1.1", "fd00:244:1::1")
		inNode("ip", "link", "set", p.veth, "master", "cni0")
	}
	attachPod(t, tp.node, tp.c, "veth-c", "10.244.9.2/24", "", "10.244.9.1", "")
	inNode("ip", "addr", "add", "10.244.9.1/24", "dev", "veth-c")
	return tp
}

// attachPod moves one end of a veth pair into the pod as eth0 and
// configures addresses and default routes.
func attachPod(t testing.TB, node, pod, veth, v4, v6, gw4, gw6 string) {
	t.Helper()
	run(t, "ip", "netns", "exec", node, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod)
	run(t, "ip", "netns", "exec", node, "ip", "link", "set", veth, "up")
	inPod := func(args ...string) { run(t, append([]string{"ip", "netns", "exec", pod}, args...)...) }
	inPod("ip", "link", "set", "lo", "up")
	inPod("ip", "link", "set", "eth0", "up")
	inPod("ip", "addr", "add", v4, "dev", "eth0")
	inPod("ip", "route", "add", "default", "via", gw4)
	if v6 != "" {
		inPod("ip", "addr", "add", v6, "dev", "eth0", "nodad")
		inPod("ip", "-6", "route", "add", "default", "via", gw6)
	}
}

// serve starts TCP and UDP echo servers on ports in namespace ns.
func serve(t testing.TB, ns string, tcpPorts, udpPorts []int) {
	t.Helper()
	err := inNetns(ns, func() error {
		for _, p := range tcpPorts {
			l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
			if err != nil {
				return err
			}
			t.Cleanup(func() { l.Close() })
			go acceptEcho(l)
		}
		for _, p := range udpPorts {
			c, err := net.ListenPacket("udp", fmt.Sprintf(":%d", p))
			if err != nil {
				return err
			}
			t.Cleanup(func() { c.Close() })
			go udpEcho(c)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("servers in %s: %v", ns, err)
	}
}

func acceptEcho(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

func udpEcho(c net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = c.WriteTo(buf[:n], from)
	}
}

// dialTCP connects from namespace ns; the connection can be used anywhere.
func dialTCP(ns string, dst netip.AddrPort) (net.Conn, error) {
	var conn net.Conn
	err := inNetns(ns, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", dst.String(), probeTimeout)
		return err
	})
	return conn, err
}

// echo sends a line and expects it back within the probe timeout.
func echo(c net.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(probeTimeout)); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(c, msg); err != nil {
		return err
	}
	if _, ok := c.(*net.UDPConn); ok {
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(buf[:n])); got != msg {
			return fmt.Errorf("echo %q, want %q", got, msg)
		}
		return nil
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// probe makes one connection (TCP) or exchange (UDP) from ns to dst.
func probe(ns, proto string, dst netip.AddrPort) error {
	if proto == "tcp" {
		c, err := dialTCP(ns, dst)
		if err != nil {
			return err
		}
		defer c.Close()
		return echo(c, "hello")
	}
	var c net.Conn
	if err := inNetns(ns, func() error {
		var err error
		c, err = net.Dial("udp", dst.String())
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	return echo(c, "hello")
}

// flow is one probe and the verdict it must meet.
type flow struct {
	name, from, proto string
	dst               netip.AddrPort
	allowed           bool
}

// checkFlows probes every flow in a subtest of its own: an allowed one
// must connect, a denied one must time out (dropped, not rejected).
func checkFlows(t *testing.T, flows []flow) {
	t.Helper()
	for _, f := range flows {
		t.Run(f.name, func(t *testing.T) {
			err := probe(f.from, f.proto, f.dst)
			switch {
			case f.allowed && err != nil:
				t.Errorf("want allowed, got %v", err)
			case !f.allowed && err == nil:
				t.Errorf("want dropped, but it passed")
			case !f.allowed && !isTimeout(err):
				t.Errorf("want a timeout (drop, not reject), got %v", err)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

var (
	podA4, podA6 = netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("fd00:244:1::2")
	podB4, podB6 = netip.MustParseAddr("10.244.1.3"), netip.MustParseAddr("fd00:244:1::3")
	podC4        = netip.MustParseAddr("10.244.9.2")
)

// packetPolicy: b admits a on TCP 80 and c on UDP 53; c may only send to b
// on UDP 53; a is not isolated.
func packetPolicy() *nft.Ruleset {
	r := nft.NewSkeleton()
	r.AddIsolatedEndpoint(nft.Ingress, "test/b", []netip.Addr{podB4, podB6}, nft.AllowList{Ports: []nft.PortAllow{
		{Peer: nft.Addr(podA4), Proto: nft.ProtoTCP, Ports: nft.Port(80), Comment: "a"},
		{Peer: nft.Addr(podA6), Proto: nft.ProtoTCP, Ports: nft.Port(80), Comment: "a"},
		{Peer: nft.Addr(podC4), Proto: nft.ProtoUDP, Ports: nft.Port(53), Comment: "c"},
	}})
	r.AddIsolatedEndpoint(nft.Egress, "test/c", []netip.Addr{podC4}, nft.AllowList{Ports: []nft.PortAllow{
		{Peer: nft.Addr(podB4), Proto: nft.ProtoUDP, Ports: nft.Port(53), Comment: "b"},
	}})
	return r
}

func TestSync_RealPackets(t *testing.T) {
	requirePrivileges(t)
	tp := buildTopology(t)
	serve(t, tp.a, []int{80}, nil)
	serve(t, tp.b, []int{80, 81}, []int{53, 54})

	flows := []flow{
		{"a to b tcp/80 (bridged)", tp.a, "tcp", netip.AddrPortFrom(podB4, 80), true},
		{"a to b tcp/80 over IPv6 (bridged)", tp.a, "tcp", netip.AddrPortFrom(podB6, 80), true},
		{"a to b tcp/81 (bridged)", tp.a, "tcp", netip.AddrPortFrom(podB4, 81), false},
		{"a to b udp/53 (bridged)", tp.a, "udp", netip.AddrPortFrom(podB4, 53), false},
		{"b to a tcp/80 (bridged)", tp.b, "tcp", netip.AddrPortFrom(podA4, 80), true},
		{"c to b tcp/80 (routed)", tp.c, "tcp", netip.AddrPortFrom(podB4, 80), false},
		{"c to b udp/53 (routed)", tp.c, "udp", netip.AddrPortFrom(podB4, 53), true},
		{"c to b udp/54 (routed)", tp.c, "udp", netip.AddrPortFrom(podB4, 54), false},
		{"c to a tcp/80 (routed)", tp.c, "tcp", netip.AddrPortFrom(podA4, 80), false},
	}
	// Without policy every flow passes: the denials below are ours.
	for _, f := range flows {
		if err := probe(f.from, f.proto, f.dst); err != nil {
			t.Fatalf("baseline %s: %v", f.name, err)
		}
	}

	// The agent's table is there from the start (no pod isolated yet), so
	// conntrack already tracks the connection opened now; the policy then
	// arrives as an incremental sync.
	s := newSyncer(t, tp.nodeFd)
	sync(t, s, nft.NewSkeleton())
	established, err := dialTCP(tp.a, netip.AddrPortFrom(podB4, 81))
	if err != nil {
		t.Fatalf("open connection before policy: %v", err)
	}
	defer established.Close()
	if err := echo(established, "before"); err != nil {
		t.Fatalf("connection before policy: %v", err)
	}
	sync(t, s, packetPolicy())
	checkFlows(t, flows)
	// a→b:81 is denied for new connections, but one established before the
	// policy keeps working (conntrack: ct state established accept).
	if err := echo(established, "still here"); err != nil {
		t.Errorf("established connection a to b tcp/81 broken by policy: %v", err)
	}
}

// A pod whose address is in the unknown-local guard can neither send nor be
// reached, bridged or routed, even where no policy isolates it; once the
// guard no longer holds it (the agent learnt it), it connects.
func TestSync_UnknownLocalRealPackets(t *testing.T) {
	requirePrivileges(t)
	tp := buildTopology(t)
	serve(t, tp.a, []int{80}, []int{53})
	serve(t, tp.b, []int{80}, []int{53})

	s := newSyncer(t, tp.nodeFd)
	guarded := nft.NewSkeleton()
	guarded.SetUnknownLocal([]nft.Range{nft.Addr(podA4), nft.Addr(podA6)})
	sync(t, s, guarded)
	flows := []struct {
		name, from, proto string
		dst               netip.AddrPort
	}{
		{"unknown a to b tcp/80 (bridged)", tp.a, "tcp", netip.AddrPortFrom(podB4, 80)},
		{"unknown a to b udp/53 over IPv6 (bridged)", tp.a, "udp", netip.AddrPortFrom(podB6, 53)},
		{"b to unknown a tcp/80 (bridged)", tp.b, "tcp", netip.AddrPortFrom(podA4, 80)},
		{"c to unknown a udp/53 (routed)", tp.c, "udp", netip.AddrPortFrom(podA4, 53)},
	}
	for _, f := range flows {
		t.Run(f.name, func(t *testing.T) {
			if err := probe(f.from, f.proto, f.dst); err == nil || !isTimeout(err) {
				t.Errorf("want a timeout (dropped), got %v", err)
			}
		})
	}
	sync(t, s, nft.NewSkeleton()) // a is known now
	for _, f := range flows {
		if err := probe(f.from, f.proto, f.dst); err != nil {
			t.Errorf("%s once known: %v", f.name, err)
		}
	}
}

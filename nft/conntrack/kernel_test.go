//go:build linux

package conntrack

// IP plan (real traffic, inside throwaway namespaces; the node routes):
//   node: veth-c 10.244.9.1/24, veth-s 10.244.8.1/24
//   pod c (client): 10.244.9.2
//   pod s (server): 10.244.8.2, TCP echo on 80 and 81, UDP echo on 53
// Before: s admits c on TCP 80, TCP 81 and UDP 53. After: TCP 81 only.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/kernel"
)

var (
	podC = netip.MustParseAddr("10.244.9.2")
	podS = netip.MustParseAddr("10.244.8.2")
)

const answerTimeout = time.Second

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("kernel tests need root (CI is set, so not skipping)")
	}
	t.Skip("kernel tests need root")
}

func run(t testing.TB, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNetns creates a named namespace, removed when the test ends.
func newNetns(t testing.TB, role string) string {
	t.Helper()
	name := fmt.Sprintf("nftp-test-ct-%s-%06d", role, rand.IntN(1000000))
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	return name
}

// inNetns runs fn on a locked OS thread inside ns; the thread is thrown
// away afterwards. Sockets made by fn stay in ns.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// attach links pod to node with a veth pair, routed through gw.
func attach(t *testing.T, node, pod, veth, podCIDR, gwCIDR string) {
	t.Helper()
	gw, _, _ := strings.Cut(gwCIDR, "/")
	run(t, "ip", "netns", "exec", node, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod)
	run(t, "ip", "netns", "exec", node, "ip", "addr", "add", gwCIDR, "dev", veth)
	run(t, "ip", "netns", "exec", node, "ip", "link", "set", veth, "up")
	run(t, "ip", "netns", "exec", pod, "ip", "link", "set", "lo", "up")
	run(t, "ip", "netns", "exec", pod, "ip", "addr", "add", podCIDR, "dev", "eth0")
	run(t, "ip", "netns", "exec", pod, "ip", "link", "set", "eth0", "up")
	run(t, "ip", "netns", "exec", pod, "ip", "route", "add", "default", "via", gw)
}

func serveEcho(t *testing.T, ns string) {
	t.Helper()
	err := inNetns(ns, func() error {
		for _, port := range []int{80, 81} {
			l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
			if err != nil {
				return err
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
				}
			}()
		}
		pc, err := net.ListenPacket("udp", ":53")
		if err != nil {
			return err
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(buf[:n], from)
			}
		}()
		return nil
	})
	if err != nil {
		t.Fatalf("servers in %s: %v", ns, err)
	}
}

func dial(t *testing.T, ns, network string, dst netip.AddrPort) net.Conn {
	t.Helper()
	var c net.Conn
	err := inNetns(ns, func() error {
		var err error
		c, err = net.DialTimeout(network, dst.String(), answerTimeout)
		return err
	})
	if err != nil {
		t.Fatalf("dial %s %s from %s: %v", network, dst, ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends one line over c and waits for its echo.
func exchange(c net.Conn, r *bufio.Reader, msg string) error {
	if err := c.SetDeadline(time.Now().Add(answerTimeout)); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(c, msg); err != nil {
		return err
	}
	var got string
	if r == nil { // UDP: one datagram
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		got = string(buf[:n])
	} else {
		var err error
		if got, err = r.ReadString('\n'); err != nil {
			return err
		}
	}
	if strings.TrimSpace(got) != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// serverRuleset isolates s for ingress and admits c on ports. c is
// isolated for ingress too (it admits nothing), as under a namespace's
// default deny: once an entry is deleted, a packet of the server's that
// is still in flight (a retransmitted echo) would otherwise open the same
// connection again in the reverse direction, which conntrack picks up
// mid-stream (nf_conntrack_tcp_loose) and which nothing denies. README,
// Limitations, says so.
func serverRuleset(ports ...nft.PortAllow) *nft.Ruleset {
	rs := nft.NewSkeleton()
	rs.AddIsolatedEndpoint(nft.Ingress, "x/s", []netip.Addr{podS}, nft.AllowList{Ports: ports})
	rs.AddIsolatedEndpoint(nft.Ingress, "x/c", []netip.Addr{podC}, nft.AllowList{})
	return rs
}

func allowC(proto uint8, port uint16) nft.PortAllow {
	return nft.PortAllow{Peer: nft.Addr(podC), Proto: proto, Ports: nft.Port(port)}
}

// TestClean_CutsWhatTheNewRulesetDenies opens two TCP connections and a
// UDP flow that the first ruleset allows, applies a second one that
// allows only one TCP port, and checks that the denied flows still pass
// until Clean runs (conntrack accepts them), that Clean deletes exactly
// their entries, and that afterwards they are cut while the allowed
// connection goes on without a lost byte.
func TestClean_CutsWhatTheNewRulesetDenies(t *testing.T) {
	requireRoot(t)
	node, c, s := newNetns(t, "node"), newNetns(t, "c"), newNetns(t, "s")
	run(t, "ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	attach(t, node, c, "veth-c", "10.244.9.2/24", "10.244.9.1/24")
	attach(t, node, s, "veth-s", "10.244.8.2/24", "10.244.8.1/24")
	serveEcho(t, s)

	nodeNS, err := netns.GetFromName(node)
	if err != nil {
		t.Fatal(err)
	}
	defer nodeNS.Close()
	syncer, err := kernel.NewSyncer(kernel.WithNetNSFd(int(nodeNS)))
	if err != nil {
		t.Fatal(err)
	}
	cleaner, err := New(WithNetNS(nodeNS))
	if err != nil {
		t.Fatalf("New: %v (this kernel should offer conntrack over netlink)", err)
	}
	defer cleaner.Close()
	ctx := context.Background()

	before := serverRuleset(allowC(nft.ProtoTCP, 80), allowC(nft.ProtoTCP, 81), allowC(nft.ProtoUDP, 53))
	if err := syncer.Sync(ctx, before); err != nil {
		t.Fatal(err)
	}
	cut := dial(t, c, "tcp", netip.AddrPortFrom(podS, 80))
	kept := dial(t, c, "tcp", netip.AddrPortFrom(podS, 81))
	udp := dial(t, c, "udp", netip.AddrPortFrom(podS, 53))
	cutR, keptR := bufio.NewReader(cut), bufio.NewReader(kept)
	for i, f := range []struct {
		c net.Conn
		r *bufio.Reader
	}{{cut, cutR}, {kept, keptR}, {udp, nil}} {
		if err := exchange(f.c, f.r, fmt.Sprintf("before %d", i)); err != nil {
			t.Fatalf("flow %d under the first ruleset: %v", i, err)
		}
	}
	if res, err := cleaner.Clean(ctx, before); err != nil || res.Deleted != 0 {
		t.Fatalf("Clean under the ruleset that allows everything open: %+v, %v; want nothing deleted", res, err)
	}

	after := serverRuleset(allowC(nft.ProtoTCP, 81))
	if err := syncer.Sync(ctx, after); err != nil {
		t.Fatal(err)
	}
	// Conntrack still carries the denied flows: this is the gap Clean closes.
	if err := exchange(cut, cutR, "after sync"); err != nil {
		t.Fatalf("TCP 80 before Clean: %v; want it still open (established connections pass)", err)
	}
	if err := exchange(udp, nil, "after sync"); err != nil {
		t.Fatalf("UDP 53 before Clean: %v; want it still open", err)
	}

	res, err := cleaner.Clean(ctx, after)
	if err != nil {
		t.Fatalf("Clean: %v", err)
	}
	if res.Deleted != 2 {
		t.Errorf("Clean deleted %d entries (%+v), want 2 (TCP 80 and UDP 53)", res.Deleted, res)
	}
	if err := exchange(kept, keptR, "after clean"); err != nil {
		t.Errorf("TCP 81 (still allowed) after Clean: %v", err)
	}
	if err := exchange(cut, cutR, "after clean"); !isTimeout(err) {
		t.Errorf("TCP 80 after Clean: %v, want a timeout (dropped, not reset)", err)
	}
	if err := exchange(udp, nil, "after clean"); !isTimeout(err) {
		t.Errorf("UDP 53 after Clean: %v, want a timeout", err)
	}
	// The allowed connection lost nothing: a run of exchanges all echo.
	for i := range 20 {
		if err := exchange(kept, keptR, fmt.Sprintf("kept %d", i)); err != nil {
			t.Fatalf("TCP 81 exchange %d after Clean: %v", i, err)
		}
	}
}

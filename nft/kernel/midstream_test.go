//go:build linux

package kernel

// IP plan: buildTopology's (pods a 10.244.1.2, fd00:244:1::2 and b
// 10.244.1.3, fd00:244:1::3 bridged on the node, c 10.244.9.2 routed).
// One TCP connection per case, to port 8080 of the server; its conntrack
// entry is deleted on the node as the conntrack cleanup deletes the entry
// of a connection a tightened policy denies, and then the server speaks
// first.

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/nft"
)

// pickupWait bounds how long a packet that should not arrive is awaited:
// longer than the first TCP retransmission (RTO 200 ms at least), so a
// retransmitted segment would be picked up too.
const pickupWait = 1500 * time.Millisecond

// TestSync_MidStreamPickupRefused: after the conntrack entry of a denied
// connection is gone, the server's next segment (an ACK without SYN) must
// not be picked up as a new connection from server to client, neither
// when the server is judged for ingress nor when the client is judged for
// egress. The control runs the same steps on the table without the
// mid-stream check, where this kernel picks the segment up
// (nf_conntrack_tcp_loose) and the connection comes back: that is what
// the check prevents, and proves the steps reproduce it.
func TestSync_MidStreamPickupRefused(t *testing.T) {
	requirePrivileges(t)
	const port = 8080
	cases := []struct {
		name               string
		client, server     func(topology) string
		clientIP, serverIP netip.Addr
		// allowed admits the connection; tightened denies it.
		allowed, tightened func() *nft.Ruleset
	}{
		{
			name:   "server judged for ingress (bridged)",
			client: func(tp topology) string { return tp.a }, server: func(tp topology) string { return tp.b },
			clientIP: podA4, serverIP: podB4,
			allowed: func() *nft.Ruleset {
				r := nft.NewSkeleton()
				r.AddIsolatedEndpoint(nft.Ingress, "test/b", []netip.Addr{podB4}, nft.AllowList{Ports: []nft.PortAllow{
					{Peer: nft.Addr(podA4), Proto: nft.ProtoTCP, Ports: nft.Port(port), Comment: "a"},
				}})
				return r
			},
			tightened: func() *nft.Ruleset {
				r := nft.NewSkeleton()
				r.AddIsolatedEndpoint(nft.Ingress, "test/b", []netip.Addr{podB4}, nft.AllowList{})
				return r
			},
		},
		{
			name:   "server judged for ingress, IPv6 (bridged)",
			client: func(tp topology) string { return tp.a }, server: func(tp topology) string { return tp.b },
			clientIP: podA6, serverIP: podB6,
			allowed: func() *nft.Ruleset {
				r := nft.NewSkeleton()
				r.AddIsolatedEndpoint(nft.Ingress, "test/b", []netip.Addr{podB4, podB6}, nft.AllowList{Ports: []nft.PortAllow{
					{Peer: nft.Addr(podA6), Proto: nft.ProtoTCP, Ports: nft.Port(port), Comment: "a"},
				}})
				return r
			},
			tightened: func() *nft.Ruleset {
				r := nft.NewSkeleton()
				r.AddIsolatedEndpoint(nft.Ingress, "test/b", []netip.Addr{podB4, podB6}, nft.AllowList{})
				return r
			},
		},
		{
			name:   "client judged for egress (routed)",
			client: func(tp topology) string { return tp.c }, server: func(tp topology) string { return tp.a },
			clientIP: podC4, serverIP: podA4,
			allowed: func() *nft.Ruleset {
				r := nft.NewSkeleton()
				r.AddIsolatedEndpoint(nft.Egress, "test/c", []netip.Addr{podC4}, nft.AllowList{Ports: []nft.PortAllow{
					{Peer: nft.Addr(podA4), Proto: nft.ProtoTCP, Ports: nft.Port(port), Comment: "a"},
				}})
				return r
			},
			tightened: func() *nft.Ruleset {
				r := nft.NewSkeleton()
				r.AddIsolatedEndpoint(nft.Egress, "test/c", []netip.Addr{podC4}, nft.AllowList{})
				return r
			},
		},
	}
	for _, tc := range cases {
		for _, check := range []bool{true, false} {
			name := tc.name
			if !check {
				name += ", control without the check"
			}
			t.Run(name, func(t *testing.T) {
				tp := buildTopology(t)
				s := newSyncer(t, tp.nodeFd)
				tableFor := func(r *nft.Ruleset) *nft.Ruleset {
					if !check {
						return withoutMidStreamCheck(t, r)
					}
					return r
				}
				sync(t, s, tableFor(tc.allowed()))
				cc, sc := connectPair(t, tc.client(tp), tc.server(tp), netip.AddrPortFrom(tc.serverIP, port))
				if err := sendLine(cc, sc, "hello"); err != nil {
					t.Fatalf("client to server before the policy: %v", err)
				}
				if err := sendLine(sc, cc, "hello back"); err != nil {
					t.Fatalf("server to client before the policy: %v", err)
				}

				// What the agent does: the tightened table, then the
				// connection's entry deleted.
				sync(t, s, tableFor(tc.tightened()))
				assertReadback(t, tp.node, tableFor(tc.tightened()))
				out := run(t, "ip", "netns", "exec", tp.node, "conntrack", "-D", "-p", "tcp",
					"-s", tc.clientIP.String(), "-d", tc.serverIP.String(), "--dport", fmt.Sprint(port))
				if !strings.Contains(out, "1 flow entries have been deleted") {
					t.Fatalf("deleting the connection's conntrack entry: %s", out)
				}

				err := sendLine(sc, cc, "late")
				pickedUp := conntrackEntries(t, tp.node, tc.serverIP, tc.clientIP)
				if !check {
					if err != nil {
						t.Fatalf("control: the server's segment was not picked up (%v); the steps no longer reproduce a pickup", err)
					}
					if pickedUp == 0 {
						t.Errorf("control: no conntrack entry from server to client after the pickup")
					}
					if err := sendLine(cc, sc, "back again"); err != nil {
						t.Errorf("control: the client's next segment rides the picked-up entry: %v", err)
					}
					return
				}
				if err == nil {
					t.Fatalf("the server's segment reached the client: picked up mid-stream")
				}
				if !isTimeout(err) {
					t.Fatalf("want a timeout (dropped), got %v", err)
				}
				if pickedUp != 0 {
					t.Errorf("%d conntrack entries from server to client: a segment was picked up", pickedUp)
				}
				// The client's own next segment is judged as a new
				// connection by the tightened policy, and dropped.
				if err := sendLine(cc, sc, "still there?"); err == nil || !isTimeout(err) {
					t.Errorf("client to server after the cut: want a timeout, got %v", err)
				}
				// A connection the table allows opens with its handshake.
				sync(t, s, tc.allowed())
				nc, ns := connectPair(t, tc.client(tp), tc.server(tp), netip.AddrPortFrom(tc.serverIP, port))
				if err := sendLine(nc, ns, "new"); err != nil {
					t.Errorf("new connection once allowed again: %v", err)
				}
			})
		}
	}
}

// withoutMidStreamCheck removes the forward chain's jump into the
// mid-stream chain (the control's table).
func withoutMidStreamCheck(t *testing.T, r *nft.Ruleset) *nft.Ruleset {
	t.Helper()
	fwd := *r.Chains[nft.ChainForward]
	fwd.Rules = slices.DeleteFunc(slices.Clone(fwd.Rules), func(rule nft.Rule) bool {
		return rule.Verdict == nft.Jump(nft.ChainMidStream)
	})
	if len(fwd.Rules) != len(r.Chains[nft.ChainForward].Rules)-1 {
		t.Fatalf("the forward chain has no single jump to %s", nft.ChainMidStream)
	}
	r.Chains[nft.ChainForward] = &fwd
	return r
}

// connectPair opens a TCP connection from namespace client to dst, served
// by a listener in namespace server, and returns both ends.
func connectPair(t *testing.T, client, server string, dst netip.AddrPort) (clientConn, serverConn net.Conn) {
	t.Helper()
	var l net.Listener
	if err := inNetns(server, func() error {
		var err error
		l, err = net.Listen("tcp", fmt.Sprintf(":%d", dst.Port()))
		return err
	}); err != nil {
		t.Fatalf("listen in %s: %v", server, err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			c = nil
		}
		accepted <- c
	}()
	cc, err := dialTCP(client, dst)
	if err != nil {
		t.Fatalf("connect %s to %s: %v", client, dst, err)
	}
	t.Cleanup(func() { cc.Close() })
	select {
	case sc := <-accepted:
		if sc == nil {
			t.Fatal("accept failed")
		}
		t.Cleanup(func() { sc.Close() })
		return cc, sc
	case <-time.After(probeTimeout):
		t.Fatal("no connection accepted")
	}
	return nil, nil
}

// sendLine writes msg on from and waits up to pickupWait for it on to.
func sendLine(from, to net.Conn, msg string) error {
	if _, err := fmt.Fprintln(from, msg); err != nil {
		return err
	}
	if err := to.SetReadDeadline(time.Now().Add(pickupWait)); err != nil {
		return err
	}
	got, err := bufio.NewReader(to).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != msg {
		return fmt.Errorf("read %q, want %q", got, msg)
	}
	return nil
}

// conntrackEntries counts the node's TCP entries whose original direction
// goes from src to dst.
func conntrackEntries(t *testing.T, node string, src, dst netip.Addr) int {
	t.Helper()
	out, _ := tryRun("ip", "netns", "exec", node, "conntrack", "-L", "-p", "tcp", "-s", src.String(), "-d", dst.String())
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "tcp ") {
			n++
		}
	}
	return n
}

package podserver

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// IP plan: loopback only; the servers listen on free ports of 127.0.0.1's
// wildcard address, probes go to 127.0.0.1.

func newTestServer(name string) *server {
	s := &server{name: name, listeners: map[Server]func(){}, sctpPorts: map[uint16]bool{}, seen: map[uint32]time.Time{}}
	s.seenCond = sync.NewCond(&s.mu)
	return s
}

// freePort returns a port of network ("tcp" or "udp") that is free now.
func freePort(t *testing.T, network string) int32 {
	t.Helper()
	switch network {
	case "tcp":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return int32(l.Addr().(*net.TCPAddr).Port)
	default:
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return int32(c.LocalAddr().(*net.UDPAddr).Port)
	}
}

func TestProbe_ReportsWhoAnswered(t *testing.T) {
	tcpPort, udpPort := freePort(t, "tcp"), freePort(t, "udp")
	srv := newTestServer("x/b")
	if err := srv.serve([]Server{{Port: tcpPort, Protocol: "TCP"}, {Port: udpPort, Protocol: "UDP"}}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.serve(nil) }()
	client := newTestServer("x/a")
	closedPort := freePort(t, "tcp")
	for _, tc := range []struct {
		name, proto string
		port        int32
		want        Response
	}{
		{name: "tcp", proto: "TCP", port: tcpPort, want: Response{Result: Connected, Answer: "x/b"}},
		{name: "udp", proto: "UDP", port: udpPort, want: Response{Result: Connected, Answer: "x/b"}},
		{name: "tcp to a closed port is refused, not connected", proto: "TCP", port: closedPort, want: Response{Result: Refused}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := client.probe(Request{Op: "probe", Protocol: tc.proto, Addr: net.JoinHostPort("127.0.0.1", itoa(tc.port)), Timeout: 1000})
			if got.Result != tc.want.Result || got.Answer != tc.want.Answer {
				t.Errorf("probe = %+v, want result %q answer %q", got, tc.want.Result, tc.want.Answer)
			}
		})
	}
}

func itoa(p int32) string { return strconv.Itoa(int(p)) }

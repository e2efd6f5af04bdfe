// Package podserver is what runs inside each pod's network namespace: the
// scenario's servers (TCP accept-and-answer, UDP answer-each-datagram, SCTP
// INIT recorder on a raw socket) and a control socket through which the
// runner asks the pod to probe others and asks whether SCTP INITs arrived.
//
// The control socket is a unix socket in the state directory: unix sockets
// are named in the file system, not the network namespace, so the runner
// reaches every pod without using the network under test.
package podserver

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Server is one port the pod serves.
type Server struct {
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"` // TCP | UDP | SCTP
}

// Request is one control request (one per connection).
type Request struct {
	Op       string   `json:"op"` // ping | serve | probe | seen | flow-start | flow-status | flow-stop
	Servers  []Server `json:"servers,omitempty"`
	Protocol string   `json:"protocol,omitempty"`
	Addr     string   `json:"addr,omitempty"` // ip:port
	Timeout  int      `json:"timeoutMs,omitempty"`
	Tag      uint32   `json:"tag,omitempty"`
	// Flow names a long-lived flow (flow-* ops); Interval is its send
	// period in milliseconds.
	Flow     string `json:"flow,omitempty"`
	Interval int    `json:"intervalMs,omitempty"`
}

// Result values of a probe.
const (
	Connected = "connected"
	Timeout   = "timeout"
	Refused   = "refused"
	Failed    = "error"
	Sent      = "sent"
)

// Response answers a Request.
type Response struct {
	Result string `json:"result,omitempty"`
	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
	// Answer is the name the server that answered a TCP or UDP probe gave,
	// so the runner can tell a connection to the wrong pod from a right one.
	Answer string `json:"answer,omitempty"`
	// Flow is the state of a flow (flow-* ops).
	Flow *FlowStatus `json:"flow,omitempty"`
}

type server struct {
	name string

	mu        sync.Mutex
	listeners map[Server]func() // close functions
	sctpPorts map[uint16]bool
	seen      map[uint32]time.Time
	seenCond  *sync.Cond
	flows     map[string]*flow
}

// Run serves the control socket at ctl until the process is killed.
func Run(name, ctl string) error {
	s := &server{name: name, listeners: map[Server]func(){}, sctpPorts: map[uint16]bool{}, seen: map[uint32]time.Time{}, flows: map[string]*flow{}}
	s.seenCond = sync.NewCond(&s.mu)
	_ = os.Remove(ctl)
	l, err := net.Listen("unix", ctl)
	if err != nil {
		return err
	}
	log.Printf("podserver %s: control socket %s", name, ctl)
	if err := s.startSCTP(); err != nil {
		log.Printf("sctp raw receiver: %v", err)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go s.handle(c)
	}
}

func (s *server) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var req Request
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil {
		return
	}
	var resp Response
	switch req.Op {
	case "ping":
		resp.Result = "ok"
	case "serve":
		if err := s.serve(req.Servers); err != nil {
			resp.Error = err.Error()
		} else {
			resp.Result = "ok"
		}
	case "probe":
		resp = s.probe(req)
	case "seen":
		resp.Result = s.waitSeen(req.Tag, time.Duration(req.Timeout)*time.Millisecond)
	case "flow-start", "flow-status", "flow-stop":
		resp = s.flowOp(req)
	default:
		resp.Error = "unknown op " + req.Op
	}
	_ = json.NewEncoder(c).Encode(resp)
}

// serve makes the listening set equal to servers.
func (s *server) serve(servers []Server) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[Server]bool{}
	for _, sv := range servers {
		want[sv] = true
	}
	for sv, closer := range s.listeners {
		if !want[sv] {
			closer()
			delete(s.listeners, sv)
		}
	}
	s.sctpPorts = map[uint16]bool{}
	var errs []error
	for sv := range want {
		if sv.Protocol == "SCTP" {
			s.sctpPorts[uint16(sv.Port)] = true
			s.listeners[sv] = func() {}
			continue
		}
		if _, ok := s.listeners[sv]; ok {
			continue
		}
		closer, err := s.listen(sv)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.listeners[sv] = closer
	}
	return errors.Join(errs...)
}

func (s *server) listen(sv Server) (func(), error) {
	addr := fmt.Sprintf(":%d", sv.Port)
	answer := []byte(s.name + "\n")
	switch sv.Protocol {
	case "TCP":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go answerAndEcho(c, answer)
			}
		}()
		return func() { l.Close() }, nil
	case "UDP":
		// One socket per family: each answers from the address the
		// datagram was sent to (see answerUDP4, answerUDP6).
		var closers []func()
		for _, serve := range []func(string, []byte) (func(), error){answerUDP4, answerUDP6} {
			closer, err := serve(addr, answer)
			if err != nil {
				for _, c := range closers {
					c()
				}
				return nil, err
			}
			closers = append(closers, closer)
		}
		return func() {
			for _, c := range closers {
				c()
			}
		}, nil
	}
	return nil, fmt.Errorf("unsupported protocol %q", sv.Protocol)
}

// answerUDP4 answers every IPv4 datagram to addr with answer, from the
// address the datagram was sent to: a server on the host network has
// several (the node's, flannel.1's, cni0's), and a reply from the one
// routing would pick is dropped by the client's connected socket, as DNS
// servers know.
func answerUDP4(addr string, answer []byte) (func(), error) {
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return nil, err
	}
	p := ipv4.NewPacketConn(pc)
	if err := p.SetControlMessage(ipv4.FlagDst, true); err != nil {
		pc.Close()
		return nil, err
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			_, cm, from, err := p.ReadFrom(buf)
			if err != nil {
				return
			}
			var reply *ipv4.ControlMessage
			if cm != nil {
				reply = &ipv4.ControlMessage{Src: cm.Dst}
			}
			_, _ = p.WriteTo(answer, reply, from)
		}
	}()
	return func() { pc.Close() }, nil
}

// answerUDP6 is answerUDP4 for IPv6. A namespace without IPv6 addresses
// still opens the socket (the loopback has ::1).
func answerUDP6(addr string, answer []byte) (func(), error) {
	pc, err := net.ListenPacket("udp6", addr)
	if err != nil {
		return nil, err
	}
	p := ipv6.NewPacketConn(pc)
	if err := p.SetControlMessage(ipv6.FlagDst, true); err != nil {
		pc.Close()
		return nil, err
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			_, cm, from, err := p.ReadFrom(buf)
			if err != nil {
				return
			}
			var reply *ipv6.ControlMessage
			if cm != nil {
				reply = &ipv6.ControlMessage{Src: cm.Dst}
			}
			_, _ = p.WriteTo(answer, reply, from)
		}
	}()
	return func() { pc.Close() }, nil
}

// startSCTP records the initiate tag of every SCTP INIT that arrives for a
// served SCTP port. This kernel has no SCTP sockets; raw IPv4 and IPv6
// sockets of protocol 132 see the packets anyway.
func (s *server) startSCTP() error {
	fd4, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_SCTP)
	if err != nil {
		return err
	}
	go s.recordSCTP(fd4, true)
	fd6, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_RAW, syscall.IPPROTO_SCTP)
	if err != nil {
		return err
	}
	go s.recordSCTP(fd6, false)
	return nil
}

// recordSCTP reads a raw SCTP socket: an IPv4 one delivers the IP header
// with the packet, an IPv6 one only the SCTP packet.
func (s *server) recordSCTP(fd int, withIPHeader bool) {
	buf := make([]byte, 65536)
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			log.Printf("sctp recv: %v", err)
			return
		}
		pkt := buf[:n]
		if n < 20 {
			continue
		}
		sctp := pkt
		if withIPHeader {
			sctp = pkt[int(pkt[0]&0x0f)*4:]
		}
		if len(sctp) < 12+20 || sctp[12] != 1 { // chunk type 1 = INIT
			continue
		}
		dport := binary.BigEndian.Uint16(sctp[2:4])
		tag := binary.BigEndian.Uint32(sctp[16:20])
		s.mu.Lock()
		if s.sctpPorts[dport] {
			s.seen[tag] = time.Now()
			if len(s.seen) > 4096 {
				for k, t := range s.seen {
					if time.Since(t) > time.Minute {
						delete(s.seen, k)
					}
				}
			}
			s.seenCond.Broadcast()
		}
		s.mu.Unlock()
	}
}

func (s *server) waitSeen(tag uint32, d time.Duration) string {
	deadline := time.Now().Add(d)
	t := time.AfterFunc(d, func() { s.mu.Lock(); s.seenCond.Broadcast(); s.mu.Unlock() })
	defer t.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if _, ok := s.seen[tag]; ok {
			return Connected
		}
		if !time.Now().Before(deadline) {
			return Timeout
		}
		s.seenCond.Wait()
	}
}

// probe connects to req.Addr from this pod. A TCP probe reads the server's
// answer (its pod name) before closing, so the connection ends in an
// orderly close and the runner learns who answered.
func (s *server) probe(req Request) Response {
	d := time.Duration(req.Timeout) * time.Millisecond
	if d <= 0 {
		d = time.Second
	}
	var conn net.Conn
	var err error
	switch req.Protocol {
	case "TCP":
		conn, err = net.DialTimeout("tcp", req.Addr, d)
		if err != nil {
			return classified(err)
		}
	case "UDP":
		conn, err = net.Dial("udp", req.Addr)
		if err != nil {
			return Response{Result: Failed, Detail: err.Error()}
		}
		_ = conn.SetDeadline(time.Now().Add(d))
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			conn.Close()
			return classified(err)
		}
	case "SCTP":
		if err := sendSCTPInit(req.Addr, req.Tag); err != nil {
			return Response{Result: Failed, Detail: err.Error()}
		}
		return Response{Result: Sent}
	default:
		return Response{Result: Failed, Detail: "unknown protocol " + req.Protocol}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err != nil && req.Protocol == "UDP" {
		return classified(err) // no answer: the datagram or its reply was dropped
	}
	return Response{Result: Connected, Answer: strings.TrimSpace(string(buf[:n])), Detail: "from " + conn.LocalAddr().String()}
}

func classified(err error) Response {
	r, d := classify(err)
	return Response{Result: r, Detail: d}
}

func classify(err error) (string, string) {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused, err.Error()
	case errors.As(err, &ne) && ne.Timeout():
		return Timeout, ""
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return Failed, err.Error()
	}
	return Failed, err.Error()
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sendSCTPInit sends one SCTP INIT chunk to addr (ip:port) in a raw IPv4
// or IPv6 packet, carrying tag as its initiate tag.
func sendSCTPInit(addr string, tag uint32) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	// The CRC32c checksum covers the SCTP packet only (no pseudo-header),
	// so the same bytes go out in either family; the kernel writes the IP
	// header.
	pkt := sctpInit(uint16(32768+rand.IntN(28000)), ap.Port(), tag, rand.Uint32())
	var family int
	var to syscall.Sockaddr
	if a := ap.Addr().Unmap(); a.Is4() {
		family, to = syscall.AF_INET, &syscall.SockaddrInet4{Addr: a.As4()}
	} else {
		family, to = syscall.AF_INET6, &syscall.SockaddrInet6{Addr: a.As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_RAW, syscall.IPPROTO_SCTP)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return syscall.Sendto(fd, pkt, 0, to)
}

// sctpInit builds an SCTP packet (RFC 9260) of one INIT chunk from srcPort
// to dstPort, carrying tag as its initiate tag and tsn as its initial TSN:
// the common header (ports, verification tag 0 as INIT requires, CRC32c
// checksum), then the 20-byte chunk.
func sctpInit(srcPort, dstPort uint16, tag, tsn uint32) []byte {
	pkt := make([]byte, 32)
	binary.BigEndian.PutUint16(pkt[0:], srcPort)
	binary.BigEndian.PutUint16(pkt[2:], dstPort)
	// verification tag 0 (INIT), checksum filled below
	pkt[12] = 1 // INIT
	pkt[13] = 0
	binary.BigEndian.PutUint16(pkt[14:], 20)    // chunk length
	binary.BigEndian.PutUint32(pkt[16:], tag)   // initiate tag
	binary.BigEndian.PutUint32(pkt[20:], 65535) // a_rwnd
	binary.BigEndian.PutUint16(pkt[24:], 1)     // outbound streams
	binary.BigEndian.PutUint16(pkt[26:], 1)     // inbound streams
	binary.BigEndian.PutUint32(pkt[28:], tsn)
	binary.LittleEndian.PutUint32(pkt[8:], crc32.Checksum(pkt, castagnoli))
	return pkt
}

// Call sends one request to the podserver at ctl.
func Call(ctl string, req Request, timeout time.Duration) (Response, error) {
	c, err := net.DialTimeout("unix", ctl, timeout)
	if err != nil {
		return Response{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Response{}, err
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return Response{}, err
	}
	if resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

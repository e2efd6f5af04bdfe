package podserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// tcpIdle is how long a TCP server connection may stay silent before the
// server closes it. A probe closes at once after reading the answer; a
// flow sends far more often than this.
const tcpIdle = 2 * time.Second

// maxFlowLife bounds a flow that nobody stops (the runner died).
const maxFlowLife = 2 * time.Minute

// answerAndEcho writes the pod's answer, then echoes every line the
// client sends until it closes or stays silent for tcpIdle. A probe reads
// the answer and closes; a flow (flow-start) keeps talking.
func answerAndEcho(c net.Conn, answer []byte) {
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(tcpIdle))
	if _, err := c.Write(answer); err != nil {
		return
	}
	r := bufio.NewReader(c)
	for {
		_ = c.SetDeadline(time.Now().Add(tcpIdle))
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		if _, err := c.Write(line); err != nil {
			return
		}
	}
}

// FlowStatus is what a flow has seen so far.
type FlowStatus struct {
	Sent   int `json:"sent"`   // messages sent
	Echoed int `json:"echoed"` // answers received (TCP: echoes, in order)
	// LastAnswer is the Unix time in nanoseconds of the last answer, 0
	// before the first.
	LastAnswer int64 `json:"lastAnswerUnixNano"`
	// Err is the first error on the connection other than a read
	// timeout: a reset, an echo out of order, a refused datagram.
	Err string `json:"err,omitempty"`
}

// flow is a long-lived TCP connection or UDP socket from this pod that
// sends a numbered line every interval and counts the answers.
type flow struct {
	conn net.Conn
	stop chan struct{}
	done chan struct{}

	mu sync.Mutex
	st FlowStatus
}

func (f *flow) status() FlowStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *flow) fail(err error) {
	f.mu.Lock()
	if f.st.Err == "" {
		f.st.Err = err.Error()
	}
	f.mu.Unlock()
}

func (s *server) flowOp(req Request) Response {
	s.mu.Lock()
	f := s.flows[req.Flow]
	s.mu.Unlock()
	switch req.Op {
	case "flow-start":
		if f != nil {
			return Response{Error: "flow " + req.Flow + " exists"}
		}
		f, err := startFlow(req)
		if err != nil {
			return Response{Error: err.Error()}
		}
		s.mu.Lock()
		s.flows[req.Flow] = f
		s.mu.Unlock()
		st := f.status()
		return Response{Result: "ok", Flow: &st}
	case "flow-status", "flow-stop":
		if f == nil {
			return Response{Error: "no flow " + req.Flow}
		}
		if req.Op == "flow-stop" {
			f.halt(time.Duration(req.Timeout) * time.Millisecond)
			s.mu.Lock()
			delete(s.flows, req.Flow)
			s.mu.Unlock()
		}
		st := f.status()
		return Response{Result: "ok", Flow: &st}
	}
	return Response{Error: "unknown op " + req.Op}
}

// startFlow connects to req.Addr and starts sending every req.Interval.
// A TCP flow first reads the server's answer line.
func startFlow(req Request) (*flow, error) {
	interval := time.Duration(req.Interval) * time.Millisecond
	if interval <= 0 {
		interval = 20 * time.Millisecond
	}
	f := &flow{stop: make(chan struct{}), done: make(chan struct{})}
	var err error
	switch req.Protocol {
	case "TCP":
		f.conn, err = net.DialTimeout("tcp", req.Addr, time.Second)
		if err != nil {
			return nil, err
		}
		r := bufio.NewReader(f.conn)
		_ = f.conn.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := r.ReadString('\n'); err != nil {
			f.conn.Close()
			return nil, fmt.Errorf("read answer: %w", err)
		}
		_ = f.conn.SetReadDeadline(time.Time{})
		go f.readTCP(r)
	case "UDP":
		f.conn, err = net.Dial("udp", req.Addr)
		if err != nil {
			return nil, err
		}
		go f.readUDP()
	default:
		return nil, fmt.Errorf("flows are TCP or UDP, not %q", req.Protocol)
	}
	go f.send(interval)
	return f, nil
}

func (f *flow) send(interval time.Duration) {
	defer close(f.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	end := time.After(maxFlowLife)
	for seq := 1; ; seq++ {
		select {
		case <-f.stop:
			return
		case <-end:
			return
		case <-t.C:
		}
		// A write to a cut TCP connection only queues; it fails on a
		// reset, which is an error worth reporting.
		_ = f.conn.SetWriteDeadline(time.Now().Add(interval))
		if _, err := fmt.Fprintf(f.conn, "%d\n", seq); err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				f.fail(fmt.Errorf("send %d: %w", seq, err))
			}
			continue
		}
		f.mu.Lock()
		f.st.Sent = seq
		f.mu.Unlock()
	}
}

// readTCP reads echoes, which must come back in order: a missing or
// repeated number is an error (TCP must not lose or reorder bytes).
func (f *flow) readTCP(r *bufio.Reader) {
	for want := 1; ; want++ {
		line, err := r.ReadString('\n')
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
				f.fail(fmt.Errorf("read: %w", err))
			}
			return
		}
		got, err := strconv.Atoi(strings.TrimSpace(line))
		f.mu.Lock()
		if err != nil || got != want {
			if f.st.Err == "" {
				f.st.Err = fmt.Sprintf("echo %q, want %d", strings.TrimSpace(line), want)
			}
		}
		f.st.Echoed++
		f.st.LastAnswer = time.Now().UnixNano()
		f.mu.Unlock()
	}
}

// readUDP counts answers (the server answers each datagram with its name).
func (f *flow) readUDP() {
	buf := make([]byte, 512)
	for {
		if _, err := f.conn.Read(buf); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ECONNREFUSED from an ICMP error: the datagram reached no
			// server, which is not what a cut looks like (a drop).
			f.fail(fmt.Errorf("read: %w", err))
			continue
		}
		f.mu.Lock()
		f.st.Echoed++
		f.st.LastAnswer = time.Now().UnixNano()
		f.mu.Unlock()
	}
}

// halt stops sending, waits up to grace for outstanding answers, and
// closes the connection.
func (f *flow) halt(grace time.Duration) {
	close(f.stop)
	<-f.done
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if st := f.status(); st.Echoed >= st.Sent {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.conn.Close()
}

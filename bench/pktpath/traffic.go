//go:build linux

package pktpath

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// batch is how many datagrams one sendmmsg carries: enough that the
// system call's own cost is spread thin, so that the forward hop's
// per-packet work is a visible share of the time.
const batch = 64

// payload is the size of each datagram's payload (a small packet: the
// per-packet cost, not bandwidth, is what the table adds).
const payload = 18

// sender is a connected UDP socket in the sender namespace, from a given
// source address to the receiver's port.
type sender struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn
	msgs []ipv4.Message
}

func newSender(h *hop, from netip.Addr) (*sender, error) {
	s := &sender{}
	err := inNetns(h.sender, func() error {
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(receiverAddr, Port)))
		if err != nil {
			return err
		}
		s.conn = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sender socket from %s: %w", from, err)
	}
	s.pc = ipv4.NewPacketConn(s.conn)
	buf := make([]byte, payload)
	s.msgs = make([]ipv4.Message, batch)
	for i := range s.msgs {
		s.msgs[i].Buffers = [][]byte{buf}
	}
	return s, nil
}

func (s *sender) Close() { _ = s.conn.Close() }

// blast sends batches until d has passed, or at most maxPackets, and
// returns how many datagrams the kernel took. A full queue on the way
// (ENOBUFS) is not an error: the hop is saturated, which is the point.
func (s *sender) blast(ctx context.Context, d time.Duration, maxPackets int) (sent int, elapsed time.Duration, err error) {
	start := time.Now()
	deadline := start.Add(d)
	for sent < maxPackets {
		if sent%(batch*64) == 0 {
			if time.Now().After(deadline) {
				break
			}
			if ctx.Err() != nil {
				return sent, time.Since(start), ctx.Err()
			}
		}
		n, err := s.pc.WriteBatch(s.msgs, 0)
		if err != nil && !isTransient(err) {
			return sent, time.Since(start), fmt.Errorf("sendmmsg: %w", err)
		}
		sent += n
		if n == 0 {
			sent++ // a refused batch still moves the loop on (bounded by maxPackets)
		}
	}
	return sent, time.Since(start), nil
}

func isTransient(err error) bool {
	// ENOBUFS (a queue on the way is full) and ECONNREFUSED (an ICMP error
	// from an earlier datagram) do not stop the run.
	return errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.EAGAIN)
}

// sink binds the receiver's port in the receiver namespace, so that the
// datagrams are delivered (and dropped at the socket's full buffer, which
// costs nothing to read) instead of drawing ICMP port unreachables.
func sink(h *hop) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := inNetns(h.receiver, func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(receiverAddr, Port)))
		if err != nil {
			return err
		}
		return c.SetReadBuffer(4096)
	})
	return c, err
}

// received is the receiver's eth0 rx_packets: what the router forwarded.
func (h *hop) received() (uint64, error) {
	l, err := h.rx.LinkByName("eth0")
	if err != nil {
		return 0, err
	}
	st := l.Attrs().Statistics
	if st == nil {
		return 0, errors.New("receiver eth0: no statistics")
	}
	return st.RxPackets, nil
}

// forwarded sends from s for d and returns the packets per second that
// reached the receiver, and how many were sent.
func (h *hop) forwarded(ctx context.Context, s *sender, d time.Duration, maxPackets int) (pps float64, sent, got int, err error) {
	before, err := h.received()
	if err != nil {
		return 0, 0, 0, err
	}
	sent, elapsed, err := s.blast(ctx, d, maxPackets)
	if err != nil {
		return 0, sent, 0, err
	}
	// Let the last batch drain through the backlog before counting.
	time.Sleep(20 * time.Millisecond)
	after, err := h.received()
	if err != nil {
		return 0, sent, 0, err
	}
	got = int(after - before)
	return float64(got) / elapsed.Seconds(), sent, got, nil
}

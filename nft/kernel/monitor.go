//go:build linux

package kernel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	gosync "sync" // kernel_test.go has a sync helper

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/nft"
)

// ForeignChange describes a committed nftables change to table inet
// nftpolicy that this Syncer did not send, or the loss of notifications
// (Lost), after which such a change may have gone unseen.
type ForeignChange struct {
	// What names the first foreign message of the transaction, e.g.
	// "delete rule" or "flush set" (a set flush arrives as "delete
	// elements").
	What string
	// Port is the netlink port id that sent it (for the process behind it,
	// see ss -f netlink); 0 for Lost.
	Port uint32
	// Lost: the kernel dropped notifications because the monitor socket
	// overflowed, so the table may have changed unseen.
	Lost bool
}

func (c ForeignChange) String() string {
	if c.Lost {
		return "nftables notifications were lost (monitor socket overflow)"
	}
	return fmt.Sprintf("%s by netlink port %d", c.What, c.Port)
}

// ownPorts remembers the netlink port ids of the sockets a Syncer opened
// lately, so that the monitor can tell the Syncer's own transactions from
// someone else's: the kernel stamps every change notification with the
// port id of the socket that sent the change. The monitor reads a batch's
// notifications after Flush has returned and the socket is closed, so a few
// recent ports are kept, not only the open one. A closed port id can be
// bound again by another process; the kernel gives a process its own pid
// as its first port id and ours are either our pid or unique negative
// numbers, so a stranger only gets one of ours when its pid port is taken
// and the kernel's counter comes round to ours, which the periodic verify
// still covers.
type ownPorts struct {
	mu    gosync.Mutex
	ports [ownPortsKept]uint32
	next  int
}

// ownPortsKept: a Sync or Verify uses one socket (the one whose deadline
// the context sets), so 64 ports cover the notifications of many syncs
// still in the monitor's queue.
const ownPortsKept = 64

func (o *ownPorts) add(p uint32) {
	o.mu.Lock()
	o.ports[o.next%ownPortsKept] = p
	o.next++
	o.mu.Unlock()
}

func (o *ownPorts) has(p uint32) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := 0; i < min(o.next, ownPortsKept); i++ {
		if o.ports[i] == p {
			return true
		}
	}
	return false
}

// recordPort is a socket option of every connection the Syncer opens: it
// notes the port id the kernel bound the socket to.
func (o *ownPorts) recordPort(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var sa unix.Sockaddr
	var nameErr error
	if err := raw.Control(func(fd uintptr) { sa, nameErr = unix.Getsockname(int(fd)) }); err != nil {
		return err
	}
	if nameErr != nil {
		return fmt.Errorf("netlink socket name: %w", nameErr)
	}
	nl, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return fmt.Errorf("netlink socket name is %T", sa)
	}
	o.add(nl.Pid)
	return nil
}

// monitorBuffer is the monitor socket's receive buffer. Our own full
// replace of a big table notifies every element; a smaller buffer
// overflows on it (ENOBUFS), which costs a verify but loses nothing.
const monitorBuffer = 32 << 20

// TableMonitor listens to nftables' change notifications (the ones `nft
// monitor` prints) in a Syncer's network namespace, and tells the
// transactions that change table inet nftpolicy and were not sent by that
// Syncer.
type TableMonitor struct {
	conn *netlink.Conn
	own  *ownPorts
}

// Monitor subscribes to the change notifications at once: every change
// committed after it returns is seen by Run.
func (s *Syncer) Monitor() (*TableMonitor, error) {
	cfg := &netlink.Config{}
	if s.cfg.netnsFd != 0 {
		cfg.NetNS = s.cfg.netnsFd
	}
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("open nftables monitor socket: %w", err)
	}
	if err := setReceiveBuffer(conn, monitorBuffer); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if err := conn.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("join nftables notification group: %w", err)
	}
	return &TableMonitor{conn: conn, own: &s.own}, nil
}

// Run calls onChange once for every committed transaction that changed
// table inet nftpolicy and was not sent by the Syncer, and whenever
// notifications were lost. It returns nil when ctx is done, or an error if
// the socket cannot be read; either way the monitor is closed.
//
// A change is judged by its notification alone, without reading the table,
// so a stream of changes to other tables (kube-proxy's) costs a header and
// one attribute per message.
func (m *TableMonitor) Run(ctx context.Context, onChange func(ForeignChange)) error {
	stop := context.AfterFunc(ctx, func() { _ = m.conn.Close() })
	defer func() {
		if stop() {
			_ = m.conn.Close()
		}
	}()
	// One report per transaction: the messages of a transaction come
	// before its NEWGEN message.
	var pending *ForeignChange
	for {
		msgs, err := m.conn.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, unix.ENOBUFS) {
			pending = nil
			onChange(ForeignChange{Lost: true})
			continue
		}
		if err != nil {
			return fmt.Errorf("read nftables notifications: %w", err)
		}
		for _, msg := range msgs {
			if subsys := uint16(msg.Header.Type) >> 8; subsys != unix.NFNL_SUBSYS_NFTABLES {
				continue
			}
			kind := uint16(msg.Header.Type) & 0xff
			if kind == unix.NFT_MSG_NEWGEN {
				if pending != nil {
					onChange(*pending)
					pending = nil
				}
				continue
			}
			if pending != nil || !changesOurTable(kind, msg.Data) || m.own.has(msg.Header.PID) {
				continue
			}
			pending = &ForeignChange{What: msgNames[kind], Port: msg.Header.PID}
		}
	}
}

// msgNames names the nftables change notifications.
var msgNames = map[uint16]string{
	unix.NFT_MSG_NEWTABLE:   "add table",
	unix.NFT_MSG_DELTABLE:   "delete table",
	unix.NFT_MSG_NEWCHAIN:   "add chain",
	unix.NFT_MSG_DELCHAIN:   "delete chain",
	unix.NFT_MSG_NEWRULE:    "add rule",
	unix.NFT_MSG_DELRULE:    "delete rule",
	unix.NFT_MSG_NEWSET:     "add set",
	unix.NFT_MSG_DELSET:     "delete set",
	unix.NFT_MSG_NEWSETELEM: "add elements",
	unix.NFT_MSG_DELSETELEM: "delete elements",
	unix.NFT_MSG_NEWOBJ:     "add object",
	unix.NFT_MSG_DELOBJ:     "delete object",
}

// changesOurTable reports whether a change notification is about table
// inet nftpolicy: its family is inet and its first attribute, which is the
// table name in every kind of nftables object message (NFTA_TABLE_NAME,
// NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE,
// NFTA_SET_ELEM_LIST_TABLE, NFTA_OBJ_TABLE, ...), is "nftpolicy".
func changesOurTable(kind uint16, data []byte) bool {
	if _, ok := msgNames[kind]; !ok {
		return false
	}
	const nfgenmsgLen = 4
	if len(data) < nfgenmsgLen || data[0] != unix.NFPROTO_INET {
		return false
	}
	ad, err := netlink.NewAttributeDecoder(data[nfgenmsgLen:])
	if err != nil {
		return false
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == 1 {
			return ad.String() == nft.TableName
		}
	}
	return false
}

func setReceiveBuffer(c *netlink.Conn, size int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
			sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
	}); err != nil {
		return err
	}
	if sockErr != nil {
		return fmt.Errorf("set monitor socket buffer: %w", sockErr)
	}
	return nil
}

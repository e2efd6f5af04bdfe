//go:build linux

package kernel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/nft"
)

// NFLOG over nfnetlink (linux/netfilter/nfnetlink_log.h). x/sys/unix does
// not carry these, so they are spelled out here with the header's names.
const (
	nfnlSubsysULOG   = 4 // NFNL_SUBSYS_ULOG
	nfulnlMsgPacket  = 0 // NFULNL_MSG_PACKET
	nfulnlMsgConfig  = 1 // NFULNL_MSG_CONFIG
	nfulaCfgCmd      = 1 // NFULA_CFG_CMD
	nfulaCfgMode     = 2 // NFULA_CFG_MODE
	nfulnlCfgCmdBind = 1 // NFULNL_CFG_CMD_BIND
	nfulnlCopyPacket = 2 // NFULNL_COPY_PACKET

	nfulaPacketHdr = 1  // NFULA_PACKET_HDR: hw_protocol, hook
	nfulaTimestamp = 3  // NFULA_TIMESTAMP: sec, usec (big endian)
	nfulaPayload   = 9  // NFULA_PAYLOAD: the packet from its network header
	nfulaPrefix    = 10 // NFULA_PREFIX: NUL-terminated

	// nflogCopyRange is how much of each packet the kernel copies: the
	// longest IPv4 header (60 bytes) and the ports, or an IPv6 header (40)
	// and the ports; nothing of the payload.
	nflogCopyRange = 64
	// nflogReadBuffer holds a burst of records while the reader is busy;
	// past it the kernel drops records (ENOBUFS), never packets.
	nflogReadBuffer = 1 << 20
)

// NFLOGReader receives the records of one NFLOG group: the packets the
// deny-log rules (nft.DenyLog) send. Only one socket on a host (per network
// namespace) may bind a group.
type NFLOGReader struct {
	conn  *netlink.Conn
	group uint16
	// Lost counts the times the socket's buffer overflowed and the kernel
	// dropped records.
	Lost int
}

// ListenNFLOG binds NFLOG group group. opts may target another network
// namespace (WithNetNSFd).
func ListenNFLOG(group uint16, opts ...Option) (*NFLOGReader, error) {
	cfg := newConfig(opts)
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: cfg.netnsFd})
	if err != nil {
		return nil, fmt.Errorf("open nfnetlink socket: %w", err)
	}
	r := &NFLOGReader{conn: conn, group: group}
	if err := r.bind(); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if err := conn.SetReadBuffer(nflogReadBuffer); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("NFLOG read buffer: %w", err)
	}
	return r, nil
}

// bind attaches the socket to the group and asks for packet headers.
func (r *NFLOGReader) bind() error {
	cmd := netlink.NewAttributeEncoder()
	cmd.Bytes(nfulaCfgCmd, []byte{nfulnlCfgCmdBind})
	if err := r.config(cmd); err != nil {
		return fmt.Errorf("bind NFLOG group %d: %w", r.group, err)
	}
	mode := make([]byte, 6) // nfulnl_msg_config_mode: be32 copy_range, u8 copy_mode, u8 pad
	binary.BigEndian.PutUint32(mode, nflogCopyRange)
	mode[4] = nfulnlCopyPacket
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(nfulaCfgMode, mode)
	if err := r.config(ae); err != nil {
		return fmt.Errorf("set NFLOG group %d copy mode: %w", r.group, err)
	}
	return nil
}

func (r *NFLOGReader) config(ae *netlink.AttributeEncoder) error {
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	_, err = r.conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(nfnlSubsysULOG<<8 | nfulnlMsgConfig),
			Flags: netlink.Request | netlink.Acknowledge,
		},
		Data: append(nfgenmsg(unix.AF_UNSPEC, r.group), attrs...),
	})
	return err
}

// nfgenmsg is the nfnetlink header: family, version 0, resource id (the
// group) in network byte order.
func nfgenmsg(family uint8, resID uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}

// Run hands every record to handle until ctx ends, then closes the reader.
// A record it cannot decode is skipped; an overflowing buffer is counted in
// Lost and reading goes on.
func (r *NFLOGReader) Run(ctx context.Context, handle func(nft.LoggedPacket)) error {
	stop := context.AfterFunc(ctx, func() { _ = r.conn.Close() })
	defer stop()
	for {
		msgs, err := r.conn.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, unix.ENOBUFS) {
			r.Lost++
			continue
		}
		if err != nil {
			return fmt.Errorf("read NFLOG group %d: %w", r.group, err)
		}
		for _, m := range msgs {
			if m.Header.Type != netlink.HeaderType(nfnlSubsysULOG<<8|nfulnlMsgPacket) {
				continue
			}
			if p, ok := decodeNFLOG(m.Data); ok {
				handle(p)
			}
		}
	}
}

// Close releases the group.
func (r *NFLOGReader) Close() error { return r.conn.Close() }

// hookNames are the netfilter hook numbers of the hooks our base chains use.
var hookNames = map[uint8]nft.HookName{unix.NF_INET_FORWARD: nft.HookForward, unix.NF_INET_LOCAL_IN: nft.HookInput}

// decodeNFLOG decodes one NFULNL_MSG_PACKET (nfgenmsg, then attributes).
func decodeNFLOG(data []byte) (nft.LoggedPacket, bool) {
	if len(data) < 4 {
		return nft.LoggedPacket{}, false
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return nft.LoggedPacket{}, false
	}
	var p nft.LoggedPacket
	var payload []byte
	for ad.Next() {
		switch ad.Type() {
		case nfulaPacketHdr:
			if b := ad.Bytes(); len(b) >= 3 {
				p.Hook = hookNames[b[2]]
			}
		case nfulaTimestamp:
			if b := ad.Bytes(); len(b) == 16 {
				sec, usec := binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
				p.Time = time.Unix(int64(sec), int64(usec)*1000)
			}
		case nfulaPrefix:
			p.Prefix = ad.String()
		case nfulaPayload:
			payload = ad.Bytes()
		}
	}
	if ad.Err() != nil || !decodeHeaders(payload, &p) {
		return nft.LoggedPacket{}, false
	}
	if p.Time.IsZero() {
		p.Time = time.Now()
	}
	return p, true
}

// decodeHeaders reads addresses, protocol and ports from an IPv4 or IPv6
// packet that starts at its network header.
func decodeHeaders(b []byte, p *nft.LoggedPacket) bool {
	if len(b) < 1 {
		return false
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		ihl := int(b[0]&0x0f) * 4
		if len(b) < 20 || ihl < 20 || len(b) < ihl {
			return false
		}
		p.Proto = b[9]
		p.Src = netip.AddrFrom4([4]byte(b[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		l4 = b[ihl:]
	case 6:
		if len(b) < 40 {
			return false
		}
		p.Proto = b[6] // the next header; extension headers are not followed
		p.Src = netip.AddrFrom16([16]byte(b[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		l4 = b[40:]
	default:
		return false
	}
	switch p.Proto {
	case nft.ProtoTCP, nft.ProtoUDP, nft.ProtoSCTP:
		if len(l4) >= 4 {
			p.SrcPort = binary.BigEndian.Uint16(l4)
			p.DstPort = binary.BigEndian.Uint16(l4[2:])
		}
	}
	return true
}

//go:build linux

package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/nft"
)

// ReadCounters returns the counter of every counted rule of table inet
// nftpolicy (nft.Rule.Counter), with one netlink dump of the table's rules
// (NFT_MSG_GETRULE naming the table and no chain), whatever the number of
// chains. It is read-only: no transaction, so the table monitor sees
// nothing. A missing table (before the first sync) has no counters.
//
// google/nftables lists rules one chain at a time only, which would be one
// dump per pod chain; this reads the few attributes it needs itself.
func ReadCounters(opts ...Option) ([]nft.RuleCounter, error) {
	cfg := newConfig(opts)
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: cfg.netnsFd})
	if err != nil {
		return nil, fmt.Errorf("open nfnetlink socket: %w", err)
	}
	defer conn.Close()
	// The kernel fills a dump in messages of up to a page each, so the
	// default buffer holds them; a large table is just more of them.
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_RULE_TABLE, nft.TableName)
	attrs, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	msgs, err := conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append(nfgenmsg(unix.NFPROTO_INET, 0), attrs...),
	})
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dump the rules of table %s %s: %w", nft.TableFamily, nft.TableName, err)
	}
	var out []nft.RuleCounter
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		c, ok, err := decodeRuleCounter(m.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("decode a rule of table %s %s: %w", nft.TableFamily, nft.TableName, err)
		}
		if ok {
			out = append(out, c)
		}
	}
	return out, nil
}

// decodeRuleCounter reads the chain, handle and counter expression of one
// rule message (after its nfgenmsg header); ok is false for a rule without
// a counter.
func decodeRuleCounter(b []byte) (c nft.RuleCounter, ok bool, err error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return c, false, err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_CHAIN:
			c.Chain = ad.String()
		case unix.NFTA_RULE_HANDLE:
			c.Handle = ad.Uint64()
		case unix.NFTA_RULE_EXPRESSIONS:
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					if list.Type() != unix.NFTA_LIST_ELEM {
						continue
					}
					list.Nested(func(e *netlink.AttributeDecoder) error {
						found, packets, bytes := decodeCounterExpr(e)
						if found {
							ok, c.Packets, c.Bytes = true, packets, bytes
						}
						return nil
					})
				}
				return nil
			})
		}
	}
	return c, ok, ad.Err()
}

// decodeCounterExpr reads one expression; found is true for a counter.
func decodeCounterExpr(e *netlink.AttributeDecoder) (found bool, packets, bytes uint64) {
	e.ByteOrder = binary.BigEndian
	var name string
	var data []byte
	for e.Next() {
		switch e.Type() {
		case unix.NFTA_EXPR_NAME:
			name = e.String()
		case unix.NFTA_EXPR_DATA:
			data = e.Bytes()
		}
	}
	if name != "counter" || data == nil {
		return false, 0, 0
	}
	d, err := netlink.NewAttributeDecoder(data)
	if err != nil {
		return false, 0, 0
	}
	d.ByteOrder = binary.BigEndian
	for d.Next() {
		switch d.Type() {
		case unix.NFTA_COUNTER_PACKETS:
			packets = d.Uint64()
		case unix.NFTA_COUNTER_BYTES:
			bytes = d.Uint64()
		}
	}
	return d.Err() == nil, packets, bytes
}

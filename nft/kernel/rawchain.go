//go:build linux

package kernel

import (
	"errors"
	"reflect"
	"unsafe"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/nft"
)

// nftaChainUserdata is NFTA_CHAIN_USERDATA (kernel ≥ 5.10), which x/sys
// does not define.
const nftaChainUserdata = 12

// addChain queues a NEWCHAIN message. google/nftables v0.3.0 cannot attach
// userdata to a chain, so without this `nft list` would not show the
// chain comments nft.Dump prints. The message is built here exactly like
// Conn.AddChain builds it, plus NFTA_CHAIN_USERDATA with
// NFTNL_UDATA_CHAIN_COMMENT, and appended to the Conn's pending batch so it
// stays in the one atomic Flush. For an existing chain the kernel treats it
// as an update (no NLM_F_EXCL): only the base chain policy can change.
func addChain(cc *nftables.Conn, c *nft.Chain) error {
	t := ourTable()
	attrs := []netlink.Attribute{
		{Type: unix.NFTA_CHAIN_TABLE, Data: cstring(t.Name)},
		{Type: unix.NFTA_CHAIN_NAME, Data: cstring(c.Name)},
	}
	if c.Hook != nil {
		hook, err := netlink.MarshalAttributes([]netlink.Attribute{
			{Type: unix.NFTA_HOOK_HOOKNUM, Data: binaryutil.BigEndian.PutUint32(uint32(hookNums[c.Hook.Name]))},
			{Type: unix.NFTA_HOOK_PRIORITY, Data: binaryutil.BigEndian.PutUint32(uint32(int32(c.Hook.Priority)))},
		})
		if err != nil {
			return err
		}
		attrs = append(attrs,
			netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: hook},
			netlink.Attribute{Type: unix.NFTA_CHAIN_POLICY, Data: binaryutil.BigEndian.PutUint32(uint32(policyOf(c.Hook.Policy)))},
			netlink.Attribute{Type: unix.NFTA_CHAIN_TYPE, Data: cstring(string(nftables.ChainTypeFilter))},
		)
	}
	if c.Comment != "" {
		attrs = append(attrs, netlink.Attribute{Type: nftaChainUserdata,
			Data: userdata.AppendString(nil, userdata.TypeComment, c.Comment)})
	}
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return err
	}
	return appendMessage(cc, netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWCHAIN),
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create,
		},
		Data: append([]byte{byte(t.Family), unix.NFNETLINK_V0, 0, 0}, data...),
	})
}

func cstring(s string) []byte { return append([]byte(s), 0) }

var errNoMessages = errors.New("google/nftables Conn has no messages []netlink.Message field (library changed?)")

// appendMessage adds m to the Conn's unexported pending batch. The field is
// checked by name and type so that a library upgrade fails loudly (and
// TestSync_ReadsBackAsDump, which reads the chain comments back) instead of
// corrupting memory.
func appendMessage(cc *nftables.Conn, m netlink.Message) error {
	f := reflect.ValueOf(cc).Elem().FieldByName("messages")
	if !f.IsValid() || f.Type() != reflect.TypeOf([]netlink.Message(nil)) {
		return errNoMessages
	}
	msgs := (*[]netlink.Message)(unsafe.Pointer(f.UnsafeAddr()))
	*msgs = append(*msgs, m)
	return nil
}

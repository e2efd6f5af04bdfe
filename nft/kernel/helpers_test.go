//go:build linux

package kernel

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// requirePrivileges skips without root, except under CI, where a skipped
// kernel test would hide a broken dataplane.
func requirePrivileges(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("kernel tests need root (CI is set, so not skipping)")
	}
	t.Skip("kernel tests need root")
}

// run runs a command with a deadline and returns its combined output.
func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := tryRun(args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func tryRun(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

// newNetns creates a named throwaway network namespace (so that
// `ip netns exec` can reach it too) and returns its name and an open fd.
func newNetns(t testing.TB, prefix string) (string, int) {
	t.Helper()
	name := fmt.Sprintf("nftp-test-%s-%06d", prefix, rand.Intn(1000000))
	run(t, "ip", "netns", "add", name)
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		_, _ = tryRun("ip", "netns", "del", name)
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = unix.Close(fd)
		if out, err := tryRun("ip", "netns", "del", name); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	return name, fd
}

// nftIn runs nft inside the namespace.
func nftIn(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "netns", "exec", ns, "nft"}, args...)...)
}

func listTable(t testing.TB, ns string) string {
	t.Helper()
	// Stateless: counters print as `counter`, as Dump has them, without
	// the packets and bytes they hold.
	return nftIn(t, ns, "-s", "list", "table", "inet", "nftpolicy")
}

// generation reads the ruleset generation of the namespace behind fd
// (NFT_MSG_GETGEN): the kernel bumps it once per committed batch, so its
// difference across a Sync counts the transactions that Sync made.
func generation(t testing.TB, fd int) uint32 {
	t.Helper()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fd})
	if err != nil {
		t.Fatalf("dial netfilter netlink: %v", err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil || len(msgs) != 1 || len(msgs[0].Data) < 4 {
		t.Fatalf("NFT_MSG_GETGEN: %v (%d replies)", err, len(msgs))
	}
	ad, err := netlink.NewAttributeDecoder(msgs[0].Data[4:])
	if err != nil {
		t.Fatalf("decode NEWGEN: %v", err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			return ad.Uint32()
		}
	}
	t.Fatal("NEWGEN without NFTA_GEN_ID")
	return 0
}

//go:build linux

package kernel

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

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
	return nftIn(t, ns, "list", "table", "inet", "nftpolicy")
}

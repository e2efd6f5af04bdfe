// Package hostcheck verifies the host settings the agent depends on.
//
// Same-node pods talk over a Linux bridge (cni0 on Flannel). Bridged frames
// only traverse the inet forward hook, where our table filters, when the
// br_netfilter module is loaded and net.bridge.bridge-nf-call-iptables and
// -ip6tables are 1. Without them same-node traffic bypasses every policy.
package hostcheck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// DefaultProcSys is where sysctls live on a real host.
const DefaultProcSys = "/proc/sys"

// bridgeDir is the directory br_netfilter creates under /proc/sys.
const bridgeDir = "net/bridge"

// BridgeSysctls are the sysctls (paths relative to /proc/sys) that make
// bridged IPv4 and IPv6 traffic visible to nftables' inet hooks.
var BridgeSysctls = []string{
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
}

// EnsureBridgeNetfilter checks the bridge sysctls under root (normally
// DefaultProcSys) and sets to 1 those that are not. It returns the dotted
// names of the sysctls it changed. The error, if any, names every sysctl
// that is not 1 and says what an operator must do about it.
func EnsureBridgeNetfilter(root string) (changed []string, err error) {
	return ensure(root, writeSysctl)
}

// CheckBridgeNetfilter is EnsureBridgeNetfilter without writing: a
// readiness probe calls it, and a probe must not change the host. The
// error names every sysctl that is not 1.
func CheckBridgeNetfilter(root string) error {
	_, err := ensure(root, nil)
	return err
}

// writeFunc writes one sysctl file; tests replace it to simulate a
// read-only /proc/sys, which root cannot simulate with file modes.
type writeFunc func(path string, value []byte) error

func writeSysctl(path string, value []byte) error {
	// O_WRONLY without O_CREATE: a sysctl that does not exist must not be
	// created (matters only for tests' plain directories).
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(value); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ensure checks the bridge sysctls and sets those that are not 1 with
// write; a nil write only checks.
func ensure(root string, write writeFunc) ([]string, error) {
	dir := filepath.Join(root, bridgeDir)
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("br_netfilter: %s missing: load the br_netfilter module (modprobe br_netfilter) on the node, or same-node pod traffic bypasses policy", dir)
		}
		return nil, fmt.Errorf("br_netfilter: %w", err)
	}
	var changed []string
	var errs []error
	for _, rel := range BridgeSysctls {
		name := dotted(rel)
		path := filepath.Join(root, rel)
		ok, err := isOne(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("br_netfilter: read %s: %w", name, err))
			continue
		}
		if ok {
			continue
		}
		if write == nil {
			errs = append(errs, fmt.Errorf("br_netfilter: %s is 0 (the agent sets it only at start): set it on the node (sysctl -w %s=1) or restart the agent", name, name))
			continue
		}
		if err := write(path, []byte("1\n")); err != nil {
			hint := ""
			if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
				hint = ": run the agent privileged, or set it on the node (sysctl -w " + name + "=1)"
			}
			errs = append(errs, fmt.Errorf("br_netfilter: %s is 0 and cannot be set to 1: %w%s", name, err, hint))
			continue
		}
		// Read back: a write may "succeed" without effect.
		ok, err = isOne(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("br_netfilter: reading %s back after setting it: %w", name, err))
			continue
		}
		if !ok {
			errs = append(errs, fmt.Errorf("br_netfilter: %s is still not 1 after setting it", name))
			continue
		}
		changed = append(changed, name)
	}
	return changed, errors.Join(errs...)
}

// isOne reports whether the sysctl file at path holds 1.
func isOne(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

// dotted turns "net/bridge/x" into "net.bridge.x".
func dotted(rel string) string { return strings.ReplaceAll(rel, "/", ".") }

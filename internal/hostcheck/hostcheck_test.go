package hostcheck

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// procSys builds a fake /proc/sys: values maps a relative sysctl path to its
// content; a nil map leaves out net/bridge entirely.
func procSys(t *testing.T, values map[string]string) string {
	t.Helper()
	root := t.TempDir()
	if values == nil {
		return root
	}
	if err := os.MkdirAll(filepath.Join(root, bridgeDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for rel, v := range values {
		if err := os.WriteFile(filepath.Join(root, rel), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const (
	v4 = "net/bridge/bridge-nf-call-iptables"
	v6 = "net/bridge/bridge-nf-call-ip6tables"
)

func TestEnsureBridgeNetfilter(t *testing.T) {
	readOnly := func(string, []byte) error { return &os.PathError{Op: "open", Path: "x", Err: syscall.EROFS} }
	denied := func(string, []byte) error { return &os.PathError{Op: "open", Path: "x", Err: syscall.EACCES} }
	ignored := func(string, []byte) error { return nil }
	tests := []struct {
		name        string
		values      map[string]string
		write       writeFunc // nil: the real writer
		wantChanged []string
		wantErrs    []string // substrings; none means no error
		wantValues  map[string]string
	}{
		{
			name:       "already set",
			values:     map[string]string{v4: "1\n", v6: "1\n"},
			wantValues: map[string]string{v4: "1", v6: "1"},
		},
		{
			name:        "both unset are set",
			values:      map[string]string{v4: "0\n", v6: "0\n"},
			wantChanged: []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"},
			wantValues:  map[string]string{v4: "1", v6: "1"},
		},
		{
			name:        "only ip6tables unset",
			values:      map[string]string{v4: "1\n", v6: "0\n"},
			wantChanged: []string{"net.bridge.bridge-nf-call-ip6tables"},
			wantValues:  map[string]string{v4: "1", v6: "1"},
		},
		{
			name:     "module not loaded",
			values:   nil,
			wantErrs: []string{"net/bridge missing: load the br_netfilter module"},
		},
		{
			name:     "read-only proc",
			values:   map[string]string{v4: "0\n", v6: "1\n"},
			write:    readOnly,
			wantErrs: []string{"net.bridge.bridge-nf-call-iptables is 0 and cannot be set", "read-only file system", "run the agent privileged"},
		},
		{
			name:     "permission denied names both",
			values:   map[string]string{v4: "0\n", v6: "0\n"},
			write:    denied,
			wantErrs: []string{"bridge-nf-call-iptables is 0", "bridge-nf-call-ip6tables is 0", "permission denied"},
		},
		{
			name:     "write without effect",
			values:   map[string]string{v4: "0\n", v6: "1\n"},
			write:    ignored,
			wantErrs: []string{"bridge-nf-call-iptables is still not 1"},
		},
		{
			name:     "sysctl file missing",
			values:   map[string]string{v4: "1\n"},
			wantErrs: []string{"read net.bridge.bridge-nf-call-ip6tables"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := procSys(t, tc.values)
			write := tc.write
			if write == nil {
				write = writeSysctl
			}
			changed, err := ensure(root, write)
			if diff := cmp.Diff(tc.wantChanged, changed); diff != "" {
				t.Errorf("changed (-want +got):\n%s", diff)
			}
			if len(tc.wantErrs) == 0 && err != nil {
				t.Errorf("unexpected error: %v", err)
			}
			if len(tc.wantErrs) > 0 && err == nil {
				t.Errorf("no error, want one mentioning %q", tc.wantErrs)
			}
			for _, w := range tc.wantErrs {
				if err != nil && !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tc.wantValues != nil {
				got := map[string]string{}
				for rel := range tc.wantValues {
					b, err := os.ReadFile(filepath.Join(root, rel))
					if err != nil {
						t.Fatal(err)
					}
					got[rel] = strings.TrimSpace(string(b))
				}
				if diff := cmp.Diff(tc.wantValues, got); diff != "" {
					t.Errorf("sysctl values (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestEnsureBridgeNetfilter_Exported runs the exported entry point against a
// fake root, so the real writer is wired in.
func TestEnsureBridgeNetfilter_Exported(t *testing.T) {
	root := procSys(t, map[string]string{v4: "0", v6: "1"})
	changed, err := EnsureBridgeNetfilter(root)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"net.bridge.bridge-nf-call-iptables"}, changed); diff != "" {
		t.Errorf("changed (-want +got):\n%s", diff)
	}
}

// TestCheckBridgeNetfilter_NeverWrites: the readiness probe's check reports
// what EnsureBridgeNetfilter would fix, and leaves every value as it was.
func TestCheckBridgeNetfilter_NeverWrites(t *testing.T) {
	tests := []struct {
		name     string
		values   map[string]string
		wantErrs []string // substrings; none means no error
	}{
		{name: "both set", values: map[string]string{v4: "1\n", v6: "1\n"}},
		{name: "ip6tables unset", values: map[string]string{v4: "1\n", v6: "0\n"}, wantErrs: []string{"net.bridge.bridge-nf-call-ip6tables is 0", "sysctl -w net.bridge.bridge-nf-call-ip6tables=1"}},
		{name: "both unset", values: map[string]string{v4: "0\n", v6: "0\n"}, wantErrs: []string{"bridge-nf-call-iptables is 0", "bridge-nf-call-ip6tables is 0"}},
		{name: "module not loaded", values: nil, wantErrs: []string{"load the br_netfilter module"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := procSys(t, tt.values)
			err := CheckBridgeNetfilter(root)
			if len(tt.wantErrs) == 0 && err != nil {
				t.Fatalf("CheckBridgeNetfilter: %v", err)
			}
			if len(tt.wantErrs) > 0 && err == nil {
				t.Fatalf("CheckBridgeNetfilter = nil, want errors %q", tt.wantErrs)
			}
			for _, want := range tt.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			for rel, v := range tt.values {
				got, err := os.ReadFile(filepath.Join(root, rel))
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != v {
					t.Errorf("%s = %q after the check, want it untouched (%q)", rel, got, v)
				}
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/api/v1alpha1"
	"github.com/nftpolicy/nftpolicy/cniapi"
	"github.com/nftpolicy/nftpolicy/nft"
)

func TestParseConfig(t *testing.T) {
	files := map[string]string{
		"/etc/nftpolicy.yaml": "apiVersion: nftpolicy.io/v1alpha1\nkind: AgentConfiguration\nnodeName: from-file\nresyncPeriod: 2m\nlogFormat: text\n",
		"/bad.yaml":           "apiVersion: nftpolicy.io/v1alpha1\nkind: AgentConfiguration\nnodeNmae: x\n",
	}
	readFile := func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, fs.ErrNotExist
	}
	defaults := func(node string, mut func(*v1alpha1.AgentConfiguration)) *v1alpha1.AgentConfiguration {
		c := &v1alpha1.AgentConfiguration{NodeName: node}
		v1alpha1.SetDefaults(c)
		if mut != nil {
			mut(c)
		}
		return c
	}
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		want     *v1alpha1.AgentConfiguration
		wantErrs []string
	}{
		{name: "node from env", env: map[string]string{"NODE_NAME": "n1"}, want: defaults("n1", nil)},
		{name: "flag beats env", args: []string{"--node-name=n2"}, env: map[string]string{"NODE_NAME": "n1"}, want: defaults("n2", nil)},
		{
			name: "all flags",
			args: []string{"--node-name", "n1", "--kubeconfig", "/k", "--metrics-bind-address", "0", "--metrics-cert-dir", "/certs", "--health-probe-bind-address", "127.0.0.1:1", "--resync-period", "30s", "--min-sync-interval", "250ms", "--log-format", "text", "-v", "2", "--conntrack-cleanup=false"},
			want: defaults("n1", func(c *v1alpha1.AgentConfiguration) {
				off := false
				c.ConntrackCleanup = &off
				c.Kubeconfig, c.MetricsBindAddress, c.HealthProbeBindAddress = "/k", "0", "127.0.0.1:1"
				c.MetricsCertDir = "/certs"
				c.MinSyncInterval.Duration = 250 * time.Millisecond
				c.ResyncPeriod, c.LogFormat, c.LogVerbosity = metav1.Duration{Duration: 30 * time.Second}, "text", 2
			}),
		},
		{
			name: "file beats env, flags beat file",
			args: []string{"--config", "/etc/nftpolicy.yaml", "--log-format", "json"},
			env:  map[string]string{"NODE_NAME": "from-env"},
			want: defaults("from-file", func(c *v1alpha1.AgentConfiguration) { c.ResyncPeriod.Duration = 2 * time.Minute }),
		},
		{
			name: "flag defaults do not override the file",
			args: []string{"--config=/etc/nftpolicy.yaml"},
			want: defaults("from-file", func(c *v1alpha1.AgentConfiguration) { c.ResyncPeriod.Duration, c.LogFormat = 2*time.Minute, "text" }),
		},
		{
			name: "plain metrics on loopback",
			args: []string{"--node-name=n1", "--metrics-secure=false", "--metrics-bind-address=127.0.0.1:9808"},
			want: defaults("n1", func(c *v1alpha1.AgentConfiguration) {
				c.MetricsBindAddress, c.MetricsSecure = "127.0.0.1:9808", new(false)
			}),
		},
		{name: "plain metrics on every address", args: []string{"--node-name=n1", "--metrics-secure=false"}, wantErrs: []string{"metricsSecure: plain HTTP"}},
		{name: "audit all", args: []string{"--node-name=n1", "--audit-all-policies"},
			want: defaults("n1", func(c *v1alpha1.AgentConfiguration) { c.AuditAllPolicies = true })},
		{name: "audit all needs the denied-traffic log", args: []string{"--node-name=n1", "--audit-all-policies", "--denied-traffic-log=false"},
			wantErrs: []string{"auditAllPolicies: needs deniedTrafficLog"}},
		{name: "no node name", wantErrs: []string{"nodeName: required"}},
		{
			name:     "all errors at once",
			args:     []string{"--metrics-bind-address=x", "--resync-period=1s", "--min-sync-interval=20s", "--log-format=xml"},
			wantErrs: []string{"nodeName: required", "metricsBindAddress", "resyncPeriod", "minSyncInterval", "logFormat"},
		},
		{name: "bad file", args: []string{"--config=/bad.yaml"}, wantErrs: []string{"unknown field"}},
		{name: "missing file", args: []string{"--config=/nope"}, wantErrs: []string{"read --config"}},
		{name: "stray argument", args: []string{"--node-name=n", "start"}, wantErrs: []string{"unexpected arguments"}},
		{name: "unknown flag", args: []string{"--nodename=n"}, wantErrs: []string{"unknown flag"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, readFile, &bytes.Buffer{})
			if len(tc.wantErrs) > 0 {
				if err == nil {
					t.Fatalf("no error, want %q", tc.wantErrs)
				}
				for _, w := range tc.wantErrs {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunArgs_VersionAndInvalidConfig(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "version", args: []string{"version"}, wantCode: 0, wantStdout: "nftpolicy dev\n"},
		{name: "invalid", args: []string{"--log-format=xml"}, wantCode: 2, wantStderr: "invalid configuration"},
		{name: "help", args: []string{"--help"}, wantCode: 0, wantStderr: "--resync-period"},
		{name: "cleanup with args", args: []string{"cleanup", "x"}, wantCode: 2, wantStderr: "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := runArgs(tc.args, func(string) string { return "" }, func(string) ([]byte, error) { return nil, fs.ErrNotExist }, &out, &errOut)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.wantCode, errOut.String())
			}
			if tc.wantStdout != "" && out.String() != tc.wantStdout {
				t.Errorf("stdout %q, want %q", out.String(), tc.wantStdout)
			}
			if !strings.Contains(errOut.String(), tc.wantStderr) {
				t.Errorf("stderr %q does not mention %q", errOut.String(), tc.wantStderr)
			}
		})
	}
}

type fakeKernel struct {
	calls   []string
	syncErr error
}

func (f *fakeKernel) Sync(context.Context, *nft.Ruleset) error {
	f.calls = append(f.calls, "sync")
	return f.syncErr
}

func (f *fakeKernel) Tightened() bool { return true }

func (f *fakeKernel) LastReplace() []any { return nil }

func (f *fakeKernel) Verify(context.Context) error {
	f.calls = append(f.calls, "verify")
	return errors.New("drift")
}

func (f *fakeKernel) WatchTable(ctx context.Context, _ func(string)) error {
	<-ctx.Done()
	return nil
}

func TestVerifyingSyncer(t *testing.T) {
	k := &fakeKernel{}
	clock := time.Unix(0, 0)
	v := &verifyingSyncer{k: k, every: time.Minute, log: logr.Discard(), now: func() time.Time { return clock }}
	step := func(advance time.Duration) {
		clock = clock.Add(advance)
		_ = v.Sync(context.Background(), nft.NewSkeleton())
	}
	k.syncErr = errors.New("boom")
	step(0) // failed first sync: no verify (nothing applied)
	k.syncErr = nil
	step(time.Second)      // first success
	step(30 * time.Second) // within the period: no verify
	step(31 * time.Second) // period passed: verify, then sync
	step(time.Second)      // verified just now
	v.verifyNext()         // the table monitor saw someone else's change
	step(time.Second)      // so verify although within the period
	step(time.Second)      // once
	want := []string{"sync", "sync", "sync", "verify", "sync", "sync", "verify", "sync", "sync"}
	if diff := cmp.Diff(want, k.calls); diff != "" {
		t.Errorf("kernel calls (-want +got):\n%s", diff)
	}
}

func TestGoMemoryLimit(t *testing.T) {
	const v2, v1 = "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"
	tests := []struct {
		name          string
		gomemlimit    string
		files         map[string]string
		want, wantCon int64
	}{
		{name: "cgroup v2 limit", files: map[string]string{v2: "536870912\n"}, want: 483183820, wantCon: 536870912},
		{name: "cgroup v2 without limit", files: map[string]string{v2: "max\n"}},
		{name: "cgroup v1 limit", files: map[string]string{v1: "1073741824\n"}, want: 966367641, wantCon: 1073741824},
		{name: "cgroup v1 without limit", files: map[string]string{v1: "9223372036854771712\n"}},
		{name: "GOMEMLIMIT set: left to the runtime", gomemlimit: "300MiB", files: map[string]string{v2: "536870912\n"}},
		{name: "no cgroup files", files: map[string]string{}},
		{name: "garbage", files: map[string]string{v2: "lots\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "GOMEMLIMIT" {
					return tc.gomemlimit
				}
				return ""
			}
			readFile := func(p string) ([]byte, error) {
				if s, ok := tc.files[p]; ok {
					return []byte(s), nil
				}
				return nil, fs.ErrNotExist
			}
			got, con := goMemoryLimit(getenv, readFile)
			if got != tc.want || con != tc.wantCon {
				t.Errorf("goMemoryLimit = %d (container %d), want %d (container %d)", got, con, tc.want, tc.wantCon)
			}
		})
	}
}

// The agent's and the plugin's default socket are one path.
func TestCNISocketDefaultsAgree(t *testing.T) {
	if v1alpha1.DefaultCNISocket != cniapi.DefaultSocket {
		t.Errorf("agent listens on %s by default, the plugin connects to %s", v1alpha1.DefaultCNISocket, cniapi.DefaultSocket)
	}
}

package v1alpha1

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

func TestSetDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   AgentConfiguration
		want AgentConfiguration
	}{
		{
			name: "empty gets every default",
			in:   AgentConfiguration{NodeName: "n1"},
			want: AgentConfiguration{
				TypeMeta:               metav1.TypeMeta{APIVersion: APIVersion, Kind: KindAgentConfiguration},
				NodeName:               "n1",
				MetricsBindAddress:     ":9808",
				MetricsSecure:          new(true),
				HealthProbeBindAddress: ":9809",
				ResyncPeriod:           metav1.Duration{Duration: 5 * time.Minute},
				MinSyncInterval:        metav1.Duration{Duration: 20 * time.Millisecond},
				CNISocket:              "/run/nftpolicy/cni.sock",
				LogFormat:              "json",
				ConntrackCleanup:       ptrTo(true),
				DeniedTrafficLog:       ptr(true),
				DeniedTrafficLogGroup:  ptr[int32](DefaultDeniedTrafficLogGroup),
				DeniedTrafficLogRate:   DefaultDeniedTrafficLogRate,
				DeniedTrafficLogBurst:  DefaultDeniedTrafficLogBurst,
			},
		},
		{
			name: "set fields are kept",
			in: AgentConfiguration{
				NodeName:               "n1",
				MetricsBindAddress:     "0",
				MetricsSecure:          new(false),
				HealthProbeBindAddress: "127.0.0.1:1",
				ResyncPeriod:           metav1.Duration{Duration: time.Minute},
				MinSyncInterval:        metav1.Duration{Duration: time.Second},
				CNISocket:              "0",
				LogFormat:              "text",
				ConntrackCleanup:       ptrTo(false),
				DeniedTrafficLog:       ptr(false),
				DeniedTrafficLogGroup:  ptr[int32](0),
				DeniedTrafficLogRate:   1,
				DeniedTrafficLogBurst:  2,
			},
			want: AgentConfiguration{
				TypeMeta:               metav1.TypeMeta{APIVersion: APIVersion, Kind: KindAgentConfiguration},
				NodeName:               "n1",
				MetricsBindAddress:     "0",
				MetricsSecure:          new(false),
				HealthProbeBindAddress: "127.0.0.1:1",
				ResyncPeriod:           metav1.Duration{Duration: time.Minute},
				MinSyncInterval:        metav1.Duration{Duration: time.Second},
				CNISocket:              "0",
				LogFormat:              "text",
				ConntrackCleanup:       ptrTo(false),
				DeniedTrafficLog:       ptr(false),
				DeniedTrafficLogGroup:  ptr[int32](0),
				DeniedTrafficLogRate:   1,
				DeniedTrafficLogBurst:  2,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in
			SetDefaults(&got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("SetDefaults (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	valid := func(mut func(*AgentConfiguration)) AgentConfiguration {
		c := AgentConfiguration{NodeName: "node-1"}
		SetDefaults(&c)
		if mut != nil {
			mut(&c)
		}
		return c
	}
	tests := []struct {
		name string
		in   AgentConfiguration
		// wantErrs are substrings that must all appear; none means valid.
		wantErrs []string
	}{
		{name: "defaults with a node name", in: valid(nil)},
		{name: "listeners disabled", in: valid(func(c *AgentConfiguration) { c.MetricsBindAddress, c.HealthProbeBindAddress = "0", "0" })},
		{name: "CNI socket disabled", in: valid(func(c *AgentConfiguration) { c.CNISocket = "0" })},
		{name: "relative CNI socket", in: valid(func(c *AgentConfiguration) { c.CNISocket = "run/cni.sock" }), wantErrs: []string{"cniSocket: must be an absolute path"}},
		{name: "ipv6 listener", in: valid(func(c *AgentConfiguration) { c.MetricsBindAddress = "[::1]:9808" })},
		{name: "plain metrics on loopback", in: valid(func(c *AgentConfiguration) { c.MetricsBindAddress, c.MetricsSecure = "127.0.0.1:9808", new(false) })},
		{name: "plain metrics on localhost", in: valid(func(c *AgentConfiguration) { c.MetricsBindAddress, c.MetricsSecure = "localhost:9808", new(false) })},
		{name: "plain metrics disabled", in: valid(func(c *AgentConfiguration) { c.MetricsBindAddress, c.MetricsSecure = "0", new(false) })},
		{name: "plain metrics on every address", in: valid(func(c *AgentConfiguration) { c.MetricsSecure = new(false) }), wantErrs: []string{`metricsSecure: plain HTTP without authentication only on a loopback address`, `not ":9808"`}},
		{name: "plain metrics on a node address", in: valid(func(c *AgentConfiguration) { c.MetricsBindAddress, c.MetricsSecure = "10.0.0.1:9808", new(false) }), wantErrs: []string{"metricsSecure:"}},
		{name: "certificate without https", in: valid(func(c *AgentConfiguration) {
			c.MetricsBindAddress, c.MetricsSecure, c.MetricsCertDir = "[::1]:1", new(false), "/certs"
		}), wantErrs: []string{"metricsCertDir: set, but metricsSecure is false"}},
		{name: "missing node name", in: valid(func(c *AgentConfiguration) { c.NodeName = "" }), wantErrs: []string{"nodeName: required"}},
		{name: "min sync interval too long", in: valid(func(c *AgentConfiguration) { c.MinSyncInterval.Duration = 20 * time.Second }), wantErrs: []string{"minSyncInterval: 20s is not between 0 and 10s"}},
		{name: "bad node name", in: valid(func(c *AgentConfiguration) { c.NodeName = "Node_1" }), wantErrs: []string{"not a valid node name"}},
		{name: "audit all with the denied-traffic log", in: valid(func(c *AgentConfiguration) { c.AuditAllPolicies = true })},
		{name: "audit all without the denied-traffic log", in: valid(func(c *AgentConfiguration) { c.AuditAllPolicies, c.DeniedTrafficLog = true, ptr(false) }),
			wantErrs: []string{"auditAllPolicies: needs deniedTrafficLog"}},
		{
			name: "every error at once",
			in: valid(func(c *AgentConfiguration) {
				c.NodeName = ""
				c.MetricsBindAddress = "9808"
				c.HealthProbeBindAddress = ":http"
				c.ResyncPeriod.Duration = time.Second
				c.MinSyncInterval.Duration = -time.Millisecond
				c.LogFormat = "xml"
				c.LogVerbosity = -1
				c.APIVersion = "v1"
				c.DeniedTrafficLogGroup = ptr[int32](70000)
				c.DeniedTrafficLogRate = -1
				c.DeniedTrafficLogBurst = 20000
			}),
			wantErrs: []string{
				"apiVersion:", "nodeName: required", "metricsBindAddress:", "healthProbeBindAddress:",
				"resyncPeriod:", "minSyncInterval:", "logFormat:", "logVerbosity:",
				"deniedTrafficLogGroup: 70000", "deniedTrafficLogRate: -1", "deniedTrafficLogBurst: 20000",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(&tc.in)
			if len(tc.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("Validate: unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: no error, want %q", tc.wantErrs)
			}
			for _, w := range tc.wantErrs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    *AgentConfiguration
		wantErr string
	}{
		{
			name: "yaml",
			in: `apiVersion: nftpolicy.io/v1alpha1
kind: AgentConfiguration
nodeName: n1
resyncPeriod: 90s
logFormat: text
`,
			want: &AgentConfiguration{
				TypeMeta:     metav1.TypeMeta{APIVersion: APIVersion, Kind: KindAgentConfiguration},
				NodeName:     "n1",
				ResyncPeriod: metav1.Duration{Duration: 90 * time.Second},
				LogFormat:    "text",
			},
		},
		{name: "wrong case", in: "apiVersion: nftpolicy.io/v1alpha1\nkind: AgentConfiguration\nnodename: n1\n", wantErr: "unknown field"},
		{name: "unknown field", in: "apiVersion: nftpolicy.io/v1alpha1\nkind: AgentConfiguration\nnode: n1\n", wantErr: "unknown field"},
		{name: "no kind", in: "nodeName: n1\n", wantErr: "apiVersion and kind are required"},
		{name: "empty", in: "\n", wantErr: "empty configuration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Decode error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

func ptrTo[T any](v T) *T { return &v }

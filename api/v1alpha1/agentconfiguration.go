// Package v1alpha1 holds the versioned types of nftpolicy: for now the
// agent's configuration file.
package v1alpha1

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Group, Version and Kind of the configuration file.
const (
	GroupName = "nftpolicy.io"
	Version   = "v1alpha1"
	// APIVersion is what the file's apiVersion must say.
	APIVersion = GroupName + "/" + Version
	// KindAgentConfiguration is what the file's kind must say.
	KindAgentConfiguration = "AgentConfiguration"
)

// Defaults. Each is also the default of the command-line flag of the same
// name.
const (
	DefaultMetricsBindAddress = ":9808"
	// DefaultMetricsSecure: /metrics is HTTPS with authentication and
	// authorization, as the agent's port is open on every node address.
	DefaultMetricsSecure          = true
	DefaultHealthProbeBindAddress = ":9809"
	// DefaultResyncPeriod is how often the agent recompiles and re-syncs
	// without any event, so that the syncer can repair drift (e.g. someone
	// flushed our table). Five minutes bounds the time a drift can live
	// while costing one compile + one read-back of the table per period.
	DefaultResyncPeriod = 5 * time.Minute
	// DefaultMinSyncInterval is the least time between the starts of two
	// syncs. An event after a quiet period is synced at once; later events
	// within the interval share the next sync. The agent also stretches the
	// interval to twice its last sync's duration on its own, so this only
	// matters for small clusters, where a sync takes a few milliseconds.
	DefaultMinSyncInterval = 20 * time.Millisecond
	DefaultLogFormat       = LogFormatJSON
	// DefaultConntrackCleanup is on: a tightened policy should cut the
	// connections it denies, not only refuse new ones, as users of
	// NetworkPolicy expect (and as CNIs with their own policy engines do).
	// The cost is one conntrack dump after each sync that may deny
	// something new (not after a peer pod appears; see README,
	// Performance); turn it off on nodes whose conntrack table makes that
	// too slow.
	DefaultConntrackCleanup = true
	// DefaultDeniedTrafficLogGroup is the NFLOG group of the denied-traffic
	// log: one no other common node component uses (kube-router takes
	// 100, Calico 1 and 2, ulogd's examples 0-2).
	DefaultDeniedTrafficLogGroup = 4200
	// DefaultDeniedTrafficLogRate and DefaultDeniedTrafficLogBurst bound
	// the denied-traffic log of a whole node: at most 10 records a second
	// (20 at once after a quiet spell), whatever the number of pods or the
	// flood. That is at most ~350 bytes * 10/s of log a node, and the
	// kernel drops the packets over the limit without waking anyone.
	DefaultDeniedTrafficLogRate  = 10
	DefaultDeniedTrafficLogBurst = 20
	// DisabledBindAddress turns a listener off.
	DisabledBindAddress = "0"
	// DefaultCNISocket is where the agent hears from its chained CNI
	// plugin (cmd/nftpolicy-cni) about new pods; it is cniapi.DefaultSocket
	// (kept in step by a test in cmd/nftpolicy).
	DefaultCNISocket = "/run/nftpolicy/cni.sock"
)

// Log formats.
const (
	LogFormatJSON = "json"
	LogFormatText = "text"
)

// minResyncPeriod keeps a typo (e.g. "5s" for "5m") from turning the
// periodic drift repair into a busy loop.
const minResyncPeriod = 10 * time.Second

// maxMinSyncInterval keeps a typo (e.g. "20s" for "20ms") from delaying
// every policy change by that much.
const maxMinSyncInterval = 10 * time.Second

// maxDeniedTrafficLogRate keeps the denied-traffic log a log: past a few
// thousand lines a second it is a packet capture, and costs like one.
const maxDeniedTrafficLogRate = 10000

// AgentConfiguration configures one nftpolicy agent. Every field has a
// command-line flag of the same meaning; flags that are set explicitly
// override the file.
type AgentConfiguration struct {
	metav1.TypeMeta `json:",inline"`

	// NodeName is the node this agent enforces policy on (usually from the
	// downward API via $NODE_NAME). Required.
	NodeName string `json:"nodeName,omitempty"`
	// Kubeconfig is the path of a kubeconfig file; empty means $KUBECONFIG,
	// then the in-cluster configuration, then ~/.kube/config.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// MetricsBindAddress is where /metrics is served; "0" disables it.
	MetricsBindAddress string `json:"metricsBindAddress,omitempty"`
	// MetricsSecure serves the metrics port (/metrics and /debug/ruleset)
	// over HTTPS, and only to users the API server vouches for (a bearer
	// token, through a TokenReview, or a client certificate of its client
	// CA) and allows to get the path as a non-resource URL
	// (SubjectAccessReview). Default true. False serves plain HTTP to
	// anyone, which Validate allows only on a loopback address.
	MetricsSecure *bool `json:"metricsSecure,omitempty"`
	// MetricsCertDir holds the serving certificate of the metrics port, tls.crt
	// and tls.key (reloaded when they change). Empty: a self-signed
	// certificate is made at start.
	MetricsCertDir string `json:"metricsCertDir,omitempty"`
	// HealthProbeBindAddress is where /healthz and /readyz are served; "0"
	// disables them.
	HealthProbeBindAddress string `json:"healthProbeBindAddress,omitempty"`
	// ResyncPeriod is how often the whole node is recompiled and synced
	// without any event, to repair drift in the kernel.
	ResyncPeriod metav1.Duration `json:"resyncPeriod,omitempty"`
	// MinSyncInterval is the least time between the starts of two syncs
	// (see DefaultMinSyncInterval).
	MinSyncInterval metav1.Duration `json:"minSyncInterval,omitempty"`
	// CNISocket is the unix socket on which the chained CNI plugin
	// announces new pods' addresses; "0" disables it (new pods then wait
	// for their status, dropped, before the agent programs them).
	CNISocket string `json:"cniSocket,omitempty"`
	// LogFormat is json or text.
	LogFormat string `json:"logFormat,omitempty"`
	// LogVerbosity is the logr verbosity: 0 logs info, 1 and up add debug.
	LogVerbosity int32 `json:"logVerbosity,omitempty"`
	// ConntrackCleanup: after each sync that may deny something new,
	// delete the conntrack entries of connections the new ruleset denies, so that a
	// tightened policy cuts them. Default true (DefaultConntrackCleanup).
	// Where the kernel offers no conntrack over netlink the agent says so
	// once and leaves established connections alone.
	ConntrackCleanup *bool `json:"conntrackCleanup,omitempty"`

	// DeniedTrafficLog turns the denied-traffic log on or off (default on):
	// every packet a policy drops first goes to NFLOG, within the rate
	// below, and the agent logs it naming pods and policies.
	DeniedTrafficLog *bool `json:"deniedTrafficLog,omitempty"`
	// DeniedTrafficLogGroup is its NFLOG group (0-65535); no other program
	// on the node may read that group.
	DeniedTrafficLogGroup *int32 `json:"deniedTrafficLogGroup,omitempty"`
	// DeniedTrafficLogRate is the most records a second the node sends,
	// DeniedTrafficLogBurst the most at once.
	DeniedTrafficLogRate  int32 `json:"deniedTrafficLogRate,omitempty"`
	DeniedTrafficLogBurst int32 `json:"deniedTrafficLogBurst,omitempty"`

	// AuditAllPolicies puts every NetworkPolicy and ClusterNetworkPolicy on
	// the node in audit mode, as if each were annotated
	// nftpolicy.io/enforcement: audit: nothing is dropped for them, and
	// what they would drop goes to the denied-traffic log marked audit
	// (which must be on). Default off.
	AuditAllPolicies bool `json:"auditAllPolicies,omitempty"`
}

// SetDefaults fills every unset field with its default.
func SetDefaults(c *AgentConfiguration) {
	if c.APIVersion == "" {
		c.APIVersion = APIVersion
	}
	if c.Kind == "" {
		c.Kind = KindAgentConfiguration
	}
	if c.MetricsBindAddress == "" {
		c.MetricsBindAddress = DefaultMetricsBindAddress
	}
	if c.MetricsSecure == nil {
		secure := DefaultMetricsSecure
		c.MetricsSecure = &secure
	}
	if c.HealthProbeBindAddress == "" {
		c.HealthProbeBindAddress = DefaultHealthProbeBindAddress
	}
	if c.ResyncPeriod.Duration == 0 {
		c.ResyncPeriod.Duration = DefaultResyncPeriod
	}
	if c.MinSyncInterval.Duration == 0 {
		c.MinSyncInterval.Duration = DefaultMinSyncInterval
	}
	if c.LogFormat == "" {
		c.LogFormat = DefaultLogFormat
	}
	if c.ConntrackCleanup == nil {
		on := DefaultConntrackCleanup
		c.ConntrackCleanup = &on
	}
	if c.DeniedTrafficLog == nil {
		on := true
		c.DeniedTrafficLog = &on
	}
	if c.DeniedTrafficLogGroup == nil {
		g := int32(DefaultDeniedTrafficLogGroup)
		c.DeniedTrafficLogGroup = &g
	}
	if c.DeniedTrafficLogRate == 0 {
		c.DeniedTrafficLogRate = DefaultDeniedTrafficLogRate
	}
	if c.DeniedTrafficLogBurst == 0 {
		c.DeniedTrafficLogBurst = DefaultDeniedTrafficLogBurst
	}
	if c.CNISocket == "" {
		c.CNISocket = DefaultCNISocket
	}
}

// Validate returns every problem of c at once (errors.Join), or nil.
func Validate(c *AgentConfiguration) error {
	var errs []error
	if c.APIVersion != APIVersion {
		errs = append(errs, fmt.Errorf("apiVersion: must be %q, not %q", APIVersion, c.APIVersion))
	}
	if c.Kind != KindAgentConfiguration {
		errs = append(errs, fmt.Errorf("kind: must be %q, not %q", KindAgentConfiguration, c.Kind))
	}
	if c.NodeName == "" {
		errs = append(errs, errors.New("nodeName: required (flag --node-name or env NODE_NAME)"))
	} else if msgs := validation.IsDNS1123Subdomain(c.NodeName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("nodeName: %q is not a valid node name: %v", c.NodeName, msgs))
	}
	if err := validateBindAddress(c.MetricsBindAddress); err != nil {
		errs = append(errs, fmt.Errorf("metricsBindAddress: %w", err))
	} else if c.MetricsSecure != nil && !*c.MetricsSecure && c.MetricsBindAddress != DisabledBindAddress && !isLoopback(c.MetricsBindAddress) {
		errs = append(errs, fmt.Errorf("metricsSecure: plain HTTP without authentication only on a loopback address (127.0.0.1:PORT, [::1]:PORT, localhost:PORT), not %q", c.MetricsBindAddress))
	}
	if c.MetricsCertDir != "" && c.MetricsSecure != nil && !*c.MetricsSecure {
		errs = append(errs, errors.New("metricsCertDir: set, but metricsSecure is false"))
	}
	if err := validateBindAddress(c.HealthProbeBindAddress); err != nil {
		errs = append(errs, fmt.Errorf("healthProbeBindAddress: %w", err))
	}
	if c.ResyncPeriod.Duration < minResyncPeriod {
		errs = append(errs, fmt.Errorf("resyncPeriod: %v is shorter than the minimum %v", c.ResyncPeriod.Duration, minResyncPeriod))
	}
	if d := c.MinSyncInterval.Duration; d < 0 || d > maxMinSyncInterval {
		errs = append(errs, fmt.Errorf("minSyncInterval: %v is not between 0 and %v", d, maxMinSyncInterval))
	}
	if c.LogFormat != LogFormatJSON && c.LogFormat != LogFormatText {
		errs = append(errs, fmt.Errorf("logFormat: must be %q or %q, not %q", LogFormatJSON, LogFormatText, c.LogFormat))
	}
	if c.CNISocket != DisabledBindAddress && !strings.HasPrefix(c.CNISocket, "/") {
		errs = append(errs, fmt.Errorf("cniSocket: must be an absolute path or %q, not %q", DisabledBindAddress, c.CNISocket))
	}
	if c.LogVerbosity < 0 {
		errs = append(errs, fmt.Errorf("logVerbosity: must not be negative, is %d", c.LogVerbosity))
	}
	if g := c.DeniedTrafficLogGroup; g != nil && (*g < 0 || *g > 65535) {
		errs = append(errs, fmt.Errorf("deniedTrafficLogGroup: %d is not an NFLOG group (0-65535)", *g))
	}
	if c.DeniedTrafficLogRate < 1 || c.DeniedTrafficLogRate > maxDeniedTrafficLogRate {
		errs = append(errs, fmt.Errorf("deniedTrafficLogRate: %d is not between 1 and %d records a second", c.DeniedTrafficLogRate, maxDeniedTrafficLogRate))
	}
	if c.DeniedTrafficLogBurst < 1 || c.DeniedTrafficLogBurst > maxDeniedTrafficLogRate {
		errs = append(errs, fmt.Errorf("deniedTrafficLogBurst: %d is not between 1 and %d records", c.DeniedTrafficLogBurst, maxDeniedTrafficLogRate))
	}
	if c.AuditAllPolicies && c.DeniedTrafficLog != nil && !*c.DeniedTrafficLog {
		// Audit mode drops nothing; its records are all it does.
		errs = append(errs, errors.New("auditAllPolicies: needs deniedTrafficLog on, where its records go"))
	}
	return errors.Join(errs...)
}

// isLoopback reports whether a valid bind address listens on loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validateBindAddress accepts "0" (disabled) or host:port with a numeric
// port ("" host means all addresses).
func validateBindAddress(addr string) error {
	if addr == DisabledBindAddress {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, err)
	}
	if host != "" && net.ParseIP(host) == nil {
		if msgs := validation.IsDNS1123Subdomain(host); len(msgs) > 0 {
			return fmt.Errorf("%q: host is neither an IP nor a DNS name", addr)
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port must be a number 0-65535", addr)
	}
	return nil
}

// Decode parses a configuration file (YAML or JSON). Unknown, duplicate or
// wrongly cased fields are an error, so that a misspelt field does not
// silently fall back to its default. apiVersion and kind must be present;
// their values are checked by Validate.
func Decode(data []byte) (*AgentConfiguration, error) {
	c := &AgentConfiguration{}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty configuration")
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("decode AgentConfiguration: %w", err)
	}
	strictErrs, err := kjson.UnmarshalStrict(js, c, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, fmt.Errorf("decode AgentConfiguration: %w", err)
	}
	if len(strictErrs) > 0 {
		return nil, fmt.Errorf("decode AgentConfiguration: %w", errors.Join(strictErrs...))
	}
	if c.APIVersion == "" || c.Kind == "" {
		return nil, fmt.Errorf("decode AgentConfiguration: apiVersion and kind are required (%s, %s)", APIVersion, KindAgentConfiguration)
	}
	return c, nil
}

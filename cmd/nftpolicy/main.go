// Command nftpolicy is the node agent: it enforces Kubernetes
// NetworkPolicies (and ClusterNetworkPolicies of sigs.k8s.io/network-policy-api
// when their CRD is installed) on its node with one nftables table, inet
// nftpolicy.
//
//	nftpolicy [flags]     run the agent (see --help)
//	nftpolicy cleanup     delete table inet nftpolicy (opens enforcement)
//	nftpolicy version     print the version
//	nftpolicy explain     why a connection is allowed or denied (also as
//	                      the kubectl plugin kubectl-nftpolicy: a symlink
//	                      of that name runs only explain and version)
//
// Configuration: built-in defaults < $NODE_NAME (for the node name) <
// --config file (an api/v1alpha1 AgentConfiguration) < flags set on the
// command line. Everything is validated before anything starts.
//
// On shutdown (SIGTERM/SIGINT) the table is left in place, so enforcement
// does not open while the agent restarts.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/api/v1alpha1"
	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/internal/hostcheck"
	"github.com/nftpolicy/nftpolicy/nft"
)

// version is set at build time: -ldflags "-X main.version=v0.1.0".
var version = "dev"

func main() { os.Exit(run()) }

func run() int {
	if isPlugin(os.Args[0]) {
		return runPlugin(os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	}
	return runArgs(os.Args[1:], os.Getenv, os.ReadFile, os.Stdout, os.Stderr)
}

// runPlugin is the binary as kubectl-nftpolicy: the commands a user runs
// from a workstation, never the agent.
func runPlugin(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "explain":
			return runExplain(context.Background(), "kubectl nftpolicy", args[1:], getenv, stdout, stderr)
		case "version":
			fmt.Fprintf(stdout, "nftpolicy %s\n", version)
			return 0
		}
	}
	fmt.Fprintf(stderr, "usage: kubectl nftpolicy explain --from SRC --to DST[:PORT] [flags] (see kubectl nftpolicy explain --help)\n"+
		"       kubectl nftpolicy version\n")
	return 2
}

// runArgs is run with its environment injected, for tests.
func runArgs(args []string, getenv func(string) string, readFile func(string) ([]byte, error), stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintf(stdout, "nftpolicy %s\n", version)
			return 0
		case "cleanup":
			return runCleanup(args[1:], stderr)
		case "explain":
			return runExplain(context.Background(), "nftpolicy", args[1:], getenv, stdout, stderr)
		case "install-cni":
			return runInstallCNI(args[1:], stdout, stderr)
		}
	}
	cfg, err := parseConfig(args, getenv, readFile, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "nftpolicy: invalid configuration:\n%v\n", err)
		return 2
	}
	log := newLogger(stderr, cfg.LogFormat, int(cfg.LogVerbosity))
	ctrl.SetLogger(log)
	klog.SetLogger(log)
	if limit, container := goMemoryLimit(getenv, readFile); limit > 0 {
		debug.SetMemoryLimit(limit)
		log.Info("Go memory limit set below the container's", "goMemoryLimitBytes", limit, "containerLimitBytes", container)
	}
	if err := runAgent(ctrl.SetupSignalHandler(), cfg, log); err != nil {
		log.Error(err, "agent stopped")
		return 1
	}
	return 0
}

// parseConfig merges defaults, $NODE_NAME, the --config file and the flags
// set on the command line, then validates the result as a whole.
func parseConfig(args []string, getenv func(string) string, readFile func(string) ([]byte, error), stderr io.Writer) (*v1alpha1.AgentConfiguration, error) {
	fs := pflag.NewFlagSet("nftpolicy", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		flags      v1alpha1.AgentConfiguration
		configPath string
		resync     time.Duration
		minSync    time.Duration
		conntrack  bool
		denyLog    bool
		denyGroup  int32
		secure     bool
	)
	fs.StringVar(&configPath, "config", "", "path of an AgentConfiguration file (apiVersion "+v1alpha1.APIVersion+"); flags set explicitly override it")
	fs.StringVar(&flags.NodeName, "node-name", getenv("NODE_NAME"), "name of the node this agent enforces policy on (default $NODE_NAME); required")
	fs.StringVar(&flags.Kubeconfig, "kubeconfig", "", "kubeconfig path; empty: $KUBECONFIG, then in-cluster, then ~/.kube/config")
	fs.StringVar(&flags.MetricsBindAddress, "metrics-bind-address", v1alpha1.DefaultMetricsBindAddress, `address of /metrics; "0" disables`)
	fs.BoolVar(&secure, "metrics-secure", v1alpha1.DefaultMetricsSecure, "serve /metrics and /debug/ruleset over HTTPS to users the API server authenticates (bearer token or client certificate) and authorizes for GET of the path; false: plain HTTP to anyone, only on a loopback address")
	fs.StringVar(&flags.MetricsCertDir, "metrics-cert-dir", "", "directory with tls.crt and tls.key for the metrics port (reloaded when they change); empty: a self-signed certificate made at start")
	fs.StringVar(&flags.HealthProbeBindAddress, "health-probe-bind-address", v1alpha1.DefaultHealthProbeBindAddress, `address of /healthz and /readyz; "0" disables`)
	fs.DurationVar(&resync, "resync-period", v1alpha1.DefaultResyncPeriod, "rebuild the policy state from the caches, recompile and re-sync at least this often, repairing drift in the kernel (minimum 10s)")
	fs.DurationVar(&minSync, "min-sync-interval", v1alpha1.DefaultMinSyncInterval, "least time between the starts of two syncs; an event after a quiet period syncs at once, events within the interval share the next sync (at most 10s)")
	fs.BoolVar(&conntrack, "conntrack-cleanup", v1alpha1.DefaultConntrackCleanup, "after each sync that may deny something new, delete the conntrack entries of connections the new ruleset denies, so that a tightened policy cuts them")
	fs.StringVar(&flags.CNISocket, "cni-socket", v1alpha1.DefaultCNISocket, `unix socket on which the chained CNI plugin (nftpolicy-cni) announces new pods; "0" disables it`)
	fs.StringVar(&flags.LogFormat, "log-format", v1alpha1.DefaultLogFormat, "log format: json or text")
	fs.Int32VarP(&flags.LogVerbosity, "v", "v", 0, "log verbosity (0 info, 1 debug, higher more)")
	fs.BoolVar(&denyLog, "denied-traffic-log", true, "log every packet a policy drops (through NFLOG, within --denied-traffic-log-rate), naming pods and policies")
	fs.Int32Var(&denyGroup, "denied-traffic-log-group", v1alpha1.DefaultDeniedTrafficLogGroup, "NFLOG group of the denied-traffic log; no other program on the node may read it")
	fs.Int32Var(&flags.DeniedTrafficLogRate, "denied-traffic-log-rate", v1alpha1.DefaultDeniedTrafficLogRate, "most denied-traffic records a second, for the whole node (the kernel drops the rest unlogged)")
	fs.Int32Var(&flags.DeniedTrafficLogBurst, "denied-traffic-log-burst", v1alpha1.DefaultDeniedTrafficLogBurst, "most denied-traffic records at once after a quiet spell")
	fs.BoolVar(&flags.AuditAllPolicies, "audit-all-policies", false, "audit mode for every NetworkPolicy and ClusterNetworkPolicy, annotated nftpolicy.io/enforcement: audit or not: drop nothing for them, log what they would drop (needs --denied-traffic-log)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q (subcommands: cleanup, explain, install-cni, version)", fs.Args())
	}

	cfg := &v1alpha1.AgentConfiguration{}
	if configPath != "" {
		data, err := readFile(configPath)
		if err != nil {
			return nil, fmt.Errorf("read --config: %w", err)
		}
		if cfg, err = v1alpha1.Decode(data); err != nil {
			return nil, fmt.Errorf("--config %s: %w", configPath, err)
		}
	}
	if cfg.NodeName == "" {
		cfg.NodeName = getenv("NODE_NAME")
	}
	set := func(name string, apply func()) {
		if fs.Changed(name) {
			apply()
		}
	}
	set("node-name", func() { cfg.NodeName = flags.NodeName })
	set("kubeconfig", func() { cfg.Kubeconfig = flags.Kubeconfig })
	set("metrics-bind-address", func() { cfg.MetricsBindAddress = flags.MetricsBindAddress })
	set("metrics-secure", func() { cfg.MetricsSecure = &secure })
	set("metrics-cert-dir", func() { cfg.MetricsCertDir = flags.MetricsCertDir })
	set("health-probe-bind-address", func() { cfg.HealthProbeBindAddress = flags.HealthProbeBindAddress })
	set("resync-period", func() { cfg.ResyncPeriod.Duration = resync })
	set("min-sync-interval", func() { cfg.MinSyncInterval.Duration = minSync })
	set("conntrack-cleanup", func() { cfg.ConntrackCleanup = &conntrack })
	set("cni-socket", func() { cfg.CNISocket = flags.CNISocket })
	set("log-format", func() { cfg.LogFormat = flags.LogFormat })
	set("v", func() { cfg.LogVerbosity = flags.LogVerbosity })
	set("denied-traffic-log", func() { cfg.DeniedTrafficLog = &denyLog })
	set("denied-traffic-log-group", func() { cfg.DeniedTrafficLogGroup = &denyGroup })
	set("denied-traffic-log-rate", func() { cfg.DeniedTrafficLogRate = flags.DeniedTrafficLogRate })
	set("denied-traffic-log-burst", func() { cfg.DeniedTrafficLogBurst = flags.DeniedTrafficLogBurst })
	set("audit-all-policies", func() { cfg.AuditAllPolicies = flags.AuditAllPolicies })
	v1alpha1.SetDefaults(cfg)
	if err := v1alpha1.Validate(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// newLogger returns a logr.Logger over log/slog. logr's V(n) maps to slog
// level -n, so verbosity v shows V(0)..V(v).
func newLogger(w io.Writer, format string, verbosity int) logr.Logger {
	opts := &slog.HandlerOptions{Level: slog.Level(-verbosity)}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if format == v1alpha1.LogFormatText {
		h = slog.NewTextHandler(w, opts)
	}
	return logr.FromSlogHandler(h)
}

// restConfig loads the client configuration: an explicit kubeconfig, or
// controller-runtime's search ($KUBECONFIG, in-cluster, ~/.kube/config).
// Reads wait for an unreachable API server (waitForAPI).
// restConfig loads the client configuration. The agent wraps its transport
// with waitForAPI; the explain CLI does not (it answers once, within its
// timeout, and should fail fast when the API server is away).
func restConfig(kubeconfig string) (*rest.Config, error) {
	var (
		c   *rest.Config
		err error
	)
	if kubeconfig != "" {
		c, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		c, err = ctrlconfig.GetConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	c.UserAgent = "nftpolicy/" + version
	return c, nil
}

func runAgent(ctx context.Context, cfg *v1alpha1.AgentConfiguration, log logr.Logger) error {
	// The controllers name the node themselves (SetupWithManager); they get
	// the logger without it, so that their lines carry it once.
	controllerLog := log
	log = log.WithValues("node", cfg.NodeName)
	log.Info("starting", "version", version, "resyncPeriod", cfg.ResyncPeriod.Duration.String(), "minSyncInterval", cfg.MinSyncInterval.Duration.String())

	// br_netfilter: fix it once, now, if we can; if not, keep going (routed
	// traffic is still filtered) but stay unready, with the reason in
	// /readyz. The readiness probe only reads the sysctls: a probe must not
	// change the host.
	changed, err := hostcheck.EnsureBridgeNetfilter(hostcheck.DefaultProcSys)
	if err != nil {
		log.Error(err, "host check failed: same-node (bridged) pod traffic is not filtered; the agent stays unready until this is fixed")
	}
	if len(changed) > 0 {
		log.Info("set sysctls", "sysctls", changed)
	}
	precondition := func() error { return hostcheck.CheckBridgeNetfilter(hostcheck.DefaultProcSys) }

	rc, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	// The agent's reads wait for an unreachable API server (see waitForAPI).
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return &waitForAPI{next: rt, log: log.WithName("api"), every: apiRetryEvery}
	})
	ks, err := newKernelSyncer()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	syncer := &verifyingSyncer{k: ks, every: cfg.ResyncPeriod.Duration, log: log, now: time.Now}
	syncRequests := make(chan struct{}, 1)
	// applied serves what the kernel was last given on the metrics port
	// (controllers.RulesetPath), for nftpolicy explain --live: read-only,
	// and no more exposed than /metrics (see README, Explaining a verdict).
	applied := &controllers.AppliedRuleset{
		Node:  cfg.NodeName,
		Inner: syncer,
		Now:   time.Now,
	}
	cleaner, conntrackAvailable := openConntrack(*cfg.ConntrackCleanup, log)
	// counters serves the kernel's drop and accept counters as metrics
	// and, per pod, at controllers.CountersPath beside the ruleset.
	counters, err := controllers.NewCounters(controllers.CountersOptions{
		Node: cfg.NodeName, Read: readCounters, Applied: applied.Last,
		Registerer: metrics.Registry, Logger: log.WithName("counters"),
	})
	if err != nil {
		return err
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	// ClusterNetworkPolicies are read through their own typed client
	// (controllers.CNPListWatch); in the scheme they are known to the Event
	// recorder and anything else that has to name them.
	if err := policyv1beta1.Install(scheme); err != nil {
		return err
	}
	// The metrics port's users authenticate with a bearer token or with a
	// client certificate of the API server's own client CA (what a
	// kubeconfig of nftpolicy explain --live presents).
	var clientCA dynamiccertificates.CAContentProvider
	var runClientCA manager.RunnableFunc
	if *cfg.MetricsSecure && cfg.MetricsBindAddress != v1alpha1.DisabledBindAddress {
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return fmt.Errorf("API client: %w", err)
		}
		if clientCA, runClientCA, err = controllers.ClientCAFromAPIServer(cs); err != nil {
			return err
		}
	}
	mgr, err := ctrl.NewManager(rc, ctrl.Options{
		Scheme: scheme,
		Cache:  controllers.CacheOptions(),
		Metrics: controllers.MetricsServerOptions(cfg.MetricsBindAddress, *cfg.MetricsSecure, cfg.MetricsCertDir,
			map[string]http.Handler{controllers.RulesetPath: applied, controllers.CountersPath: counters}, clientCA),
		HealthProbeBindAddress: cfg.HealthProbeBindAddress,
		LeaderElection:         false,
		Logger:                 log,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	var denyLog *nft.DenyLog
	if *cfg.DeniedTrafficLog {
		denyLog = &nft.DenyLog{
			Group: uint16(*cfg.DeniedTrafficLogGroup), // validated: 0-65535
			Rate:  uint32(cfg.DeniedTrafficLogRate),   // validated: positive
			Burst: uint32(cfg.DeniedTrafficLogBurst),  // validated: positive
		}
	}
	r, err := controllers.New(controllers.Options{
		DenyLog:         denyLog,
		AuditAll:        cfg.AuditAllPolicies,
		NodeName:        cfg.NodeName,
		Syncer:          applied,
		Registerer:      metrics.Registry,
		Precondition:    precondition,
		ResyncPeriod:    cfg.ResyncPeriod.Duration,
		MinSyncInterval: cfg.MinSyncInterval.Duration,
		HostAddresses:   hostAddresses,
		SyncRequests:    syncRequests,
		Conntrack:       cleaner,
		// Reported as nftpolicy_conntrack_netlink_available.
		ConntrackAvailable: conntrackAvailable,
		Logger:             controllerLog,
	})
	if err != nil {
		return err
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up controller: %w", err)
	}
	tampering, err := newTamperWatch(ks, syncer, syncRequests, metrics.Registry, log)
	if err != nil {
		return err
	}
	if runClientCA != nil {
		if err := mgr.Add(runClientCA); err != nil {
			return err
		}
	}
	if err := mgr.Add(tampering); err != nil {
		return fmt.Errorf("add table monitor: %w", err)
	}
	if denyLog != nil {
		if err := mgr.Add(deniedTrafficReader(denyLog.Group, r.DeniedTraffic(), log)); err != nil {
			return err
		}
	}
	if err := mgr.Add(counters); err != nil {
		return fmt.Errorf("add counters: %w", err)
	}
	if cfg.CNISocket != v1alpha1.DisabledBindAddress {
		if err := mgr.Add(&cniServer{path: cfg.CNISocket, announce: r.Announce, log: log.WithName("cni")}); err != nil {
			return fmt.Errorf("add CNI socket: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("nftpolicy", r.ReadyzCheck); err != nil {
		return err
	}
	// Returns on SIGTERM/SIGINT. The table stays: enforcement must not open
	// while the agent restarts.
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	log.Info("stopped; table inet nftpolicy left in place")
	return nil
}

// openConntrack checks once, at start, whether the kernel offers conntrack
// over netlink, says so in the log, and returns the cleaner to use: nil
// when cleanup is off or unavailable, in which case established
// connections outlive a tightened policy as they always did.
func openConntrack(enabled bool, log logr.Logger) (controllers.ConntrackCleaner, bool) {
	c, err := newConntrackCleaner()
	available := err == nil
	switch {
	case !available:
		log.Info("conntrack over netlink is not available: connections a tightened policy denies stay open until they end (new ones are denied)",
			"conntrackCleanup", enabled, "reason", err.Error())
		return nil, false
	case !enabled:
		if cl, ok := c.(interface{ Close() }); ok {
			cl.Close()
		}
		log.Info("conntrack over netlink is available, but conntrack cleanup is off (--conntrack-cleanup=false): connections a tightened policy denies stay open")
		return nil, true
	}
	log.Info("conntrack cleanup on: after each sync that may deny something new, connections the new ruleset denies are cut")
	return c, true
}

func runCleanup(args []string, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "nftpolicy cleanup: unexpected arguments %q\n", args)
		return 2
	}
	if err := cleanupKernel(); err != nil {
		fmt.Fprintf(stderr, "nftpolicy cleanup: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "deleted table %s %s (if it existed)\n", nft.TableFamily, nft.TableName)
	return 0
}

// deniedTrafficReader reads the deny log's NFLOG group into sink until the
// manager stops. A group it cannot bind (another program holds it, or the
// kernel lacks nfnetlink_log) is logged and leaves enforcement alone: the
// drops still happen, only unlogged.
func deniedTrafficReader(group uint16, sink *controllers.DeniedTraffic, log logr.Logger) manager.RunnableFunc {
	return func(ctx context.Context) error {
		rd, err := listenNFLOG(group)
		if err != nil {
			log.Error(err, "denied-traffic log off: cannot read its NFLOG group", "group", group)
			return nil
		}
		log.Info("denied-traffic log on", "group", group)
		if err := rd.Run(ctx, func(p nft.LoggedPacket) { sink.Record(ctx, p) }); err != nil {
			log.Error(err, "denied-traffic log stopped", "group", group)
		}
		return nil
	}
}

// nflogReader is what the agent needs of nft/kernel.NFLOGReader.
type nflogReader interface {
	Run(ctx context.Context, handle func(nft.LoggedPacket)) error
}

// kernelSyncer is what the agent needs of nft/kernel.Syncer.
type kernelSyncer interface {
	controllers.Syncer
	// Verify compares the kernel with the last applied ruleset and marks
	// the syncer dirty (next Sync replaces everything) on any difference.
	Verify(ctx context.Context) error
	// WatchTable calls onChange for every change to the table that this
	// syncer did not make (and when such a change may have gone unseen),
	// until ctx is done or reading the notifications fails.
	WatchTable(ctx context.Context, onChange func(reason string)) error
	// Tightened reports whether the last successful Sync may deny what
	// the kernel allowed before.
	Tightened() bool
	// LastReplace says, in words for the log, what the last full replace
	// did to the sets it found in the kernel.
	LastReplace() []any
}

// verifyingSyncer reads the table back before a Sync at most once per
// period, and before the next Sync after someone else changed the table
// (verifyNext), so that drift (someone flushed or edited our table) is
// repaired: a difference makes that Sync a full replace.
type verifyingSyncer struct {
	k          kernelSyncer
	every      time.Duration
	log        logr.Logger
	now        func() time.Time
	applied    bool // a Sync succeeded (before that, Sync replaces anyway)
	lastVerify time.Time
	// suspect is set by the table monitor's goroutine: verify before the
	// next Sync.
	suspect atomic.Bool
}

// verifyNext makes the next Sync verify the table first; safe to call from
// any goroutine.
func (v *verifyingSyncer) verifyNext() { v.suspect.Store(true) }

// Tightened passes the kernel syncer's answer on, so that the reconciler
// cleans conntrack only after syncs that may deny something new.
func (v *verifyingSyncer) Tightened() bool { return v.k.Tightened() }

func (v *verifyingSyncer) Sync(ctx context.Context, r *nft.Ruleset) error {
	if now := v.now(); v.applied && (v.suspect.Swap(false) || now.Sub(v.lastVerify) >= v.every) {
		v.lastVerify = now
		if err := v.k.Verify(ctx); err != nil {
			v.log.Info("kernel table differs from the last applied ruleset; replacing it", "reason", err.Error())
		}
	}
	if err := v.k.Sync(ctx, r); err != nil {
		return err
	}
	if !v.applied {
		v.applied, v.lastVerify = true, v.now()
		// On a restart the table is usually right already: the first
		// sync then keeps its pipapo sets' elements instead of writing
		// them again.
		v.log.Info("first full replace", v.k.LastReplace()...)
	}
	return nil
}

// Command e2e runs nftpolicy's local cluster in network namespaces and the
// connectivity scenario runner.
//
//	e2e up [--nodes 3] [--agent-cmd TEMPLATE]   bring the cluster up (idempotent)
//	e2e down                                    remove everything `up` made
//	e2e status | kubeconfig
//	e2e run [--agent-cmd T] PATH...             replay scenario files or directories
//	e2e demo                                    the demo app, before/after sample policies
//	e2e chaos --next-agent-bin B                faults under continuous probing (README: Failure behaviour)
//	e2e conntrack                               a tightening policy cuts the open flows it denies
//	e2e audit [--audit-file F --audit-step N]   a scenario step in audit mode, then enforced
//
// Internal subcommands: podserver (inside each pod netns), relay (the
// apiserver relay into the node namespaces).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/demo"
	"github.com/nftpolicy/nftpolicy/e2e/internal/deniedlog"
	"github.com/nftpolicy/nftpolicy/e2e/internal/podserver"
	"github.com/nftpolicy/nftpolicy/e2e/internal/runner"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

func main() { os.Exit(run()) }

func usage() {
	fmt.Fprintln(os.Stderr, `usage: e2e [--state-dir DIR] [--bin-dir DIR] COMMAND [flags]
E2E_IP_FAMILY=ipv4|ipv6|dual picks the cluster's families (unset: the running cluster's, else ipv4)
commands: up, down, status, kubeconfig, run PATH..., stress, chaos, conntrack, firstpacket, demo, denied-log, audit, agent-cmd --manifest F --bin B,
  conformance-report REPORT.json, npapi-report EVENTS.json [REPORT.yaml]
  --state-dir  default $E2E_STATE_DIR or `+cluster.DefaultState+` (`+cluster.DefaultState+`-N for E2E_INSTANCE=N)
  --bin-dir    directory with etcd, kube-apiserver, ..., flanneld, CNI plugins (default $E2E_BIN_DIR)
agent command template fields: {{.Node}} {{.NodeIP}} {{.Kubeconfig}} {{.NetNS}} {{.StateDir}} {{.LogDir}} {{.CNISocket}} {{.Index}}`)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// env is what every subcommand gets: its name, the global flags and a
// cluster configuration built from them.
type env struct {
	cmd      string
	stateDir string
	cfg      *cluster.Config
	logf     func(format string, a ...any)
}

func (e *env) fail(err error) int {
	fmt.Fprintf(os.Stderr, "e2e %s: %v\n", e.cmd, err)
	return 1
}

// done is the exit code of a command that returns only an error.
func (e *env) done(err error) int {
	if err != nil {
		return e.fail(err)
	}
	return 0
}

// clusterFlags are the flags of the commands that bring the cluster up
// first (up, run, stress, demo).
type clusterFlags struct {
	fs           *flag.FlagSet
	nodes        *int
	agent        *string
	converge     *time.Duration
	parallel     *int
	verbose      *bool
	timings      *string
	agentRBAC    *string
	policies     *string
	repeat       *int
	probeTimeout *time.Duration
	transitions  *int
	seed         *uint64
	cnpCRD       *string
	tableBound   *time.Duration
	explain      *bool
	kubelet      *bool
	install      *string
	imageBins    *string
	podserverBin *string
	auditFile    *string
	auditStep    *int
	chaos        chaosFlags
}

// chaosFlags are the chaos command's own flags.
type chaosFlags struct {
	kills        *int
	nextAgentBin *string
	apiOutage    *time.Duration
	partition    *time.Duration
	probeEvery   *time.Duration
	settle       *time.Duration
	healBound    *time.Duration
	maxProbes    *int
	timeout      *time.Duration
}

func newClusterFlags(cmd string) *clusterFlags {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	return &clusterFlags{
		fs:           fs,
		nodes:        fs.Int("nodes", 3, "number of nodes"),
		agent:        fs.String("agent-cmd", "", "per-node agent command template (empty: no agent)"),
		converge:     fs.Duration("converge", 10*time.Second, "run: per step, probe until the matrix matches or this passes"),
		parallel:     fs.Int("parallel", 24, "run: concurrent probes"),
		verbose:      fs.Bool("v", false, "run: print per-step times and setup times"),
		timings:      fs.String("timings", "", "run: write per-step times to converge to this JSON file"),
		agentRBAC:    fs.String("agent-rbac", defaultRBAC(), "directory with the agent's ServiceAccount, ClusterRole and binding; the agent runs as that ServiceAccount (empty: admin)"),
		policies:     fs.String("policies", "", "demo: directory of NetworkPolicy files to kubectl apply (default e2e/demo)"),
		repeat:       fs.Int("repeat", 1, "run: replay the scenario files this many times in a row (one summary)"),
		probeTimeout: fs.Duration("probe-timeout", time.Second, "run, stress: a probe that gets no answer in this time is 'blocked'"),
		transitions:  fs.Int("transitions", 30, "stress: how many random policy transitions"),
		seed:         fs.Uint64("seed", 0, "stress: seed of the transitions (0: from the clock, printed)"),
		cnpCRD:       fs.String("cnp-crd", runner.DefaultCNPCRD, "run: the ClusterNetworkPolicy CRD installed before the first scenario that uses one"),
		explain:      fs.Bool("explain", true, "run: also answer every cell with nftpolicy explain (API state and each agent's /debug/ruleset) and fail where it differs from the probe; only with our agent"),
		kubelet:      fs.Bool("kubelet", false, "up: containerd and a real kubelet on every node; the agent is the --install manifest's DaemonSet"),
		install:      fs.String("install", "", "up --kubelet: the manifest to kubectl apply (dist/install.yaml; empty: no agent)"),
		imageBins:    fs.String("agent-image-bins", "", "up --kubelet: directory with the static nftpolicy and nftpolicy-cni the agent image is packed from"),
		podserverBin: fs.String("podserver-bin", besideExecutable("e2e-podserver"), "run on a kubelet cluster: the static podserver (e2e/cmd/e2e-podserver) the scenario pods' image is packed from"),
		tableBound:   fs.Duration("table-bound", 10*time.Second, "stress: how long each node's table may take to equal a fresh compile"),
		auditFile:    fs.String("audit-file", "e2e/scenarios/upstream-e2e/01-tcp-should-support-a-default-deny-ingress-policy.yaml", "audit: the scenario file whose step is applied in audit mode, then enforced"),
		auditStep:    fs.Int("audit-step", 1, "audit: which step of --audit-file (from 1); it may only create policies (NetworkPolicies, ClusterNetworkPolicies)"),
		chaos: chaosFlags{
			kills:        fs.Int("kills", 10, "chaos: how often the agent is killed with SIGKILL and started again"),
			nextAgentBin: fs.String("next-agent-bin", "", "chaos: another build of the agent, for the upgrade (required)"),
			apiOutage:    fs.Duration("api-outage", 60*time.Second, "chaos: how long kube-apiserver is stopped"),
			partition:    fs.Duration("partition", 60*time.Second, "chaos: how long the nodes are cut off from the apiserver while a policy changes"),
			probeEvery:   fs.Duration("probe-every", 20*time.Millisecond, "chaos: interval between two probes of one cell (8 cells)"),
			settle:       fs.Duration("settle", 2*time.Second, "chaos: probing before the first fault and after each"),
			healBound:    fs.Duration("heal-bound", 10*time.Second, "chaos: how long a fault may take to heal before the run fails"),
			maxProbes:    fs.Int("max-probes", 2_000_000, "chaos: bound on the probes of the whole run"),
			timeout:      fs.Duration("timeout", 30*time.Minute, "chaos: bound on the whole run"),
		},
	}
}

// command is one subcommand: local ones run on their own arguments;
// cluster ones run once the cluster is up, with clusterFlags parsed.
type command struct {
	local     func(e *env, args []string) int
	onCluster func(ctx context.Context, e *env, f *clusterFlags, st *cluster.State) int
}

var commands = map[string]command{
	"podserver":          {local: podserverCmd},
	"relay":              {local: relayCmd},
	"down":               {local: downCmd},
	"status":             {local: statusCmd},
	"agent-cmd":          {local: agentCmd},
	"kubeconfig":         {local: kubeconfigCmd},
	"conformance-report": {local: conformanceReportCmd},
	"npapi-report":       {local: npapiReportCmd},
	"up":                 {onCluster: upCmd},
	"run":                {onCluster: runCmd},
	"stress":             {onCluster: stressCmd},
	"chaos":              {onCluster: chaosCmd},
	"conntrack":          {onCluster: conntrackCmd},
	"firstpacket":        {onCluster: firstPacketCmd},
	"demo":               {onCluster: demoCmd},
	"denied-log":         {onCluster: deniedLogCmd},
	"audit":              {onCluster: auditCmd},
}

func run() int {
	global := flag.NewFlagSet("e2e", flag.ContinueOnError)
	global.Usage = usage
	instance, err := cluster.ParseInstance(os.Getenv("E2E_INSTANCE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	stack, err := cluster.ParseStack(os.Getenv("E2E_IP_FAMILY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	stateDir := global.String("state-dir", envOr("E2E_STATE_DIR", instance.DefaultStateDir()), "state directory")
	binDir := global.String("bin-dir", os.Getenv("E2E_BIN_DIR"), "tool binaries")
	if err := global.Parse(os.Args[1:]); err != nil {
		return 2
	}
	args := global.Args()
	if len(args) == 0 {
		usage()
		return 2
	}
	name, args := args[0], args[1:]
	c, ok := commands[name]
	if !ok {
		usage()
		return 2
	}
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
	e := &env{cmd: name, stateDir: *stateDir, logf: logf,
		cfg: &cluster.Config{Instance: instance, StateDir: *stateDir, BinDir: *binDir, Nodes: 3, Stack: stack, Log: logf}}
	if c.local != nil {
		return c.local(e, args)
	}
	// Only here: podserver and relay must die of SIGTERM.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	f := newClusterFlags(name)
	if err := f.fs.Parse(args); err != nil {
		return 2
	}
	cfg := e.cfg
	cfg.Nodes = *f.nodes
	cfg.AgentCmd = *f.agent
	cfg.AgentRBAC = *f.agentRBAC
	cfg.Kubelet, cfg.Install, cfg.AgentImageBins = *f.kubelet, *f.install, *f.imageBins
	if prev, ok := cfg.LoadState(); ok {
		if !isSet(f.fs, "kubelet") && name != "up" {
			cfg.Kubelet, cfg.Install = prev.Kubelet, prev.Install
		}
		if cfg.BinDir == "" {
			cfg.BinDir = prev.BinDir
		}
		if !isSet(f.fs, "agent-cmd") && name != "up" {
			cfg.AgentCmd = prev.AgentCmd
		}
		if !isSet(f.fs, "nodes") && prev.Ready {
			cfg.Nodes = len(prev.Nodes)
		}
		if os.Getenv("E2E_IP_FAMILY") == "" && prev.Ready && prev.Stack != "" {
			cfg.Stack = prev.Stack // unset: keep the running cluster's families
		}
	}
	if cfg.BinDir == "" {
		return e.fail(fmt.Errorf("--bin-dir (or E2E_BIN_DIR) is needed: the output of hack/build-tools.sh"))
	}
	st, err := cfg.Up(ctx)
	if err != nil {
		return e.fail(err)
	}
	if st.Kubelet && name != "up" && name != "run" {
		// These checks need what only the harness kubelet controls: pod
		// network namespaces and processes it starts, a withheld status
		// update, the agent as a process of its own.
		return e.fail(fmt.Errorf("the cluster runs real kubelets (make up E2E_KUBELET=1): %s runs in harness mode only; here use run (the scenario runner) or make conformance, or make down first", name))
	}
	return c.onCluster(ctx, e, f, st)
}

func podserverCmd(e *env, args []string) int {
	fs := flag.NewFlagSet(e.cmd, flag.ContinueOnError)
	name := fs.String("name", "", "pod namespace/name")
	ctl := fs.String("ctl", "", "control socket path")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	return e.fail(podserver.Run(*name, *ctl)) // returns only on failure
}

func relayCmd(e *env, args []string) int {
	fs := flag.NewFlagSet(e.cmd, flag.ContinueOnError)
	sd := fs.String("state-dir", e.stateDir, "state directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	return e.done(cluster.Relay(*sd))
}

func downCmd(e *env, _ []string) int {
	t := time.Now()
	if err := e.cfg.Down(); err != nil {
		return e.fail(err)
	}
	e.logf("cluster down (%.1fs)", time.Since(t).Seconds())
	return 0
}

func statusCmd(e *env, _ []string) int {
	fmt.Print(e.cfg.Status())
	return 0
}

func agentCmd(e *env, args []string) int {
	fs := flag.NewFlagSet(e.cmd, flag.ContinueOnError)
	install := fs.String("manifest", "dist/install.yaml", "the rendered install manifest")
	bin := fs.String("bin", "", "path of the agent binary")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	tmpl, err := agentTemplate(*install, *bin)
	if err != nil {
		return e.fail(err)
	}
	fmt.Println(tmpl)
	return 0
}

func kubeconfigCmd(e *env, _ []string) int {
	if _, ok := e.cfg.LoadState(); !ok {
		return e.fail(fmt.Errorf("cluster is not up (no state in %s)", e.cfg.StateDir))
	}
	fmt.Println(e.cfg.AdminKubeconfig())
	return 0
}

func upCmd(_ context.Context, e *env, _ *clusterFlags, _ *cluster.State) int {
	fmt.Printf("export KUBECONFIG=%s\n", e.cfg.AdminKubeconfig())
	return 0
}

func runCmd(ctx context.Context, e *env, f *clusterFlags, st *cluster.State) int {
	files, err := scenario.Collect(f.fs.Args())
	if err != nil {
		return e.fail(err)
	}
	if len(files) == 0 {
		return e.fail(fmt.Errorf("no scenario files in %v", f.fs.Args()))
	}
	r, err := runner.New(ctx, e.cfg, st, os.Stdout, runner.Options{Converge: *f.converge, ProbeTimeout: *f.probeTimeout, Parallel: *f.parallel, Verbose: *f.verbose, TimingsFile: *f.timings, CNPCRD: *f.cnpCRD,
		Explain:      *f.explain && (strings.Contains(st.AgentCmd, "nftpolicy") || (st.Kubelet && st.Install != "")),
		PodserverBin: *f.podserverBin})
	if err != nil {
		return e.fail(err)
	}
	once := files
	for range *f.repeat - 1 {
		files = append(files, once...)
	}
	_, failed := r.RunFiles(ctx, files)
	if failed > 0 {
		return 1
	}
	return 0
}

// firstPacketCmd runs the first-packet check (runner.FirstPacket).
func firstPacketCmd(ctx context.Context, e *env, f *clusterFlags, st *cluster.State) int {
	r, err := runner.New(ctx, e.cfg, st, os.Stdout, runner.Options{Converge: *f.converge, ProbeTimeout: *f.probeTimeout, Parallel: *f.parallel, Verbose: *f.verbose})
	if err != nil {
		return e.fail(err)
	}
	start := time.Now()
	ok, err := r.FirstPacket(ctx, runner.FirstPacketOptions{})
	if cerr := r.Cleanup(context.Background()); cerr != nil {
		fmt.Printf("cleanup: %v\n", cerr)
	}
	if err != nil {
		return e.fail(err)
	}
	if !ok {
		fmt.Printf("FAIL first-packet (%.1fs)\n", time.Since(start).Seconds())
		return 1
	}
	fmt.Printf("PASS first-packet (%.1fs)\n", time.Since(start).Seconds())
	return 0
}

func stressCmd(ctx context.Context, e *env, f *clusterFlags, st *cluster.State) int {
	r, err := runner.New(ctx, e.cfg, st, os.Stdout, runner.Options{Converge: *f.converge, ProbeTimeout: *f.probeTimeout, Parallel: *f.parallel, Verbose: *f.verbose})
	if err != nil {
		return e.fail(err)
	}
	seed := *f.seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	fmt.Printf("stress: %d transitions, seed %d (replay with --seed %d)\n", *f.transitions, seed, seed)
	passed, failed, err := r.Stress(ctx, runner.StressOptions{Transitions: *f.transitions, Seed: seed, TableBound: *f.tableBound})
	if cerr := r.Cleanup(context.Background()); cerr != nil {
		fmt.Printf("cleanup: %v\n", cerr)
	}
	fmt.Printf("stress: %d passed, %d failed\n", passed, failed)
	if err != nil {
		return e.fail(err)
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func chaosCmd(ctx context.Context, e *env, f *clusterFlags, st *cluster.State) int {
	cf := f.chaos
	if *cf.nextAgentBin == "" {
		return e.fail(fmt.Errorf("--next-agent-bin is required: another build of the agent, for the upgrade"))
	}
	ctx, cancel := context.WithTimeout(ctx, *cf.timeout)
	defer cancel()
	r, err := runner.New(ctx, e.cfg, st, os.Stdout, runner.Options{Converge: *f.converge, ProbeTimeout: *f.probeTimeout, Parallel: *f.parallel, Verbose: *f.verbose})
	if err != nil {
		return e.fail(err)
	}
	rows, err := r.Chaos(ctx, runner.ChaosOptions{Kills: *cf.kills, NextAgentBin: *cf.nextAgentBin,
		APIOutage: *cf.apiOutage, Partition: *cf.partition, ProbeEvery: *cf.probeEvery, ProbeTimeout: *f.probeTimeout,
		Settle: *cf.settle, HealBound: *cf.healBound, MaxProbes: *cf.maxProbes})
	if cerr := r.Cleanup(context.Background()); cerr != nil {
		fmt.Printf("cleanup: %v\n", cerr)
	}
	fmt.Printf("\nchaos: probes every %s per cell (8 cells), probe timeout %s\n\n", *cf.probeEvery, *f.probeTimeout)
	runner.WriteChaosTable(os.Stdout, rows)
	fmt.Println()
	runner.WriteChaosDetails(os.Stdout, rows)
	if err != nil {
		return e.fail(err)
	}
	// Wrong verdicts while the table was tampered with are the tamperer's
	// (the heal time bounds them), and those through conntrack entries
	// left from before a policy tightened are README limitation 1; any
	// other fails the run.
	wrong := 0
	for _, row := range rows {
		wrong += row.Unexplained()
		if row.Failure != "" {
			err = errors.Join(err, fmt.Errorf("%s: %s", row.Fault, row.Failure))
		}
	}
	if err != nil {
		return e.fail(err)
	}
	if wrong > 0 {
		return e.fail(fmt.Errorf("%d probes saw a wrong verdict that no tampering or old conntrack entry explains", wrong))
	}
	return 0
}

// conntrackCmd: open TCP connections and UDP flows are cut within a
// second of a policy that denies them; the ones it allows go on.
func conntrackCmd(ctx context.Context, e *env, f *clusterFlags, st *cluster.State) int {
	r, err := runner.New(ctx, e.cfg, st, os.Stdout, runner.Options{Converge: *f.converge, ProbeTimeout: *f.probeTimeout, Parallel: *f.parallel, Verbose: *f.verbose})
	if err != nil {
		return e.fail(err)
	}
	ok, err := r.ConntrackCheck(ctx)
	if cerr := r.Cleanup(context.Background()); cerr != nil {
		fmt.Printf("cleanup: %v\n", cerr)
	}
	if err != nil {
		return e.fail(err)
	}
	if !ok {
		fmt.Println("conntrack: FAIL")
		return 1
	}
	fmt.Println("conntrack: PASS")
	return 0
}

func demoCmd(ctx context.Context, e *env, f *clusterFlags, st *cluster.State) int {
	return e.done(demo.Run(ctx, e.cfg, st, *f.policies, os.Stdout))
}

func deniedLogCmd(ctx context.Context, e *env, f *clusterFlags, st *cluster.State) int {
	return e.done(deniedlog.Check(ctx, e.cfg, st, os.Stdout))
}

func auditCmd(ctx context.Context, e *env, f *clusterFlags, st *cluster.State) int {
	return e.done(deniedlog.AuditCheck(ctx, e.cfg, st, *f.auditFile, *f.auditStep-1, os.Stdout))
}

func defaultRBAC() string {
	if _, err := os.Stat("config/rbac/cluster_role_binding.yaml"); err == nil {
		return "config/rbac"
	}
	return ""
}

// besideExecutable is the path of file name in this binary's directory
// (make e2e-bin builds the helpers there).
func besideExecutable(name string) string {
	exe, err := os.Executable()
	if err != nil {
		return name
	}
	return filepath.Join(filepath.Dir(exe), name)
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// Command e2e runs nftpolicy's local cluster in network namespaces and the
// connectivity scenario runner.
//
//	e2e up [--nodes 3] [--agent-cmd TEMPLATE]   bring the cluster up (idempotent)
//	e2e down                                    remove everything `up` made
//	e2e status | kubeconfig
//	e2e run [--agent-cmd T] PATH...             replay scenario files or directories
//	e2e demo                                    the demo app, before/after sample policies
//
// Internal subcommands: podserver (inside each pod netns), relay (the
// apiserver relay into the node namespaces).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/demo"
	"github.com/nftpolicy/nftpolicy/e2e/internal/podserver"
	"github.com/nftpolicy/nftpolicy/e2e/internal/runner"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

func main() { os.Exit(run()) }

func usage() {
	fmt.Fprintln(os.Stderr, `usage: e2e [--state-dir DIR] [--bin-dir DIR] COMMAND [flags]
commands: up, down, status, kubeconfig, run PATH..., stress, demo, agent-cmd --manifest F --bin B
  --state-dir  default $E2E_STATE_DIR or `+cluster.DefaultState+`
  --bin-dir    directory with etcd, kube-apiserver, ..., flanneld, CNI plugins (default $E2E_BIN_DIR)
agent command template fields: {{.Node}} {{.NodeIP}} {{.Kubeconfig}} {{.NetNS}} {{.StateDir}} {{.LogDir}} {{.Index}}`)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run() int {
	global := flag.NewFlagSet("e2e", flag.ContinueOnError)
	global.Usage = usage
	stateDir := global.String("state-dir", envOr("E2E_STATE_DIR", cluster.DefaultState), "state directory")
	binDir := global.String("bin-dir", os.Getenv("E2E_BIN_DIR"), "tool binaries")
	if err := global.Parse(os.Args[1:]); err != nil {
		return 2
	}
	args := global.Args()
	if len(args) == 0 {
		usage()
		return 2
	}
	cmd, args := args[0], args[1:]
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
	cfg := &cluster.Config{StateDir: *stateDir, BinDir: *binDir, Nodes: 3, Log: logf}

	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "e2e %s: %v\n", cmd, err)
		return 1
	}
	switch cmd {
	case "podserver":
		fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
		name := fs.String("name", "", "pod namespace/name")
		ctl := fs.String("ctl", "", "control socket path")
		if err := fs.Parse(args); err != nil {
			return 2
		}
		return fail(podserver.Run(*name, *ctl)) // returns only on failure
	case "relay":
		fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
		sd := fs.String("state-dir", *stateDir, "state directory")
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if err := cluster.Relay(*sd); err != nil {
			return fail(err)
		}
		return 0
	case "down":
		t := time.Now()
		if err := cfg.Down(); err != nil {
			return fail(err)
		}
		logf("cluster down (%.1fs)", time.Since(t).Seconds())
		return 0
	case "status":
		fmt.Print(cfg.Status())
		return 0
	case "agent-cmd":
		fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
		install := fs.String("manifest", "dist/install.yaml", "the rendered install manifest")
		bin := fs.String("bin", "", "path of the agent binary")
		if err := fs.Parse(args); err != nil {
			return 2
		}
		tmpl, err := agentTemplate(*install, *bin)
		if err != nil {
			return fail(err)
		}
		fmt.Println(tmpl)
		return 0
	case "kubeconfig":
		if _, ok := cfg.LoadState(); !ok {
			return fail(fmt.Errorf("cluster is not up (no state in %s)", cfg.StateDir))
		}
		fmt.Println(cfg.AdminKubeconfig())
		return 0
	case "up", "run", "demo", "stress":
	default:
		usage()
		return 2
	}
	// Only here: podserver and relay must die of SIGTERM.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	nodes := fs.Int("nodes", 3, "number of nodes")
	agent := fs.String("agent-cmd", "", "per-node agent command template (empty: no agent)")
	converge := fs.Duration("converge", 10*time.Second, "run: per step, probe until the matrix matches or this passes")
	parallel := fs.Int("parallel", 24, "run: concurrent probes")
	verbose := fs.Bool("v", false, "run: print per-step times and setup times")
	timings := fs.String("timings", "", "run: write per-step times to converge to this JSON file")
	agentRBAC := fs.String("agent-rbac", defaultRBAC(), "directory with the agent's ServiceAccount, ClusterRole and binding; the agent runs as that ServiceAccount (empty: admin)")
	policies := fs.String("policies", "", "demo: directory of NetworkPolicy files to kubectl apply (default e2e/demo)")
	repeat := fs.Int("repeat", 1, "run: replay the scenario files this many times in a row (one summary)")
	probeTimeout := fs.Duration("probe-timeout", time.Second, "run, stress: a probe that gets no answer in this time is 'blocked'")
	transitions := fs.Int("transitions", 30, "stress: how many random policy transitions")
	seed := fs.Uint64("seed", 0, "stress: seed of the transitions (0: from the clock, printed)")
	cnpCRD := fs.String("cnp-crd", runner.DefaultCNPCRD, "run: the ClusterNetworkPolicy CRD installed before the first scenario that uses one")
	tableBound := fs.Duration("table-bound", 10*time.Second, "stress: how long each node's table may take to equal a fresh compile")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	agentSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "agent-cmd" {
			agentSet = true
		}
	})
	cfg.Nodes = *nodes
	cfg.AgentCmd = *agent
	cfg.AgentRBAC = *agentRBAC
	if prev, ok := cfg.LoadState(); ok {
		if cfg.BinDir == "" {
			cfg.BinDir = prev.BinDir
		}
		if !agentSet && cmd != "up" {
			cfg.AgentCmd = prev.AgentCmd
		}
		if !isSet(fs, "nodes") && prev.Ready {
			cfg.Nodes = len(prev.Nodes)
		}
	}
	if cfg.BinDir == "" {
		return fail(fmt.Errorf("--bin-dir (or E2E_BIN_DIR) is needed: the output of hack/build-tools.sh"))
	}
	st, err := cfg.Up(ctx)
	if err != nil {
		return fail(err)
	}
	switch cmd {
	case "up":
		fmt.Printf("export KUBECONFIG=%s\n", cfg.AdminKubeconfig())
		return 0
	case "run":
		files, err := scenario.Collect(fs.Args())
		if err != nil {
			return fail(err)
		}
		if len(files) == 0 {
			return fail(fmt.Errorf("no scenario files in %v", fs.Args()))
		}
		r, err := runner.New(ctx, cfg, st, os.Stdout, runner.Options{Converge: *converge, ProbeTimeout: *probeTimeout, Parallel: *parallel, Verbose: *verbose, TimingsFile: *timings, CNPCRD: *cnpCRD})
		if err != nil {
			return fail(err)
		}
		once := files
		for range *repeat - 1 {
			files = append(files, once...)
		}
		_, failed := r.RunFiles(ctx, files)
		if failed > 0 {
			return 1
		}
		return 0
	case "stress":
		r, err := runner.New(ctx, cfg, st, os.Stdout, runner.Options{Converge: *converge, ProbeTimeout: *probeTimeout, Parallel: *parallel, Verbose: *verbose})
		if err != nil {
			return fail(err)
		}
		if *seed == 0 {
			*seed = uint64(time.Now().UnixNano())
		}
		fmt.Printf("stress: %d transitions, seed %d (replay with --seed %d)\n", *transitions, *seed, *seed)
		passed, failed, err := r.Stress(ctx, runner.StressOptions{Transitions: *transitions, Seed: *seed, TableBound: *tableBound})
		if cerr := r.Cleanup(context.Background()); cerr != nil {
			fmt.Printf("cleanup: %v\n", cerr)
		}
		fmt.Printf("stress: %d passed, %d failed\n", passed, failed)
		if err != nil {
			return fail(err)
		}
		if failed > 0 {
			return 1
		}
		return 0
	case "demo":
		if err := demo.Run(ctx, cfg, st, *policies, os.Stdout); err != nil {
			return fail(err)
		}
		return 0
	}
	return 2
}

func defaultRBAC() string {
	if _, err := os.Stat("config/rbac/cluster_role_binding.yaml"); err == nil {
		return "config/rbac"
	}
	return ""
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

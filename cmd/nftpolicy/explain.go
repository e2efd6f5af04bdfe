package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/nftpolicy/nftpolicy/api/v1alpha1"
	"github.com/nftpolicy/nftpolicy/explain"
)

// pluginName is the name under which kubectl finds the binary as a
// plugin: `kubectl nftpolicy explain ...` runs `kubectl-nftpolicy explain ...`.
const pluginName = "kubectl-nftpolicy"

// isPlugin reports whether the binary runs as the kubectl plugin (called
// by that name, for example through a symlink).
func isPlugin(argv0 string) bool {
	return filepath.Base(argv0) == pluginName
}

// Exit codes of explain.
const (
	explainAnswered     = 0 // an answer, whatever the verdict
	explainFailed       = 1 // no answer (bad input, API error)
	explainUsage        = 2
	explainLiveDisagree = 3 // --live or --node: the applied tables say otherwise
)

// runExplain is `nftpolicy explain`.
func runExplain(ctx context.Context, prog string, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet(prog+" explain", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		from, to, protocol, kubeconfig, output, node string
		live, throughService, auditAll               bool
		agentPort                                    int
		agentVia, agentCA                            string
		agentInsecure                                bool
		timeout                                      time.Duration
	)
	fs.StringVar(&from, "from", "", "source: namespace/pod, node/NAME or an IP address (required)")
	fs.StringVar(&to, "to", "", "destination: namespace/pod, node/NAME or an IP address, with :port for TCP, UDP and SCTP (required)")
	fs.StringVar(&protocol, "protocol", "TCP", "TCP, UDP or SCTP")
	fs.StringVar(&kubeconfig, "kubeconfig", getenv("KUBECONFIG"), "kubeconfig path (default $KUBECONFIG, then in-cluster, then ~/.kube/config)")
	fs.StringVarP(&output, "output", "o", "text", "text or json")
	fs.BoolVar(&live, "live", false, "also trace the packet through the tables the agents on its path applied, fetched from each node's address (needs get on the non-resource URL /debug/ruleset, e.g. ClusterRole nftpolicy-metrics-reader)")
	fs.BoolVar(&throughService, "through-service", false, "the packet goes to a Service in front of --to (matters when --from is the same pod: through a Service its traffic to itself is filtered)")
	fs.StringVar(&node, "node", "", "like --live, for this node's table only")
	fs.IntVar(&agentPort, "agent-port", portOf(v1alpha1.DefaultMetricsBindAddress), "the agents' metrics port, which serves "+"/debug/ruleset")
	fs.StringVar(&agentVia, "agent-via", "node-ip", "how to reach the agents for --live: node-ip (straight to each node's address over HTTPS, from the node network), the only way")
	fs.StringVar(&agentCA, "agent-ca", "", "CA file that verifies the agents' serving certificates (given to them with --metrics-cert-dir); empty: not verified (they are self-signed by default)")
	fs.BoolVar(&agentInsecure, "agent-insecure-skip-tls-verify", false, "send the kubeconfig's bearer token to the agents without verifying their certificates (without it, --live with a token needs --agent-ca; a client certificate is always safe to present)")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	fs.BoolVar(&auditAll, "audit-all-policies", false, "answer as agents run with --audit-all-policies: every NetworkPolicy and ClusterNetworkPolicy in audit mode")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Explain why a new connection is allowed or denied, from the live API state.\n\n"+
			"Usage: %s explain --from SRC --to DST[:PORT] [--protocol TCP|UDP|SCTP] [--live | --node NAME] [-o json]\n\n", prog)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return explainAnswered
		}
		return explainUsage
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if from == "" || to == "" {
		errs = append(errs, errors.New("--from and --to are required"))
	}
	proto := corev1.Protocol(strings.ToUpper(protocol))
	if proto != corev1.ProtocolTCP && proto != corev1.ProtocolUDP && proto != corev1.ProtocolSCTP {
		errs = append(errs, fmt.Errorf("--protocol %q: want TCP, UDP or SCTP", protocol))
	}
	switch agentVia {
	case "node-ip":
	case "proxy":
		errs = append(errs, errors.New("--agent-via proxy: no longer possible: the API server's node proxy drops the client's credentials, "+
			"and the agents serve /debug/ruleset to authenticated, authorized users only; run from the node network with --agent-via node-ip"))
	default:
		errs = append(errs, fmt.Errorf("--agent-via %q: want node-ip", agentVia))
	}
	if output != "text" && output != "json" {
		errs = append(errs, fmt.Errorf("-o %q: want text or json", output))
	}
	dst, port, err := explain.ParseTarget(to)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "%s explain: %v\n", prog, err)
		return explainUsage
	}

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rc, err := restConfig(kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "%s explain: %v\n", prog, err)
		return explainFailed
	}
	c, err := explain.NewClient(rc)
	if err == nil {
		var st *explain.State
		if st, err = explain.Load(ctx, c); err == nil {
			st.Snapshot.AuditAll = auditAll
			var a *explain.Answer
			if a, err = explain.Explain(st, explain.Query{From: from, To: dst, Protocol: proto, Port: port, ThroughService: throughService}); err == nil {
				return answer(ctx, prog, st, a, rc, live, node, explain.AgentTLS{CAFile: agentCA, InsecureSkipVerify: agentInsecure}, agentPort, output, stdout, stderr)
			}
		}
	}
	fmt.Fprintf(stderr, "%s explain: %v\n", prog, err)
	return explainFailed
}

// answer adds the live traces if asked for and prints a.
func answer(ctx context.Context, prog string, st *explain.State, a *explain.Answer, rc *rest.Config, live bool, node string, agentTLS explain.AgentTLS, agentPort int,
	output string, stdout, stderr io.Writer) int {
	if live || node != "" {
		hops := explain.Path(st, a)
		if node != "" {
			var on []explain.Hop
			var names []string
			for _, h := range hops {
				names = append(names, h.Node)
				if h.Node == node {
					on = append(on, h)
				}
			}
			if len(on) == 0 {
				fmt.Fprintf(stderr, "%s explain: node %s is not on this connection's path (its tables: %s)\n", prog, node, orNone(names))
				return explainUsage
			}
			hops = on
		}
		hc, err := explain.AgentHTTPClient(rc, agentTLS)
		if err != nil {
			fmt.Fprintf(stderr, "%s explain: --live: %v\n", prog, err)
			return explainFailed
		}
		explain.TraceLive(ctx, a, hops, explain.AddressFetcher(st, hc, agentPort))
	}
	write := explain.WriteText
	if output == "json" {
		write = explain.WriteJSON
	}
	if err := write(stdout, a); err != nil {
		fmt.Fprintf(stderr, "%s explain: %v\n", prog, err)
		return explainFailed
	}
	if a.LiveDisagrees {
		return explainLiveDisagree
	}
	return explainAnswered
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// portOf is the port of a bind address like ":9808".
func portOf(addr string) int {
	var p int
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		_, _ = fmt.Sscanf(addr[i+1:], "%d", &p)
	}
	return p
}

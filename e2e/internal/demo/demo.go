// Package demo is `make demo`: a small app (frontend and backend in one
// namespace, a database in another, an outsider in a third) on the local
// cluster, its connectivity matrix before and after the sample policies are
// applied with kubectl, and the cluster left running.
package demo

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/deniedlog"
	"github.com/nftpolicy/nftpolicy/e2e/internal/runner"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
	"github.com/nftpolicy/nftpolicy/explain"
)

// app is the demo's cluster section. Every pod serves all three ports; the
// matrix probes each destination on its own role's port.
var app = &scenario.Scenario{
	Name: "demo",
	Cluster: scenario.Cluster{
		Namespaces: []scenario.Namespace{
			{Name: "demo-app", Labels: map[string]string{"team": "shop"}},
			{Name: "demo-data", Labels: map[string]string{"team": "shop"}},
			{Name: "demo-other", Labels: map[string]string{"team": "other"}},
		},
		Pods: []scenario.Pod{
			{Namespace: "demo-app", Name: "frontend", Labels: map[string]string{"app": "frontend"}},
			{Namespace: "demo-app", Name: "backend", Labels: map[string]string{"app": "backend"}},
			{Namespace: "demo-data", Name: "db", Labels: map[string]string{"app": "db"}},
			{Namespace: "demo-other", Name: "outsider", Labels: map[string]string{"app": "outsider"}},
		},
		Servers: []scenario.Server{{Port: 80, Protocol: "TCP", Name: "web"}, {Port: 8080, Protocol: "TCP"}, {Port: 5432, Protocol: "TCP"}},
	},
}

var rolePort = map[string]uint16{"frontend": 80, "backend": 8080, "db": 5432, "outsider": 80}

// Run runs the demo; policies is a directory of NetworkPolicy YAML files
// ("" = e2e/demo).
func Run(ctx context.Context, cfg *cluster.Config, st *cluster.State, policies string, out io.Writer) error {
	if policies == "" {
		policies = pickPolicies()
	}
	r, err := runner.New(ctx, cfg, st, out, runner.Options{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "==> creating the demo app (%d pods on %d nodes)\n", len(app.Cluster.Pods), len(st.Nodes))
	if err := r.Prepare(ctx, app); err != nil {
		return err
	}
	var keys []string
	for _, p := range app.Cluster.Pods {
		keys = append(keys, p.Key())
	}
	for _, k := range keys {
		p := r.Pods()[k]
		fmt.Fprintf(out, "    %-20s %-15s on %s, service %s\n", k, p.IP, p.Node.Name, p.ClusterIP)
	}
	before := observe(ctx, r, keys)
	fmt.Fprintf(out, "\n==> connectivity without policies (row -> column's service, on its port: frontend/outsider 80, backend 8080, db 5432)\n")
	fmt.Fprint(out, render(keys, before, nil))

	mark, err := deniedlog.Mark(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n==> kubectl apply -f %s\n", policies)
	kubectl := exec.CommandContext(ctx, filepath.Join(st.BinDir, "kubectl"), "apply", "-f", policies)
	kubectl.Env = append(os.Environ(), "KUBECONFIG="+cfg.AdminKubeconfig())
	kubectl.Stdout, kubectl.Stderr = out, out
	if err := kubectl.Run(); err != nil {
		return fmt.Errorf("kubectl apply: %w", err)
	}
	// Wait until two consecutive observations agree (bounded).
	after := observe(ctx, r, keys)
	for i := 0; i < 8; i++ {
		time.Sleep(time.Second)
		again := observe(ctx, r, keys)
		if equal(after, again) && !equal(after, before) {
			break
		}
		after = again
	}
	fmt.Fprintf(out, "\n==> connectivity with the policies (changed cells marked *)\n")
	fmt.Fprint(out, render(keys, after, before))
	if agents, _ := cfg.LoadState(); agents != nil && agents.AgentCmd == "" {
		fmt.Fprintln(out, "\nnote: the cluster runs without a policy agent (no --agent-cmd), so nothing is enforced")
	} else {
		// The log line a user sees for a denied connection, then the
		// answer to why.
		if err := printDenied(cfg, mark, "demo-other/outsider", "demo-app/backend", out); err != nil {
			return err
		}
		// Why is one blocked cell blocked? The same code as
		// `kubectl nftpolicy explain`, with the agents' live tables.
		fmt.Fprintf(out, "\n==> kubectl nftpolicy explain --from demo-other/outsider --to demo-app/backend:%d --live\n", rolePort["backend"])
		text, err := r.ExplainText(ctx, explain.Query{From: "demo-other/outsider", To: "demo-app/backend", Port: rolePort["backend"]})
		if err != nil {
			return fmt.Errorf("explain: %w", err)
		}
		fmt.Fprint(out, text)
	}
	fmt.Fprintf(out, "\nThe cluster keeps running. Continue by hand:\n    export KUBECONFIG=%s PATH=%s:$PATH\n    kubectl get pods,svc,networkpolicies -A\n    make down\n", cfg.AdminKubeconfig(), st.BinDir)
	return nil
}

// printDenied prints the latest denied-traffic record the agents logged
// since mark from pod src to pod dst (the cell explain answers next), or
// else the latest of any: what a user sees when a connection of the demo
// app is denied.
func printDenied(cfg *cluster.Config, mark deniedlog.Offsets, src, dst string, out io.Writer) error {
	recs, err := deniedlog.Since(cfg, mark)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		fmt.Fprintln(out, "\n==> no denied-traffic record in the agents' logs (is --denied-traffic-log off?)")
		return nil
	}
	last := recs[len(recs)-1]
	for _, rec := range recs {
		if rec.SrcPod == src && rec.DstPod == dst {
			last = rec
		}
	}
	fmt.Fprintf(out, "\n==> the latest of %d denied-traffic records in the agents' logs (%s):\n%s\n",
		len(recs), filepath.Join(cfg.LogDir(), last.Node+"-agent.log"), last.Line)
	return nil
}

// pickPolicies returns e2e/demo: its policies are written for the demo app.
// config/samples holds namespace-less templates (default-deny with egress,
// DNS egress, ipBlock) that isolate the demo namespace entirely when applied
// to it; pass --policies config/samples to see that.
func pickPolicies() string {
	for _, d := range []string{"e2e/demo", "demo"} {
		if _, err := os.Stat(d); err == nil {
			return d
		}
	}
	return "e2e/demo"
}

func observe(ctx context.Context, r *runner.Runner, keys []string) [][]byte {
	pods := r.Pods()
	m := make([][]byte, len(keys))
	type res struct {
		i, j int
		v    byte
	}
	ch := make(chan res)
	for i, s := range keys {
		m[i] = make([]byte, len(keys))
		for j, d := range keys {
			if i == j {
				m[i][j] = '-' // a pod to itself: not judged (as upstream)
				continue
			}
			go func() {
				src, dst := pods[s], pods[d]
				addr := netip.AddrPortFrom(netip.MustParseAddr(dst.ClusterIP), rolePort[dst.Spec.Labels["app"]]).String()
				v, _ := r.ProbeAddr("TCP", src, dst, addr)
				ch <- res{i, j, v}
			}()
		}
	}
	for range len(keys) * (len(keys) - 1) {
		x := <-ch
		m[x.i][x.j] = x.v
	}
	return m
}

func equal(a, b [][]byte) bool {
	for i := range a {
		if string(a[i]) != string(b[i]) {
			return false
		}
	}
	return true
}

func render(keys []string, m, prev [][]byte) string {
	tty := false
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		tty = true
	}
	w := 0
	for _, k := range keys {
		w = max(w, len(k))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "    %-*s", w, "")
	for _, k := range keys {
		fmt.Fprintf(&b, " %-*s", w, k)
	}
	b.WriteString("\n")
	for i, k := range keys {
		fmt.Fprintf(&b, "    %-*s", w, k)
		for j := range keys {
			v := string(m[i][j])
			switch v {
			case ".":
				v = "ok"
			case "X":
				v = "blocked"
			case "-":
				v = "(self)"
			}
			cell := fmt.Sprintf(" %-*s", w, v)
			if prev != nil && prev[i][j] != m[i][j] {
				cell = fmt.Sprintf(" %-*s", w, v+" *")
				if tty {
					cell = " \x1b[1;33m" + fmt.Sprintf("%-*s", w, v+" *") + "\x1b[0m"
				}
			}
			b.WriteString(cell)
		}
		b.WriteString("\n")
	}
	return b.String()
}

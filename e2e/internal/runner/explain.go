// The explain check: every judged cell of every step is also answered by
// nftpolicy explain's own code (package explain, called in-process), from
// the API state and through the tables the agents applied, and both
// answers must equal what the probe observed.

package runner

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
	"github.com/nftpolicy/nftpolicy/explain"
)

// agentPort is where the agents serve controllers.RulesetPath (their
// metrics port, as the DaemonSet's flags set it).
const agentPort = 9808

// ExplainCounts sums the explain check over a run.
type ExplainCounts struct {
	Cells    int // cells whose observation explain was compared with
	Live     int // of them, cells also traced through the applied tables
	Differ   int // cells where explain or the live tables differ from the probe
	Skipped  int // cells the probe could not observe ('E', 'R')
	Duration time.Duration
}

// explainCells compares explain's answer for each cell with what its last
// probe observed; it returns a report of the cells that differ.
func (r *Runner) explainCells(ctx context.Context, st scenario.Step, cells []*cell) string {
	start := time.Now()
	defer func() { r.Explain.Duration += time.Since(start) }()
	if r.explainClient == nil {
		rc, err := clientcmd.BuildConfigFromFlags("", r.Cfg.AdminKubeconfig())
		if err == nil {
			r.explainClient, err = explain.NewClient(rc)
		}
		if err != nil {
			r.Explain.Differ += len(cells)
			return fmt.Sprintf("    explain: API client: %v\n", err)
		}
	}
	state, err := explain.Load(ctx, r.explainClient)
	if err != nil {
		r.Explain.Differ += len(cells)
		return fmt.Sprintf("    explain: %v\n", err)
	}
	fetch := r.memoFetcher(state)
	var b strings.Builder
	for _, c := range cells {
		if c.got != '.' && c.got != 'X' {
			r.Explain.Skipped++
			continue
		}
		p := st.Probes[c.probe]
		port, err := r.probePort(p, c.dst, c.family)
		if err != nil {
			r.Explain.Differ++
			fmt.Fprintf(&b, "    explain %s -> %s %s: %v\n", c.src, c.dst, p.Label(), err)
			continue
		}
		a, err := explain.Explain(state, explain.Query{From: c.src, To: c.dst, Protocol: corev1.Protocol(p.Protocol), Port: port,
			ThroughService: p.Target != "pod-ip"})
		if err != nil {
			r.Explain.Differ++
			fmt.Fprintf(&b, "    explain %s -> %s %s: %v\n", c.src, c.dst, p.Label(), err)
			continue
		}
		hops := explain.Path(state, a)
		explain.TraceLive(ctx, a, hops, fetch)
		r.Explain.Cells++
		if len(hops) > 0 {
			r.Explain.Live++
		}
		observed := c.got == '.'
		if a.Allowed != observed || a.LiveDisagrees {
			r.Explain.Differ++
			var text strings.Builder
			_ = explain.WriteText(&text, a)
			fmt.Fprintf(&b, "    explain %s -> %s %s %s: the probe saw %s, explain says allowed=%v (live tables disagree: %v):\n      %s\n",
				c.src, c.dst, p.Label(), c.family, sym(c.got), a.Allowed, a.LiveDisagrees,
				strings.ReplaceAll(strings.TrimSpace(text.String()), "\n", "\n      "))
		}
	}
	return b.String()
}

// probePort is the destination port a probe of p to dst uses (Services
// map their port to the same target port, so it is the pod's port too).
func (r *Runner) probePort(p scenario.Probe, dstKey string, f cluster.Family) (uint16, error) {
	dst, err := r.endpoint(dstKey)
	if err != nil {
		return 0, err
	}
	addr, err := r.Target(p, dst, f)
	if err != nil {
		return 0, err
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	var n uint16
	_, err = fmt.Sscan(port, &n)
	return n, err
}

// memoFetcher fetches each node's applied table once per step, straight
// from the node's address, from inside the underlay network namespace (the
// host cannot reach the node network; neither can the API server here),
// over HTTPS as the admin kubeconfig's user, whose client certificate the
// agents verify against the API server's client CA, as for nftpolicy
// explain --live.
func (r *Runner) memoFetcher(state *explain.State) explain.RulesetFetcher {
	underlay := r.Cfg.Instance.UnderlayNS()
	fail := func(err error) explain.RulesetFetcher {
		return func(context.Context, string) (*controllers.AppliedRulesetDoc, error) { return nil, err }
	}
	rc, err := clientcmd.BuildConfigFromFlags("", r.Cfg.AdminKubeconfig())
	if err != nil {
		return fail(err)
	}
	rc.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return cluster.DialInNetNS(ctx, underlay, network, addr)
	}
	hc, err := explain.AgentHTTPClient(rc, explain.AgentTLS{})
	if err != nil {
		return fail(err)
	}
	direct := explain.AddressFetcher(state, hc, agentPort)
	var mu sync.Mutex
	type result struct {
		doc *controllers.AppliedRulesetDoc
		err error
	}
	seen := map[string]result{}
	return func(ctx context.Context, node string) (*controllers.AppliedRulesetDoc, error) {
		mu.Lock()
		defer mu.Unlock()
		if res, ok := seen[node]; ok {
			return res.doc, res.err
		}
		doc, err := direct(ctx, node)
		seen[node] = result{doc, err}
		return doc, err
	}
}

// printExplain prints the explain check's summary line.
func (r *Runner) printExplain() {
	e := r.Explain
	if e.Cells+e.Differ+e.Skipped == 0 {
		return
	}
	fmt.Fprintf(r.Out, "explain: %d cells checked against the probes, %d of them also through the live tables; %d differ, %d not observable (%.1fs)\n",
		e.Cells, e.Live, e.Differ, e.Skipped, e.Duration.Seconds())
}

// ExplainText is nftpolicy explain's human answer for one connection,
// with the live tables traced: what the demo prints.
func (r *Runner) ExplainText(ctx context.Context, q explain.Query) (string, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", r.Cfg.AdminKubeconfig())
	if err != nil {
		return "", err
	}
	c, err := explain.NewClient(rc)
	if err != nil {
		return "", err
	}
	state, err := explain.Load(ctx, c)
	if err != nil {
		return "", err
	}
	a, err := explain.Explain(state, q)
	if err != nil {
		return "", err
	}
	explain.TraceLive(ctx, a, explain.Path(state, a), r.memoFetcher(state))
	var b strings.Builder
	err = explain.WriteText(&b, a)
	return b.String(), err
}

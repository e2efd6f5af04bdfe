package deniedlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/explain"
)

// agentPort is the agents' metrics port (the DaemonSet's flags), which
// serves /metrics and controllers.CountersPath.
const agentPort = 9808

// counterMetrics are the metrics the counters check reads.
var counterMetrics = []string{"nftpolicy_denied_packets_total", "nftpolicy_new_connections_total"}

// counterSnapshot is one agent's counters at one moment: every series of
// counterMetrics (by its text, name and labels) and the per-pod document.
type counterSnapshot struct {
	series map[string]float64
	doc    controllers.CountersDoc
}

// agentCounters reads the counters of the agent of the node with address
// nodeIP, from inside the underlay network namespace (the host cannot
// reach the node network), over HTTPS as the admin kubeconfig's user, as
// a Prometheus scrape or nftpolicy explain --live would: the metrics port
// answers authenticated, authorized users only.
func agentCounters(ctx context.Context, cfg *cluster.Config, nodeIP string) (counterSnapshot, error) {
	underlay := cfg.Instance.UnderlayNS()
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.AdminKubeconfig())
	if err != nil {
		return counterSnapshot{}, err
	}
	rc.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return cluster.DialInNetNS(ctx, underlay, network, addr)
	}
	hc, err := explain.AgentHTTPClient(rc, explain.AgentTLS{})
	if err != nil {
		return counterSnapshot{}, err
	}
	get := func(path string) ([]byte, error) {
		url := "https://" + net.JoinHostPort(nodeIP, strconv.Itoa(agentPort)) + path
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
		}
		return body, err
	}
	s := counterSnapshot{series: map[string]float64{}}
	metrics, err := get("/metrics")
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(bytes.NewReader(metrics))
	for sc.Scan() {
		line := sc.Text()
		for _, m := range counterMetrics {
			if !strings.HasPrefix(line, m) {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err != nil {
				return s, fmt.Errorf("metrics line %q: %w", line, err)
			}
			s.series[line[:i]] = v
		}
	}
	doc, err := get(controllers.CountersPath)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(doc, &s.doc); err != nil {
		return s, fmt.Errorf("%s: %w", controllers.CountersPath, err)
	}
	return s, nil
}

// increments are the series of after that differ from before, with the
// difference.
func increments(before, after counterSnapshot) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after.series {
		if d := v - before.series[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// podDrops is what the per-pod document says pod's allow-list dropped in
// direction dir.
func podDrops(s counterSnapshot, pod, dir string) uint64 {
	for _, p := range s.doc.Pods {
		if p.Pod == pod && p.Direction == dir {
			return p.Packets
		}
	}
	return 0
}

// ruleDrops is what the per-pod document says the ingress Deny rule
// rule of ClusterNetworkPolicy policy dropped.
func ruleDrops(s counterSnapshot, policy, rule string) uint64 {
	for _, d := range s.doc.DenyRules {
		if strings.HasSuffix(d.Chain, "-"+policy+"/"+rule) && d.Direction == "ingress" {
			return d.Packets
		}
	}
	return 0
}

// checkIncrements compares the increments of the node's series with want,
// except the accepted connections, which must have grown by at least
// minAccepted (other pods' connections through the node count too).
func checkIncrements(got map[string]float64, want map[string]float64, minAccepted float64) error {
	const accepted = `nftpolicy_new_connections_total{verdict="accepted"}`
	var bad []string
	if got[accepted] < minAccepted {
		bad = append(bad, fmt.Sprintf("%s grew by %v, want at least %v", accepted, got[accepted], minAccepted))
	}
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		if k != accepted {
			sorted = append(sorted, k)
		}
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		if got[k] != want[k] {
			bad = append(bad, fmt.Sprintf("%s grew by %v, want %v", k, got[k], want[k]))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("counters: %s", strings.Join(bad, "; "))
	}
	return nil
}

// formatSeries prints the counter series of s, sorted, one a line.
func formatSeries(s counterSnapshot) string {
	var lines []string
	for k, v := range s.series {
		lines = append(lines, fmt.Sprintf("  %s %v", k, v))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

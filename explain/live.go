package explain

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
)

// Hop is a node whose table judges the connection, and the hook there.
type Hop struct {
	Node string       `json:"node"`
	Hook nft.HookName `json:"hook"`
}

// LiveTrace is the packet traced through one node's applied table.
type LiveTrace struct {
	Hop
	// AppliedAt is when the agent applied the table it served.
	AppliedAt time.Time `json:"appliedAt"`
	// Verdict is accept or drop; empty when Error is set.
	Verdict string   `json:"verdict,omitempty"`
	Path    []string `json:"path,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Path lists the nodes whose tables judge a's connection: the source
// pod's node (its egress; the input hook when the destination is that
// node's own address) and the destination pod's node (its ingress), once
// each. A node's own traffic to its pods leaves through the output hook,
// which the agent does not filter, and a pod's traffic to itself never
// leaves it: neither has a hop.
func Path(st *State, a *Answer) []Hop {
	if a.From.Pod != "" && a.From.Pod == a.To.Pod {
		return nil
	}
	var hops []Hop
	if a.From.Pod != "" {
		hook := nft.HookForward
		if fromOwnNode(st.Snapshot, a.To.Address, a.From.Node) {
			hook = nft.HookInput
		}
		hops = append(hops, Hop{Node: a.From.Node, Hook: hook})
	}
	// A source pod's hop on the destination's node judges both.
	sameNode := a.From.Pod != "" && a.From.Node == a.To.Node
	if a.To.Pod != "" && !sameNode && !fromOwnNode(st.Snapshot, a.From.Address, a.To.Node) {
		hops = append(hops, Hop{Node: a.To.Node, Hook: nft.HookForward})
	}
	return hops
}

// RulesetFetcher returns the table a node's agent applied.
type RulesetFetcher func(ctx context.Context, node string) (*controllers.AppliedRulesetDoc, error)

// NodeProxyFetcher fetches controllers.RulesetPath from each node's agent
// through the API server's node proxy (nodes/NAME:PORT/proxy/...): the
// agent runs in the host network, so it answers on the node's address,
// and the API server's proxy reaches it wherever the client is. It needs
// the get verb on nodes/proxy.
func NodeProxyFetcher(rc *rest.Config, port int) (RulesetFetcher, error) {
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	rcl := cs.CoreV1().RESTClient()
	return func(ctx context.Context, node string) (*controllers.AppliedRulesetDoc, error) {
		body, err := rcl.Get().AbsPath("/api/v1/nodes", fmt.Sprintf("%s:%d", node, port), "proxy",
			strings.TrimPrefix(controllers.RulesetPath, "/")).DoRaw(ctx)
		if err != nil {
			return nil, fmt.Errorf("node %s: GET %s through the API server's node proxy: %w: %s", node, controllers.RulesetPath, err, firstLine(body))
		}
		return decodeDoc(node, body)
	}, nil
}

// AddressFetcher fetches controllers.RulesetPath straight from each node's
// first address (InternalIP or ExternalIP) with hc: for a client on the
// node network, where the API server cannot reach the nodes itself.
func AddressFetcher(st *State, hc *http.Client, port int) RulesetFetcher {
	return func(ctx context.Context, node string) (*controllers.AppliedRulesetDoc, error) {
		i := slices.IndexFunc(st.Snapshot.Nodes, func(n policy.Node) bool { return n.Name == node })
		if i < 0 || len(st.Snapshot.Nodes[i].Addresses) == 0 {
			return nil, fmt.Errorf("node %s: no address to reach its agent at", node)
		}
		u := "http://" + net.JoinHostPort(st.Snapshot.Nodes[i].Addresses[0].String(), strconv.Itoa(port)) + controllers.RulesetPath
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", node, err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("node %s: GET %s: %w", node, u, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("node %s: GET %s: %s: %s", node, u, resp.Status, firstLine(body))
		}
		return decodeDoc(node, body)
	}
}

func decodeDoc(node string, body []byte) (*controllers.AppliedRulesetDoc, error) {
	doc := &controllers.AppliedRulesetDoc{}
	if err := json.Unmarshal(body, doc); err != nil {
		return nil, fmt.Errorf("node %s: decode %s: %w", node, controllers.RulesetPath, err)
	}
	if doc.Ruleset == nil {
		return nil, fmt.Errorf("node %s: the agent served no ruleset", node)
	}
	return doc, nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// TraceLive traces a's packet (a new connection) through the applied
// tables of the hops, in order, and records whether they disagree with
// a.Allowed. The connection is live-allowed when every hop accepts; a hop
// that could not be fetched counts as a disagreement too, since nothing
// then confirms the answer.
func TraceLive(ctx context.Context, a *Answer, hops []Hop, fetch RulesetFetcher) {
	liveAllowed := true
	for _, h := range hops {
		lt := LiveTrace{Hop: h}
		doc, err := fetch(ctx, h.Node)
		if err != nil {
			lt.Error = err.Error()
			a.LiveDisagrees = true
			a.Live = append(a.Live, lt)
			continue
		}
		lt.AppliedAt = doc.AppliedAt
		res := doc.Ruleset.Trace(nft.Packet{Hook: h.Hook, Src: a.From.Address, Dst: a.To.Address,
			Proto: protoNumber(a.Protocol), DstPort: a.Port, CtState: nft.CtStateNew})
		lt.Verdict, lt.Path = nft.Verdict{Kind: res.Verdict}.String(), res.Steps
		if res.Verdict != nft.VerdictAccept {
			liveAllowed = false
		}
		a.Live = append(a.Live, lt)
	}
	if len(hops) > 0 && liveAllowed != a.Allowed {
		a.LiveDisagrees = true
	}
}

// LiveAllowed is the verdict of the live traces: every hop accepted.
func (a *Answer) LiveAllowed() bool {
	return !slices.ContainsFunc(a.Live, func(l LiveTrace) bool { return l.Verdict != "accept" })
}

func protoNumber(p corev1.Protocol) uint8 {
	switch p {
	case corev1.ProtocolUDP:
		return nft.ProtoUDP
	case corev1.ProtocolSCTP:
		return nft.ProtoSCTP
	default:
		return nft.ProtoTCP
	}
}

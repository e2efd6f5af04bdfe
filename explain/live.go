package explain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
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

// AgentTLS is how a client verifies the agents' serving certificates.
type AgentTLS struct {
	// CAFile verifies them (the CA of certificates given to the agents
	// with --metrics-cert-dir, whose names must include the node address).
	CAFile string
	// InsecureSkipVerify accepts any certificate (the agents' own
	// self-signed ones, by default) also when the kubeconfig's user
	// authenticates with a bearer token, which then goes to whatever
	// answers on the node address.
	InsecureSkipVerify bool
}

// AgentHTTPClient returns an HTTP client for the agents' metrics port
// that authenticates as rc's user: its client certificate (verified by
// the agents against the API server's client CA) or its bearer token
// (checked by a TokenReview). Without tlsOpts.CAFile the agents'
// certificates are not verified (they are self-signed by default): a
// client certificate is then still safe to present, as the handshake
// reveals nothing that could be replayed, but a token would be handed to
// whoever answers on the node's address, so AgentHTTPClient refuses
// token-like credentials unless tlsOpts.InsecureSkipVerify says so.
func AgentHTTPClient(rc *rest.Config, tlsOpts AgentTLS) (*http.Client, error) {
	c := rest.CopyConfig(rc)
	hasToken := c.BearerToken != "" || c.BearerTokenFile != "" || c.AuthProvider != nil || c.ExecProvider != nil || c.Username != "" || c.Password != ""
	c.CAFile, c.CAData, c.ServerName = "", nil, ""
	switch {
	case tlsOpts.CAFile != "":
		c.CAFile = tlsOpts.CAFile
		c.Insecure = false
	case hasToken && !tlsOpts.InsecureSkipVerify:
		return nil, errors.New("the kubeconfig's user authenticates with a token (or an exec or auth provider that may give one), " +
			"which would go unverified to whatever answers on a node's address: give the CA of the agents' certificates (--agent-ca), " +
			"or accept that (--agent-insecure-skip-tls-verify)")
	default:
		c.Insecure = true
	}
	c.Timeout = 10 * time.Second
	hc, err := rest.HTTPClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("HTTP client for the agents: %w", err)
	}
	return hc, nil
}

// AddressFetcher fetches controllers.RulesetPath over HTTPS straight from
// each node's first address (InternalIP or ExternalIP) with hc (see
// AgentHTTPClient): the agent runs in the host network, so it answers on
// the node's address, for a client on the node network. (The API server's
// node proxy is no way there: it drops the client's credentials, and the
// agents answer authenticated users only.)
func AddressFetcher(st *State, hc *http.Client, port int) RulesetFetcher {
	return func(ctx context.Context, node string) (*controllers.AppliedRulesetDoc, error) {
		i := slices.IndexFunc(st.Snapshot.Nodes, func(n policy.Node) bool { return n.Name == node })
		if i < 0 || len(st.Snapshot.Nodes[i].Addresses) == 0 {
			return nil, fmt.Errorf("node %s: no address to reach its agent at", node)
		}
		u := "https://" + net.JoinHostPort(st.Snapshot.Nodes[i].Addresses[0].String(), strconv.Itoa(port)) + controllers.RulesetPath
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

package runner

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/e2e/internal/podserver"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

// Bounds of the conntrack check (issue 12 §3).
const (
	// conntrackCutBound: a flow the new policy denies must have had its
	// last answer within this time of the policy's creation.
	conntrackCutBound = time.Second
	// conntrackWatch is how long flows run after the policy, to see that
	// cut flows stay cut and allowed ones go on.
	conntrackWatch = 3 * time.Second
	// conntrackInterval is each flow's send period.
	conntrackInterval = 20 * time.Millisecond
)

// conntrackNamespace holds the check's pods.
const conntrackNamespace = "ct"

// conntrackFlow is one long-lived flow of the check.
type conntrackFlow struct {
	name     string
	from     string // client pod name in conntrackNamespace
	to       string // server pod name: "server" unless set
	proto    string // TCP | UDP
	service  bool   // through the server's ClusterIP (DNAT) rather than its pod IP
	wantsCut bool
}

// conntrackFlows. The policies (conntrackPolicies) isolate pod "server"
// for ingress, admitting only "keeper", and pod "leaver" for egress,
// admitting nothing; no other pod is isolated. So the flows of "near"
// (the server's node, bridged) and "far" (another node) to the server
// must be cut, through the Service and straight to the pod, TCP and UDP,
// and so must leaver's to "open" (another node, isolated in no
// direction): cut on the client's node. keeper's flows to the server,
// and far's to open, go on.
//
// Across nodes only one node judges the flow: the other keeps its
// conntrack entry, and a TCP segment of the server's (a retransmission of
// data the client's dropped ACK left unacknowledged) then meets no entry
// on the judging node. Unless the table refuses that mid-stream pickup
// (nft.ChainMidStream), conntrack takes it for a new connection from
// server to client, which the judging node allows, and the flow comes
// back; before the refusal, far's TCP flow came back every time.
var conntrackFlows = []conntrackFlow{
	{name: "near TCP to pod IP", from: "near", proto: "TCP", wantsCut: true},
	{name: "near TCP via Service", from: "near", proto: "TCP", service: true, wantsCut: true},
	{name: "near UDP via Service", from: "near", proto: "UDP", service: true, wantsCut: true},
	{name: "near UDP to pod IP", from: "near", proto: "UDP", wantsCut: true},
	{name: "far TCP via Service", from: "far", proto: "TCP", service: true, wantsCut: true},
	{name: "far TCP to pod IP", from: "far", proto: "TCP", wantsCut: true},
	{name: "far UDP to pod IP", from: "far", proto: "UDP", wantsCut: true},
	{name: "leaver TCP via Service", from: "leaver", to: "open", proto: "TCP", service: true, wantsCut: true},
	{name: "leaver TCP to pod IP", from: "leaver", to: "open", proto: "TCP", wantsCut: true},
	{name: "leaver UDP via Service", from: "leaver", to: "open", proto: "UDP", service: true, wantsCut: true},
	{name: "keeper TCP via Service", from: "keeper", proto: "TCP", service: true},
	{name: "keeper UDP to pod IP", from: "keeper", proto: "UDP"},
	{name: "far TCP to open via Service", from: "far", to: "open", proto: "TCP", service: true},
}

// conntrackScenario: server, near and open on the first node; far, keeper
// and leaver on the second.
func (r *Runner) conntrackScenario() *scenario.Scenario {
	s := &scenario.Scenario{Name: "conntrack", IgnoreLoopback: true}
	s.Cluster.Servers = []scenario.Server{{Port: 80, Protocol: "TCP"}, {Port: 80, Protocol: "UDP"}}
	s.Cluster.Namespaces = []scenario.Namespace{{Name: conntrackNamespace, Labels: map[string]string{"ns": conntrackNamespace}}}
	nodes := r.State.Nodes
	for i, p := range []struct {
		name string
		node int
	}{{"server", 0}, {"near", 0}, {"far", 1}, {"keeper", 1}, {"open", 0}, {"leaver", 1}} {
		n := nodes[p.node%len(nodes)]
		ip := netip.MustParsePrefix(n.PodCIDR).Addr().As4()
		ip[3] = byte(60 + i)
		s.Cluster.Pods = append(s.Cluster.Pods, scenario.Pod{Namespace: conntrackNamespace, Name: p.name,
			Labels: map[string]string{"role": p.name}, IP: netip.AddrFrom4(ip).String()})
	}
	return s
}

// conntrackPolicies isolate only the server for ingress (admitting
// keeper) and only leaver for egress (admitting nothing): the clients of
// the server and the server leaver talks to stay unisolated, so that no
// isolation of the other side can hide a connection coming back.
func conntrackPolicies() []*networkingv1.NetworkPolicy {
	role := func(r string) metav1.LabelSelector {
		return metav1.LabelSelector{MatchLabels: map[string]string{"role": r}}
	}
	keeper := role("keeper")
	return []*networkingv1.NetworkPolicy{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: conntrackNamespace, Name: "only-keeper"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: role("server"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{PodSelector: &keeper}},
				}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: conntrackNamespace, Name: "leaver-cut-off"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: role("leaver"),
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			},
		},
	}
}

// ConntrackCheck proves on the cluster that a tightening policy cuts the
// open connections and flows it denies within conntrackCutBound, and that
// the flows it still allows go on without an error or a lost message.
// It returns whether every flow behaved, and an error when the check could
// not run.
func (r *Runner) ConntrackCheck(ctx context.Context) (bool, error) {
	s := r.conntrackScenario()
	if err := r.prepare(ctx, s); err != nil {
		return false, fmt.Errorf("setting up the pods: %w", err)
	}
	started := make([]*kubelet.Pod, len(conntrackFlows))
	defer func() {
		for i, f := range conntrackFlows {
			if started[i] != nil {
				_, _ = podserver.Call(started[i].Ctl, podserver.Request{Op: "flow-stop", Flow: f.name}, 5*time.Second)
			}
		}
	}()
	for i, f := range conntrackFlows {
		src := r.pods[conntrackNamespace+"/"+f.from]
		server := r.pods[conntrackNamespace+"/"+f.serverName()]
		addr := netip.AddrPortFrom(server.IP, 80).String()
		if f.service {
			addr = netip.AddrPortFrom(netip.MustParseAddr(server.ClusterIP), 80).String()
		}
		if _, err := podserver.Call(src.Ctl, podserver.Request{Op: "flow-start", Flow: f.name, Protocol: f.proto, Addr: addr,
			Interval: int(conntrackInterval / time.Millisecond)}, 5*time.Second); err != nil {
			return false, fmt.Errorf("start flow %s to %s: %w", f.name, addr, err)
		}
		started[i] = src
	}
	time.Sleep(time.Second)
	for i, f := range conntrackFlows {
		st, err := flowStatus(started[i], f.name, "flow-status", 0)
		if err != nil {
			return false, err
		}
		if st.Echoed == 0 || st.Err != "" {
			return false, fmt.Errorf("flow %s does not flow before the policy: %+v", f.name, st)
		}
	}

	policies := conntrackPolicies()
	defer func() {
		for _, p := range policies {
			_ = r.CS.NetworkingV1().NetworkPolicies(conntrackNamespace).Delete(context.Background(), p.Name, metav1.DeleteOptions{})
		}
	}()
	created := time.Now()
	for _, p := range policies {
		if _, err := r.CS.NetworkingV1().NetworkPolicies(conntrackNamespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return false, fmt.Errorf("create policy %s: %w", p.Name, err)
		}
	}
	time.Sleep(conntrackWatch)

	ok := true
	for i, f := range conntrackFlows {
		grace := 0
		if !f.wantsCut {
			grace = 1000 // ms for the last answers to arrive
		}
		st, err := flowStatus(started[i], f.name, "flow-stop", grace)
		started[i] = nil
		if err != nil {
			return false, err
		}
		last := time.Unix(0, st.LastAnswer).Sub(created)
		var problems []string
		if f.wantsCut {
			if last > conntrackCutBound {
				problems = append(problems, fmt.Sprintf("answered %.0f ms after the policy (bound %v)", ms(last), conntrackCutBound))
			}
		} else {
			if last < conntrackWatch-500*time.Millisecond {
				problems = append(problems, fmt.Sprintf("stopped %.0f ms after the policy", ms(last)))
			}
			if st.Echoed != st.Sent {
				problems = append(problems, fmt.Sprintf("lost %d of %d", st.Sent-st.Echoed, st.Sent))
			}
		}
		if st.Err != "" {
			problems = append(problems, st.Err)
		}
		verdict := "PASS"
		if len(problems) > 0 {
			verdict, ok = "FAIL", false
		}
		want := "kept"
		if f.wantsCut {
			want = "cut"
		}
		fmt.Fprintf(r.Out, "conntrack: %s: %-27s want %-4s sent %4d answered %4d, last answer %+6.0f ms after the policy%s\n",
			verdict, f.name, want, st.Sent, st.Echoed, ms(last), strings.Join(append([]string{""}, problems...), "; "))
	}
	return ok, nil
}

func (f conntrackFlow) serverName() string {
	if f.to == "" {
		return "server"
	}
	return f.to
}

func flowStatus(p *kubelet.Pod, flow, op string, graceMs int) (podserver.FlowStatus, error) {
	resp, err := podserver.Call(p.Ctl, podserver.Request{Op: op, Flow: flow, Timeout: graceMs}, 10*time.Second)
	if err != nil {
		return podserver.FlowStatus{}, fmt.Errorf("%s %s in %s: %w", op, flow, p.Spec.Key(), err)
	}
	if resp.Flow == nil {
		return podserver.FlowStatus{}, fmt.Errorf("%s %s in %s: no status", op, flow, p.Spec.Key())
	}
	return *resp.Flow, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

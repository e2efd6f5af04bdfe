package policy

// Differential fuzzing: random clusters, policies and packets; the verdict
// traced through the compiled rulesets of the nodes a packet crosses must
// equal the reference semantics of Evaluate.
//
// IP plan of generated clusters: pod i on node n (1 or 2) has 10.244.n.(10+i)
// and, when dual-stack, fd00:10:244:n::(10+i); hostNetwork pods use
// 198.18.0.n, node n's address (Node objects: 198.18.0.n and, sometimes,
// fd00:198::n); outside addresses are 192.0.2.1 and 2001:db8::1.
//
// Generated ClusterNetworkPolicies (both tiers, priorities 0-2 so that ties
// happen) come after the NetworkPolicies in the input, so inputs that end
// early are NetworkPolicy-only clusters.

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

func FuzzCompileMatchesEvaluate(f *testing.F) {
	for _, seed := range []string{
		"",
		"\x05\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",
		"\x06\xff\x10\x20\x30\x40\x50\x60\x70\x80\x90\xa0\xb0\xc0\xd0\xe0\xf0\x03\x02\x01",
		strings.Repeat("\x07\x03\x01", 40),
		strings.Repeat("\x13\x37\xc0\xde", 30),
		strings.Repeat("\x01\x02\x00\x03", 70),
		strings.Repeat("\x05\x11\x23\x02\x07", 60),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		snap := genSnapshot(&chooser{data: data})
		// Half the inputs compile with the deny log on: its log rules and
		// deny chains must not change a verdict.
		var log *nft.DenyLog
		if len(data)%2 == 1 {
			log = &nft.DenyLog{Group: 4200, Rate: 10, Burst: 20}
		}
		checkCompileMatchesEvaluate(t, snap, log)
	})
}

// checkCompileMatchesEvaluate compares every probe packet of snap, compiled
// with denyLog (nil: none).
func checkCompileMatchesEvaluate(t *testing.T, snap *Snapshot, denyLog *nft.DenyLog) {
	t.Helper()
	rulesets := map[string]*nft.Ruleset{}
	for _, node := range []string{node1, node2} {
		s := *snap
		s.NodeName = node
		c := NewNodeCompiler(node)
		c.LoadSnapshot(&s)
		c.SetDenyLog(denyLog)
		rs, _ := c.Compile()
		if err := nfttest.Validate(rs); err != nil {
			t.Fatalf("node %s: compiled ruleset is invalid: %v\n%s", node, err, describe(snap))
		}
		rulesets[node] = rs
	}
	for _, p := range probePackets(snap) {
		got, steps, logs := tracedVerdict(snap, rulesets, p)
		want := Evaluate(snap, p)
		traced, trace := EvaluateWithTrace(snap, p)
		if diff := cmp.Diff(want, traced); diff != "" {
			t.Fatalf("packet %v: EvaluateWithTrace's verdict differs from Evaluate's (-want +got):\n%s\n%s", p, diff, describe(snap))
		}
		if err := traceAgrees(traced, trace); err != nil {
			t.Fatalf("packet %v: the trace does not tell the verdict's story: %v\n%s", p, err, describe(snap))
		}
		if got != want.Allowed {
			t.Fatalf("packet %v: compiled dataplane connects=%v, Evaluate says %+v\ntrace:\n\t%s\n%s",
				p, got, want, strings.Join(steps, "\n\t"), describe(snap))
		}
		// The audit records the dataplane sends are those Evaluate
		// names; without the deny log there are none.
		var wantAudit AuditVerdict
		if denyLog != nil {
			wantAudit = want.Audit
		}
		if gotAudit := auditRecords(logs); !gotAudit.Equal(wantAudit) {
			t.Fatalf("packet %v: compiled dataplane logs audit records %+v, Evaluate says %+v (deny log %v)\ntrace:\n\t%s\n%s",
				p, gotAudit, wantAudit, denyLog != nil, strings.Join(steps, "\n\t"), describe(snap))
		}
	}
}

// auditRecords reads the audit records among the prefixes of the log
// rules a packet met: the directions of the NetworkPolicy ones, and the
// ClusterNetworkPolicy rules, in order.
func auditRecords(prefixes []string) AuditVerdict {
	var a AuditVerdict
	for _, p := range prefixes {
		d, ok := nft.ParseLogPrefix(p)
		if !ok || d.Verdict != nft.VerdictWordAudit {
			continue
		}
		if d.Policy != "" {
			a.Rules = append(a.Rules, nft.DenyRule{Dir: d.Dir, Policy: d.Policy, Rule: d.Rule})
			continue
		}
		if d.Dir == nft.Egress {
			a.Egress = true
		} else {
			a.Ingress = true
		}
	}
	return a
}

// tracedVerdict is flowVerdict over precompiled per-node rulesets. A pod's
// packet to an address of its own node goes through that node's input hook
// instead of forward.
func tracedVerdict(snap *Snapshot, rulesets map[string]*nft.Ruleset, p Packet) (connects bool, steps, logs []string) {
	var nodes []string
	for _, ip := range []netip.Addr{p.Src, p.Dst} {
		if pod := activePodByIP(snap, ip); pod != nil && !contains(nodes, pod.NodeName) {
			nodes = append(nodes, pod.NodeName)
		}
	}
	hook := map[string]nft.HookName{}
	if src := activePodByIP(snap, p.Src); src != nil && isNodeAddress(snap, src.NodeName, p.Dst) {
		hook[src.NodeName] = nft.HookInput
	}
	for _, node := range nodes {
		h := nft.HookForward
		if hk, ok := hook[node]; ok {
			h = hk
		}
		res := rulesets[node].Trace(nft.Packet{
			Hook: h, Src: p.Src, Dst: p.Dst,
			Proto: protoOf(p.Protocol), DstPort: p.DstPort, CtState: nft.CtStateNew,
		})
		steps = append(steps, "node "+node+":")
		steps = append(steps, res.Steps...)
		logs = append(logs, res.Logs...)
		if res.Verdict != nft.VerdictAccept {
			return false, steps, logs
		}
	}
	return true, steps, logs
}

func isNodeAddress(snap *Snapshot, node string, a netip.Addr) bool {
	for _, n := range snap.Nodes {
		if n.Name == node && slices.Contains(n.Addresses, a) {
			return true
		}
	}
	return false
}

// probePackets: every ordered pair of distinct addresses of one family
// among pods, nodes and outside hosts, each protocol, a few ports.
func probePackets(snap *Snapshot) []Packet {
	addrs := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
	for _, p := range snap.Pods {
		addrs = append(addrs, p.IPs...)
	}
	for _, n := range snap.Nodes {
		addrs = append(addrs, n.Addresses...)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	var out []Packet
	for _, src := range addrs {
		for _, dst := range addrs {
			if src == dst || src.Is4() != dst.Is4() {
				continue
			}
			if activePodByIP(snap, src) == nil && activePodByIP(snap, dst) == nil {
				continue // neither end is a pod: no policy applies
			}
			for _, proto := range []corev1.Protocol{"TCP", "UDP", "SCTP"} {
				for _, port := range []uint16{53, 80, 85, 8080} {
					out = append(out, Packet{Src: src, Dst: dst, Protocol: proto, DstPort: port})
				}
			}
			out = append(out, Packet{Src: src, Dst: dst, Protocol: "ICMP"})
		}
	}
	return out
}

// chooser turns fuzz bytes into choices; past the end every choice is 0.
type chooser struct {
	data []byte
	pos  int
}

func (c *chooser) intn(n int) int {
	if c.pos >= len(c.data) || n <= 1 {
		c.pos++
		return 0
	}
	v := int(c.data[c.pos]) % n
	c.pos++
	return v
}

func (c *chooser) pick(options ...string) string { return options[c.intn(len(options))] }

func genSnapshot(c *chooser) *Snapshot {
	snap := &Snapshot{}
	for _, ns := range []string{"x", "y", "z"} {
		l := map[string]string{"kubernetes.io/metadata.name": ns, "ns": ns}
		if team := c.pick("", "blue", "red"); team != "" {
			l["team"] = team
		}
		snap.Namespaces = append(snap.Namespaces, Namespace{Name: ns, Labels: l})
	}
	npods := 2 + c.intn(5)
	for i := 0; i < npods; i++ {
		node := 1 + c.intn(2)
		p := Pod{
			Namespace: c.pick("x", "y", "z"),
			Name:      fmt.Sprintf("p%d", i),
			NodeName:  fmt.Sprintf("node-%d", node),
			Labels:    map[string]string{"pod": c.pick("a", "b", "c")},
			Phase:     corev1.PodRunning,
		}
		if app := c.pick("", "web", "db"); app != "" {
			p.Labels["app"] = app
		}
		p.IPs = []netip.Addr{netip.MustParseAddr(fmt.Sprintf("10.244.%d.%d", node, 10+i))}
		if c.intn(3) == 0 {
			p.IPs = append(p.IPs, netip.MustParseAddr(fmt.Sprintf("fd00:10:244:%d::%x", node, 10+i)))
		}
		switch c.intn(12) {
		case 0:
			p.Phase = corev1.PodSucceeded
		case 1:
			p.HostNetwork = true
			p.IPs = []netip.Addr{netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", node))}
		case 2:
			p.IPs = nil // not yet given an address
		}
		switch c.intn(4) {
		case 0:
			p.Ports = []ContainerPort{{Name: "http", Port: 80}, {Name: "dns", Protocol: "UDP", Port: 53}}
		case 1:
			p.Ports = []ContainerPort{{Name: "http", Protocol: "TCP", Port: 8080}, {Name: "s", Protocol: "SCTP", Port: 80}}
		case 2:
			p.Ports = []ContainerPort{{Name: "dns", Protocol: "TCP", Port: 53}, {Name: "http", Protocol: "UDP", Port: 85}}
		}
		// Skip duplicate hostNetwork addresses: two hosts cannot share one.
		if p.HostNetwork && activePodByIPAny(snap, p.IPs[0]) {
			continue
		}
		snap.Pods = append(snap.Pods, p)
	}
	npol := 1 + c.intn(4)
	for i := 0; i < npol; i++ {
		snap.Policies = append(snap.Policies, genPolicy(c, i))
	}
	for n := 1; n <= 2; n++ {
		if n == 2 && c.intn(5) == 0 {
			continue // node-2's object is gone (its pods stay)
		}
		node := Node{Name: fmt.Sprintf("node-%d", n), Labels: map[string]string{"zone": c.pick("a", "b")},
			Addresses: []netip.Addr{netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", n))}}
		if c.intn(3) == 0 {
			node.Addresses = append(node.Addresses, netip.MustParseAddr(fmt.Sprintf("fd00:198::%d", n)))
		}
		snap.Nodes = append(snap.Nodes, node)
	}
	ncnp := c.intn(5)
	for i := 0; i < ncnp; i++ {
		snap.ClusterNetworkPolicies = append(snap.ClusterNetworkPolicies, genCNP(c, i))
	}
	// Audit mode is chosen last, so that the inputs of older corpora still
	// build the clusters they did, all enforced.
	for _, np := range snap.Policies {
		if c.intn(3) == 2 {
			np.Annotations = map[string]string{EnforcementAnnotation: EnforcementAudit}
		}
	}
	snap.AuditAll = c.intn(6) == 5
	for _, cnp := range snap.ClusterNetworkPolicies {
		if c.intn(3) == 2 {
			cnp.Annotations = map[string]string{EnforcementAnnotation: EnforcementAudit}
		}
	}
	return snap
}

func activePodByIPAny(snap *Snapshot, ip netip.Addr) bool {
	for _, p := range snap.Pods {
		for _, a := range p.IPs {
			if a == ip {
				return true
			}
		}
	}
	return false
}

func genSelector(c *chooser) *metav1.LabelSelector {
	switch c.intn(6) {
	case 0:
		return &metav1.LabelSelector{}
	case 1:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"pod": c.pick("a", "b", "c")}}
	case 2:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "pod", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}}
	case 3:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}}}
	case 4:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpDoesNotExist}}}
	default:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "pod", Operator: metav1.LabelSelectorOpNotIn, Values: []string{c.pick("a", "c")}}}}
	}
}

func genNamespaceSelector(c *chooser) *metav1.LabelSelector {
	switch c.intn(4) {
	case 0:
		return &metav1.LabelSelector{}
	case 1:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"ns": c.pick("x", "y", "z")}}
	case 2:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"team": c.pick("blue", "red")}}
	default:
		return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"x"}}}}
	}
}

var fuzzIPBlocks = []networkingv1.IPBlock{
	{CIDR: "10.244.0.0/16", Except: []string{"10.244.2.0/24"}},
	{CIDR: "10.244.1.0/24"},
	{CIDR: "0.0.0.0/0", Except: []string{"10.244.1.11/32", "192.0.2.0/24"}},
	{CIDR: "fd00::/8"},
	{CIDR: "192.0.2.0/24"},
	{CIDR: "10.244.2.12/32"},
	{CIDR: "198.18.0.0/24"},
	{CIDR: "::/0", Except: []string{"fd00:10:244:1::/64"}},
}

func genPeer(c *chooser) networkingv1.NetworkPolicyPeer {
	switch c.intn(4) {
	case 0:
		return networkingv1.NetworkPolicyPeer{PodSelector: genSelector(c)}
	case 1:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: genNamespaceSelector(c)}
	case 2:
		return networkingv1.NetworkPolicyPeer{PodSelector: genSelector(c), NamespaceSelector: genNamespaceSelector(c)}
	default:
		b := fuzzIPBlocks[c.intn(len(fuzzIPBlocks))]
		return networkingv1.NetworkPolicyPeer{IPBlock: &b}
	}
}

func genPort(c *chooser) networkingv1.NetworkPolicyPort {
	var p networkingv1.NetworkPolicyPort
	if proto := corev1.Protocol(c.pick("", "TCP", "UDP", "SCTP")); proto != "" {
		p.Protocol = &proto
	}
	switch c.intn(7) {
	case 0:
		// nil port: every port of the protocol
	case 1:
		v := intstr.FromInt32(80)
		p.Port = &v
	case 2:
		v := intstr.FromInt32(53)
		p.Port = &v
	case 3:
		v, end := intstr.FromInt32(80), int32(90)
		p.Port, p.EndPort = &v, &end
	case 4:
		v := intstr.FromString("http")
		p.Port = &v
	case 5:
		v := intstr.FromString("dns")
		p.Port = &v
	default:
		v := intstr.FromString("s")
		p.Port = &v
	}
	return p
}

func genPolicy(c *chooser, i int) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.pick("x", "y", "z"), Name: fmt.Sprintf("np%d", i)},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: *genSelector(c)},
	}
	genRules := func() (peers [][]networkingv1.NetworkPolicyPeer, ports [][]networkingv1.NetworkPolicyPort) {
		n := c.intn(3)
		for r := 0; r < n; r++ {
			var pe []networkingv1.NetworkPolicyPeer
			for k := c.intn(3); k > 0; k-- {
				pe = append(pe, genPeer(c))
			}
			var po []networkingv1.NetworkPolicyPort
			for k := c.intn(3); k > 0; k-- {
				po = append(po, genPort(c))
			}
			peers, ports = append(peers, pe), append(ports, po)
		}
		return peers, ports
	}
	inPeers, inPorts := genRules()
	for r := range inPeers {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: inPeers[r], Ports: inPorts[r]})
	}
	outPeers, outPorts := genRules()
	for r := range outPeers {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: outPeers[r], Ports: outPorts[r]})
	}
	switch c.intn(4) {
	case 0:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	default:
		// Left empty: as an object that did not pass the API server's
		// defaulting; both sides must default it the same way.
	}
	return np
}

// describe renders a snapshot for a failure message.
func describe(snap *Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster (audit all: %v):\n", snap.AuditAll)
	for _, ns := range snap.Namespaces {
		fmt.Fprintf(&b, "  namespace %s %v\n", ns.Name, ns.Labels)
	}
	for _, p := range snap.Pods {
		fmt.Fprintf(&b, "  pod %s node=%s ips=%v labels=%v phase=%s hostNetwork=%v ports=%v\n",
			p.Key(), p.NodeName, p.IPs, p.Labels, p.Phase, p.HostNetwork, p.Ports)
	}
	for _, n := range snap.Nodes {
		fmt.Fprintf(&b, "  node %s %v %v\n", n.Name, n.Labels, n.Addresses)
	}
	for _, np := range snap.Policies {
		y, _ := yaml.Marshal(np)
		fmt.Fprintf(&b, "---\n%s", y)
	}
	for _, cnp := range snap.ClusterNetworkPolicies {
		y, _ := yaml.Marshal(cnp)
		fmt.Fprintf(&b, "---\n%s", y)
	}
	return b.String()
}

var fuzzNetworks = []policyv1beta1.CIDR{
	"10.244.0.0/16", "10.244.1.0/24", "0.0.0.0/0", "fd00::/8", "192.0.2.0/24", "10.244.2.12/32",
	"198.18.0.0/24", "::/0", "10.244.1.11/32", "198.18.0.1/32", "not-a-cidr",
}

// genCNP generates a ClusterNetworkPolicy of either tier, now and then
// with what the API server would reject (the compiler must still agree
// with Evaluate on it).
func genCNP(c *chooser, i int) *policyv1beta1.ClusterNetworkPolicy {
	p := &policyv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cnp%d", i)}}
	p.Spec.Tier = policyv1beta1.Tier(c.pick("Admin", "Baseline", "Admin", "Baseline", "Admin", "Baseline", "Admin", "Other"))
	p.Spec.Priority = int32(c.intn(3))
	switch c.intn(8) {
	case 0, 1, 2:
		p.Spec.Subject.Namespaces = genNamespaceSelector(c)
	case 7:
		// neither field: selects nothing
	default:
		p.Spec.Subject.Pods = &policyv1beta1.NamespacedPod{NamespaceSelector: *genNamespaceSelector(c), PodSelector: *genSelector(c)}
	}
	for r := c.intn(3); r > 0; r-- {
		rule := policyv1beta1.ClusterNetworkPolicyIngressRule{Action: genAction(c), Protocols: genProtocols(c)}
		for k := 1 + c.intn(2) - boolInt(c.intn(16) == 0); k > 0; k-- {
			peer := genCNPPeer(c, false)
			rule.From = append(rule.From, policyv1beta1.ClusterNetworkPolicyIngressPeer{Namespaces: peer.Namespaces, Pods: peer.Pods})
		}
		p.Spec.Ingress = append(p.Spec.Ingress, rule)
	}
	for r := c.intn(3); r > 0; r-- {
		rule := policyv1beta1.ClusterNetworkPolicyEgressRule{Action: genAction(c), Protocols: genProtocols(c)}
		for k := 1 + c.intn(2) - boolInt(c.intn(16) == 0); k > 0; k-- {
			rule.To = append(rule.To, genCNPPeer(c, true))
		}
		p.Spec.Egress = append(p.Spec.Egress, rule)
	}
	return p
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func genAction(c *chooser) policyv1beta1.ClusterNetworkPolicyRuleAction {
	return policyv1beta1.ClusterNetworkPolicyRuleAction(c.pick("Accept", "Deny", "Pass", "Accept", "Deny", "Pass", "Accept", "Drop"))
}

func genCNPPeer(c *chooser, egress bool) policyv1beta1.ClusterNetworkPolicyEgressPeer {
	var p policyv1beta1.ClusterNetworkPolicyEgressPeer
	n := 4
	if egress {
		n = 8
	}
	switch c.intn(n) {
	case 0, 1:
		p.Namespaces = genNamespaceSelector(c)
	case 2:
		p.Pods = &policyv1beta1.NamespacedPod{NamespaceSelector: *genNamespaceSelector(c), PodSelector: *genSelector(c)}
	case 3:
		if c.intn(4) == 0 {
			// no field (or, for egress, two): fail closed
			if egress {
				p.Namespaces = genNamespaceSelector(c)
				p.Networks = []policyv1beta1.CIDR{fuzzNetworks[c.intn(len(fuzzNetworks))]}
			}
			break
		}
		p.Pods = &policyv1beta1.NamespacedPod{NamespaceSelector: metav1.LabelSelector{}, PodSelector: *genSelector(c)}
	case 4:
		sel := &metav1.LabelSelector{}
		if c.intn(2) == 0 {
			sel.MatchLabels = map[string]string{"zone": c.pick("a", "b")}
		}
		p.Nodes = sel
	case 5, 6:
		for k := 1 + c.intn(2); k > 0; k-- {
			p.Networks = append(p.Networks, fuzzNetworks[c.intn(len(fuzzNetworks))])
		}
	default:
		p.DomainNames = []policyv1beta1.DomainName{"example.com"}
		if c.intn(2) == 0 {
			p.Networks = []policyv1beta1.CIDR{fuzzNetworks[c.intn(len(fuzzNetworks))]}
			p.DomainNames = nil
		}
	}
	return p
}

func genProtocols(c *chooser) []policyv1beta1.ClusterNetworkPolicyProtocol {
	if c.intn(2) == 0 {
		return nil
	}
	var out []policyv1beta1.ClusterNetworkPolicyProtocol
	for k := 1 + c.intn(2); k > 0; k-- {
		var port *policyv1beta1.Port
		switch c.intn(6) {
		case 0:
			port = &policyv1beta1.Port{Number: 80}
		case 1:
			port = &policyv1beta1.Port{Number: 53}
		case 2:
			port = &policyv1beta1.Port{Range: &policyv1beta1.PortRange{Start: 80, End: 90}}
		case 3:
			port = &policyv1beta1.Port{Range: &policyv1beta1.PortRange{Start: 50, End: 85}}
		case 4:
			if c.intn(3) == 0 {
				port = &policyv1beta1.Port{} // neither: matches nothing
			}
		}
		var pr policyv1beta1.ClusterNetworkPolicyProtocol
		switch c.intn(6) {
		case 0, 1:
			pr.TCP = &policyv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: port}
		case 2:
			pr.UDP = &policyv1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: port}
		case 3:
			pr.SCTP = &policyv1beta1.ClusterNetworkPolicyProtocolSCTP{DestinationPort: port}
		case 4:
			pr.DestinationNamedPort = c.pick("http", "dns", "s")
		default:
			if c.intn(4) == 0 {
				break // no field: matches nothing
			}
			pr.TCP = &policyv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: port}
		}
		out = append(out, pr)
	}
	return out
}

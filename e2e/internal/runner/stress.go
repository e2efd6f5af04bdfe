package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftpolicy/nftpolicy/api/v1alpha1"
	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
)

// StressOptions tune a stress run (Runner.Stress).
type StressOptions struct {
	Transitions int    // how many random transitions
	Seed        uint64 // the run is a function of the seed (and of timing)
	// TableBound is how long every node's table may take to equal a fresh
	// compile of the API state after a transition.
	TableBound time.Duration
}

// Stress replays random policy transitions on a fixed cluster of nine pods
// (namespaces x, y, z; pods a, b, c; spread so that every node holds pods
// of every namespace). A transition is one to three changes in quick
// succession: a policy created, deleted, replaced, or moved to another
// namespace under the same name; a pod or namespace relabelled; a pod
// deleted and created again on the same IP with other labels. After each
// transition it checks two things, each against an oracle computed from
// the API state alone:
//   - every node's live table, read from the kernel with `nft list`, equals
//     policy.Compile of that state for that node, within TableBound;
//   - a fixed matrix of real probes (TCP/80 and UDP/80 to pod IPs, TCP/81
//     through each pod's Service) equals policy.Evaluate of that state,
//     judged as scenario steps are.
//
// It returns the number of transitions that passed both checks and the
// number that did not.
func (r *Runner) Stress(ctx context.Context, opt StressOptions) (passed, failed int, err error) {
	if opt.TableBound == 0 {
		opt.TableBound = 10 * time.Second
	}
	// Its random ipBlocks are literal IPv4 CIDRs and its expectations come
	// from policy.Evaluate on each pod's primary address, so it probes the
	// primary family only.
	r.families = r.State.Families()[:1]
	defer func() { r.families = r.State.Families() }()
	s := r.stressScenario()
	if err := r.prepare(ctx, s); err != nil {
		return 0, 0, fmt.Errorf("setting up the stress cluster: %w", err)
	}
	g := newStressGen(opt.Seed, s)
	for i := 1; i <= opt.Transitions && ctx.Err() == nil; i++ {
		actions := g.transition()
		var kinds []string
		for _, a := range actions {
			kinds = append(kinds, describeAction(a))
		}
		if err := r.applyActions(ctx, s, actions); err != nil {
			return passed, failed, fmt.Errorf("transition %d (%s): %w", i, strings.Join(kinds, "; "), err)
		}
		ok, line := r.checkTransition(ctx, s, opt.TableBound)
		verdict := "PASS"
		if !ok {
			verdict = "FAIL"
			failed++
		} else {
			passed++
		}
		fmt.Fprintf(r.Out, "%s transition %d: %s%s\n", verdict, i, strings.Join(kinds, "; "), line)
	}
	return passed, failed, ctx.Err()
}

// checkTransition runs both checks after one transition.
func (r *Runner) checkTransition(ctx context.Context, s *scenario.Scenario, tableBound time.Duration) (bool, string) {
	snap, err := r.apiSnapshot(ctx)
	if err != nil {
		return false, "\n    reading the API state: " + err.Error()
	}
	ok := true
	var b strings.Builder
	var slowest time.Duration
	for _, n := range r.State.Nodes {
		took, diff := r.waitTable(ctx, snap, n.Name, n.NetNS, tableBound, 100*time.Millisecond)
		slowest = max(slowest, took)
		if diff != "" {
			ok = false
			fmt.Fprintf(&b, "\n    node %s: table differs from a fresh compile after %.1fs:\n%s", n.Name, took.Seconds(), diff)
		}
	}
	step := scenario.Step{Name: "stress", Probes: r.stressProbes(snap, s)}
	passed, took, report := r.judge(ctx, s, step)
	if !passed {
		ok = false
		fmt.Fprintf(&b, "\n    probes differ from policy.Evaluate after %.1fs:\n%s", took.Seconds(), report)
	}
	return ok, fmt.Sprintf(" (tables equal in %.2fs, probes in %.2fs)%s", slowest.Seconds(), took.Seconds(), b.String())
}

// apiSnapshot is the cluster as the API server has it now, converted the
// way the agent converts it.
func (r *Runner) apiSnapshot(ctx context.Context) (*policy.Snapshot, error) {
	snap := &policy.Snapshot{}
	pods, err := r.CS.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range pods.Items {
		snap.Pods = append(snap.Pods, controllers.PolicyPod(&pods.Items[i]))
	}
	nss, err := r.CS.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, n := range nss.Items {
		snap.Namespaces = append(snap.Namespaces, policy.Namespace{Name: n.Name, Labels: n.Labels})
	}
	nps, err := r.CS.NetworkingV1().NetworkPolicies(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range nps.Items {
		snap.Policies = append(snap.Policies, &nps.Items[i])
	}
	nodes, err := r.CS.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range nodes.Items {
		snap.Nodes = append(snap.Nodes, controllers.PolicyNode(&nodes.Items[i]))
	}
	return snap, nil
}

// hostAddrsIn lists the addresses of the interfaces of network namespace
// netns, as the agent there reads its host addresses.
func hostAddrsIn(ctx context.Context, netns string) ([]netip.Addr, error) {
	out, err := exec.CommandContext(ctx, "ip", "-j", "-n", netns, "addr", "show").Output()
	if err != nil {
		return nil, fmt.Errorf("ip -n %s addr: %w", netns, err)
	}
	var links []struct {
		AddrInfo []struct {
			Local string `json:"local"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("ip -n %s addr: %w", netns, err)
	}
	var addrs []netip.Addr
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if ip, err := netip.ParseAddr(a.Local); err == nil {
				addrs = append(addrs, ip)
			}
		}
	}
	return addrs, nil
}

// waitTable polls node's live table every poll until it equals
// policy.Compile of snap for that node, or bound passes; it returns how
// long that took and, if it never did, a unified view of the last
// difference.
func (r *Runner) waitTable(ctx context.Context, snap *policy.Snapshot, node, netns string, bound, poll time.Duration) (time.Duration, string) {
	one := *snap
	one.NodeName = node
	start := time.Now()
	for {
		// The node's own addresses may change (cni0 comes with its
		// first pod), so they are read with each attempt.
		host, herr := hostAddrsIn(ctx, netns)
		if herr != nil {
			return time.Since(start), "      " + herr.Error()
		}
		one.HostAddresses = host
		c := policy.NewNodeCompiler(node)
		c.SetDenyLog(agentDenyLog)
		c.LoadSnapshot(&one)
		rs, _ := c.Compile()
		want := nft.CanonicalListing(rs.Dump())
		// Stateless (-s): counters as `counter`, as Dump has them.
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", netns, "nft", "-s", "list", "table", "inet", nft.TableName).CombinedOutput()
		got := string(out)
		if err == nil {
			got = nft.CanonicalListing(got)
			if got == want {
				return time.Since(start), ""
			}
		}
		if time.Since(start) > bound || ctx.Err() != nil {
			if err != nil {
				return time.Since(start), fmt.Sprintf("      nft list: %v: %s", err, out)
			}
			return time.Since(start), lineDiff(want, got)
		}
		time.Sleep(poll)
	}
}

// agentDenyLog is the denied-traffic log of the agents as dist/install.yaml
// runs them: on, with the defaults of api/v1alpha1.
var agentDenyLog = &nft.DenyLog{
	Group: v1alpha1.DefaultDeniedTrafficLogGroup,
	Rate:  v1alpha1.DefaultDeniedTrafficLogRate,
	Burst: v1alpha1.DefaultDeniedTrafficLogBurst,
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	count := map[string]int{}
	for _, l := range strings.Split(want, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(got, "\n") {
		count[l]--
	}
	var lines []string
	for l, n := range count {
		for ; n > 0; n-- {
			lines = append(lines, "      - "+l)
		}
		for ; n < 0; n++ {
			lines = append(lines, "      + "+l)
		}
	}
	sort.Strings(lines)
	const most = 40
	if len(lines) > most {
		lines = append(lines[:most], fmt.Sprintf("      ... and %d more lines", len(lines)-most))
	}
	return strings.Join(lines, "\n") + "\n"
}

// stressProbes are the fixed probes with the matrices policy.Evaluate
// expects of snap.
func (r *Runner) stressProbes(snap *policy.Snapshot, s *scenario.Scenario) []scenario.Probe {
	var keys []string
	for _, p := range s.Cluster.Pods {
		keys = append(keys, p.Key())
	}
	ipOf := map[string]netip.Addr{}
	for _, p := range snap.Pods {
		if len(p.IPs) > 0 {
			ipOf[p.Key()] = p.IPs[0]
		}
	}
	probes := []scenario.Probe{
		{Port: 80, Protocol: "TCP", Target: "pod-ip"},
		{Port: 80, Protocol: "UDP", Target: "pod-ip"},
		{Port: 81, Protocol: "TCP", Target: "service-ip"},
	}
	for i := range probes {
		p := &probes[i]
		m := &scenario.Matrix{Rows: keys, Cols: keys}
		for _, src := range keys {
			row := make([]byte, len(keys))
			for j, dst := range keys {
				v := policy.Evaluate(snap, policy.Packet{Src: ipOf[src], Dst: ipOf[dst],
					Protocol: corev1.Protocol(p.Protocol), DstPort: uint16(p.Port)})
				row[j] = 'X'
				if v.Allowed {
					row[j] = '.'
				}
			}
			m.Cells = append(m.Cells, row)
		}
		p.Matrix = m
	}
	return probes
}

// stressScenario is the fixed cluster of a stress run: pod i of namespace
// j lives on node (i+j) mod nodes, so every node holds a pod of every
// namespace and every pair kind (same node, cross node) occurs.
func (r *Runner) stressScenario() *scenario.Scenario {
	s := &scenario.Scenario{Name: "stress", IgnoreLoopback: true}
	s.Cluster.Servers = []scenario.Server{{Port: 80, Protocol: "TCP"}, {Port: 80, Protocol: "UDP"}, {Port: 81, Protocol: "TCP"}}
	nodes := r.State.Nodes
	for j, ns := range stressNamespaces {
		s.Cluster.Namespaces = append(s.Cluster.Namespaces, scenario.Namespace{Name: ns, Labels: map[string]string{"ns": ns}})
		for i, name := range stressPods {
			n := nodes[(i+j)%len(nodes)]
			prefix := netip.MustParsePrefix(n.PodCIDR)
			ip := prefix.Addr().As4()
			ip[3] = byte(40 + 3*j + i)
			s.Cluster.Pods = append(s.Cluster.Pods, scenario.Pod{Namespace: ns, Name: name,
				Labels: map[string]string{"pod": name}, IP: netip.AddrFrom4(ip).String()})
		}
	}
	return s
}

var (
	stressNamespaces = []string{"x", "y", "z"}
	stressPods       = []string{"a", "b", "c"}
)

// stressGen draws transitions from a seeded source, tracking what exists.
type stressGen struct {
	rng       *rand.Rand
	cidrs     []string // the nodes' pod CIDRs, for ipBlock peers
	nsLabels  map[string]map[string]string
	podLabels map[string]map[string]string // by namespace/name
	pods      map[string]scenario.Pod
	policies  map[string]*networkingv1.NetworkPolicy // by namespace/name
	names     int
}

func newStressGen(seed uint64, s *scenario.Scenario) *stressGen {
	g := &stressGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		nsLabels: map[string]map[string]string{}, podLabels: map[string]map[string]string{},
		pods: map[string]scenario.Pod{}, policies: map[string]*networkingv1.NetworkPolicy{}}
	for _, n := range s.Cluster.Namespaces {
		g.nsLabels[n.Name] = copyMap(n.Labels)
	}
	for _, p := range s.Cluster.Pods {
		g.podLabels[p.Key()] = copyMap(p.Labels)
		g.pods[p.Key()] = p
		prefix := netip.MustParsePrefix(p.IP + "/24").Masked().String()
		if !slices.Contains(g.cidrs, prefix) {
			g.cidrs = append(g.cidrs, prefix)
		}
	}
	sort.Strings(g.cidrs)
	return g
}

// transition is one to three changes, applied back to back.
func (g *stressGen) transition() []scenario.Action {
	var out []scenario.Action
	for range 1 + g.rng.IntN(3) {
		out = append(out, g.change()...)
	}
	return out
}

func (g *stressGen) change() []scenario.Action {
	for {
		switch g.rng.IntN(7) {
		case 0, 1: // create (most transitions need something to change)
			if len(g.policies) >= 6 {
				continue
			}
			np := g.policy(g.pick(stressNamespaces), fmt.Sprintf("p%d", g.names))
			g.names++
			g.policies[np.Namespace+"/"+np.Name] = np
			return []scenario.Action{{CreatePolicy: scenario.NetworkPolicyObject(np.DeepCopy())}}
		case 2: // delete
			k, ok := g.anyPolicy()
			if !ok {
				continue
			}
			np := g.policies[k]
			delete(g.policies, k)
			return []scenario.Action{{DeletePolicy: &scenario.PolicyRef{Namespace: np.Namespace, Name: np.Name}}}
		case 3: // replace the spec
			k, ok := g.anyPolicy()
			if !ok {
				continue
			}
			np := g.policy(g.policies[k].Namespace, g.policies[k].Name)
			g.policies[k] = np
			return []scenario.Action{{UpdatePolicy: scenario.NetworkPolicyObject(np.DeepCopy())}}
		case 4: // move to another namespace under the same name (issue 9's shape)
			k, ok := g.anyPolicy()
			if !ok {
				continue
			}
			old := g.policies[k]
			to := g.pick(slices.DeleteFunc(slices.Clone(stressNamespaces), func(n string) bool { return n == old.Namespace }))
			if _, taken := g.policies[to+"/"+old.Name]; taken {
				continue
			}
			np := old.DeepCopy()
			np.Namespace = to
			delete(g.policies, k)
			g.policies[to+"/"+np.Name] = np
			return []scenario.Action{{DeletePolicy: &scenario.PolicyRef{Namespace: old.Namespace, Name: old.Name}}, {CreatePolicy: scenario.NetworkPolicyObject(np.DeepCopy())}}
		case 5: // relabel a pod or a namespace
			if g.rng.IntN(2) == 0 {
				key := g.pick(sortedKeys(g.podLabels))
				l := g.podLabels[key]
				l["pod"] = g.pick(stressPods)
				toggle(l, "extra", g.rng.IntN(2) == 0)
				p := g.pods[key]
				return []scenario.Action{{SetPodLabels: &scenario.PodLabels{Namespace: p.Namespace, Name: p.Name, Labels: copyMap(l)}}}
			}
			ns := g.pick(stressNamespaces)
			toggle(g.nsLabels[ns], "extra", g.rng.IntN(2) == 0)
			return []scenario.Action{{SetNamespaceLabels: &scenario.Namespace{Name: ns, Labels: copyMap(g.nsLabels[ns])}}}
		case 6: // a pod deleted and its IP taken at once by a pod with other labels
			key := g.pick(sortedKeys(g.podLabels))
			p := g.pods[key]
			l := g.podLabels[key]
			l["pod"] = g.pick(stressPods)
			p.Labels = copyMap(l)
			g.pods[key] = p
			return []scenario.Action{{DeletePod: &scenario.ObjectRef{Namespace: p.Namespace, Name: p.Name}}, {CreatePod: &p}}
		}
	}
}

func (g *stressGen) anyPolicy() (string, bool) {
	if len(g.policies) == 0 {
		return "", false
	}
	return g.pick(sortedKeys(g.policies)), true
}

func (g *stressGen) pick(from []string) string { return from[g.rng.IntN(len(from))] }

func toggle(l map[string]string, key string, on bool) {
	if on {
		l[key] = "v"
	} else {
		delete(l, key)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// policy draws a NetworkPolicy of the shapes the spec's corners are made
// of: selectors by label and by expression, both directions, peers by pod,
// namespace, both, and ipBlock with except, ports by number, name and
// range, on TCP and UDP.
func (g *stressGen) policy(namespace, name string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
	}
	np.Spec.PodSelector = g.podSelector()
	dirs := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	switch g.rng.IntN(3) {
	case 0:
		dirs = dirs[:1]
	case 1:
		dirs = dirs[1:]
	}
	np.Spec.PolicyTypes = dirs
	for _, d := range dirs {
		for range g.rng.IntN(3) {
			peers, ports := g.peers(), g.ports()
			if d == networkingv1.PolicyTypeIngress {
				np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports})
			} else {
				np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports})
			}
		}
	}
	return np
}

func (g *stressGen) podSelector() metav1.LabelSelector {
	switch g.rng.IntN(3) {
	case 0:
		return metav1.LabelSelector{}
	case 1:
		return metav1.LabelSelector{MatchLabels: map[string]string{"pod": g.pick(stressPods)}}
	}
	return metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "pod", Operator: metav1.LabelSelectorOpIn, Values: []string{g.pick(stressPods), g.pick(stressPods)}}}}
}

func (g *stressGen) peers() []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for range g.rng.IntN(3) {
		var p networkingv1.NetworkPolicyPeer
		switch g.rng.IntN(4) {
		case 0:
			sel := g.podSelector()
			p.PodSelector = &sel
		case 1:
			p.NamespaceSelector = g.namespaceSelector()
		case 2:
			sel := g.podSelector()
			p.PodSelector, p.NamespaceSelector = &sel, g.namespaceSelector()
		case 3:
			cidr := g.pick(g.cidrs)
			p.IPBlock = &networkingv1.IPBlock{CIDR: cidr}
			if g.rng.IntN(2) == 0 {
				// except one of the pods' addresses in that range
				for _, k := range sortedKeys(g.pods) {
					if ip := g.pods[k].IP; netip.MustParsePrefix(cidr).Contains(netip.MustParseAddr(ip)) {
						p.IPBlock.Except = []string{ip + "/32"}
						break
					}
				}
			}
		}
		out = append(out, p)
	}
	return out
}

func (g *stressGen) namespaceSelector() *metav1.LabelSelector {
	switch g.rng.IntN(3) {
	case 0:
		return &metav1.LabelSelector{}
	case 1:
		return &metav1.LabelSelector{MatchLabels: map[string]string{"ns": g.pick(stressNamespaces)}}
	}
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "extra", Operator: metav1.LabelSelectorOpExists}}}
}

func (g *stressGen) ports() []networkingv1.NetworkPolicyPort {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	var out []networkingv1.NetworkPolicyPort
	for range g.rng.IntN(3) {
		switch g.rng.IntN(5) {
		case 0:
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: ptr(intstr.FromInt32(80))})
		case 1:
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &udp, Port: ptr(intstr.FromInt32(80))})
		case 2:
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: ptr(intstr.FromString("serve-81-tcp"))})
		case 3:
			end := int32(81)
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: ptr(intstr.FromInt32(80)), EndPort: &end})
		case 4:
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &udp})
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// describeAction is a short human form of a, for the transition log.
func describeAction(a scenario.Action) string {
	switch {
	case a.CreatePolicy != nil:
		return "create " + a.CreatePolicy.Name()
	case a.UpdatePolicy != nil:
		return "replace " + a.UpdatePolicy.Name()
	case a.DeletePolicy != nil:
		return "delete " + a.DeletePolicy.Namespace + "/" + a.DeletePolicy.Name
	case a.SetPodLabels != nil:
		return fmt.Sprintf("relabel pod %s/%s %v", a.SetPodLabels.Namespace, a.SetPodLabels.Name, a.SetPodLabels.Labels)
	case a.SetNamespaceLabels != nil:
		return fmt.Sprintf("relabel namespace %s %v", a.SetNamespaceLabels.Name, a.SetNamespaceLabels.Labels)
	case a.DeletePod != nil:
		return "delete pod " + a.DeletePod.Namespace + "/" + a.DeletePod.Name
	case a.CreatePod != nil:
		return fmt.Sprintf("create pod %s/%s %s %v", a.CreatePod.Namespace, a.CreatePod.Name, a.CreatePod.IP, a.CreatePod.Labels)
	}
	return a.Kind()
}

package policy

// Fixtures shared by the compiler tests.
//
// IP plan (two nodes, dual-stack pods where noted):
//   node-1  10.244.1.0/24  fd00:10:244:1::/64
//     x/a 10.244.1.10 fd00:10:244:1::10   labels pod=a   ports serve-80-tcp=80, serve-81-tcp=81, dns=53/UDP
//     x/b 10.244.1.11                     labels pod=b   ports serve-80-tcp=80, serve-81-tcp=81
//     y/a 10.244.1.20                     labels pod=a   ports serve-80-tcp=8080 (a different number!)
//   node-2  10.244.2.0/24
//     x/c 10.244.2.12                     labels pod=c   ports serve-80-tcp=80
//     y/b 10.244.2.21                     labels pod=b   ports serve-80-tcp=80
//     z/h 198.18.0.12 (hostNetwork)       labels pod=a
//   outside the cluster: 192.0.2.1, 2001:db8::1

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/nftpolicy/nftpolicy/nft"
)

const (
	node1 = "node-1"
	node2 = "node-2"
)

// fixturePods is the pod set of the IP plan above.
func fixturePods() []Pod {
	return []Pod{
		mkPod("x/a", node1, "pod=a", "serve-80-tcp=80,serve-81-tcp=81,dns=53/UDP", "10.244.1.10", "fd00:10:244:1::10"),
		mkPod("x/b", node1, "pod=b", "serve-80-tcp=80,serve-81-tcp=81", "10.244.1.11"),
		mkPod("y/a", node1, "pod=a", "serve-80-tcp=8080", "10.244.1.20"),
		mkPod("x/c", node2, "pod=c", "serve-80-tcp=80", "10.244.2.12"),
		mkPod("y/b", node2, "pod=b", "serve-80-tcp=80", "10.244.2.21"),
		hostNetwork(mkPod("z/h", node2, "pod=a", "", "198.18.0.12")),
	}
}

func fixtureNamespaces() []Namespace {
	return []Namespace{
		mkNamespace("x", "ns=x"),
		mkNamespace("y", "ns=y,team=blue"),
		mkNamespace("z", "ns=z"),
	}
}

func fixtureSnapshot(node string, policies ...string) *Snapshot {
	return &Snapshot{
		NodeName:   node,
		Namespaces: fixtureNamespaces(),
		Pods:       fixturePods(),
		Policies:   mkPolicies(policies...),
	}
}

// withPodCIDRs gives snap's nodes their pod CIDRs of the IP plan, and
// node-1 its own addresses in them (flannel.1 at .0, the cni0 gateway at
// .1), so that the unknown-local guard has addresses to drop.
func withPodCIDRs(snap *Snapshot) *Snapshot {
	snap.Nodes = append(snap.Nodes,
		Node{Name: node1, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")}},
		Node{Name: node2, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")}})
	if snap.NodeName == node1 {
		snap.HostAddresses = []netip.Addr{netip.MustParseAddr("10.244.1.0"), netip.MustParseAddr("10.244.1.1"), netip.MustParseAddr("fd00:10:244:1::1")}
	}
	return snap
}

// mkPod builds a running pod from compact strings: labels "k=v,k2=v2",
// ports "name=port[/PROTO],...".
func mkPod(key, node, lbls, ports string, ips ...string) Pod {
	ns, name, _ := strings.Cut(key, "/")
	p := Pod{Namespace: ns, Name: name, NodeName: node, Labels: mkLabels(lbls), Phase: corev1.PodRunning}
	for _, ip := range ips {
		p.IPs = append(p.IPs, netip.MustParseAddr(ip))
	}
	for _, spec := range splitNonEmpty(ports) {
		pname, rest, _ := strings.Cut(spec, "=")
		num, proto, _ := strings.Cut(rest, "/")
		n, err := strconv.Atoi(num)
		if err != nil {
			panic(err)
		}
		p.Ports = append(p.Ports, ContainerPort{Name: pname, Protocol: corev1.Protocol(proto), Port: int32(n)})
	}
	return p
}

func hostNetwork(p Pod) Pod {
	p.HostNetwork = true
	return p
}

func mkNamespace(name, lbls string) Namespace {
	l := mkLabels(lbls)
	l["kubernetes.io/metadata.name"] = name
	return Namespace{Name: name, Labels: l}
}

func mkLabels(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range splitNonEmpty(s) {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

func splitNonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// mkPolicies parses NetworkPolicies written in YAML, one per string.
func mkPolicies(docs ...string) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, d := range docs {
		np := &networkingv1.NetworkPolicy{}
		if err := yaml.UnmarshalStrict([]byte(d), np); err != nil {
			panic(err)
		}
		out = append(out, np)
	}
	return out
}

// flowVerdict is the compiled dataplane's verdict on the first packet of a
// connection: the packet crosses the forward hook of the source pod's node
// and, when the destination pod lives elsewhere, the forward hook of the
// destination pod's node too. Each node runs its own compiled ruleset.
func flowVerdict(t testing.TB, snap *Snapshot, p Packet) (bool, []string) {
	t.Helper()
	nodes := []string{}
	for _, ip := range []netip.Addr{p.Src, p.Dst} {
		if pod := activePodByIP(snap, ip); pod != nil && !contains(nodes, pod.NodeName) {
			nodes = append(nodes, pod.NodeName)
		}
	}
	var steps []string
	for _, node := range nodes {
		s := *snap
		s.NodeName = node
		rs, _ := Compile(&s)
		res := rs.Trace(nft.Packet{
			Hook:    nft.HookForward,
			Src:     p.Src,
			Dst:     p.Dst,
			Proto:   protoOf(p.Protocol),
			DstPort: p.DstPort,
			CtState: nft.CtStateNew,
		})
		steps = append(steps, "node "+node+":")
		steps = append(steps, res.Steps...)
		if res.Verdict != nft.VerdictAccept {
			return false, steps
		}
	}
	return true, steps
}

func protoOf(p corev1.Protocol) uint8 {
	if p == "ICMP" {
		return nft.ProtoICMP
	}
	return protoNumber(p)
}

func activePodByIP(snap *Snapshot, ip netip.Addr) *Pod {
	for i := range snap.Pods {
		p := &snap.Pods[i]
		if !p.Active() {
			continue
		}
		for _, a := range p.IPs {
			if a == ip {
				return p
			}
		}
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// pkt builds a packet from "10.0.0.1 -> 10.0.0.2 TCP/80".
func pkt(s string) Packet {
	f := strings.Fields(s)
	proto, port, _ := strings.Cut(f[3], "/")
	n, _ := strconv.Atoi(port)
	return Packet{
		Src:      netip.MustParseAddr(f[0]),
		Dst:      netip.MustParseAddr(f[2]),
		Protocol: corev1.Protocol(proto),
		DstPort:  uint16(n),
	}
}

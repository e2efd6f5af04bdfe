package synth

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftpolicy/nftpolicy/policy"
)

// ScalingPods are the cluster sizes of the scaling curve; the first is the
// baseline the others are read against.
var ScalingPods = []int{1_000, 10_000, 50_000, 150_000}

// Scaled is the shape of a cluster of pods pods with everything else in the
// proportions of Scale150k: 30 pods per namespace, one policy per 15 pods,
// 110 pods on the local node and on every remote node.
func Scaled(pods int) Shape {
	return Shape{
		Pods: pods, Namespaces: max(pods/30, 10), Policies: max(pods/15, 10),
		LocalPods: 110, PodsPerNode: 110,
	}
}

// WithClusterNetworkPolicies is s with n ClusterNetworkPolicies.
func (s Shape) WithClusterNetworkPolicies(n int) Shape {
	s.ClusterNetworkPolicies = n
	return s
}

// String names a shape in benchmark output; the ClusterNetworkPolicy count
// only when there are any.
func (s Shape) String() string {
	out := fmt.Sprintf("pods=%d/policies=%d", s.Pods, s.Policies)
	if s.ClusterNetworkPolicies > 0 {
		out += fmt.Sprintf("/cnps=%d", s.ClusterNetworkPolicies)
	}
	return out
}

// ChurnPeer is a pod that Snapshot(s) does not hold and that exactly one
// local pod's policy admits: a "frontend" in ns-0, on remote node-1, at an
// address no synthetic pod uses. In a Scaled shape, pod-0 (local, ns-0,
// app-0) is the only local pod this admits: it is selected by
// np-0, which admits frontends of its namespace on TCP 8080 and on the
// named port "http". Adding it to a snapshot and removing it again is the
// one-pod churn of the benchmarks: it must change a few set elements of
// pod-0's ingress allow-list and nothing else.
func ChurnPeer(s Shape) policy.Pod {
	return policy.Pod{
		Namespace: "ns-0",
		Name:      "churn-peer",
		NodeName:  "node-1",
		Labels:    map[string]string{"app": "app-churn", "role": "frontend"},
		Phase:     corev1.PodRunning,
		// Slot 200 is above every PodsPerNode slot a Shape uses (<= 253).
		IPs:   []netip.Addr{PodIP(1, 200)},
		Ports: []policy.ContainerPort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 8080}},
	}
}

// WithPod returns a shallow copy of snap with pod appended.
func WithPod(snap *policy.Snapshot, pod policy.Pod) *policy.Snapshot {
	out := *snap
	out.Pods = append(append(make([]policy.Pod, 0, len(snap.Pods)+1), snap.Pods...), pod)
	return &out
}

// Package policy compiles Kubernetes NetworkPolicies and
// ClusterNetworkPolicies (policy.networking.k8s.io/v1beta1) into the
// nftables model of one node (Compile), and states the reference semantics
// of the same policies packet by packet (Evaluate), independently of the
// compiler, so each can be tested against the other.
//
// The package is pure: no I/O, no clock, no logging. Its inputs are plain
// values that the controllers package builds from its informer cache.
package policy

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Snapshot is everything the compiler needs to know about the cluster, as
// seen by the agent on one node.
type Snapshot struct {
	// NodeName is the node the ruleset is compiled for: only pods on this
	// node get chains; every other pod is a peer only.
	NodeName   string
	Namespaces []Namespace
	Pods       []Pod
	// Policies are NetworkPolicies as stored by the API server (so with
	// policyTypes defaulted).
	Policies []*networkingv1.NetworkPolicy
	// ClusterNetworkPolicies are the cluster-scoped policies of both tiers
	// (Admin and Baseline).
	ClusterNetworkPolicies []*policyv1beta1.ClusterNetworkPolicy
	// Nodes are the cluster's nodes, for ClusterNetworkPolicy nodes peers
	// and, for NodeName's node, its pod CIDRs.
	Nodes []Node
	// HostAddresses are the addresses of NodeName's own interfaces (the
	// bridge's gateway, flannel's .0 address, ...), which the node's pod
	// CIDRs may contain and which are no pods (see Node.PodCIDRs).
	HostAddresses []netip.Addr
	// AuditAll is the agent's audit-all setting: every NetworkPolicy and
	// ClusterNetworkPolicy is in audit mode, annotated or not (audit.go).
	AuditAll bool
}

// Namespace is what policy needs to know of a namespace.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Node is what policy needs to know of a node.
type Node struct {
	Name   string
	Labels map[string]string
	// Addresses are the IPs among status.addresses (InternalIP and
	// ExternalIP; the caller drops host names).
	Addresses []netip.Addr
	// PodCIDRs are the node's pod address ranges (spec.podCIDRs). On the
	// node being compiled, an address in them that belongs to no active
	// pod of the node and to none of its HostAddresses is "unknown local":
	// all traffic from or to it is dropped, so a pod is isolated from its
	// first packet, before the agent knows its address.
	PodCIDRs []netip.Prefix
}

// Pod is what policy needs to know of a pod.
type Pod struct {
	Namespace   string
	Name        string
	Labels      map[string]string
	NodeName    string
	HostNetwork bool
	Phase       corev1.PodPhase
	// IPs are the pod's addresses (status.podIPs): one per family at most.
	IPs []netip.Addr
	// Ports are the container ports the pod declares, for named ports.
	Ports []ContainerPort
}

// ContainerPort is one declared container port.
type ContainerPort struct {
	Name     string
	Protocol corev1.Protocol // TCP, UDP or SCTP; empty means TCP
	Port     int32
}

// Key is the pod's "namespace/name".
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// Active reports whether the pod takes part in policy at all: it has an IP,
// is not on the host network, and has not terminated. Terminated pods'
// addresses are dropped at once because the IPs get reused.
func (p *Pod) Active() bool {
	if p.HostNetwork || len(p.IPs) == 0 {
		return false
	}
	return p.Phase != corev1.PodSucceeded && p.Phase != corev1.PodFailed
}

// Packet is the first packet of a connection, as the reference evaluator
// sees it: addresses after any Service translation.
type Packet struct {
	Src, Dst netip.Addr
	Protocol corev1.Protocol // TCP, UDP, SCTP; anything else (e.g. "ICMP") has no port
	DstPort  uint16
}

// Warning is a policy part that could not be enforced as written. The rest
// of the policy, and every other policy, is still enforced. Evaluate also
// warns where ClusterNetworkPolicies leave the outcome to the
// implementation (equal priorities). Namespace is empty for a
// ClusterNetworkPolicy.
type Warning struct {
	Namespace, Policy string
	Message           string
}

package controllers

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftpolicy/nftpolicy/policy"
)

// buildSnapshot turns cached objects into the compiler's input. Every slice
// is sorted, so the same cluster state always gives the same snapshot.
// Labels maps are shared with the objects passed in (read-only).
func buildSnapshot(nodeName string, pods []corev1.Pod, namespaces []corev1.Namespace, policies []networkingv1.NetworkPolicy) *policy.Snapshot {
	s := &policy.Snapshot{
		NodeName:   nodeName,
		Namespaces: make([]policy.Namespace, 0, len(namespaces)),
		Pods:       make([]policy.Pod, 0, len(pods)),
		Policies:   make([]*networkingv1.NetworkPolicy, 0, len(policies)),
	}
	for i := range namespaces {
		s.Namespaces = append(s.Namespaces, policy.Namespace{Name: namespaces[i].Name, Labels: namespaces[i].Labels})
	}
	for i := range pods {
		s.Pods = append(s.Pods, snapshotPod(&pods[i]))
	}
	for i := range policies {
		s.Policies = append(s.Policies, &policies[i])
	}
	slices.SortFunc(s.Namespaces, func(a, b policy.Namespace) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(s.Pods, func(a, b policy.Pod) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	slices.SortFunc(s.Policies, func(a, b *networkingv1.NetworkPolicy) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return s
}

// snapshotPod is what policy needs of p. Addresses come from status.podIPs
// (status.podIP when that is empty), unmapped, deduplicated, unparsable ones
// skipped. Ports come from containers and sidecar init containers.
func snapshotPod(p *corev1.Pod) policy.Pod {
	out := policy.Pod{
		Namespace:   p.Namespace,
		Name:        p.Name,
		Labels:      p.Labels,
		NodeName:    p.Spec.NodeName,
		HostNetwork: p.Spec.HostNetwork,
		Phase:       p.Status.Phase,
	}
	ips := make([]string, 0, 2)
	for _, ip := range p.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = append(ips, p.Status.PodIP)
	}
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		a = a.Unmap().WithZone("")
		if !slices.Contains(out.IPs, a) {
			out.IPs = append(out.IPs, a)
		}
	}
	add := func(cs []corev1.Container, sidecarsOnly bool) {
		for i := range cs {
			c := &cs[i]
			if sidecarsOnly && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
				continue
			}
			for _, cp := range c.Ports {
				out.Ports = append(out.Ports, policy.ContainerPort{Name: cp.Name, Protocol: cp.Protocol, Port: cp.ContainerPort})
			}
		}
	}
	add(p.Spec.Containers, false)
	add(p.Spec.InitContainers, true)
	return out
}

package controllers

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions configures the informer cache of the agent on nodeName: every
// object is trimmed to what policy needs before it is stored (the cache
// holds every pod of the cluster, so this is most of the agent's memory),
// and only the agent's own Node is watched.
func CacheOptions(nodeName string) cache.Options {
	return cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:                 {Transform: TrimPod},
			&corev1.Namespace{}:           {Transform: TrimNamespace},
			&networkingv1.NetworkPolicy{}: {Transform: TrimNetworkPolicy},
			&corev1.Node{}: {
				Field:     fields.OneTermEqualSelector("metadata.name", nodeName),
				Transform: TrimNode,
			},
		},
		// Anything watched later (e.g. network-policy-api objects) at least
		// loses its managedFields.
		DefaultTransform: cache.TransformStripManagedFields(),
	}
}

// trimMeta keeps the identity of an object (what Events and the cache need),
// its labels and its deletion timestamp; annotations (often a large
// last-applied-configuration), managedFields and owner references go.
func trimMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		Labels:            m.Labels,
		DeletionTimestamp: m.DeletionTimestamp,
	}
}

// TrimPod is the cache transform for Pods. It keeps labels, namespace, name,
// node name, hostNetwork, phase, pod IPs, deletion timestamp and the declared
// container ports (name, protocol, number) of containers and of sidecar
// (restartable init) containers, which serve ports for the pod's lifetime.
// Anything that is not a *corev1.Pod (a cache tombstone) passes unchanged.
// It is idempotent, as client-go requires of transforms.
func TrimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		TypeMeta:   pod.TypeMeta,
		ObjectMeta: trimMeta(&pod.ObjectMeta),
		Spec: corev1.PodSpec{
			NodeName:    pod.Spec.NodeName,
			HostNetwork: pod.Spec.HostNetwork,
			Containers:  trimContainers(pod.Spec.Containers, false),
		},
		Status: corev1.PodStatus{
			Phase:  pod.Status.Phase,
			PodIP:  pod.Status.PodIP,
			PodIPs: pod.Status.PodIPs,
		},
	}
	// Sidecars are kept as init containers, so that the trimmed pod still
	// reads as what it is.
	out.Spec.InitContainers = trimContainers(pod.Spec.InitContainers, true)
	return out, nil
}

// trimContainers keeps the containers that declare ports, with their name
// and ports only. With sidecarsOnly, only init containers with restartPolicy
// Always count.
func trimContainers(cs []corev1.Container, sidecarsOnly bool) []corev1.Container {
	var out []corev1.Container
	for i := range cs {
		c := &cs[i]
		if len(c.Ports) == 0 {
			continue
		}
		if sidecarsOnly && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
			continue
		}
		t := corev1.Container{Name: c.Name, RestartPolicy: c.RestartPolicy, Ports: make([]corev1.ContainerPort, 0, len(c.Ports))}
		for _, p := range c.Ports {
			t.Ports = append(t.Ports, corev1.ContainerPort{Name: p.Name, Protocol: p.Protocol, ContainerPort: p.ContainerPort})
		}
		out = append(out, t)
	}
	return out
}

// TrimNamespace is the cache transform for Namespaces: name and labels.
func TrimNamespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &corev1.Namespace{TypeMeta: ns.TypeMeta, ObjectMeta: trimMeta(&ns.ObjectMeta)}, nil
}

// TrimNetworkPolicy is the cache transform for NetworkPolicies: the whole
// spec, without annotations and managedFields.
func TrimNetworkPolicy(obj any) (any, error) {
	np, ok := obj.(*networkingv1.NetworkPolicy)
	if !ok {
		return obj, nil
	}
	return &networkingv1.NetworkPolicy{TypeMeta: np.TypeMeta, ObjectMeta: trimMeta(&np.ObjectMeta), Spec: np.Spec}, nil
}

// TrimNode is the cache transform for the agent's own Node: labels,
// addresses and pod CIDRs. Status heartbeats and conditions go, so that they
// do not look like changes.
func TrimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{
		TypeMeta:   n.TypeMeta,
		ObjectMeta: trimMeta(&n.ObjectMeta),
		Spec:       corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
		Status:     corev1.NodeStatus{Addresses: n.Status.Addresses},
	}, nil
}

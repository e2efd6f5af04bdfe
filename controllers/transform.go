package controllers

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions configures the controller-runtime cache of the agent on
// nodeName, which holds the few objects of the cluster: Namespaces,
// NetworkPolicies and the agent's own Node (only that one is watched),
// each trimmed to what policy needs before it is stored. Pods, as many as
// the cluster is large, are in the PodStore instead.
func CacheOptions(nodeName string) cache.Options {
	return cache.Options{
		ByObject: map[client.Object]cache.ByObject{
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
		// A read of a type nobody watches (a Pod, by mistake) fails
		// instead of quietly starting an informer that caches every pod
		// of the cluster as a full object.
		ReaderFailOnMissingInformer: true,
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

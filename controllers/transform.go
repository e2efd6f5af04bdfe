package controllers

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/policy"
)

// CacheOptions configures the agent's controller-runtime cache, which holds the smaller kinds of the cluster: Namespaces,
// NetworkPolicies and Nodes (ClusterNetworkPolicy nodes peers select any
// node by its labels), each trimmed to what policy needs before it is
// stored. Pods, as many as the cluster is large, are in the PodStore
// instead; ClusterNetworkPolicies in a store of their own that runs only
// while their CRD is served (cnpWatcher). Every agent caches the same
// objects: before ClusterNetworkPolicy it watched only its own Node, by
// name.
func CacheOptions() cache.Options {
	return cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Namespace{}:           {Transform: TrimNamespace},
			&networkingv1.NetworkPolicy{}: {Transform: TrimNetworkPolicy},
			&corev1.Node{}:                {Transform: TrimNode},
		},
		// Anything watched later at least loses its managedFields.
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
// spec, without managedFields and annotations but the one that puts the
// policy in audit mode.
func TrimNetworkPolicy(obj any) (any, error) {
	np, ok := obj.(*networkingv1.NetworkPolicy)
	if !ok {
		return obj, nil
	}
	return &networkingv1.NetworkPolicy{TypeMeta: np.TypeMeta, ObjectMeta: trimPolicyMeta(&np.ObjectMeta), Spec: np.Spec}, nil
}

// trimPolicyMeta is trimMeta keeping policy.EnforcementAnnotation, which
// decides whether a policy enforces or audits.
func trimPolicyMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	out := trimMeta(m)
	if v, ok := m.Annotations[policy.EnforcementAnnotation]; ok {
		out.Annotations = map[string]string{policy.EnforcementAnnotation: v}
	}
	return out
}

// TrimNode is the cache transform for Nodes, every node of the cluster:
// name, labels, spec.podCIDR(s) (the unknown-local guard of the agent's own
// node) and status.addresses (and the resourceVersion the informer needs),
// nothing else. Kubelets rewrite their Node's status every few
// seconds (heartbeats, conditions, images); all of that goes, so that it
// neither costs memory at thousands of nodes nor looks like a change.
func TrimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{
		TypeMeta:   n.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, ResourceVersion: n.ResourceVersion, Labels: n.Labels},
		Spec:       corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
		Status:     corev1.NodeStatus{Addresses: n.Status.Addresses},
	}, nil
}

// TrimClusterNetworkPolicy is the transform of the ClusterNetworkPolicy
// store: the whole spec, without managedFields, status and annotations
// but the enforcement one, which puts the policy in audit mode
// (conditions other controllers write must not look like changes). The
// type is set, so that Events can name the object without a scheme.
func TrimClusterNetworkPolicy(obj any) (any, error) {
	p, ok := obj.(*policyv1beta1.ClusterNetworkPolicy)
	if !ok {
		return obj, nil
	}
	return &policyv1beta1.ClusterNetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: policyv1beta1.GroupVersion.String(), Kind: cnpKind},
		ObjectMeta: trimPolicyMeta(&p.ObjectMeta),
		Spec:       p.Spec,
	}, nil
}

// TrimCRD is the transform of the one CustomResourceDefinition the agent
// watches: whether it is being deleted, which versions it serves and its
// conditions. The schema (over 100 kB for ClusterNetworkPolicy) goes.
func TrimCRD(obj any) (any, error) {
	crd, ok := obj.(*apiextensionsv1.CustomResourceDefinition)
	if !ok {
		return obj, nil
	}
	versions := make([]apiextensionsv1.CustomResourceDefinitionVersion, 0, len(crd.Spec.Versions))
	for _, v := range crd.Spec.Versions {
		versions = append(versions, apiextensionsv1.CustomResourceDefinitionVersion{Name: v.Name, Served: v.Served, Storage: v.Storage})
	}
	return &apiextensionsv1.CustomResourceDefinition{
		TypeMeta:   crd.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: crd.Name, UID: crd.UID, ResourceVersion: crd.ResourceVersion, DeletionTimestamp: crd.DeletionTimestamp},
		Spec:       apiextensionsv1.CustomResourceDefinitionSpec{Group: crd.Spec.Group, Names: crd.Spec.Names, Scope: crd.Spec.Scope, Versions: versions},
		Status:     apiextensionsv1.CustomResourceDefinitionStatus{Conditions: crd.Status.Conditions},
	}, nil
}

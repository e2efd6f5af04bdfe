package controllers

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/nftpolicy/nftpolicy/policy"
)

// podRecord is what the pod informer stores for one pod: what policy needs
// (the Reconciler hands &r.Pod to policy.NodeCompiler) and the resourceVersion,
// which the informer compares to tell a relist of an unchanged pod from an
// update. About 150 bytes, plus the pod's name and addresses; everything
// else is shared with other pods through the interner.
type podRecord struct {
	policy.Pod
	resourceVersion string
}

// newPodRecord extracts from p what policy needs, with strings, the labels
// map and the port list taken from in. Addresses come from status.podIPs
// (status.podIP when that is empty), unmapped, without zone, deduplicated,
// unparsable ones skipped. Ports come from the containers and the sidecar
// (restartPolicy Always) init containers, which serve for the pod's life.
func newPodRecord(p *corev1.Pod, in *interner) *podRecord {
	var scratch [8]policy.ContainerPort
	return &podRecord{
		Pod: policy.Pod{
			Namespace:   in.str(p.Namespace),
			Name:        strings.Clone(p.Name), // unique: not worth a table entry
			Labels:      in.labels(p.Labels),
			NodeName:    in.str(p.Spec.NodeName),
			HostNetwork: p.Spec.HostNetwork,
			Phase:       corev1.PodPhase(in.str(string(p.Status.Phase))),
			IPs:         podIPs(p),
			Ports:       in.ports(appendPorts(scratch[:0], p)),
		},
		resourceVersion: strings.Clone(p.ResourceVersion),
	}
}

// podIPs returns p's addresses (see newPodRecord), nil when it has none.
func podIPs(p *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	add := func(s string) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return
		}
		a = a.Unmap().WithZone("")
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, ip := range p.Status.PodIPs {
		add(ip.IP)
	}
	if len(p.Status.PodIPs) == 0 && p.Status.PodIP != "" {
		add(p.Status.PodIP)
	}
	return slices.Clip(out)
}

// appendPorts appends the ports p declares (see newPodRecord) to dst.
func appendPorts(dst []policy.ContainerPort, p *corev1.Pod) []policy.ContainerPort {
	add := func(cs []corev1.Container, sidecarsOnly bool) {
		for i := range cs {
			c := &cs[i]
			if sidecarsOnly && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
				continue
			}
			for _, cp := range c.Ports {
				dst = append(dst, policy.ContainerPort{Name: cp.Name, Protocol: cp.Protocol, Port: cp.ContainerPort})
			}
		}
	}
	add(p.Spec.Containers, false)
	add(p.Spec.InitContainers, true)
	return dst
}

// podKeyOf returns the name of a pod informer object: a record, or the
// tombstone of one (a delete the informer only saw by relisting).
func podKeyOf(obj any) (types.NamespacedName, bool) {
	switch o := obj.(type) {
	case *podRecord:
		return types.NamespacedName{Namespace: o.Namespace, Name: o.Name}, true
	case toolscache.DeletedFinalStateUnknown:
		ns, name, err := toolscache.SplitMetaNamespaceKey(o.Key)
		if err != nil || name == "" {
			return types.NamespacedName{}, false
		}
		return types.NamespacedName{Namespace: ns, Name: name}, true
	}
	return types.NamespacedName{}, false
}

// podChanged reports whether two records differ in anything policy sees.
// An update of a field the transform drops (a pod condition, an
// annotation) is no change.
func podChanged(old, new *podRecord) bool {
	a, b := &old.Pod, &new.Pod
	return a.Namespace != b.Namespace || a.Name != b.Name || a.NodeName != b.NodeName ||
		a.HostNetwork != b.HostNetwork || a.Phase != b.Phase ||
		!slices.Equal(a.IPs, b.IPs) || !slices.Equal(a.Ports, b.Ports) || !maps.Equal(a.Labels, b.Labels)
}

// GetObjectMeta makes a record a metav1.ObjectMetaAccessor: client-go's key
// function (namespace/name) and informer (resourceVersion) read stored
// objects through meta.Accessor. The conversion allocates nothing.
func (r *podRecord) GetObjectMeta() metav1.Object { return (*recordMeta)(r) }

// recordMeta is a podRecord seen as a metav1.Object. The getters answer
// from the record (namespace, name, resourceVersion, labels); the other
// fields read as zero. Records are shared with policy.NodeCompiler and must
// never change, so the setters panic; client-go calls none on stored
// objects.
type recordMeta podRecord

var _ metav1.Object = (*recordMeta)(nil)

func (m *recordMeta) GetNamespace() string                          { return m.Namespace }
func (m *recordMeta) GetName() string                               { return m.Name }
func (m *recordMeta) GetResourceVersion() string                    { return m.resourceVersion }
func (m *recordMeta) GetLabels() map[string]string                  { return m.Labels }
func (m *recordMeta) GetGenerateName() string                       { return "" }
func (m *recordMeta) GetUID() types.UID                             { return "" }
func (m *recordMeta) GetGeneration() int64                          { return 0 }
func (m *recordMeta) GetSelfLink() string                           { return "" }
func (m *recordMeta) GetCreationTimestamp() metav1.Time             { return metav1.Time{} }
func (m *recordMeta) GetDeletionTimestamp() *metav1.Time            { return nil }
func (m *recordMeta) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (m *recordMeta) GetAnnotations() map[string]string             { return nil }
func (m *recordMeta) GetFinalizers() []string                       { return nil }
func (m *recordMeta) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (m *recordMeta) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }

func (m *recordMeta) SetNamespace(string)                          { readOnly("Namespace") }
func (m *recordMeta) SetName(string)                               { readOnly("Name") }
func (m *recordMeta) SetGenerateName(string)                       { readOnly("GenerateName") }
func (m *recordMeta) SetUID(types.UID)                             { readOnly("UID") }
func (m *recordMeta) SetResourceVersion(string)                    { readOnly("ResourceVersion") }
func (m *recordMeta) SetGeneration(int64)                          { readOnly("Generation") }
func (m *recordMeta) SetSelfLink(string)                           { readOnly("SelfLink") }
func (m *recordMeta) SetCreationTimestamp(metav1.Time)             { readOnly("CreationTimestamp") }
func (m *recordMeta) SetDeletionTimestamp(*metav1.Time)            { readOnly("DeletionTimestamp") }
func (m *recordMeta) SetDeletionGracePeriodSeconds(*int64)         { readOnly("DeletionGracePeriodSeconds") }
func (m *recordMeta) SetLabels(map[string]string)                  { readOnly("Labels") }
func (m *recordMeta) SetAnnotations(map[string]string)             { readOnly("Annotations") }
func (m *recordMeta) SetFinalizers([]string)                       { readOnly("Finalizers") }
func (m *recordMeta) SetOwnerReferences([]metav1.OwnerReference)   { readOnly("OwnerReferences") }
func (m *recordMeta) SetManagedFields([]metav1.ManagedFieldsEntry) { readOnly("ManagedFields") }

func readOnly(field string) {
	panic("controllers: pod records are read-only (Set" + field + ")")
}

// PolicyPod is what policy sees of p, exactly as the agent's pod store
// records it: for tools that compile or evaluate the API state outside the
// agent (the e2e stress run compares each node's table with it).
func PolicyPod(p *corev1.Pod) policy.Pod { return newPodRecord(p, newInterner()).Pod }

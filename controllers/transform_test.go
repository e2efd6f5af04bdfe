package controllers

// IP plan: pods 10.0.1.0/24 and fd00:1::/64 (node-a); nothing is routed,
// the addresses only have to parse.

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/policy"
)

// addrCmp compares netip.Addr values (unexported fields).
var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func fullPod() *corev1.Pod {
	now := metav1.Now()
	always := corev1.ContainerRestartPolicyAlways
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "shop", UID: "u1", ResourceVersion: "42", Generation: 3,
			Labels:            map[string]string{"app": "web"},
			Annotations:       map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
			ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			OwnerReferences:   []metav1.OwnerReference{{Name: "rs"}},
			Finalizers:        []string{"x"},
			DeletionTimestamp: &now,
		},
		Spec: corev1.PodSpec{
			NodeName:    "node-a",
			HostNetwork: false,
			InitContainers: []corev1.Container{
				{Name: "init", Image: "busybox", Ports: []corev1.ContainerPort{{Name: "ignored", ContainerPort: 1}}},
				{Name: "proxy", Image: "envoy", RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 9901, Protocol: corev1.ProtocolTCP}}},
			},
			Containers: []corev1.Container{
				{
					Name: "app", Image: "nginx", Command: []string{"nginx"},
					Env:   []corev1.EnvVar{{Name: "A", Value: "b"}},
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP, HostPort: 80, HostIP: "1.2.3.4"}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}},
				},
				{Name: "noports", Image: "busybox"},
			},
			Volumes: []corev1.Volume{{Name: "v"}},
		},
		Status: corev1.PodStatus{
			Phase:             corev1.PodRunning,
			PodIP:             "10.0.1.5",
			PodIPs:            []corev1.PodIP{{IP: "10.0.1.5"}, {IP: "fd00:1::5"}},
			HostIP:            "192.168.0.1",
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true}},
		},
	}
}

func TestTransforms_PassThroughTombstones(t *testing.T) {
	tomb := cache.DeletedFinalStateUnknown{Key: "shop/web", Obj: fullPod()}
	for _, tc := range []struct {
		name string
		fn   cache.TransformFunc
	}{
		{"pod", NewPodStore(nil).transform}, {"namespace", TrimNamespace}, {"networkpolicy", TrimNetworkPolicy}, {"node", TrimNode},
		{"clusternetworkpolicy", TrimClusterNetworkPolicy}, {"crd", TrimCRD},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.fn(tomb)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := got.(cache.DeletedFinalStateUnknown); !ok {
				t.Errorf("got %T, want the tombstone unchanged", got)
			}
		})
	}
}

func TestTrimOthers(t *testing.T) {
	meta := metav1.ObjectMeta{
		Name: "x", Namespace: "shop", ResourceVersion: "7", Labels: map[string]string{"a": "b"},
		Annotations: map[string]string{"big": "yes"}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}},
	}
	trimmedMeta := metav1.ObjectMeta{Name: "x", Namespace: "shop", ResourceVersion: "7", Labels: map[string]string{"a": "b"}}
	tcp := corev1.ProtocolTCP
	spec := networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr.To(intstr.FromString("http"))}}}},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
	}
	cnpSpec := policyv1beta1.ClusterNetworkPolicySpec{
		Tier: policyv1beta1.AdminTier, Priority: 10,
		Subject: policyv1beta1.ClusterNetworkPolicySubject{Namespaces: &metav1.LabelSelector{}},
		Egress: []policyv1beta1.ClusterNetworkPolicyEgressRule{{
			Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
			To:     []policyv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []policyv1beta1.CIDR{"0.0.0.0/0"}}},
		}},
	}
	tests := []struct {
		name string
		fn   cache.TransformFunc
		in   any
		want any
	}{
		{
			name: "namespace",
			fn:   TrimNamespace,
			in:   &corev1.Namespace{ObjectMeta: meta, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}},
			want: &corev1.Namespace{ObjectMeta: trimmedMeta},
		},
		{
			name: "networkpolicy",
			fn:   TrimNetworkPolicy,
			in:   &networkingv1.NetworkPolicy{ObjectMeta: meta, Spec: spec},
			want: &networkingv1.NetworkPolicy{ObjectMeta: trimmedMeta, Spec: spec},
		},
		{
			name: "networkpolicy in audit mode: the enforcement annotation stays",
			fn:   TrimNetworkPolicy,
			in: &networkingv1.NetworkPolicy{ObjectMeta: func() metav1.ObjectMeta {
				m := *meta.DeepCopy()
				m.Annotations[policy.EnforcementAnnotation] = policy.EnforcementAudit
				return m
			}(), Spec: spec},
			want: &networkingv1.NetworkPolicy{ObjectMeta: func() metav1.ObjectMeta {
				m := *trimmedMeta.DeepCopy()
				m.Annotations = map[string]string{policy.EnforcementAnnotation: policy.EnforcementAudit}
				return m
			}(), Spec: spec},
		},
		{
			name: "node: name, labels, addresses",
			fn:   TrimNode,
			in: &corev1.Node{
				ObjectMeta: func() metav1.ObjectMeta {
					m := *meta.DeepCopy()
					m.Namespace, m.UID = "", "u1"
					m.DeletionTimestamp = &metav1.Time{}
					return m
				}(),
				Spec: corev1.NodeSpec{PodCIDR: "10.0.1.0/24", ProviderID: "p", Taints: []corev1.Taint{{Key: "k"}}},
				Status: corev1.NodeStatus{
					Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.1"}},
					Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady}},
					Images:     []corev1.ContainerImage{{Names: []string{"i"}}},
				},
			},
			want: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "x", ResourceVersion: "7", Labels: map[string]string{"a": "b"}}, Spec: corev1.NodeSpec{PodCIDR: "10.0.1.0/24"}, Status: corev1.NodeStatus{
				Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.1"}},
			}},
		},
		{
			name: "clusternetworkpolicy: spec, typed, no status",
			fn:   TrimClusterNetworkPolicy,
			in: &policyv1beta1.ClusterNetworkPolicy{
				ObjectMeta: func() metav1.ObjectMeta { m := *meta.DeepCopy(); m.Namespace = ""; return m }(),
				Spec:       cnpSpec,
				Status:     policyv1beta1.ClusterNetworkPolicyStatus{Conditions: []metav1.Condition{{Type: "Accepted"}}},
			},
			want: &policyv1beta1.ClusterNetworkPolicy{
				TypeMeta:   metav1.TypeMeta{APIVersion: "policy.networking.k8s.io/v1beta1", Kind: "ClusterNetworkPolicy"},
				ObjectMeta: metav1.ObjectMeta{Name: "x", ResourceVersion: "7", Labels: map[string]string{"a": "b"}},
				Spec:       cnpSpec,
			},
		},
		{
			name: "crd: versions served, conditions; no schema",
			fn:   TrimCRD,
			in: &apiextensionsv1.CustomResourceDefinition{
				ObjectMeta: metav1.ObjectMeta{Name: CNPCRDName, ResourceVersion: "9", Annotations: map[string]string{"big": "yes"}},
				Spec: apiextensionsv1.CustomResourceDefinitionSpec{
					Group: "policy.networking.k8s.io", Scope: apiextensionsv1.ClusterScoped,
					Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "clusternetworkpolicies", Kind: "ClusterNetworkPolicy"},
					Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
						Name: "v1beta1", Served: true, Storage: true,
						Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object"}},
					}},
				},
				Status: apiextensionsv1.CustomResourceDefinitionStatus{
					Conditions:     []apiextensionsv1.CustomResourceDefinitionCondition{{Type: apiextensionsv1.Established, Status: apiextensionsv1.ConditionTrue}},
					StoredVersions: []string{"v1beta1"},
				},
			},
			want: &apiextensionsv1.CustomResourceDefinition{
				ObjectMeta: metav1.ObjectMeta{Name: CNPCRDName, ResourceVersion: "9"},
				Spec: apiextensionsv1.CustomResourceDefinitionSpec{
					Group: "policy.networking.k8s.io", Scope: apiextensionsv1.ClusterScoped,
					Names:    apiextensionsv1.CustomResourceDefinitionNames{Plural: "clusternetworkpolicies", Kind: "ClusterNetworkPolicy"},
					Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1beta1", Served: true, Storage: true}},
				},
				Status: apiextensionsv1.CustomResourceDefinitionStatus{
					Conditions: []apiextensionsv1.CustomResourceDefinitionCondition{{Type: apiextensionsv1.Established, Status: apiextensionsv1.ConditionTrue}},
				},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.fn(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("transform (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChanged(t *testing.T) {
	base, _ := TrimNetworkPolicy(&networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "np", Labels: map[string]string{"a": "b"}},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	})
	np := base.(*networkingv1.NetworkPolicy)
	withRV := func(rv string, mut func(*networkingv1.NetworkPolicy)) *networkingv1.NetworkPolicy {
		p := np.DeepCopy()
		p.ResourceVersion = rv
		if mut != nil {
			mut(p)
		}
		return p
	}
	tests := []struct {
		name     string
		old, new *networkingv1.NetworkPolicy
		want     bool
	}{
		{name: "informer resync", old: withRV("1", nil), new: withRV("1", nil), want: false},
		{name: "only resourceVersion", old: withRV("1", nil), new: withRV("2", nil), want: false},
		{name: "only generation", old: withRV("1", nil), new: withRV("2", func(p *networkingv1.NetworkPolicy) { p.Generation = 7 }), want: false},
		{name: "label", old: withRV("1", nil), new: withRV("2", func(p *networkingv1.NetworkPolicy) { p.Labels = map[string]string{"a": "c"} }), want: true},
		{name: "spec", old: withRV("1", nil), new: withRV("2", func(p *networkingv1.NetworkPolicy) { p.Spec.PodSelector = metav1.LabelSelector{} }), want: true},
		{name: "no old object", old: nil, new: withRV("2", nil), want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var old client.Object
			if tc.old != nil {
				old = tc.old
			}
			if got := changed(old, tc.new); got != tc.want {
				t.Errorf("changed = %v, want %v", got, tc.want)
			}
		})
	}
}

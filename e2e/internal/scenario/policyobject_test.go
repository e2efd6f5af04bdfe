package scenario

import (
	"net/netip"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestPolicyObject_DecodesByKind(t *testing.T) {
	for _, tc := range []struct {
		name, in    string
		wantKind    string
		wantVersion string
		wantErr     string
	}{
		{name: "NetworkPolicy", in: "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x, name: p}\nspec: {podSelector: {}}",
			wantKind: KindNetworkPolicy, wantVersion: NetworkingV1APIVersion},
		{name: "v1beta1 ClusterNetworkPolicy", in: "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: c}\nspec: {tier: Admin, priority: 3, subject: {namespaces: {}}}",
			wantKind: KindClusterNetworkPolicy, wantVersion: "policy.networking.k8s.io/v1beta1"},
		{name: "v1alpha2 is the same schema", in: "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: c}\nspec: {tier: Baseline, priority: 3, subject: {namespaces: {}}}",
			wantKind: KindClusterNetworkPolicy, wantVersion: "policy.networking.k8s.io/v1alpha2"},
		{name: "unknown field in a ClusterNetworkPolicy", in: "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: c}\nspec: {tier: Admin, priorty: 3}",
			wantErr: "priorty"},
		{name: "a cluster-scoped object has no namespace", in: "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: c, namespace: x}\nspec: {tier: Admin}",
			wantErr: "cluster-scoped"},
		{name: "unknown kind", in: "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: c}",
			wantErr: "AdminNetworkPolicy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o PolicyObject
			err := yaml.UnmarshalStrict([]byte(tc.in), &o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Kind() != tc.wantKind || o.APIVersion != tc.wantVersion {
				t.Errorf("decoded %s %s, want %s %s", o.APIVersion, o.Kind(), tc.wantVersion, tc.wantKind)
			}
		})
	}
}

func TestPolicyObject_ResolvesNetworks(t *testing.T) {
	in := "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: c}\n" +
		"spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{networks: ['${podHostCIDR:y/b}', '${podNet:y/b:16}', '0.0.0.0/0']}]}]}"
	var o PolicyObject
	if err := yaml.UnmarshalStrict([]byte(in), &o); err != nil {
		t.Fatal(err)
	}
	ipOf := func(k string) (netip.Addr, bool) { return netip.MustParseAddr("10.244.2.11"), k == "y/b" }
	c := o.DeepCopy()
	if err := c.Resolve(ipOf); err != nil {
		t.Fatal(err)
	}
	got := c.ClusterNetworkPolicy.Spec.Egress[0].To[0].Networks
	want := []string{"10.244.2.11/32", "10.244.0.0/16", "0.0.0.0/0"}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("networks[%d] = %s, want %s", i, got[i], want[i])
		}
	}
	if o.ClusterNetworkPolicy.Spec.Egress[0].To[0].Networks[0] != "${podHostCIDR:y/b}" {
		t.Error("Resolve on a copy changed the original")
	}
}

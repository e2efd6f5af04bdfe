package scenario

import (
	"net/netip"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"
)

func decode(t *testing.T, in string) *PolicyObject {
	t.Helper()
	var o PolicyObject
	if err := yaml.UnmarshalStrict([]byte(in), &o); err != nil {
		t.Fatal(err)
	}
	return &o
}

// dualOf gives y/b an IPv4 and an IPv6 address, as in a dual-stack cluster.
func dualOf(k string) ([]netip.Addr, bool) {
	return []netip.Addr{netip.MustParseAddr("10.244.2.11"), netip.MustParseAddr("fd00:10:244:2::11")}, k == "y/b"
}

func TestResolveFamilies_NetworkPolicyPeerPerFamily(t *testing.T) {
	o := decode(t, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x, name: p}\n"+
		"spec: {podSelector: {}, egress: [{to: [{podSelector: {}}, {ipBlock: {cidr: '${podNet:y/b:16}', except: ['${podHostCIDR:y/b}']}}]}]}")
	if err := o.ResolveFamilies(dualOf); err != nil {
		t.Fatal(err)
	}
	to := o.NetworkPolicy.Spec.Egress[0].To
	if len(to) != 3 || to[0].PodSelector == nil {
		t.Fatalf("peers %+v: want the podSelector peer and one ipBlock peer per family", to)
	}
	got := [][]string{{to[1].IPBlock.CIDR, to[1].IPBlock.Except[0]}, {to[2].IPBlock.CIDR, to[2].IPBlock.Except[0]}}
	want := [][]string{{"10.244.0.0/16", "10.244.2.11/32"}, {"fd00:10:244::/48", "fd00:10:244:2::11/128"}}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("family %d: cidr, except = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestResolveFamilies_NetworksEntryPerFamily(t *testing.T) {
	o := decode(t, "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: c}\n"+
		"spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{networks: ['${podHostCIDR:y/b}', '0.0.0.0/0', '::/0']}]}]}")
	if err := o.ResolveFamilies(dualOf); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range o.ClusterNetworkPolicy.Spec.Egress[0].To[0].Networks {
		got = append(got, string(n))
	}
	if want := []string{"10.244.2.11/32", "fd00:10:244:2::11/128", "0.0.0.0/0", "::/0"}; !slices.Equal(got, want) {
		t.Errorf("networks = %v, want %v", got, want)
	}
}

func TestIPv4OnlyCIDRs(t *testing.T) {
	step := func(o *PolicyObject) *Scenario {
		return &Scenario{Steps: []Step{{Actions: []Action{{CreatePolicy: o}}}}}
	}
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"placeholders are family-neutral", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x, name: p}\n" +
			"spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: '${podNet:y/b:16}'}}]}]}", nil},
		{"a literal IPv4 CIDR ties the file to IPv4", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x, name: p}\n" +
			"spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.1.0/24]}}]}]}", []string{"10.244.0.0/16", "10.244.1.0/24"}},
		{"everything in both families is neutral", "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: c}\n" +
			"spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{networks: ['0.0.0.0/0', '::/0']}]}]}", nil},
		{"0.0.0.0/0 alone is IPv4 only", "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: c}\n" +
			"spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{networks: ['0.0.0.0/0']}]}]}", []string{"0.0.0.0/0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := step(decode(t, tc.in)).IPv4OnlyCIDRs(); !slices.Equal(got, tc.want) {
				t.Errorf("IPv4OnlyCIDRs = %v, want %v", got, tc.want)
			}
		})
	}
}

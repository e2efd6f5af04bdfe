package scenario

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// The policy kinds a scenario may create, update and delete.
const (
	KindNetworkPolicy        = "NetworkPolicy"
	KindClusterNetworkPolicy = "ClusterNetworkPolicy"

	NetworkingV1APIVersion = "networking.k8s.io/v1"
	// ClusterNetworkPolicyGroup serves ClusterNetworkPolicy as v1beta1
	// (storage) and v1alpha2 (the same schema).
	ClusterNetworkPolicyGroup = "policy.networking.k8s.io"
)

// clusterNetworkPolicyVersions are the versions of ClusterNetworkPolicy a
// scenario may name; both decode into the v1beta1 Go types.
var clusterNetworkPolicyVersions = map[string]bool{
	ClusterNetworkPolicyGroup + "/v1beta1":  true,
	ClusterNetworkPolicyGroup + "/v1alpha2": true,
}

// PolicyObject is the object of a createPolicy or updatePolicy action: a
// NetworkPolicy, or a cluster-scoped ClusterNetworkPolicy (scenario-format
// § Cluster-scoped policies). Exactly one field is set. It decodes strictly
// by apiVersion and kind (a missing apiVersion/kind means NetworkPolicy)
// and encodes back to the object it was read from.
type PolicyObject struct {
	NetworkPolicy        *networkingv1.NetworkPolicy
	ClusterNetworkPolicy *policyv1beta1.ClusterNetworkPolicy
	// APIVersion is the version the file names; the runner talks to the
	// API server in that version.
	APIVersion string
}

// UnmarshalJSON decodes by apiVersion and kind, rejecting unknown fields.
func (o *PolicyObject) UnmarshalJSON(b []byte) error {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(b, &tm); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	switch {
	case tm.Kind == "" && tm.APIVersion == "", tm.Kind == KindNetworkPolicy && tm.APIVersion == NetworkingV1APIVersion:
		o.NetworkPolicy, o.APIVersion = &networkingv1.NetworkPolicy{}, NetworkingV1APIVersion
		return dec.Decode(o.NetworkPolicy)
	case tm.Kind == KindClusterNetworkPolicy && clusterNetworkPolicyVersions[tm.APIVersion]:
		o.ClusterNetworkPolicy, o.APIVersion = &policyv1beta1.ClusterNetworkPolicy{}, tm.APIVersion
		if err := dec.Decode(o.ClusterNetworkPolicy); err != nil {
			return err
		}
		if o.ClusterNetworkPolicy.Namespace != "" {
			return fmt.Errorf("ClusterNetworkPolicy %s is cluster-scoped: metadata.namespace must be empty", o.ClusterNetworkPolicy.Name)
		}
		return nil
	}
	return fmt.Errorf("policy object of apiVersion %q kind %q: want %s NetworkPolicy or %s/v1beta1 (or v1alpha2) ClusterNetworkPolicy",
		tm.APIVersion, tm.Kind, NetworkingV1APIVersion, ClusterNetworkPolicyGroup)
}

// MarshalJSON encodes the object that is set.
func (o PolicyObject) MarshalJSON() ([]byte, error) {
	if o.ClusterNetworkPolicy != nil {
		return json.Marshal(o.ClusterNetworkPolicy)
	}
	return json.Marshal(o.NetworkPolicy)
}

// Kind is NetworkPolicy or ClusterNetworkPolicy.
func (o *PolicyObject) Kind() string {
	if o.ClusterNetworkPolicy != nil {
		return KindClusterNetworkPolicy
	}
	return KindNetworkPolicy
}

// Name is namespace/name for a NetworkPolicy, the name for a
// ClusterNetworkPolicy.
func (o *PolicyObject) Name() string {
	if o.ClusterNetworkPolicy != nil {
		return o.ClusterNetworkPolicy.Name
	}
	return o.NetworkPolicy.Namespace + "/" + o.NetworkPolicy.Name
}

// DeepCopy copies the object.
func (o *PolicyObject) DeepCopy() *PolicyObject {
	c := &PolicyObject{APIVersion: o.APIVersion}
	if o.NetworkPolicy != nil {
		c.NetworkPolicy = o.NetworkPolicy.DeepCopy()
	}
	if o.ClusterNetworkPolicy != nil {
		c.ClusterNetworkPolicy = o.ClusterNetworkPolicy.DeepCopy()
	}
	return c
}

// NetworkPolicyObject wraps a NetworkPolicy.
func NetworkPolicyObject(np *networkingv1.NetworkPolicy) *PolicyObject {
	return &PolicyObject{NetworkPolicy: np, APIVersion: NetworkingV1APIVersion}
}

// Resolve replaces the placeholders of the object in place: in every
// ipBlock of a NetworkPolicy, in every networks entry of a
// ClusterNetworkPolicy's egress peers.
func (o *PolicyObject) Resolve(ipOf func(string) (netip.Addr, bool)) error {
	if o.NetworkPolicy != nil {
		return ResolvePolicy(o.NetworkPolicy, ipOf)
	}
	var errs []error
	for i := range o.ClusterNetworkPolicy.Spec.Egress {
		for j := range o.ClusterNetworkPolicy.Spec.Egress[i].To {
			nets := o.ClusterNetworkPolicy.Spec.Egress[i].To[j].Networks
			for k := range nets {
				v, err := Resolve(string(nets[k]), ipOf)
				errs = append(errs, err)
				if pfx, perr := netip.ParsePrefix(v); err == nil && perr == nil {
					v = pfx.Masked().String() // ${podNet:…} yields the masked network
				}
				nets[k] = policyv1beta1.CIDR(v)
			}
		}
	}
	return errors.Join(errs...)
}

// PolicyRef names the object of a deletePolicy action. APIVersion and Kind
// default to NetworkPolicy; a ClusterNetworkPolicy has no namespace.
type PolicyRef struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

// IsCluster reports whether ref names a ClusterNetworkPolicy.
func (r PolicyRef) IsCluster() bool { return r.Kind == KindClusterNetworkPolicy }

func (r PolicyRef) validate() error {
	switch r.Kind {
	case "", KindNetworkPolicy:
		if r.APIVersion != "" && r.APIVersion != NetworkingV1APIVersion {
			return fmt.Errorf("deletePolicy: NetworkPolicy apiVersion %q", r.APIVersion)
		}
		if r.Namespace == "" {
			return fmt.Errorf("deletePolicy %s: a NetworkPolicy needs a namespace", r.Name)
		}
	case KindClusterNetworkPolicy:
		if r.APIVersion != "" && !clusterNetworkPolicyVersions[r.APIVersion] {
			return fmt.Errorf("deletePolicy: ClusterNetworkPolicy apiVersion %q", r.APIVersion)
		}
		if r.Namespace != "" {
			return fmt.Errorf("deletePolicy %s: a ClusterNetworkPolicy has no namespace", r.Name)
		}
	default:
		return fmt.Errorf("deletePolicy: kind %q", r.Kind)
	}
	return nil
}

// ResolveFamilies resolves the placeholders of the object in place in
// every family the cluster probes: ipsOf gives a pod's addresses, one per
// family in a fixed order. A NetworkPolicy peer whose ipBlock holds a
// placeholder becomes one peer per family (its except entries resolved in
// that family); a ClusterNetworkPolicy networks entry with a placeholder
// becomes one entry per family. Peers and entries without placeholders
// stay as written. With one family this is Resolve.
func (o *PolicyObject) ResolveFamilies(ipsOf func(string) ([]netip.Addr, bool)) error {
	nth := func(i int) func(string) (netip.Addr, bool) {
		return func(key string) (netip.Addr, bool) {
			ips, ok := ipsOf(key)
			if !ok || i >= len(ips) {
				return netip.Addr{}, false
			}
			return ips[i], true
		}
	}
	// How many families the pods have: probe any placeholder's pod.
	count := func(s string) int {
		for _, m := range placeholder.FindAllStringSubmatch(s, -1) {
			if ips, ok := ipsOf(m[2]); ok {
				return len(ips)
			}
		}
		return 1
	}
	var errs []error
	if np := o.NetworkPolicy; np != nil {
		expand := func(peers []networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer {
			var out []networkingv1.NetworkPolicyPeer
			for _, p := range peers {
				if p.IPBlock == nil || !hasPlaceholder(p.IPBlock) {
					out = append(out, p)
					continue
				}
				for i := range count(p.IPBlock.CIDR) {
					q := *p.DeepCopy()
					one := &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
						Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{q}}}}}
					errs = append(errs, ResolvePolicy(one, nth(i)))
					out = append(out, one.Spec.Ingress[0].From[0])
				}
			}
			return out
		}
		for i := range np.Spec.Ingress {
			np.Spec.Ingress[i].From = expand(np.Spec.Ingress[i].From)
		}
		for i := range np.Spec.Egress {
			np.Spec.Egress[i].To = expand(np.Spec.Egress[i].To)
		}
		return errors.Join(errs...)
	}
	for i := range o.ClusterNetworkPolicy.Spec.Egress {
		for j := range o.ClusterNetworkPolicy.Spec.Egress[i].To {
			peer := &o.ClusterNetworkPolicy.Spec.Egress[i].To[j]
			var nets []policyv1beta1.CIDR
			for _, n := range peer.Networks {
				if !placeholder.MatchString(string(n)) {
					nets = append(nets, n)
					continue
				}
				for f := range count(string(n)) {
					v, err := Resolve(string(n), nth(f))
					errs = append(errs, err)
					if pfx, perr := netip.ParsePrefix(v); err == nil && perr == nil {
						v = pfx.Masked().String() // ${podNet:…} yields the masked network
					}
					nets = append(nets, policyv1beta1.CIDR(v))
				}
			}
			if peer.Networks != nil {
				peer.Networks = nets
			}
		}
	}
	return errors.Join(errs...)
}

func hasPlaceholder(b *networkingv1.IPBlock) bool {
	if placeholder.MatchString(b.CIDR) {
		return true
	}
	for _, e := range b.Except {
		if placeholder.MatchString(e) {
			return true
		}
	}
	return false
}

// IPv4OnlyCIDRs lists the literal CIDRs of the scenario's policies that
// tie it to IPv4 (see e2e/README.md, "Families"): an IPv4 CIDR written
// as such, other than 0.0.0.0/0 beside ::/0 in the same list of peers.
// Such a scenario runs in IPv4 only.
func (s *Scenario) IPv4OnlyCIDRs() []string {
	var out []string
	check := func(cidrs []string) {
		all6 := false
		for _, c := range cidrs {
			all6 = all6 || c == "::/0"
		}
		for _, c := range cidrs {
			if placeholder.MatchString(c) {
				continue
			}
			pfx, err := netip.ParsePrefix(c)
			if err != nil || !pfx.Addr().Is4() || (c == "0.0.0.0/0" && all6) {
				continue
			}
			out = append(out, c)
		}
	}
	peerCIDRs := func(peers []networkingv1.NetworkPolicyPeer) []string {
		var cs []string
		for _, p := range peers {
			if p.IPBlock != nil {
				cs = append(cs, p.IPBlock.CIDR)
				cs = append(cs, p.IPBlock.Except...)
			}
		}
		return cs
	}
	for _, st := range s.Steps {
		for _, a := range st.Actions {
			for _, o := range []*PolicyObject{a.CreatePolicy, a.UpdatePolicy} {
				switch {
				case o == nil:
				case o.NetworkPolicy != nil:
					for _, r := range o.NetworkPolicy.Spec.Ingress {
						check(peerCIDRs(r.From))
					}
					for _, r := range o.NetworkPolicy.Spec.Egress {
						check(peerCIDRs(r.To))
					}
				case o.ClusterNetworkPolicy != nil:
					for _, r := range o.ClusterNetworkPolicy.Spec.Egress {
						for _, p := range r.To {
							var cs []string
							for _, n := range p.Networks {
								cs = append(cs, string(n))
							}
							check(cs)
						}
					}
				}
			}
		}
	}
	return out
}

package controllers

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/policy"
)

// handedObjects are the ClusterNetworkPolicies and Nodes that Reconcile
// has put into its NodeCompiler, by name.
type handedObjects struct {
	cnps  map[string]*policyv1beta1.ClusterNetworkPolicy
	nodes map[string]policy.Node
}

// setHanded replaces the record (a new NodeCompiler starts empty).
func (r *Reconciler) setHanded(h handedObjects) {
	if h.cnps == nil {
		h.cnps = map[string]*policyv1beta1.ClusterNetworkPolicy{}
	}
	if h.nodes == nil {
		h.nodes = map[string]policy.Node{}
	}
	r.handedMu.Lock()
	r.handed = h
	r.handedMu.Unlock()
}

func (r *Reconciler) setCNP(p *policyv1beta1.ClusterNetworkPolicy) {
	r.cluster.SetClusterNetworkPolicy(p)
	r.handedMu.Lock()
	r.handed.cnps[p.Name] = p
	r.handedMu.Unlock()
}

func (r *Reconciler) deleteCNP(name string) {
	r.cluster.DeleteClusterNetworkPolicy(name)
	r.handedMu.Lock()
	delete(r.handed.cnps, name)
	r.handedMu.Unlock()
}

func (r *Reconciler) setNode(n *corev1.Node) {
	pn := nodeOf(n)
	r.cluster.SetNode(pn)
	r.handedMu.Lock()
	r.handed.nodes[pn.Name] = pn
	r.handedMu.Unlock()
}

func (r *Reconciler) deleteNode(name string) {
	r.cluster.DeleteNode(name)
	r.handedMu.Lock()
	delete(r.handed.nodes, name)
	r.handedMu.Unlock()
}

// handedCNPs returns a copy of the ClusterNetworkPolicies in the NodeCompiler.
func (r *Reconciler) handedCNPs() map[string]*policyv1beta1.ClusterNetworkPolicy {
	r.handedMu.Lock()
	defer r.handedMu.Unlock()
	out := make(map[string]*policyv1beta1.ClusterNetworkPolicy, len(r.handed.cnps))
	for k, v := range r.handed.cnps {
		out[k] = v
	}
	return out
}

// handedNodes returns a copy of the Nodes in the NodeCompiler.
func (r *Reconciler) handedNodes() map[string]policy.Node {
	r.handedMu.Lock()
	defer r.handedMu.Unlock()
	out := make(map[string]policy.Node, len(r.handed.nodes))
	for k, v := range r.handed.nodes {
		out[k] = v
	}
	return out
}

// nodeOf is what policy needs of a Node: name, labels and the IPs among
// its InternalIP and ExternalIP addresses (sorted, without duplicates;
// host names and DNS names are not addresses a packet carries).
func nodeOf(n *corev1.Node) policy.Node {
	var addrs []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		addrs = append(addrs, ip.Unmap().WithZone(""))
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return policy.Node{Name: n.Name, Labels: n.Labels, Addresses: slices.Compact(addrs), PodCIDRs: podCIDRsOf(n)}
}

// podCIDRsOf returns the node's pod CIDRs (spec.podCIDRs, else
// spec.podCIDR), unparsable ones skipped.
func podCIDRsOf(n *corev1.Node) []netip.Prefix {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	var out []netip.Prefix
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// cnpsIn lists the ClusterNetworkPolicies of store (none for nil).
func cnpsIn(store toolscache.Store) []*policyv1beta1.ClusterNetworkPolicy {
	if store == nil {
		return nil
	}
	var out []*policyv1beta1.ClusterNetworkPolicy
	for _, o := range store.List() {
		if p, ok := o.(*policyv1beta1.ClusterNetworkPolicy); ok {
			out = append(out, p)
		}
	}
	return out
}

// cnpIn returns the ClusterNetworkPolicy name of store, or nil.
func cnpIn(store toolscache.Store, name string) *policyv1beta1.ClusterNetworkPolicy {
	if store == nil {
		return nil
	}
	o, ok, err := store.GetByKey(name)
	if err != nil || !ok {
		return nil
	}
	p, _ := o.(*policyv1beta1.ClusterNetworkPolicy)
	return p
}

// PolicyNode is what policy sees of n, exactly as the agent converts it:
// for tools that evaluate the API state outside the agent (nftpolicy
// explain).
func PolicyNode(n *corev1.Node) policy.Node { return nodeOf(n) }

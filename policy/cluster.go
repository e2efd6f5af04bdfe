package policy

import (
	"cmp"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftpolicy/nftpolicy/nft"
)

// Cluster is the agent's long-lived view of the cluster: it is updated one
// object at a time as watch events arrive (SetPod, DeletePod, ...), and
// Compile returns the node's ruleset for the current state.
//
// Objects handed to a Cluster are kept by pointer and must not be modified
// afterwards; to change an object, pass a new one. Rulesets returned by
// Compile must not be modified either: a later Compile may return the same
// sets and chains again for the parts of the node that did not change.
//
// A Cluster is not safe for concurrent use.
type Cluster struct {
	nodeName   string
	pods       map[podKey]*Pod
	namespaces map[string]map[string]string
	policies   map[podKey]*networkingv1.NetworkPolicy
}

// podKey is a namespace/name pair (of a pod or a policy).
type podKey struct{ namespace, name string }

// NewCluster returns an empty Cluster that compiles for nodeName.
func NewCluster(nodeName string) *Cluster {
	return &Cluster{
		nodeName:   nodeName,
		pods:       map[podKey]*Pod{},
		namespaces: map[string]map[string]string{},
		policies:   map[podKey]*networkingv1.NetworkPolicy{},
	}
}

// NodeName is the node the Cluster compiles for.
func (c *Cluster) NodeName() string { return c.nodeName }

// SetPod adds p or replaces the pod of the same namespace and name.
func (c *Cluster) SetPod(p *Pod) {
	c.pods[podKey{p.Namespace, p.Name}] = p
}

// DeletePod removes a pod; an unknown pod is ignored.
func (c *Cluster) DeletePod(namespace, name string) {
	delete(c.pods, podKey{namespace, name})
}

// SetNamespace adds ns or replaces the namespace of the same name.
func (c *Cluster) SetNamespace(ns Namespace) {
	c.namespaces[ns.Name] = ns.Labels
}

// DeleteNamespace removes a namespace (not its pods or policies, which
// are deleted by their own events).
func (c *Cluster) DeleteNamespace(name string) {
	delete(c.namespaces, name)
}

// SetPolicy adds np or replaces the policy of the same namespace and name.
func (c *Cluster) SetPolicy(np *networkingv1.NetworkPolicy) {
	c.policies[podKey{np.Namespace, np.Name}] = np
}

// DeletePolicy removes a policy; an unknown policy is ignored.
func (c *Cluster) DeletePolicy(namespace, name string) {
	delete(c.policies, podKey{namespace, name})
}

// Policy returns the policy of that namespace and name, or nil.
func (c *Cluster) Policy(namespace, name string) *networkingv1.NetworkPolicy {
	return c.policies[podKey{namespace, name}]
}

// Counts are the sizes of a Cluster.
type Counts struct {
	Pods, Namespaces, Policies int
	// LocalActivePods are the active pods on the Cluster's node.
	LocalActivePods int
}

// Counts returns how many objects the Cluster holds.
func (c *Cluster) Counts() Counts {
	n := Counts{Pods: len(c.pods), Namespaces: len(c.namespaces), Policies: len(c.policies)}
	for _, p := range c.pods {
		if p.NodeName == c.nodeName && p.Active() {
			n.LocalActivePods++
		}
	}
	return n
}

// Compile returns the node's ruleset and the warnings of the current state,
// exactly what Compile(c.Snapshot()) returns.
func (c *Cluster) Compile() (*nft.Ruleset, []Warning) {
	return Compile(c.Snapshot())
}

// Snapshot returns the current state as a Snapshot, sorted as the
// controllers build it. It shares labels maps and policies with c.
func (c *Cluster) Snapshot() *Snapshot {
	s := &Snapshot{
		NodeName:   c.nodeName,
		Namespaces: make([]Namespace, 0, len(c.namespaces)),
		Pods:       make([]Pod, 0, len(c.pods)),
		Policies:   make([]*networkingv1.NetworkPolicy, 0, len(c.policies)),
	}
	for name, l := range c.namespaces {
		s.Namespaces = append(s.Namespaces, Namespace{Name: name, Labels: l})
	}
	for _, p := range c.pods {
		s.Pods = append(s.Pods, *p)
	}
	for _, np := range c.policies {
		s.Policies = append(s.Policies, np)
	}
	slices.SortFunc(s.Namespaces, func(a, b Namespace) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(s.Pods, func(a, b Pod) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	slices.SortFunc(s.Policies, func(a, b *networkingv1.NetworkPolicy) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return s
}

// LoadSnapshot sets every object of snap into c (which keeps pointers into
// snap.Pods: snap must not be modified afterwards).
func (c *Cluster) LoadSnapshot(snap *Snapshot) {
	for _, ns := range snap.Namespaces {
		c.SetNamespace(ns)
	}
	for i := range snap.Pods {
		c.SetPod(&snap.Pods[i])
	}
	for _, np := range snap.Policies {
		if np != nil {
			c.SetPolicy(np)
		}
	}
}

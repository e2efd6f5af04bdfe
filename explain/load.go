// Package explain answers "why can A (not) reach B?" from the cluster's
// API state: it converts pods, namespaces, nodes, NetworkPolicies and
// ClusterNetworkPolicies exactly as the agent does, runs the reference
// semantics with a trace (policy.EvaluateWithTrace), and can check the
// answer against the tables the agents applied (nft.Trace over each
// node's /debug/ruleset). `nftpolicy explain` and the e2e runner both call
// it, so the runner's check on real probes covers the command's own code.
package explain

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/policy"
)

// NewClient returns a client for Load that knows ClusterNetworkPolicies.
func NewClient(rc *rest.Config) (client.Client, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := policyv1beta1.Install(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(rc, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("create API client: %w", err)
	}
	return c, nil
}

// State is the cluster as Load read it.
type State struct {
	Snapshot *policy.Snapshot
	// CNPCRD: the ClusterNetworkPolicy CRD is served (v1beta1), so the
	// snapshot holds every ClusterNetworkPolicy; without it there are none,
	// as for the agent.
	CNPCRD bool
}

// Load reads the whole API state that policy needs, converted the way the
// agent converts it (controllers.PolicyPod, controllers.PolicyNode).
func Load(ctx context.Context, c client.Reader) (*State, error) {
	snap := &policy.Snapshot{}
	var pods corev1.PodList
	if err := c.List(ctx, &pods); err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	for i := range pods.Items {
		snap.Pods = append(snap.Pods, controllers.PolicyPod(&pods.Items[i]))
	}
	var nss corev1.NamespaceList
	if err := c.List(ctx, &nss); err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	for _, n := range nss.Items {
		snap.Namespaces = append(snap.Namespaces, policy.Namespace{Name: n.Name, Labels: n.Labels})
	}
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	for i := range nodes.Items {
		snap.Nodes = append(snap.Nodes, controllers.PolicyNode(&nodes.Items[i]))
	}
	var nps networkingv1.NetworkPolicyList
	if err := c.List(ctx, &nps); err != nil {
		return nil, fmt.Errorf("list networkpolicies: %w", err)
	}
	for i := range nps.Items {
		snap.Policies = append(snap.Policies, &nps.Items[i])
	}
	st := &State{Snapshot: snap, CNPCRD: true}
	var cnps policyv1beta1.ClusterNetworkPolicyList
	switch err := c.List(ctx, &cnps); {
	case meta.IsNoMatchError(err):
		st.CNPCRD = false // not installed: the agents enforce none either
	case err != nil:
		return nil, fmt.Errorf("list clusternetworkpolicies: %w", err)
	}
	for i := range cnps.Items {
		snap.ClusterNetworkPolicies = append(snap.ClusterNetworkPolicies, &cnps.Items[i])
	}
	return st, nil
}

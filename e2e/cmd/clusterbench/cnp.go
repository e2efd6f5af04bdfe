package main

// ClusterNetworkPolicies in figures 1 and 2: the CRD, the datapath
// configuration whose measured traffic the last rule of the lowest-priority
// Admin policy decides (synth.LastRule), and figure 2's ClusterNetworkPolicy
// kinds.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	policyv1beta1client "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/typed/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/e2e/internal/runner"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

// cnpLabel is on every ClusterNetworkPolicy clusterbench creates: cleanup
// deletes by it.
var cnpLabel = map[string]string{"nftbench": "cluster"}

// cnpSelector selects cnpLabel.
const cnpSelector = "nftbench=cluster"

// Metric series of the agent about ClusterNetworkPolicies (metricsURL).
const (
	metricAdminCNPs    = `nftpolicy_cluster_network_policies{tier="admin"}`
	metricBaselineCNPs = `nftpolicy_cluster_network_policies{tier="baseline"}`
	metricCRDWatched   = "nftpolicy_cluster_network_policy_crd_watched"
	metricPolicies     = "nftpolicy_policies"
)

// lastRuleSpec is the datapath configuration's ClusterNetworkPolicies:
// perTier Admin and perTier Baseline policies of rules ingress and rules
// egress rules, over every pod of benchNS. The measured traffic (the
// clients, peer=last, to the server, app=server, on TCP benchPort) is
// decided in both directions by the last rule of the last Admin policy;
// the outsider is dropped by the last rule of the last Baseline policy.
func lastRuleSpec(perTier, rules int) synth.LastRule {
	return synth.LastRule{
		Namespace: benchNS, PerTier: perTier, Rules: rules, Port: benchPort,
		Clients: map[string]string{"peer": "last"}, Server: map[string]string{"app": "server"},
		LabelKey: "peer", Prefix: "bc", Labels: cnpLabel,
	}
}

// cnpClients are the clients clusterbench uses for ClusterNetworkPolicies:
// typed for its own objects, dynamic for the CRD's readiness check.
type cnpClients struct {
	typed   policyv1beta1client.ClusterNetworkPolicyInterface
	dynamic dynamic.Interface
}

func (e *env) newCNPClients() error {
	rc, err := clientcmd.BuildConfigFromFlags("", e.cfg.AdminKubeconfig())
	if err != nil {
		return err
	}
	rc.QPS, rc.Burst = 200, 400
	c, err := policyv1beta1client.NewForConfig(rc)
	if err != nil {
		return err
	}
	dc, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	e.cnp = &cnpClients{typed: c.ClusterNetworkPolicies(), dynamic: dc}
	return nil
}

// installCNPCRD installs the CRD as the scenario runner does, before any
// agent starts (so that every agent watches ClusterNetworkPolicies from its
// first sync), and refuses to run while any ClusterNetworkPolicy exists: it
// would change the verdicts of every configuration.
func (e *env) installCNPCRD(ctx context.Context, file string) error {
	if err := e.newCNPClients(); err != nil {
		return err
	}
	if err := runner.InstallCNPCRD(ctx, e.cfg, e.cnp.dynamic, file); err != nil {
		return err
	}
	l, err := e.cnp.typed.List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(l.Items) > 0 {
		var names []string
		for _, p := range l.Items {
			names = append(names, p.Name)
		}
		return fmt.Errorf("ClusterNetworkPolicies exist (%s): delete them, or make down && make up AGENT=none", strings.Join(names, ", "))
	}
	return nil
}

// createCNPs creates ps with a few workers.
func (e *env) createCNPs(ctx context.Context, ps []*policyv1beta1.ClusterNetworkPolicy) error {
	return parallel(ctx, ps, func(p *policyv1beta1.ClusterNetworkPolicy) error {
		_, err := e.cnp.typed.Create(ctx, p, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
}

// deleteCNPs deletes every ClusterNetworkPolicy clusterbench created.
func (e *env) deleteCNPs(ctx context.Context) error {
	if e.cnp == nil {
		return nil
	}
	return e.cnp.typed.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: cnpSelector})
}

// agentWant is what every agent's metrics must show: NetworkPolicies, and
// Admin and Baseline ClusterNetworkPolicies (their CRD watched when any).
func agentWant(policies, admin, baseline int) map[string]float64 {
	w := map[string]float64{metricPolicies: float64(policies), metricAdminCNPs: float64(admin), metricBaselineCNPs: float64(baseline)}
	if admin+baseline > 0 {
		w[metricCRDWatched] = 1
	}
	return w
}

// datapathCNPs is the datapath configuration with ClusterNetworkPolicies
// and no NetworkPolicy: created, synced by every agent, the outsider
// blocked, measured, then deleted again (the outsider connects), so that
// the NetworkPolicy configurations that follow run without them.
func (e *env) datapathCNPs(ctx context.Context, dp *Datapath, perTier, rules, reps int, d time.Duration) error {
	spec := lastRuleSpec(perTier, rules)
	if err := spec.Validate(); err != nil {
		return err
	}
	decider, index := spec.Deciding()
	dp.CNPDecidingRule = fmt.Sprintf("%s rule %d (ingress and egress)", decider, index)
	t := time.Now()
	if err := e.createCNPs(ctx, spec.Policies()); err != nil {
		return err
	}
	created := time.Since(t)
	m, err := e.waitAgents(ctx, agentWant(0, perTier, perTier), time.Now().Add(-time.Second), 5*time.Minute)
	if err != nil {
		return err
	}
	e.logf("%d+%d ClusterNetworkPolicies of %d rules per direction: created in %s, agents synced after %s; elements %v", perTier, perTier, rules,
		created.Round(time.Millisecond), time.Since(t).Round(time.Millisecond), m["nftpolicy_set_elements"])
	if err := e.checkEnforced(ctx, true); err != nil {
		return fmt.Errorf("with ClusterNetworkPolicies: %w", err)
	}
	c := Config{Name: fmt.Sprintf("%c: agent, %d+%d CNPs", 'a'+len(dp.Configs), perTier, perTier), Agent: true,
		ClusterNetworkPolicies: 2 * perTier, CNPRules: rules,
		SetElements: m["nftpolicy_set_elements"], Rules: m["nftpolicy_rules"], SetupSeconds: time.Since(t).Seconds()}
	if err := e.measure(ctx, &c, reps, d); err != nil {
		return err
	}
	dp.Configs = append(dp.Configs, c)
	if err := e.deleteCNPs(ctx); err != nil {
		return err
	}
	if _, err := e.waitAgents(ctx, agentWant(0, 0, 0), time.Now().Add(-time.Second), 2*time.Minute); err != nil {
		return fmt.Errorf("after deleting the ClusterNetworkPolicies: %w", err)
	}
	if err := e.checkEnforced(ctx, false); err != nil {
		return fmt.Errorf("after deleting the ClusterNetworkPolicies: %w", err)
	}
	return nil
}

// denyClientCNP is figure 2's ClusterNetworkPolicy: in the Admin tier, the
// server denies the clients (pods labelled peer=<peer>) on TCP benchPort,
// ahead of the NetworkPolicy allow-last that admits them.
func denyClientCNP(peer string) *policyv1beta1.ClusterNetworkPolicy {
	ns := metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": benchNS}}
	return &policyv1beta1.ClusterNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: denyClientName, Labels: cnpLabel},
		Spec: policyv1beta1.ClusterNetworkPolicySpec{
			Tier: policyv1beta1.AdminTier, Priority: 10,
			Subject: policyv1beta1.ClusterNetworkPolicySubject{Pods: &policyv1beta1.NamespacedPod{
				NamespaceSelector: ns, PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}}}},
			Ingress: []policyv1beta1.ClusterNetworkPolicyIngressRule{{
				Action: policyv1beta1.ClusterNetworkPolicyRuleActionDeny,
				From: []policyv1beta1.ClusterNetworkPolicyIngressPeer{{Pods: &policyv1beta1.NamespacedPod{
					NamespaceSelector: ns, PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"peer": peer}}}}},
				Protocols: []policyv1beta1.ClusterNetworkPolicyProtocol{{TCP: &policyv1beta1.ClusterNetworkPolicyProtocolTCP{
					DestinationPort: &policyv1beta1.Port{Number: benchPort}}}},
			}},
		},
	}
}

// denyClientName is the name of denyClientCNP.
const denyClientName = "bc-deny-client"

// setCNPPeer points the first peer of the ClusterNetworkPolicy's first
// ingress rule at peer=value.
func (e *env) setCNPPeer(ctx context.Context, name, value string) error {
	for range 5 {
		p, err := e.cnp.typed.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Spec.Ingress[0].From[0].Pods.PodSelector.MatchLabels = map[string]string{"peer": value}
		if _, err = e.cnp.typed.Update(ctx, p, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
			return err
		}
	}
	return errors.New("ClusterNetworkPolicy " + name + ": update keeps conflicting")
}

// cnpGroups are figure 2's ClusterNetworkPolicy kinds, with allow-last (a
// NetworkPolicy admitting the client) in place throughout, so that the
// Admin tier's Deny flips the verdict: create and delete; then, with the
// policy in place, its peer selector off the client and back. They leave
// no ClusterNetworkPolicy behind.
func (e *env) cnpGroups(ctx context.Context) []group {
	deny := denyClientCNP("last")
	create := func() error {
		_, err := e.cnp.typed.Create(ctx, deny, metav1.CreateOptions{})
		return err
	}
	del := func() error { return e.cnp.typed.Delete(ctx, deny.Name, metav1.DeleteOptions{}) }
	return []group{
		{
			steps: []step{
				{"CNP create (Admin denies the client)", "blocked", create},
				{"CNP delete (it denied the client)", "allowed", del},
			},
			before: func(pr *prober) error {
				return pr.expect("allowed", "client-same with "+allowLast+", no ClusterNetworkPolicy")
			},
		},
		{
			steps: []step{
				{"CNP update (peer selector off the client)", "allowed", func() error { return e.setCNPPeer(ctx, deny.Name, "off") }},
				{"CNP update (peer selector back)", "blocked", func() error { return e.setCNPPeer(ctx, deny.Name, "last") }},
			},
			before: func(pr *prober) error {
				if err := create(); err != nil {
					return err
				}
				return pr.expect("blocked", "client-same with "+denyClientName)
			},
			after: func(pr *prober) error {
				if err := del(); err != nil {
					return err
				}
				return pr.expect("allowed", "client-same after deleting "+denyClientName)
			},
		},
	}
}

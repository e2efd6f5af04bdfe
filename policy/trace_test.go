package policy

// The trace tests use the fixtures of evaluate_cnp_test.go (cnpFixture) and
// the IP plan above it.

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// traceAgrees checks that a trace tells the verdict's story: the
// isolating policies and the allowing ones are those of the verdict, and
// the last consulted ClusterNetworkPolicy of a tier holds the tier's rule.
// FuzzCompileMatchesEvaluate runs it on every packet it tries.
func traceAgrees(v Verdict, tr Trace) error {
	var errs []error
	for _, d := range []struct {
		name string
		v    DirectionVerdict
		t    DirectionTrace
	}{{"egress", v.Egress, tr.Egress}, {"ingress", v.Ingress, tr.Ingress}} {
		if d.t.Pod == "" {
			if !d.v.Allowed || d.v.Isolated || d.t.Admin != nil || d.t.NetworkPolicies != nil || d.t.Baseline != nil {
				errs = append(errs, fmt.Errorf("%s: no pod, but verdict %+v and trace %+v", d.name, d.v, d.t))
			}
			continue
		}
		var by, auditBy []string
		enforced, audited := 0, 0
		for _, np := range d.t.NetworkPolicies {
			if np.Audit {
				audited++
			} else {
				enforced++
			}
			if np.Admitted.Rule < 0 {
				continue
			}
			if np.Audit {
				auditBy = append(auditBy, np.Policy)
			} else {
				by = append(by, np.Policy)
			}
		}
		if got := enforced > 0; got != d.v.Isolated {
			errs = append(errs, fmt.Errorf("%s: trace lists %d enforced isolating policies, verdict says isolated=%v", d.name, enforced, d.v.Isolated))
		}
		if got := audited > 0 && enforced == 0; got != d.v.Audited {
			errs = append(errs, fmt.Errorf("%s: trace lists %d audited and %d enforced policies, verdict says audited=%v", d.name, audited, enforced, d.v.Audited))
		}
		if !d.v.Audited {
			auditBy = nil // enforced policies beside them decide
		}
		for _, l := range []*[]string{&by, &auditBy} {
			slices.Sort(*l)
			*l = slices.Compact(*l)
		}
		if diff := cmp.Diff(d.v.By, by); diff != "" {
			errs = append(errs, fmt.Errorf("%s: admitting policies differ (-verdict +trace):\n%s", d.name, diff))
		}
		if diff := cmp.Diff(d.v.AuditBy, auditBy); diff != "" {
			errs = append(errs, fmt.Errorf("%s: admitting audited policies differ (-verdict +trace):\n%s", d.name, diff))
		}
		if d.v.AuditDenied && (!d.v.Audited || len(d.v.AuditBy) > 0 || d.v.DecidedBy() == DecidedByAdmin) {
			errs = append(errs, fmt.Errorf("%s: audit would deny, but the verdict %+v says otherwise", d.name, d.v))
		}
		var auditDenies []CNPRule
		for _, tier := range []struct {
			rule *CNPRule
			list []CNPTrace
		}{{d.v.Admin, d.t.Admin}, {d.v.Baseline, d.t.Baseline}} {
			// Audited policies decide nothing: the tier's rule is the last
			// consulted enforced policy's, and each audited Deny met is
			// what it would deny.
			var last *CNPRule
			for _, c := range tier.list {
				if !c.Audit {
					last = c.Match
					continue
				}
				if c.Match != nil && c.Match.Action == policyv1beta1.ClusterNetworkPolicyRuleActionDeny {
					auditDenies = append(auditDenies, *c.Match)
				}
			}
			if diff := cmp.Diff(tier.rule, last); diff != "" {
				errs = append(errs, fmt.Errorf("%s: tier rule differs from the last consulted enforced policy's (-verdict +trace):\n%s", d.name, diff))
			}
		}
		if diff := cmp.Diff(d.v.AuditDenies, auditDenies); diff != "" {
			errs = append(errs, fmt.Errorf("%s: audited Denies differ (-verdict +trace):\n%s", d.name, diff))
		}
		if d.t.Admin == nil {
			errs = append(errs, fmt.Errorf("%s: the Admin tier is always consulted, but the trace has none", d.name))
		}
		reached := d.v.DecidedBy() == DecidedByBaseline || d.v.DecidedBy() == DecidedByDefault
		if (d.t.Baseline != nil) != reached {
			errs = append(errs, fmt.Errorf("%s: Baseline consulted=%v, but decided by %s", d.name, d.t.Baseline != nil, d.v.DecidedBy()))
		}
	}
	return errors.Join(errs...)
}

func TestEvaluateWithTrace(t *testing.T) {
	denyAllDB := evIngressOnly("prod", "deny-all-db", evSel("app", "db"))
	webToDB := evIngressOnly("prod", "web-to-db", evSel("app", "db"),
		evIn(evPeers(evIPPeer("10.9.0.0/16"), evPodPeer(evSel("app", "web"))), evPorts(evPort("", 80), evPort("", 5432))))
	webAdmin := admin("web-admin", 10, subjWeb+`, egress: [{action: Pass, to: [{namespaces: {matchLabels: {team: prod}}}]},
		{action: Deny, to: [{networks: ["203.0.113.0/24"]}]}]`)
	baseDeny := baseline("base-deny", 5, subjAll+`, ingress: [{name: no-dev, action: Deny, from: [{namespaces: {matchLabels: {team: dev}}}]}]`)
	cases := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		cnps     []*policyv1beta1.ClusterNetworkPolicy
		pkt      Packet
		want     Trace
	}{{
		name:     "a NetworkPolicy rule admits by its second peer and port, another selecting policy does not",
		policies: nps(denyAllDB, webToDB),
		pkt:      evPkt(evTCP, evIPWeb, evIPDB, 5432),
		want: Trace{
			Egress: DirectionTrace{Pod: "prod/web", Admin: []CNPTrace{}, Baseline: []CNPTrace{}},
			Ingress: DirectionTrace{Pod: "prod/db", Admin: []CNPTrace{}, NetworkPolicies: []NetworkPolicyTrace{
				{Policy: "prod/deny-all-db", Admitted: RuleMatch{Rule: -1}},
				{Policy: "prod/web-to-db", Admitted: RuleMatch{Rule: 0, Peer: 1, Port: 1}},
			}},
		},
	}, {
		name: "Admin Pass, then a Baseline policy that selects but does not match",
		cnps: cnps(webAdmin, baseDeny),
		pkt:  evPkt(evTCP, evIPWeb, evIPDB, 5432),
		want: Trace{
			Egress: DirectionTrace{Pod: "prod/web", Baseline: []CNPTrace{{Policy: "base-deny", Priority: 5, Peer: -1}}, Admin: []CNPTrace{
				{Policy: "web-admin", Priority: 10, Peer: 0, Match: cAdm("web-admin", 10, 0, cPass)},
			}},
			Ingress: DirectionTrace{Pod: "prod/db", Admin: []CNPTrace{}, Baseline: []CNPTrace{{Policy: "base-deny", Priority: 5, Peer: -1}}},
		},
	}, {
		name: "an Admin Deny ends the direction: Baseline is not consulted",
		cnps: cnps(webAdmin, baseDeny),
		pkt:  evPkt(evTCP, evIPWeb, evIPExt, 443),
		want: Trace{
			Egress: DirectionTrace{Pod: "prod/web", Admin: []CNPTrace{
				{Policy: "web-admin", Priority: 10, Peer: 0, Match: cAdm("web-admin", 10, 1, cDeny)},
			}},
		},
	}, {
		name: "a Baseline Deny names its rule",
		cnps: cnps(baseDeny),
		pkt:  evPkt(evTCP, evIPClient, evIPDB, 5432),
		want: Trace{
			Egress: DirectionTrace{Pod: "dev/client", Admin: []CNPTrace{}, Baseline: []CNPTrace{{Policy: "base-deny", Priority: 5, Peer: -1}}},
			Ingress: DirectionTrace{Pod: "prod/db", Admin: []CNPTrace{}, Baseline: []CNPTrace{
				{Policy: "base-deny", Priority: 5, Peer: 0, Match: &CNPRule{Policy: "base-deny", Tier: policyv1beta1.BaselineTier, Priority: 5, Index: 0, Name: "no-dev", Action: cDeny}},
			}},
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			snap := cnpFixture()
			snap.Policies = tc.policies
			snap.ClusterNetworkPolicies = tc.cnps
			v, tr := EvaluateWithTrace(snap, tc.pkt)
			if diff := cmp.Diff(Evaluate(snap, tc.pkt), v); diff != "" {
				t.Errorf("EvaluateWithTrace's verdict differs from Evaluate's (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, tr); diff != "" {
				t.Errorf("trace (-want +got):\n%s", diff)
			}
			if err := traceAgrees(v, tr); err != nil {
				t.Error(err)
			}
		})
	}
}

package policy

// Audit mode: staging a policy before it enforces.
//
// A NetworkPolicy annotated nftpolicy.io/enforcement: audit (or every
// NetworkPolicy, when the agent's audit-all setting is on) is compiled and
// evaluated like any other, but it never changes a verdict: enforcement is
// exactly what it would be without the audited policies. What the audited
// policies would deny if they were enforced is logged instead (a deny-log
// record marked audit), in these terms, per pod and direction:
//
//   - Enforced NetworkPolicies isolate the pod: they decide, as always.
//     Audited policies that also select it could only widen the allow-list
//     (policies are additive), so enforcing them would deny nothing more:
//     they log nothing. (Cilium's per-endpoint audit mode and Calico's
//     staged policies reach the same answer for allow-lists.)
//   - Only audited NetworkPolicies select the pod for the direction: the
//     pod is not isolated, and the packet goes on to the Baseline tier as
//     for any pod no NetworkPolicy isolates. Where the packet reaches the
//     NetworkPolicy tier (no Admin-tier Accept or Deny decided first) and
//     no audited policy admits it, one record marked audit says "would
//     deny".
//
// The dataplane judges egress on the source's chains first, then ingress
// on the destination's; a packet that egress drops never meets ingress,
// so it gives no ingress audit record (Verdict.Audit says which records a
// packet gives).
//
// A ClusterNetworkPolicy in audit mode (the same annotation, or audit-all)
// is walked where it stands in its tier, but decides nothing, per pod and
// direction:
//
//   - Its rules are skipped for the verdict: the packet is judged as if
//     the policy were absent (the next policy of the tier, then the next
//     tiers). An audited Accept or Pass therefore never lets anything
//     through that enforcement drops, and an enforced drop that it would
//     have accepted is logged as the drop it is, nothing more.
//   - If the first of its rules that covers the packet is a Deny, and the
//     walk reaches the policy (the earlier tiers left the direction
//     undecided, and no enforced rule before it in its tier covers the
//     packet), the packet gives one record marked audit naming the policy
//     and that rule: enforced, the policy would have denied it. Each
//     audited policy gives at most one record per direction; several
//     give theirs in the order the packet meets them.
//
// Without the deny log an audited ClusterNetworkPolicy changes nothing in
// the table (there is nowhere to record).

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/nft"
)

// EnforcementAnnotation on a NetworkPolicy, with the value
// EnforcementAudit, puts it in audit mode: see the top of this file.
// Any other value, or none, enforces it. Removing the annotation enforces
// the policy with the next sync.
const (
	EnforcementAnnotation = "nftpolicy.io/enforcement"
	EnforcementAudit      = "audit"
)

// Audited reports whether the object asks for audit mode.
func Audited(obj metav1.Object) bool {
	return obj != nil && obj.GetAnnotations()[EnforcementAnnotation] == EnforcementAudit
}

// AuditVerdict says which deny-log records marked audit a packet gives
// where the dataplane judges it: one per direction whose audited
// NetworkPolicies would deny it, and one per audited ClusterNetworkPolicy
// whose Deny rule it reaches.
type AuditVerdict struct {
	Egress, Ingress bool
	// Rules are the audited ClusterNetworkPolicy Deny rules, in the order
	// the packet meets them (egress: Admin, then Baseline; then ingress).
	Rules []nft.DenyRule
}

// Equal reports whether a and b name the same records.
func (a AuditVerdict) Equal(b AuditVerdict) bool {
	return a.Egress == b.Egress && a.Ingress == b.Ingress && slices.Equal(a.Rules, b.Rules)
}

// auditRule names the Deny rule r of policy for the deny log, as the
// compiler does (the rule's name, or its place).
func auditRule(dir nft.Direction, r *CNPRule) nft.DenyRule {
	where := "ingress"
	if dir == nft.Egress {
		where = "egress"
	}
	return nft.DenyRule{Dir: dir, Policy: r.Policy, Rule: ruleName(r.Name, where, r.Index)}
}

package policy

// Audit mode: staging a NetworkPolicy before it enforces.
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
// ClusterNetworkPolicies are not audited: the annotation on one, and the
// audit-all setting, leave it enforced as written, and each such policy
// gets a warning (AuditNotSupportedForCNP), since a Deny that quietly
// stopped denying would be worse than a staged rollout that is not staged.

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EnforcementAnnotation on a NetworkPolicy, with the value
// EnforcementAudit, puts it in audit mode: see the top of this file.
// Any other value, or none, enforces it. Removing the annotation enforces
// the policy with the next sync.
const (
	EnforcementAnnotation = "nftpolicy.io/enforcement"
	EnforcementAudit      = "audit"
)

// AuditNotSupportedForCNP is the warning of a ClusterNetworkPolicy that
// is annotated for audit, or met while every policy is audited.
const AuditNotSupportedForCNP = "audit mode applies to NetworkPolicies only: this ClusterNetworkPolicy is enforced as written"

// Audited reports whether the object asks for audit mode.
func Audited(obj metav1.Object) bool {
	return obj != nil && obj.GetAnnotations()[EnforcementAnnotation] == EnforcementAudit
}

// AuditVerdict says which deny-log records marked audit a packet gives:
// one per direction whose audited NetworkPolicies would deny it where the
// dataplane judges that direction.
type AuditVerdict struct {
	Egress, Ingress bool
}

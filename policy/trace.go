package policy

// The trace of a decision (EvaluateWithTrace): what `nftpolicy explain`
// tells a person about why a connection is allowed or denied. It is
// recorded by the reference semantics while they decide, so it can never
// tell a different story from the verdict.

// Trace is how Evaluate reached a verdict, per direction.
type Trace struct {
	// Egress is the source pod's egress, Ingress the destination pod's
	// ingress.
	Egress, Ingress DirectionTrace
}

// DirectionTrace lists what was consulted in one direction, in the order
// the tiers are consulted. A tier that was not reached (an Admin Accept or
// Deny ends the direction; a NetworkPolicy that isolates the pod keeps the
// Baseline tier from being reached) is nil.
type DirectionTrace struct {
	// Pod is the "namespace/name" whose policies apply; empty when that
	// side is not an active pod (then nothing else is set: the direction
	// is allowed).
	Pod string
	// Admin lists the Admin-tier ClusterNetworkPolicies that select Pod,
	// in precedence order, up to the enforced one whose rule matched
	// (audited ones decide nothing and the walk goes on past them); empty
	// (not nil) when the tier was consulted and none selects Pod.
	Admin []CNPTrace
	// NetworkPolicies are those that select Pod for this direction, in
	// the snapshot's order; the enforced ones isolate it (none: not
	// isolated), the audited ones (Audit) only log.
	NetworkPolicies []NetworkPolicyTrace
	// Baseline is like Admin for the Baseline tier.
	Baseline []CNPTrace
}

// NetworkPolicyTrace is one NetworkPolicy selecting the pod, and the rule
// of it that admitted the packet, if any.
type NetworkPolicyTrace struct {
	Policy string // "namespace/name"
	// Admitted is the first rule (of spec.ingress or spec.egress) that
	// admits the packet, Rule -1 if none does.
	Admitted RuleMatch
	// Audit: the policy is in audit mode (audit.go); it decides nothing.
	Audit bool
}

// RuleMatch locates what matched in a NetworkPolicy: the rule, its first
// matching peer (in from or to) and port. Peer or Port -1 means the rule
// lists none, which admits every peer or every port.
type RuleMatch struct {
	Rule, Peer, Port int
}

// CNPTrace is one ClusterNetworkPolicy that selects the pod, and its first
// rule that matched, if any.
type CNPTrace struct {
	Policy   string // metadata.name
	Priority int32
	// Match is the first rule of this direction that matched, nil if none.
	Match *CNPRule
	// Peer is the index of the rule's peer (in from or to) that matched;
	// -1 for a rule that failed closed (see Verdict.Warnings) or no match.
	Peer int
	// Audit: the policy is in audit mode (audit.go): its Match decides
	// nothing, and a Deny is what it would deny (an audit record).
	Audit bool
}

// traceDirection starts the trace of one direction for pod and returns
// it, or nil when not tracing.
func (e *evalState) traceDirection(pod *Pod, which func(*Trace) *DirectionTrace) *DirectionTrace {
	if e.trace == nil {
		return nil
	}
	d := which(e.trace)
	d.Pod = pod.Key()
	return d
}

package explain

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nftpolicy/nftpolicy/policy"
)

// WriteJSON writes a as indented JSON.
func WriteJSON(w io.Writer, a *Answer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(a)
}

// WriteText writes a for people: the verdict first, then each direction
// tier by tier, then what the live tables said.
func WriteText(w io.Writer, a *Answer) error {
	var b strings.Builder
	target := string(a.Protocol)
	if a.Port != 0 {
		target += fmt.Sprintf("/%d", a.Port)
	}
	fmt.Fprintf(&b, "%s -> %s %s: %s%s\n", a.From, a.To, target, verdictWord(a.Allowed, true), auditSummary(a))
	for _, n := range a.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	writeDirection(&b, "egress", "from", a.From, a.Egress)
	writeDirection(&b, "ingress", "to", a.To, a.Ingress)
	if !a.ClusterNetworkPolicyCRD {
		b.WriteString("\n(the ClusterNetworkPolicy CRD is not installed: only NetworkPolicies apply)\n")
	}
	for _, wn := range a.Warnings {
		fmt.Fprintf(&b, "\nwarning: %s\n", wn)
	}
	if len(a.Live) > 0 {
		b.WriteString("\nlive tables (the rulesets the agents applied, traced for a new connection):\n")
		for _, l := range a.Live {
			if l.Error != "" {
				fmt.Fprintf(&b, "  node %s: could not fetch: %s\n", l.Node, l.Error)
				continue
			}
			fmt.Fprintf(&b, "  node %s, hook %s (applied %s): %s\n", l.Node, l.Hook, l.AppliedAt.UTC().Format("2006-01-02T15:04:05Z"), l.Verdict)
			for _, s := range l.Path {
				fmt.Fprintf(&b, "    %s\n", s)
			}
		}
		if a.LiveDisagrees {
			fmt.Fprintf(&b, "\n!!! THE LIVE TABLES DISAGREE WITH THE API STATE: the API state would %s, the applied tables %s.\n"+
				"!!! An agent is behind the API state (not synced yet, failing, stopped) or there is a bug: check the agents' logs and readiness.\n",
				verdictWord(a.Allowed, false), liveWord(a))
		} else {
			b.WriteString("  the live tables agree\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func liveWord(a *Answer) string {
	for _, l := range a.Live {
		if l.Error != "" {
			return "could not all be read"
		}
	}
	return verdictWord(a.LiveAllowed(), false)
}

func verdictWord(allowed, loud bool) string {
	switch {
	case allowed && loud:
		return "ALLOWED"
	case loud:
		return "DENIED"
	case allowed:
		return "allow it"
	default:
		return "deny it"
	}
}

func past(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}

func writeDirection(b *strings.Builder, name, prep string, ep Endpoint, d Direction) {
	fmt.Fprintf(b, "\n%s", name)
	if d.Pod == "" {
		fmt.Fprintf(b, ": allowed (%s is not a pod that policies select: nothing is judged)\n", ep.Address)
		return
	}
	fmt.Fprintf(b, " %s %s: %s\n", prep, d.Pod, past(d.Allowed))
	if !d.Judged {
		b.WriteString("  not judged (see the note above)\n")
		return
	}
	dir := networkingv1.PolicyTypeIngress
	if name == "egress" {
		dir = networkingv1.PolicyTypeEgress
	}
	writeTier(b, "Admin tier", d.AdminReached, d.Admin, d.Pod)
	enforced := 0
	for _, np := range d.NetworkPolicies {
		if !np.Audit {
			enforced++
		}
	}
	audited := len(d.NetworkPolicies) - enforced
	switch {
	case enforced == 0 && audited == 0:
		fmt.Fprintf(b, "  NetworkPolicy: none selects %s for %s: not isolated\n", d.Pod, strings.ToLower(string(dir)))
	case d.DecidedBy == policy.DecidedByAdmin:
		fmt.Fprintf(b, "  NetworkPolicy: not reached (%d isolate %s, %d audit)\n", enforced, d.Pod, audited)
	case enforced == 0:
		fmt.Fprintf(b, "  NetworkPolicy: not isolated; %d in audit mode select %s:\n", audited, d.Pod)
	case audited > 0:
		fmt.Fprintf(b, "  NetworkPolicy: isolated by %d (and %d in audit mode, which decide nothing beside them):\n", enforced, audited)
	default:
		fmt.Fprintf(b, "  NetworkPolicy: isolated by %d:\n", enforced)
	}
	if d.DecidedBy != policy.DecidedByAdmin {
		for _, np := range d.NetworkPolicies {
			name := np.Name
			if np.Audit {
				name += " (audit)"
			}
			if !np.Admits {
				fmt.Fprintf(b, "    %s: no %s rule admits it\n", name, strings.ToLower(string(dir)))
				continue
			}
			fmt.Fprintf(b, "    %s: %s rule %d admits it", name, strings.ToLower(string(dir)), *np.Rule)
			var parts []string
			if np.Peer != nil {
				parts = append(parts, fmt.Sprintf("peer %d %s", *np.Peer, np.PeerText))
			} else {
				parts = append(parts, "every peer")
			}
			if np.Port != nil {
				parts = append(parts, fmt.Sprintf("port %d %s", *np.Port, np.PortText))
			} else {
				parts = append(parts, "every port")
			}
			fmt.Fprintf(b, " (%s)\n", strings.Join(parts, ", "))
		}
	}
	writeTier(b, "Baseline tier", d.BaselineReached, d.Baseline, d.Pod)
	fmt.Fprintf(b, "  => %s by %s\n", past(d.Allowed), decider(d))
	if d.AuditWouldDeny {
		b.WriteString("  => audit: would deny (no policy in audit mode admits it; the agent logs it as an audit record)\n")
	}
	for _, r := range d.AuditDenies {
		fmt.Fprintf(b, "  => audit: would deny by %s ClusterNetworkPolicy %s rule %d", r.Tier, r.Policy, r.Rule)
		if r.RuleName != "" {
			fmt.Fprintf(b, " %q", r.RuleName)
		}
		b.WriteString(" (in audit mode: the agent logs it as an audit record and lets it on)\n")
	}
}

// auditSummary is the verdict line's note on what the policies in audit
// mode would deny, "" when nothing.
func auditSummary(a *Answer) string {
	var dirs []string
	if a.Egress.AuditWouldDeny || len(a.Egress.AuditDenies) > 0 {
		dirs = append(dirs, "egress")
	}
	if a.Ingress.AuditWouldDeny || len(a.Ingress.AuditDenies) > 0 {
		dirs = append(dirs, "ingress")
	}
	if len(dirs) == 0 {
		return ""
	}
	return " (audit: would deny " + strings.Join(dirs, " and ") + ")"
}

func writeTier(b *strings.Builder, tier string, reached bool, list []TierPolicy, pod string) {
	switch {
	case !reached:
		fmt.Fprintf(b, "  %s: not reached\n", tier)
		return
	case len(list) == 0:
		fmt.Fprintf(b, "  %s: no ClusterNetworkPolicy selects %s\n", tier, pod)
		return
	}
	fmt.Fprintf(b, "  %s:\n", tier)
	for _, tp := range list {
		mode := ""
		if tp.Audit {
			mode = ", audit"
		}
		fmt.Fprintf(b, "    %s (priority %d%s): ", tp.Name, tp.Priority, mode)
		if tp.Rule == nil {
			b.WriteString("no rule matches\n")
			continue
		}
		fmt.Fprintf(b, "rule %d", *tp.Rule)
		if tp.RuleName != "" {
			fmt.Fprintf(b, " %q", tp.RuleName)
		}
		fmt.Fprintf(b, " matches: %s", tp.Action)
		if tp.Peer != nil {
			fmt.Fprintf(b, " (peer %d %s)", *tp.Peer, tp.PeerText)
		} else {
			b.WriteString(" (the rule fails closed, see the warnings)")
		}
		b.WriteString("\n")
	}
}

func decider(d Direction) string {
	switch d.DecidedBy {
	case policy.DecidedByAdmin:
		return "the Admin tier"
	case policy.DecidedByNetworkPolicy:
		return "NetworkPolicy"
	case policy.DecidedByBaseline:
		return "the Baseline tier"
	default:
		return "default (no tier decided)"
	}
}

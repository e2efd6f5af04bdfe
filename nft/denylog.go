package nft

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// DenyLog sends the first packet of each connection a policy denies to
// userspace through NFLOG (`log group N`), as a log rule just before the
// drop. All log rules of the node share one named limit object, so the
// whole node sends at most Rate records a second (plus Burst) however many
// pods drop, and packets over the limit are dropped without a record. The
// accept path never meets a log rule.
type DenyLog struct {
	// Group is the NFLOG group the records go to.
	Group uint16
	// Rate is the most records a second the node sends, Burst the most at
	// once after a quiet period.
	Rate, Burst uint32
}

// Limit is a named limit object of the table: a token bucket that rules
// refer to by name (`limit name "x"`), shared by all of them.
type Limit struct {
	Name        string
	Rate, Burst uint32 // packets per second; packets
}

// Log is the action of a log rule: if the limit object Limit has a token,
// the packet goes to NFLOG group Group with Prefix, and the next rule
// follows either way.
type Log struct {
	Limit  string
	Prefix string
	Group  uint16
}

// DenyLogPrefix starts every prefix a deny-log rule carries; the rest is
// the decision: the word "drop" and the chain that dropped (whose name says
// the direction and the pod), e.g. "nftpolicy drop in-a5aed5bd-x/a".
const DenyLogPrefix = "nftpolicy "

// MaxLogPrefix is the longest prefix the kernel accepts (NF_LOG_PREFIXLEN
// is 128 bytes with the terminating NUL).
const MaxLogPrefix = 127

// LimitName is the name of the limit object of d. It carries the rate and
// burst, so a changed configuration is a new object (the kernel cannot
// change a limit object in place) and the old one is deleted once no rule
// refers to it.
func (d *DenyLog) LimitName() string {
	return fmt.Sprintf("deny-log-%dps-%d", d.Rate, d.Burst)
}

// Limit is the limit object of d.
func (d *DenyLog) Limit() *Limit {
	return &Limit{Name: d.LimitName(), Rate: d.Rate, Burst: d.Burst}
}

// Rule is the log rule that goes before a drop in chain; nil d gives no
// rule.
func (d *DenyLog) rules(chain string) []Rule {
	if d == nil {
		return nil
	}
	return []Rule{{Log: &Log{Limit: d.LimitName(), Prefix: DropPrefix(chain), Group: d.Group}}}
}

// auditRules is the log rule at the end of an audit chain (nil d: none).
func (d *DenyLog) auditRules(chain string) []Rule {
	if d == nil {
		return nil
	}
	return []Rule{{Log: &Log{Limit: d.LimitName(), Prefix: AuditPrefix(chain), Group: d.Group}}}
}

// DropPrefix is the log prefix of a drop at the end of chain.
func DropPrefix(chain string) string {
	return cutPrefix(DenyLogPrefix + VerdictWordDrop + " " + chain)
}

// AuditPrefix is the log prefix at the end of the audit chain chain: the
// audited policies would drop the packet there, and it goes on.
func AuditPrefix(chain string) string {
	return cutPrefix(DenyLogPrefix + VerdictWordAudit + " " + chain)
}

// The verdict words of deny-log prefixes (Decision.Verdict).
const (
	// VerdictWordDrop: an allow-list chain dropped the packet.
	VerdictWordDrop = "drop"
	// VerdictWordDeny: a ClusterNetworkPolicy Deny rule dropped it.
	VerdictWordDeny = "deny"
	// VerdictWordAudit: the audited NetworkPolicies of a pod would have
	// dropped it (their allow-list admits it not), and it went on.
	VerdictWordAudit = "audit"
)

func cutPrefix(p string) string {
	if len(p) > MaxLogPrefix {
		p = p[:MaxLogPrefix]
	}
	return p
}

// Decision is what a deny-log prefix says: the verdict, "drop" for an
// allow-list drop (Chain is the pod chain that dropped), "audit" for what
// an audit chain would have dropped (Chain is that chain; the packet went
// on) or what an audited ClusterNetworkPolicy Deny rule would have denied
// (Policy and Rule name it, Chain is empty; the packet went on), or "deny"
// for a ClusterNetworkPolicy Deny rule (Policy and Rule name it), and the
// direction.
type Decision struct {
	Verdict string
	Chain   string
	Policy  string
	Rule    string
	Dir     Direction
}

// ParseLogPrefix reads a prefix written by DropPrefix, AuditPrefix,
// DenyPrefix or AuditRulePrefix; ok is false for any other prefix.
func ParseLogPrefix(prefix string) (d Decision, ok bool) {
	rest, found := strings.CutPrefix(prefix, DenyLogPrefix)
	if !found {
		return Decision{}, false
	}
	verdict, chain, found := strings.Cut(rest, " ")
	if !found || chain == "" {
		return Decision{}, false
	}
	if verdict == VerdictWordDeny || (verdict == VerdictWordAudit && (strings.HasPrefix(chain, "in ") || strings.HasPrefix(chain, "out "))) {
		// A ClusterNetworkPolicy rule: "deny in policy/rule", or
		// "audit in policy/rule" for an audited one (AuditRulePrefix).
		dir, rule, found := strings.Cut(chain, " ")
		if !found || rule == "" {
			return Decision{}, false
		}
		d = Decision{Verdict: verdict}
		switch dir {
		case "in":
			d.Dir = Ingress
		case "out":
			d.Dir = Egress
		default:
			return Decision{}, false
		}
		// A policy's name has no slash; a prefix cut at its limit may
		// have lost the rule.
		d.Policy, d.Rule, _ = strings.Cut(rule, "/")
		return d, true
	}
	if verdict != VerdictWordDrop && verdict != VerdictWordAudit {
		return Decision{}, false
	}
	d = Decision{Verdict: verdict, Chain: chain}
	switch {
	case strings.HasPrefix(chain, "in-"):
		d.Dir = Ingress
	case strings.HasPrefix(chain, "out-"):
		d.Dir = Egress
	default:
		return Decision{}, false
	}
	return d, true
}

// SetDenyLog adds d's limit object to r (nil d: nothing).
func (r *Ruleset) SetDenyLog(d *DenyLog) {
	if d == nil {
		return
	}
	if r.Limits == nil {
		r.Limits = map[string]*Limit{}
	}
	l := d.Limit()
	r.Limits[l.Name] = l
}

// LoggedPacket is one NFLOG record of a deny-log rule, decoded: when, the
// prefix the rule carries, and the addresses, protocol and ports of the
// packet's headers.
type LoggedPacket struct {
	Time     time.Time
	Prefix   string
	Hook     HookName // forward or input; empty when the hook is another
	Proto    uint8
	Src, Dst netip.Addr
	// SrcPort and DstPort are set for TCP, UDP and SCTP.
	SrcPort, DstPort uint16
}

// DenyRule names one Deny rule of a ClusterNetworkPolicy for the deny log:
// the policy, the rule (its name, or "ingress[i]"/"egress[i]" when it has
// none) and the direction it judges.
type DenyRule struct {
	Dir    Direction
	Policy string
	Rule   string
}

// DenyChain is the chain the tier verdict maps jump to, instead of
// dropping, for traffic that r denies: a verdict map element can carry
// neither a log statement nor a counter, a chain can. With the deny log
// on (d not nil) it logs under the node's limit with a prefix naming the
// policy and the rule; either way it counts and drops. Its name depends
// only on r, so every map set that holds r's verdicts jumps to the same
// chain, and maps shared by many pods stay shared.
func (d *DenyLog) DenyChain(r DenyRule) *Chain {
	c := &Chain{Name: DenyChainName(r)}
	if d != nil {
		c.Rules = append(c.Rules, Rule{Log: &Log{Limit: d.LimitName(), Prefix: DenyPrefix(r), Group: d.Group}})
	}
	c.Rules = append(c.Rules, Rule{Counter: true, Verdict: Drop})
	return c
}

// DenyChainName is the name of r's deny chain: a hash of r (names are
// unique whatever their length) and the start of the policy's name to read.
func DenyChainName(r DenyRule) string {
	sum := sha256.Sum256([]byte(r.Dir.String() + "/" + r.Policy + "/" + r.Rule))
	tail := r.Policy + "/" + r.Rule
	if len(tail) > 40 {
		tail = tail[:40]
	}
	return "deny-" + dirWord(r.Dir) + "-" + hex.EncodeToString(sum[:4]) + "-" + tail
}

// DenyPrefix is the log prefix of r's deny chain, e.g.
// "nftpolicy deny in default-deny/ingress[0]".
func DenyPrefix(r DenyRule) string {
	return cutPrefix(DenyLogPrefix + VerdictWordDeny + " " + dirWord(r.Dir) + " " + r.Policy + "/" + r.Rule)
}

func dirWord(d Direction) string {
	if d == Egress {
		return "out"
	}
	return "in"
}

// AuditRuleChain is the chain that a tier verdict map element jumps or
// goes to for traffic that the audited ClusterNetworkPolicy Deny rules
// rules would deny (in the order the packet meets them; each policy's
// first rule covering it): one log rule per rule, under the node's limit,
// with AuditRulePrefix, and nothing dropped. What follows is the verdict
// of the enforced rules alone:
//
//   - then empty: the chain ends, and the packet goes on. A map element
//     reaches it with `jump` when the enforced rules leave the traffic to
//     the next tier (the tier chain's next rule follows) and with `goto`
//     when they accept it (the tier chain's caller, the base chain,
//     follows, as after a `return` of the tier chain).
//   - then a deny chain (DenyChain): the chain jumps there, which logs the
//     enforced Deny and drops.
//
// Its name depends only on the rules and then, so maps shared by many pods
// stay shared, like deny chains.
func (d *DenyLog) AuditRuleChain(rules []DenyRule, then string) *Chain {
	c := &Chain{Name: AuditRuleChainName(rules, then)}
	for _, r := range rules {
		c.Rules = append(c.Rules, Rule{Log: &Log{Limit: d.LimitName(), Prefix: AuditRulePrefix(r), Group: d.Group}})
	}
	if then != "" {
		c.Rules = append(c.Rules, Rule{Verdict: Jump(then)})
	}
	return c
}

// AuditRuleChainName is the name of the audit chain of rules (at least
// one) followed by then: a hash of all of it and the start of the first
// rule's policy and name to read, "audit-in-1a2b3c4d-policy/rule".
func AuditRuleChainName(rules []DenyRule, then string) string {
	h := sha256.New()
	for _, r := range rules {
		fmt.Fprintf(h, "%s/%s/%s\x00", r.Dir, r.Policy, r.Rule)
	}
	h.Write([]byte(then))
	tail := rules[0].Policy + "/" + rules[0].Rule
	if len(tail) > 40 {
		tail = tail[:40]
	}
	return "audit-" + dirWord(rules[0].Dir) + "-" + hex.EncodeToString(h.Sum(nil)[:4]) + "-" + tail
}

// AuditRulePrefix is the log prefix of what the audited Deny rule r would
// deny, e.g. "nftpolicy audit in staged-deny/ingress[0]".
func AuditRulePrefix(r DenyRule) string {
	return cutPrefix(DenyLogPrefix + VerdictWordAudit + " " + dirWord(r.Dir) + " " + r.Policy + "/" + r.Rule)
}

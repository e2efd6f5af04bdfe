package nft

import "strings"

// Every drop a policy causes carries an anonymous counter (Rule.Counter):
// the drop at the end of each pod's allow-list chain (NewIsolatedEndpoint)
// and the drop of each ClusterNetworkPolicy Deny rule's chain
// (DenyLog.DenyChain). One more counts the new connections that reach the
// end of the forward chain, which every policy on their path let through
// (NewSkeleton). A counter costs the packets that reach its rule one
// expression; only that last one is on an accept path, and only for the
// first packet of a connection.

// RuleCounter is the counter of one counted rule as the kernel holds it.
// Handle identifies the rule: a rule written again (its chain's rules
// replaced) gets a new handle and starts from zero.
type RuleCounter struct {
	Chain   string
	Handle  uint64
	Packets uint64
	Bytes   uint64
}

// Count is a number of packets and their bytes.
type Count struct {
	Packets, Bytes uint64
}

// Add returns c plus o.
func (c Count) Add(o Count) Count {
	return Count{Packets: c.Packets + o.Packets, Bytes: c.Bytes + o.Bytes}
}

// CounterTracker turns successive readings of the kernel's counters into
// increments that never go backwards, although a sync that writes a
// chain's rules again (a changed rule, a full replace after an error)
// starts that chain's counter from zero. It keeps the last value of each
// rule by handle: a handle seen before grows by the difference, a new one
// by its whole value. What a replaced rule counted after the last reading
// and before it was replaced is lost; nothing is counted twice. Rules that
// disappeared are forgotten, so memory follows the table, not its history.
type CounterTracker struct {
	last map[counterKey]Count
}

type counterKey struct {
	chain  string
	handle uint64
}

// Increments returns, per chain, what its counted rules counted since the
// previous call (since the rule was written, for a rule not seen before).
// Chains whose counters did not move are left out.
func (t *CounterTracker) Increments(readings []RuleCounter) map[string]Count {
	next := make(map[counterKey]Count, len(readings))
	out := map[string]Count{}
	for _, r := range readings {
		k := counterKey{r.Chain, r.Handle}
		now := Count{Packets: r.Packets, Bytes: r.Bytes}
		inc := now
		if prev, ok := t.last[k]; ok && now.Packets >= prev.Packets && now.Bytes >= prev.Bytes {
			inc = Count{Packets: now.Packets - prev.Packets, Bytes: now.Bytes - prev.Bytes}
		}
		next[k] = now
		if inc.Packets > 0 || inc.Bytes > 0 {
			out[r.Chain] = out[r.Chain].Add(inc)
		}
	}
	t.last = next
	return out
}

// Endpoint is the pod whose allow-list chain it is, by the id the
// compiler named the chain after (NamesFor), and the direction it guards.
type Endpoint struct {
	Dir Direction
	ID  string
}

// Endpoints maps the name of every allow-list chain of r to its pod, read
// from the dispatch maps: their elements carry the pod's id as comment and
// jump into the pod's allow-list chain or its tier chain, both named after
// the id. A tier chain that leads to no allow-list (the pod is judged by
// the tiers alone) has none, and its name leads nowhere.
func (r *Ruleset) Endpoints() map[string]Endpoint {
	out := map[string]Endpoint{}
	for _, m := range []struct {
		name string
		dir  Direction
	}{{MapIngressV4, Ingress}, {MapIngressV6, Ingress}, {MapEgressV4, Egress}, {MapEgressV6, Egress}} {
		s := r.Sets[m.name]
		if s == nil {
			continue
		}
		for _, e := range s.Elements {
			if e.Comment == "" || e.Verdict.Kind != VerdictJump {
				continue
			}
			chain := NamesFor(m.dir, e.Comment).Chain
			if _, ok := r.Chains[chain]; ok {
				out[chain] = Endpoint{Dir: m.dir, ID: e.Comment}
			}
		}
	}
	return out
}

// DenyChainDirection reports whether chain is a ClusterNetworkPolicy Deny
// rule's chain (DenyChainName), and which direction it judges.
func DenyChainDirection(chain string) (Direction, bool) {
	switch {
	case strings.HasPrefix(chain, "deny-in-"):
		return Ingress, true
	case strings.HasPrefix(chain, "deny-out-"):
		return Egress, true
	}
	return 0, false
}

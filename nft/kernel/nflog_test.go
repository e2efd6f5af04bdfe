//go:build linux

package kernel

// IP plan: the topology of packets_test.go (pods a, b bridged on the node,
// c routed), with packetPolicy's allow-lists and a deny log on NFLOG group
// testLogGroup.

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/nft"
)

const testLogGroup = 7

// loggedPolicy is packetPolicy with every allow-list drop logged.
func loggedPolicy(log *nft.DenyLog) *nft.Ruleset {
	r := nft.NewSkeleton()
	r.SetDenyLog(log)
	r.AddEndpoint(nft.NewIsolatedEndpoint(nft.Ingress, "test/b", []netip.Addr{podB4, podB6}, nft.AllowList{Ports: []nft.PortAllow{
		{Peer: nft.Addr(podA4), Proto: nft.ProtoTCP, Ports: nft.Port(80), Comment: "a"},
		{Peer: nft.Addr(podA6), Proto: nft.ProtoTCP, Ports: nft.Port(80), Comment: "a"},
		{Peer: nft.Addr(podC4), Proto: nft.ProtoUDP, Ports: nft.Port(53), Comment: "c"},
	}}, log))
	r.AddEndpoint(nft.NewIsolatedEndpoint(nft.Egress, "test/c", []netip.Addr{podC4}, nft.AllowList{Ports: []nft.PortAllow{
		{Peer: nft.Addr(podB4), Proto: nft.ProtoUDP, Ports: nft.Port(53), Comment: "b"},
	}}, log))
	return r
}

func TestSync_DenyLogReadsBackAsDump(t *testing.T) {
	requirePrivileges(t)
	ns, fd := newNetns(t, "logrb")
	s := newSyncer(t, fd)
	for _, step := range []struct {
		name string
		r    *nft.Ruleset
		s    *Syncer
	}{
		{"full sync with a deny log", loggedPolicy(&nft.DenyLog{Group: 1, Rate: 10, Burst: 5}), s},
		{"incremental: another rate is another limit object", loggedPolicy(&nft.DenyLog{Group: 2, Rate: 50, Burst: 20}), s},
		{"incremental: logging off deletes the limit", loggedPolicy(nil), s},
		{"incremental: logging on again", loggedPolicy(&nft.DenyLog{Group: 1, Rate: 10, Burst: 5}), s},
		{"restart: full replace over a deny log", loggedPolicy(&nft.DenyLog{Group: 3, Rate: 1, Burst: 1}), newSyncer(t, fd)},
	} {
		sync(t, step.s, step.r)
		assertReadback(t, ns, step.r)
		if err := step.s.Verify(context.Background()); err != nil {
			t.Errorf("%s: Verify: %v", step.name, err)
		}
	}
	if !strings.Contains(listTable(t, ns), `limit deny-log-1ps-1 {`) {
		t.Errorf("limit object missing from the listing:\n%s", listTable(t, ns))
	}
}

// recorder collects the records of an NFLOG group.
type recorder struct {
	mu      stdsync.Mutex
	packets []nft.LoggedPacket
}

func listen(t testing.TB, fd int) *recorder {
	t.Helper()
	r, err := ListenNFLOG(testLogGroup, WithNetNSFd(fd))
	if err != nil {
		t.Fatalf("ListenNFLOG: %v", err)
	}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- r.Run(ctx, func(p nft.LoggedPacket) {
			rec.mu.Lock()
			rec.packets = append(rec.packets, p)
			rec.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("NFLOG reader: %v", err)
		}
	})
	return rec
}

// probe sends one probe from ns to dst, checks that it passed or not as
// allowed says, and that a denied probe left exactly one record (returned,
// logged=true) and an allowed one none.
func (rec *recorder) probe(t *testing.T, ns, proto string, dst netip.AddrPort, allowed bool) (p nft.LoggedPacket, logged bool) {
	t.Helper()
	err := probe(ns, proto, dst)
	if allowed != (err == nil) {
		t.Fatalf("probe: allowed %v, got error %v", allowed, err)
	}
	want := 1
	if allowed {
		want = 0
	}
	got := rec.take(want)
	if len(got) != want {
		t.Fatalf("got %d records, want %d: %+v", len(got), want, got)
	}
	if want == 0 {
		return nft.LoggedPacket{}, false
	}
	return got[0], true
}

// take waits until at least want records arrived (or a bound passed), then
// a little longer for records that should not come, and returns them all.
func (rec *recorder) take(want int) []nft.LoggedPacket {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		rec.mu.Lock()
		n := len(rec.packets)
		rec.mu.Unlock()
		if n >= want {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.packets
	rec.packets = nil
	return out
}

func TestDenyLog_RealPackets(t *testing.T) {
	requirePrivileges(t)
	tp := buildTopology(t)
	serve(t, tp.b, []int{80, 81}, []int{53, 54})
	s := newSyncer(t, tp.nodeFd)
	sync(t, s, loggedPolicy(&nft.DenyLog{Group: testLogGroup, Rate: 100, Burst: 100}))
	rec := listen(t, tp.nodeFd)

	bIn := nft.DropPrefix(nft.NamesFor(nft.Ingress, "test/b").Chain)
	cOut := nft.DropPrefix(nft.NamesFor(nft.Egress, "test/c").Chain)
	for _, f := range []struct {
		name, from, proto string
		src               netip.Addr
		dst               netip.AddrPort
		allowed           bool
		prefix            string
	}{
		{"a to b tcp/80 allowed (bridged)", tp.a, "tcp", podA4, netip.AddrPortFrom(podB4, 80), true, ""},
		{"c to b udp/53 allowed (routed)", tp.c, "udp", podC4, netip.AddrPortFrom(podB4, 53), true, ""},
		{"a to b udp/53 denied by b's ingress (bridged)", tp.a, "udp", podA4, netip.AddrPortFrom(podB4, 53), false, bIn},
		{"a to b udp/54 over IPv6 denied by b's ingress", tp.a, "udp", podA6, netip.AddrPortFrom(podB6, 54), false, bIn},
		{"c to b udp/54 denied by c's egress (routed)", tp.c, "udp", podC4, netip.AddrPortFrom(podB4, 54), false, cOut},
	} {
		t.Run(f.name, func(t *testing.T) {
			p, logged := rec.probe(t, f.from, f.proto, f.dst, f.allowed)
			if !logged {
				return
			}
			if p.Prefix != f.prefix || p.Src != f.src || p.Dst != f.dst.Addr() || p.DstPort != f.dst.Port() ||
				p.Proto != nft.ProtoUDP || p.Hook != nft.HookForward || p.SrcPort == 0 {
				t.Errorf("record %+v, want prefix %q, udp %s -> %s on the forward hook", p, f.prefix, f.src, f.dst)
			}
			if d, ok := nft.ParseLogPrefix(p.Prefix); !ok || d.Chain == "" || d.Verdict != "drop" {
				t.Errorf("prefix %q does not parse: %+v", p.Prefix, d)
			}
		})
	}
}

func TestDenyLog_NodeWideLimit(t *testing.T) {
	requirePrivileges(t)
	tp := buildTopology(t)
	s := newSyncer(t, tp.nodeFd)
	// One record a second, at most 3 at once, for the whole node: a flood
	// through two different chains shares the budget.
	sync(t, s, loggedPolicy(&nft.DenyLog{Group: testLogGroup, Rate: 1, Burst: 3}))
	rec := listen(t, tp.nodeFd)
	const flood = 40
	start := time.Now()
	for i := range flood {
		from, dst := tp.a, netip.AddrPortFrom(podB4, 54) // b's ingress drops
		if i%2 == 1 {
			from, dst = tp.c, netip.AddrPortFrom(podB4, 55) // c's egress drops
		}
		if err := inNetns(from, func() error {
			c, err := net.Dial("udp", dst.String())
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("flood"))
			return err
		}); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	elapsed := time.Since(start)
	got := rec.take(flood)
	// The bucket holds 3 and refills at 1/s: no more than that may pass.
	most := 3 + int(elapsed.Seconds()+1)
	if len(got) < 1 || len(got) > most {
		t.Errorf("%d records for %d denied packets in %v, want 1..%d", len(got), flood, elapsed, most)
	}
}

// tierDenyPolicy gives pod b an Admin tier for ingress: a Deny rule of the
// ClusterNetworkPolicy "block-a" denies UDP from a (through its deny chain
// when log is set), an Accept rule admits UDP from c.
func tierDenyPolicy(log *nft.DenyLog) (*nft.Ruleset, nft.DenyRule) {
	rule := nft.DenyRule{Dir: nft.Ingress, Policy: "block-a", Rule: "no udp from a"}
	// The rule's chain counts its drops, and logs them with the log on.
	ch := log.DenyChain(rule)
	deny, v := nft.Jump(ch.Name), nft.TierVerdicts{DenyChains: []*nft.Chain{ch}}
	udp := nft.ProtoRange(nft.ProtoUDP, nft.ProtoUDP)
	v.AnyPort = []nft.ProtoVerdict{
		{Peer: nft.Addr(podA4), Protos: udp, Verdict: deny},
		{Peer: nft.Addr(podA6), Protos: udp, Verdict: deny},
		{Peer: nft.Addr(podC4), Protos: udp, Verdict: nft.Return},
	}
	r := nft.NewSkeleton()
	r.SetDenyLog(log)
	admin := nft.NewTierMaps(nft.TierAdmin, nft.Ingress, "block-a", "Admin ingress rules of block-a", v)
	r.AddTieredEndpoint(nft.NewTieredEndpoint(nft.Ingress, "test/b", []netip.Addr{podB4, podB6}, admin, nil, nil))
	return r, rule
}

// A ClusterNetworkPolicy Deny is logged through its deny chain, naming the
// policy and the rule; what its Accept rule admits is not, and the chain
// reads back as the model says, on and off.
func TestDenyLog_TierDenyRealPackets(t *testing.T) {
	requirePrivileges(t)
	tp := buildTopology(t)
	serve(t, tp.b, nil, []int{53, 54})
	s := newSyncer(t, tp.nodeFd)
	plain, _ := tierDenyPolicy(nil)
	sync(t, s, plain)
	assertReadback(t, tp.node, plain)
	logged, rule := tierDenyPolicy(&nft.DenyLog{Group: testLogGroup, Rate: 100, Burst: 100})
	sync(t, s, logged)
	assertReadback(t, tp.node, logged)
	if err := s.Verify(context.Background()); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	rec := listen(t, tp.nodeFd)
	for _, f := range []struct {
		name    string
		from    string
		src     netip.Addr
		dst     netip.AddrPort
		allowed bool
	}{
		{"c to b udp/53 accepted by the Admin tier", tp.c, podC4, netip.AddrPortFrom(podB4, 53), true},
		{"a to b udp/54 denied by block-a (bridged)", tp.a, podA4, netip.AddrPortFrom(podB4, 54), false},
		{"a to b udp/53 over IPv6 denied by block-a", tp.a, podA6, netip.AddrPortFrom(podB6, 53), false},
	} {
		t.Run(f.name, func(t *testing.T) {
			p, logged := rec.probe(t, f.from, "udp", f.dst, f.allowed)
			if !logged {
				return
			}
			if p.Prefix != nft.DenyPrefix(rule) || p.Src != f.src || p.Dst != f.dst.Addr() || p.DstPort != f.dst.Port() {
				t.Errorf("record %+v, want prefix %q, udp %s -> %s", p, nft.DenyPrefix(rule), f.src, f.dst)
			}
			d, ok := nft.ParseLogPrefix(p.Prefix)
			if want := (nft.Decision{Verdict: "deny", Policy: rule.Policy, Rule: rule.Rule, Dir: nft.Ingress}); !ok || d != want {
				t.Errorf("ParseLogPrefix(%q) = %+v, %v; want %+v", p.Prefix, d, ok, want)
			}
		})
	}
	// Logging off: the deny chain stays, without its log rule.
	sync(t, s, plain)
	assertReadback(t, tp.node, plain)
	if err := probe(tp.a, "udp", netip.AddrPortFrom(podB4, 54)); err == nil {
		t.Error("a to b udp/54 connects with the log off")
	}
	if got := rec.take(0); len(got) != 0 {
		t.Errorf("%d records with the log off: %+v", len(got), got)
	}
}

// auditPolicy is loggedPolicy with b's ingress in audit mode: the same
// allow-list, ending in an audit log rule instead of a drop.
func auditPolicy(log *nft.DenyLog) *nft.Ruleset {
	r := nft.NewSkeleton()
	r.SetDenyLog(log)
	r.AddEndpoint(nft.NewAuditEndpoint(nft.Ingress, "test/b", []netip.Addr{podB4, podB6}, nft.AllowList{Ports: []nft.PortAllow{
		{Peer: nft.Addr(podA4), Proto: nft.ProtoTCP, Ports: nft.Port(80), Comment: "a"},
		{Peer: nft.Addr(podA6), Proto: nft.ProtoTCP, Ports: nft.Port(80), Comment: "a"},
	}}, log))
	return r
}

// Audit mode with real packets: what b's audited allow-list does not admit
// passes, with exactly one record marked audit; what it admits passes with
// none. The table reads back as its dump, and switching b to enforcement
// (the annotation removed) drops what the audit logged.
func TestAudit_RealPackets(t *testing.T) {
	requirePrivileges(t)
	tp := buildTopology(t)
	serve(t, tp.b, []int{80, 81}, []int{53})
	s := newSyncer(t, tp.nodeFd)
	log := &nft.DenyLog{Group: testLogGroup, Rate: 100, Burst: 100}
	sync(t, s, auditPolicy(log))
	assertReadback(t, tp.node, auditPolicy(log))
	rec := listen(t, tp.nodeFd)

	bAudit := nft.AuditPrefix(nft.NamesFor(nft.Ingress, "test/b").Chain)
	for _, f := range []struct {
		name, from, proto string
		dst               netip.AddrPort
		logged            bool
	}{
		{"a to b tcp/80, admitted: no record", tp.a, "tcp", netip.AddrPortFrom(podB4, 80), false},
		{"a to b tcp/81, not admitted: passes, one audit record", tp.a, "tcp", netip.AddrPortFrom(podB4, 81), true},
		{"a to b udp/53 over IPv6, not admitted: passes, one audit record", tp.a, "udp", netip.AddrPortFrom(podB6, 53), true},
		{"c to b udp/53 (routed), not admitted: passes, one audit record", tp.c, "udp", netip.AddrPortFrom(podB4, 53), true},
	} {
		t.Run(f.name, func(t *testing.T) {
			if err := probe(f.from, f.proto, f.dst); err != nil {
				t.Fatalf("probe: %v, want it to pass in audit mode", err)
			}
			want := 0
			if f.logged {
				want = 1
			}
			got := rec.take(want)
			if len(got) != want {
				t.Fatalf("got %d records, want %d: %+v", len(got), want, got)
			}
			if want == 1 {
				d, ok := nft.ParseLogPrefix(got[0].Prefix)
				if got[0].Prefix != bAudit || !ok || d.Verdict != nft.VerdictWordAudit || d.Dir != nft.Ingress || got[0].Dst != f.dst.Addr() {
					t.Errorf("record %+v (%+v), want prefix %q to %s", got[0], d, bAudit, f.dst)
				}
			}
		})
	}

	enforced := loggedPolicy(log)
	sync(t, s, enforced)
	assertReadback(t, tp.node, enforced)
	if err := probe(tp.a, "tcp", netip.AddrPortFrom(podB4, 81)); err == nil {
		t.Error("enforced: a to b tcp/81 passed, want dropped")
	}
	if got := rec.take(1); len(got) != 1 || got[0].Prefix != nft.DropPrefix(nft.NamesFor(nft.Ingress, "test/b").Chain) {
		t.Errorf("enforced: records %+v, want one drop record", got)
	}
}

// auditedTierPolicy is b's ingress with an Admin tier holding the
// ClusterNetworkPolicy Deny rule staged ("UDP from a and c, TCP/81 from
// a"), and an enforced NetworkPolicy allow-list admitting a on UDP 53.
// Audited, the rule's elements lead through its audit chain and then on to
// what the enforced rules alone decide: for a's UDP, the allow-list; for
// a's TCP/81, an enforced Accept (the element goes to the chain, so its end
// leaves the tier chain as a return would); for c's UDP/53, an enforced
// Deny (the chain ends in that rule's deny chain). Enforced, staged denies
// it all through its own deny chain.
func auditedTierPolicy(log *nft.DenyLog, audit bool) (r *nft.Ruleset, staged, later nft.DenyRule) {
	staged = nft.DenyRule{Dir: nft.Ingress, Policy: "staged", Rule: "no-a-c"}
	later = nft.DenyRule{Dir: nft.Ingress, Policy: "later", Rule: "no-c-53"}
	laterDeny := log.DenyChain(later)
	v := nft.TierVerdicts{DenyChains: []*nft.Chain{laterDeny}}
	var toAllowList, toAccept, toDeny nft.Verdict
	if audit {
		pass := log.AuditRuleChain([]nft.DenyRule{staged}, "")
		thenDeny := log.AuditRuleChain([]nft.DenyRule{staged}, laterDeny.Name)
		v.AuditChains = []*nft.Chain{pass, thenDeny}
		toAllowList, toAccept, toDeny = nft.Jump(pass.Name), nft.Goto(pass.Name), nft.Jump(thenDeny.Name)
	} else {
		deny := log.DenyChain(staged)
		v.DenyChains = append(v.DenyChains, deny)
		toAllowList, toAccept, toDeny = nft.Jump(deny.Name), nft.Jump(deny.Name), nft.Jump(deny.Name)
	}
	udp := nft.ProtoRange(nft.ProtoUDP, nft.ProtoUDP)
	v.AnyPort = []nft.ProtoVerdict{
		{Peer: nft.Addr(podA4), Protos: udp, Verdict: toAllowList},
		{Peer: nft.Addr(podA6), Protos: udp, Verdict: toAllowList},
	}
	v.Ports = []nft.PortVerdict{
		{Peer: nft.Addr(podA4), Proto: nft.ProtoTCP, Ports: nft.Port(81), Verdict: toAccept},
		{Peer: nft.Addr(podC4), Proto: nft.ProtoUDP, Ports: nft.Port(53), Verdict: toDeny},
	}
	r = nft.NewSkeleton()
	r.SetDenyLog(log)
	admin := nft.NewTierMaps(nft.TierAdmin, nft.Ingress, "staged,later", "Admin ingress rules of staged, later", v)
	allow := nft.NewIsolatedEndpoint(nft.Ingress, "test/b", []netip.Addr{podB4, podB6}, nft.AllowList{Ports: []nft.PortAllow{
		{Peer: nft.Addr(podA4), Proto: nft.ProtoUDP, Ports: nft.Port(53), Comment: "a"},
		{Peer: nft.Addr(podA6), Proto: nft.ProtoUDP, Ports: nft.Port(53), Comment: "a"},
	}}, log)
	r.AddTieredEndpoint(nft.NewTieredEndpoint(nft.Ingress, "test/b", []netip.Addr{podB4, podB6}, admin, allow, nil))
	return r, staged, later
}

// An audited ClusterNetworkPolicy Deny with real packets: what it matches
// passes on to the enforced rules with exactly one record marked audit
// naming it, whatever those decide (the allow-list admits or drops, an
// Accept admits, a Deny denies, each with its own record); the table,
// goto included, reads back as its dump. Enforced, the same rule drops.
func TestAudit_TierDenyRealPackets(t *testing.T) {
	requirePrivileges(t)
	tp := buildTopology(t)
	serve(t, tp.b, []int{81}, []int{53, 54})
	s := newSyncer(t, tp.nodeFd)
	log := &nft.DenyLog{Group: testLogGroup, Rate: 100, Burst: 100}
	audited, staged, later := auditedTierPolicy(log, true)
	sync(t, s, audited)
	assertReadback(t, tp.node, audited)
	if err := s.Verify(context.Background()); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	rec := listen(t, tp.nodeFd)
	audit := nft.AuditRulePrefix(staged)
	bDrop := nft.DropPrefix(nft.NamesFor(nft.Ingress, "test/b").Chain)
	for _, f := range []struct {
		name, from, proto string
		dst               netip.AddrPort
		passes            bool
		records           []string // prefixes, in order
	}{
		{"a to b udp/53: audit record, then the allow-list admits", tp.a, "udp", netip.AddrPortFrom(podB4, 53), true, []string{audit}},
		{"a to b udp/53 over IPv6: the same", tp.a, "udp", netip.AddrPortFrom(podB6, 53), true, []string{audit}},
		{"a to b udp/54: audit record, then the allow-list drops", tp.a, "udp", netip.AddrPortFrom(podB4, 54), false, []string{audit, bDrop}},
		{"a to b tcp/81: audit record, then the enforced Accept admits past the allow-list", tp.a, "tcp", netip.AddrPortFrom(podB4, 81), true, []string{audit}},
		{"c to b udp/53 (routed): audit record, then the enforced Deny", tp.c, "udp", netip.AddrPortFrom(podB4, 53), false, []string{audit, nft.DenyPrefix(later)}},
	} {
		t.Run(f.name, func(t *testing.T) {
			if err := probe(f.from, f.proto, f.dst); (err == nil) != f.passes {
				t.Fatalf("probe: %v, want passes=%v", err, f.passes)
			}
			got := rec.take(len(f.records))
			var prefixes []string
			for _, p := range got {
				prefixes = append(prefixes, p.Prefix)
				if p.Dst != f.dst.Addr() || p.DstPort != f.dst.Port() {
					t.Errorf("record %+v, want one of the packet to %s", p, f.dst)
				}
			}
			if !slices.Equal(prefixes, f.records) {
				t.Errorf("records %q, want %q", prefixes, f.records)
			}
		})
	}
	if d, ok := nft.ParseLogPrefix(audit); !ok || d != (nft.Decision{Verdict: nft.VerdictWordAudit, Policy: staged.Policy, Rule: staged.Rule, Dir: nft.Ingress}) {
		t.Errorf("ParseLogPrefix(%q) = %+v, %v", audit, d, ok)
	}

	// The annotation removed: staged denies, logged as a deny.
	enforced, _, _ := auditedTierPolicy(log, false)
	sync(t, s, enforced)
	assertReadback(t, tp.node, enforced)
	if err := probe(tp.a, "udp", netip.AddrPortFrom(podB4, 53)); err == nil {
		t.Error("enforced: a to b udp/53 passed, want dropped")
	}
	if got := rec.take(1); len(got) != 1 || got[0].Prefix != nft.DenyPrefix(staged) {
		t.Errorf("enforced: records %+v, want one deny record of %s", got, nft.DenyPrefix(staged))
	}
}

//go:build linux

package kernel

// IP plan (rulesets only, no traffic): local pods 10.244.1.N and
// fd00:244:1::N; remote peers in 10.244.2.0/24, 10.244.3.5-10.244.3.9 and
// fd00:244:2::/64; external blocks 192.0.2.0/24 and 2001:db8::/32.

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nftpolicy/nftpolicy/nft"
)

func mustPrefix(s string) nft.Range { return nft.PrefixRange(netip.MustParsePrefix(s)) }
func mustAddr(s string) nft.Range   { return nft.Addr(netip.MustParseAddr(s)) }
func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// rulesetA is realistic: both directions, both families, prefixes, ranges
// and single addresses, tcp/udp/sctp, port ranges, comments.
func rulesetA() *nft.Ruleset {
	r := nft.NewSkeleton()
	r.AddIsolatedEndpoint(nft.Ingress, "default/web", addrs("10.244.1.2", "fd00:244:1::2"), nft.AllowList{
		AnyPort: []nft.Range{mustPrefix("10.244.2.0/24"), mustAddr("10.244.1.7"), mustPrefix("fd00:244:2::/64")},
		Ports: []nft.PortAllow{
			{Peer: nft.AddrRange(netip.MustParseAddr("10.244.3.5"), netip.MustParseAddr("10.244.3.9")), Proto: nft.ProtoTCP, Ports: nft.Port(80), Comment: "policy default/allow-web"},
			{Peer: mustPrefix("192.0.2.0/24"), Proto: nft.ProtoUDP, Ports: nft.PortRange(53, 54)},
			{Peer: mustAddr("2001:db8::1"), Proto: nft.ProtoSCTP, Ports: nft.Port(9000), Comment: "sctp peer"},
		},
	})
	r.AddIsolatedEndpoint(nft.Egress, "default/client", addrs("10.244.1.3"), nft.AllowList{
		Ports: []nft.PortAllow{{Peer: mustAddr("10.244.1.2"), Proto: nft.ProtoTCP, Ports: nft.PortRange(8000, 8080)}},
	})
	r.AddIsolatedEndpoint(nft.Ingress, "kube-system/dns", addrs("10.244.1.4", "fd00:244:1::4"), nft.AllowList{})
	// The node's pod CIDRs minus .0-.4 (its own and known pods) and .7.
	r.SetUnknownLocal([]nft.Range{
		nft.AddrRange(netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("10.244.1.6")),
		nft.AddrRange(netip.MustParseAddr("10.244.1.8"), netip.MustParseAddr("10.244.1.255")),
		nft.AddrRange(netip.MustParseAddr("fd00:244:1::5"), netip.MustParseAddr("fd00:244:1::ffff")),
	})
	return r
}

// rulesetB changes A the way pod churn does: a peer joins, a pod leaves,
// another becomes isolated for egress.
func rulesetB() *nft.Ruleset {
	r := nft.NewSkeleton()
	r.AddIsolatedEndpoint(nft.Ingress, "default/web", addrs("10.244.1.2", "fd00:244:1::2"), nft.AllowList{
		AnyPort: []nft.Range{mustPrefix("10.244.2.0/24"), mustPrefix("fd00:244:2::/64")},
		Ports: []nft.PortAllow{
			{Peer: nft.AddrRange(netip.MustParseAddr("10.244.3.5"), netip.MustParseAddr("10.244.3.9")), Proto: nft.ProtoTCP, Ports: nft.Port(80), Comment: "policy default/allow-web"},
			{Peer: mustAddr("10.244.1.8"), Proto: nft.ProtoTCP, Ports: nft.Port(443), Comment: "new peer"},
		},
	})
	r.AddIsolatedEndpoint(nft.Egress, "kube-system/dns", addrs("10.244.1.4", "fd00:244:1::4"), nft.AllowList{
		AnyPort: []nft.Range{mustPrefix("2001:db8::/32")},
	})
	// Pods appeared at .8 and .20 (an interval split, its start reused),
	// .5 became known, and the v6 guard is gone.
	r.SetUnknownLocal([]nft.Range{
		mustAddr("10.244.1.6"),
		nft.AddrRange(netip.MustParseAddr("10.244.1.9"), netip.MustParseAddr("10.244.1.19")),
		nft.AddrRange(netip.MustParseAddr("10.244.1.21"), netip.MustParseAddr("10.244.1.255")),
	})
	return r
}

func newSyncer(t testing.TB, fd int) *Syncer {
	t.Helper()
	s, err := NewSyncer(WithNetNSFd(fd))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func sync(t testing.TB, s *Syncer, r *nft.Ruleset) {
	t.Helper()
	if err := s.Sync(context.Background(), r); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// assertReadback compares what nft reads back from the kernel with Dump.
func assertReadback(t *testing.T, ns string, r *nft.Ruleset) {
	t.Helper()
	got, want := nft.CanonicalListing(listTable(t, ns)), nft.CanonicalListing(r.Dump())
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nft list vs Dump (-want +got):\n%s", diff)
	}
}

func TestSync_ReadsBackAsDump(t *testing.T) {
	requirePrivileges(t)
	ns, fd := newNetns(t, "rb")
	s := newSyncer(t, fd)

	sync(t, s, rulesetA())
	assertReadback(t, ns, rulesetA())
	if err := s.Verify(context.Background()); err != nil {
		t.Errorf("Verify after full sync: %v", err)
	}

	sync(t, s, rulesetB()) // incremental
	assertReadback(t, ns, rulesetB())
	if err := s.Verify(context.Background()); err != nil {
		t.Errorf("Verify after incremental sync: %v", err)
	}

	s2 := newSyncer(t, fd) // a restart: full replace over B
	sync(t, s2, rulesetA())
	assertReadback(t, ns, rulesetA())
	if err := s2.Verify(context.Background()); err != nil {
		t.Errorf("Verify after full replace: %v", err)
	}
}

// TestSync_RehookedBaseChain applies a ruleset, then one whose forward
// chain sits at another priority. The kernel cannot move a base chain in
// place (EEXIST), so the chain is deleted and created again; both the full
// replace of a restarted agent and an incremental sync must do it in one
// committed batch, and the kernel must show the new priority.
func TestSync_RehookedBaseChain(t *testing.T) {
	requirePrivileges(t)
	moved := rulesetA()
	moved.Chains[nft.ChainForward].Hook.Priority = 10
	tests := []struct {
		name string
		// second syncs moved after rulesetA was applied with first.
		second func(t *testing.T, first *Syncer, fd int) *Syncer
	}{
		{name: "full replace", second: func(t *testing.T, _ *Syncer, fd int) *Syncer { return newSyncer(t, fd) }},
		{name: "incremental", second: func(t *testing.T, first *Syncer, _ int) *Syncer { return first }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, fd := newNetns(t, "rehook")
			first := newSyncer(t, fd)
			sync(t, first, rulesetA())
			s := tt.second(t, first, fd)
			before := generation(t, fd)
			sync(t, s, moved)
			if n := generation(t, fd) - before; n != 1 {
				t.Errorf("the sync committed %d batches, want 1", n)
			}
			assertReadback(t, ns, moved)
			if got := listTable(t, ns); !strings.Contains(got, "hook forward priority filter + 10") {
				t.Errorf("forward chain not at priority filter + 10:\n%s", got)
			}
			if err := s.Verify(context.Background()); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

// TestSyncAndVerify_DeadlineBoundsTheBatch gives a full replace of a large
// ruleset, and a read-back of it, a deadline of a twentieth of what the
// same work took without one in this run (so it holds on a fast machine
// and a slow one alike). Both must stop with context.DeadlineExceeded
// instead of running to the end, the kernel must hold one whole ruleset,
// old or new (a batch is one transaction), and the next Sync without a
// deadline must repair everything.
func TestSyncAndVerify_DeadlineBoundsTheBatch(t *testing.T) {
	requirePrivileges(t)
	_, fd := newNetns(t, "deadline")
	old, next := benchRuleset(200, 250), benchRuleset(200, 200) // 50,000 and 40,000 elements
	s := newSyncer(t, fd)
	start := time.Now()
	sync(t, s, old)
	fullSync := time.Since(start)
	start = time.Now()
	if err := s.Verify(context.Background()); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	fullVerify := time.Since(start)
	t.Logf("without a deadline: full sync %v, read-back %v", fullSync, fullVerify)

	ctx, cancel := context.WithTimeout(context.Background(), fullVerify/20)
	err := s.Verify(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Verify with a deadline of %v = %v, want context.DeadlineExceeded", fullVerify/20, err)
	}
	t.Logf("read-back stopped by its deadline: %v", err)

	restarted := newSyncer(t, fd) // a full replace, which does the most work
	ctx, cancel = context.WithTimeout(context.Background(), fullSync/20)
	err = restarted.Sync(ctx, next)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync with a deadline of %v = %v, want context.DeadlineExceeded", fullSync/20, err)
	}
	t.Logf("stopped by its deadline: %v", err)

	// Exactly one of the two rulesets is in the kernel, whole.
	holds := func(r *nft.Ruleset) bool {
		probe := newSyncer(t, fd)
		probe.last = r
		return probe.Verify(context.Background()) == nil
	}
	if o, n := holds(old), holds(next); o == n {
		t.Errorf("after the interrupted sync the kernel holds the old ruleset: %v, the new one: %v; want exactly one", o, n)
	}
	sync(t, restarted, next)
	if err := restarted.Verify(context.Background()); err != nil {
		t.Errorf("Verify after the next sync: %v", err)
	}
}

func TestSync_NoOpSendsNothing(t *testing.T) {
	requirePrivileges(t)
	ns, fd := newNetns(t, "noop")
	s := newSyncer(t, fd)
	sync(t, s, rulesetA())
	if !s.Tightened() {
		t.Error("Tightened() after the first sync (a full replace) = false, want true")
	}
	before := nftIn(t, ns, "-a", "list", "table", "inet", "nftpolicy")
	sync(t, s, rulesetA())
	if s.Tightened() {
		t.Error("Tightened() after syncing the same ruleset = true, want false")
	}
	if after := nftIn(t, ns, "-a", "list", "table", "inet", "nftpolicy"); after != before {
		t.Errorf("an unchanged ruleset changed rule handles:\n%s\n---\n%s", before, after)
	}
	sync(t, s, rulesetB())
	if !s.Tightened() {
		t.Error("Tightened() after an incremental sync to a ruleset that isolates other pods = false, want true")
	}
}

// TestSync_SharedEndpointsAreSkippedNotLost syncs rulesets that share
// endpoints by pointer with the previous one, as policy.NodeCompiler builds
// them: the shared ones are not compared, the others must still reach the
// kernel, and after a failed sync the next one replaces everything, shared
// or not.
func TestSync_SharedEndpointsAreSkippedNotLost(t *testing.T) {
	requirePrivileges(t)
	ns, fd := newNetns(t, "shared")
	s := newSyncer(t, fd)
	web := nft.NewIsolatedEndpoint(nft.Ingress, "default/web", addrs("10.244.1.2"), nft.AllowList{AnyPort: []nft.Range{mustAddr("10.244.2.7")}}, nil)
	dnsA := nft.NewIsolatedEndpoint(nft.Ingress, "kube-system/dns", addrs("10.244.1.4"), nft.AllowList{}, nil)
	dnsB := nft.NewIsolatedEndpoint(nft.Ingress, "kube-system/dns", addrs("10.244.1.4"), nft.AllowList{
		Ports: []nft.PortAllow{{Peer: mustPrefix("10.244.0.0/16"), Proto: nft.ProtoUDP, Ports: nft.Port(53)}},
	}, nil)
	build := func(eps ...*nft.IsolatedEndpoint) *nft.Ruleset {
		r := nft.NewSkeleton()
		for _, e := range eps {
			r.AddEndpoint(e)
		}
		return r
	}
	sync(t, s, build(web, dnsA))
	b := build(web, dnsB) // web shared, dns rebuilt with a new element
	sync(t, s, b)
	assertReadback(t, ns, b)
	if err := s.Verify(context.Background()); err != nil {
		t.Errorf("Verify after a sync that shared an endpoint: %v", err)
	}

	// Break the kernel's copy of the shared endpoint behind the Syncer's
	// back; a failed sync then forgets what it applied, so the next sync
	// replaces (and so repairs) everything, the shared endpoint included.
	nftIn(t, ns, "flush", "set", "inet", "nftpolicy", web.Names.AnyV4)
	// Overlapping intervals in one set: the kernel rejects the batch.
	overlapping := nft.NewIsolatedEndpoint(nft.Egress, "default/web", addrs("10.244.1.2"), nft.AllowList{
		AnyPort: []nft.Range{mustPrefix("10.244.2.0/24"), mustPrefix("10.244.2.128/25")},
	}, nil)
	if err := s.Sync(context.Background(), build(web, dnsB, overlapping)); err == nil {
		t.Fatal("Sync of overlapping intervals succeeded, want an error")
	}
	sync(t, s, b)
	assertReadback(t, ns, b)
}

func TestSync_KernelRejectionKeepsPreviousRuleset(t *testing.T) {
	requirePrivileges(t)
	ns, fd := newNetns(t, "atomic")
	s := newSyncer(t, fd)
	sync(t, s, rulesetA())
	before := listTable(t, ns)

	// Two overlapping intervals in one set: nftables refuses the element,
	// and with it the whole batch (which also adds a pod).
	bad := rulesetB()
	names := nft.NamesFor(nft.Ingress, "default/web")
	any4 := bad.Sets[names.AnyV4]
	any4.Elements = append(any4.Elements, nft.Element{Key: []nft.Range{mustPrefix("10.244.2.128/25")}})
	err := s.Sync(context.Background(), bad)
	if err == nil {
		t.Fatal("Sync of overlapping intervals succeeded, want an error")
	}
	t.Logf("rejected as expected: %v", err)
	if after := listTable(t, ns); after != before {
		t.Errorf("table changed by a failed batch:\n--- before\n%s\n--- after\n%s", before, after)
	}

	// The next good Sync is a full replace and succeeds.
	sync(t, s, rulesetB())
	assertReadback(t, ns, rulesetB())
}

func TestVerify_DetectsAndRepairsDrift(t *testing.T) {
	requirePrivileges(t)
	names := nft.NamesFor(nft.Ingress, "default/web")
	tests := []struct {
		name  string
		drift []string
	}{
		{name: "element deleted", drift: []string{"delete", "element", "inet", "nftpolicy", names.AddrV4, "{ 10.244.1.7 }"}},
		{name: "chain flushed", drift: []string{"flush", "chain", "inet", "nftpolicy", names.Chain}},
		{name: "base chain flushed", drift: []string{"flush", "chain", "inet", "nftpolicy", "forward"}},
		{name: "extra chain", drift: []string{"add", "chain", "inet", "nftpolicy", "intruder"}},
		{name: "table flushed", drift: []string{"flush", "table", "inet", "nftpolicy"}},
		{name: "table deleted", drift: []string{"delete", "table", "inet", "nftpolicy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, fd := newNetns(t, "drift")
			s := newSyncer(t, fd)
			sync(t, s, rulesetA())
			nftIn(t, ns, tt.drift...)
			err := s.Verify(context.Background())
			if !errors.Is(err, ErrDrift) {
				t.Fatalf("Verify = %v, want ErrDrift", err)
			}
			t.Logf("drift: %v", err)
			sync(t, s, rulesetA())
			assertReadback(t, ns, rulesetA())
			if err := s.Verify(context.Background()); err != nil {
				t.Errorf("Verify after repair: %v", err)
			}
		})
	}
}

func TestCleanup_DeletesOnlyOurTable(t *testing.T) {
	requirePrivileges(t)
	ns, fd := newNetns(t, "cleanup")
	nftIn(t, ns, "add", "table", "inet", "other")
	sync(t, newSyncer(t, fd), rulesetA())
	if err := Cleanup(WithNetNSFd(fd)); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if err := Cleanup(WithNetNSFd(fd)); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	got := nftIn(t, ns, "list", "tables")
	if strings.Contains(got, "nftpolicy") || !strings.Contains(got, "other") {
		t.Errorf("tables after Cleanup:\n%s", got)
	}
}

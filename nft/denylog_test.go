package nft_test

// IP plan: pod x/a 10.244.1.10 (isolated for ingress, admits 10.244.2.0/24
// on any port); 10.244.3.5 is a peer it does not admit.

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nftpolicy/nftpolicy/nft"
)

func TestDenyLog_PrefixRoundTrip(t *testing.T) {
	long := strings.Repeat("n", 63) + "/" + strings.Repeat("p", 63)
	for _, tc := range []struct {
		name string
		dir  nft.Direction
		id   string
	}{
		{"ingress", nft.Ingress, "x/a"},
		{"egress", nft.Egress, "x/a"},
		{"longest names", nft.Egress, long},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain := nft.NamesFor(tc.dir, tc.id).Chain
			p := nft.DropPrefix(chain)
			if len(p) > nft.MaxLogPrefix {
				t.Fatalf("prefix %q is %d bytes, the kernel takes %d", p, len(p), nft.MaxLogPrefix)
			}
			d, ok := nft.ParseLogPrefix(p)
			if want := (nft.Decision{Verdict: "drop", Chain: chain, Dir: tc.dir}); !ok || d != want {
				t.Errorf("ParseLogPrefix(%q) = %+v, %v; want %+v", p, d, ok, want)
			}
		})
	}
	for _, r := range []nft.DenyRule{
		{Dir: nft.Ingress, Policy: "default-deny", Rule: "ingress[0]"},
		{Dir: nft.Egress, Policy: "block-metadata", Rule: "no imds"},
	} {
		p := nft.DenyPrefix(r)
		d, ok := nft.ParseLogPrefix(p)
		if want := (nft.Decision{Verdict: "deny", Policy: r.Policy, Rule: r.Rule, Dir: r.Dir}); !ok || d != want {
			t.Errorf("ParseLogPrefix(%q) = %+v, %v; want %+v", p, d, ok, want)
		}
	}
	for _, r := range []nft.DenyRule{
		{Dir: nft.Ingress, Policy: "staged-deny", Rule: "ingress[0]"},
		{Dir: nft.Egress, Policy: "staged-block", Rule: "no imds"},
	} {
		p := nft.AuditRulePrefix(r)
		d, ok := nft.ParseLogPrefix(p)
		if want := (nft.Decision{Verdict: "audit", Policy: r.Policy, Rule: r.Rule, Dir: r.Dir}); !ok || d != want {
			t.Errorf("ParseLogPrefix(%q) = %+v, %v; want %+v", p, d, ok, want)
		}
	}
	longRule := nft.DenyRule{Dir: nft.Egress, Policy: strings.Repeat("p", 253), Rule: "r"}
	if p := nft.DenyPrefix(longRule); len(p) > nft.MaxLogPrefix {
		t.Errorf("deny prefix %q is %d bytes, the kernel takes %d", p, len(p), nft.MaxLogPrefix)
	} else if d, ok := nft.ParseLogPrefix(p); !ok || d.Dir != nft.Egress || !strings.HasPrefix(longRule.Policy, d.Policy) {
		t.Errorf("ParseLogPrefix(%q) = %+v, %v; want the policy's name cut short", p, d, ok)
	}
	for _, bad := range []string{"", "nftpolicy ", "nftpolicy drop", "nftpolicy drop x-1", "other drop in-1", "nftpolicy deny in", "nftpolicy deny up p/r", "nftpolicy audit in", "nftpolicy audit in "} {
		if d, ok := nft.ParseLogPrefix(bad); ok {
			t.Errorf("ParseLogPrefix(%q) = %+v, want not ok", bad, d)
		}
	}
}

// The log rule sits between the allow-list and the drop: Trace, like the
// kernel, walks through it to the same verdicts as without it.
func TestDenyLog_TraceVerdictsUnchanged(t *testing.T) {
	a := netip.MustParseAddr("10.244.1.10")
	build := func(log *nft.DenyLog) *nft.Ruleset {
		r := nft.NewSkeleton()
		r.SetDenyLog(log)
		r.AddEndpoint(nft.NewIsolatedEndpoint(nft.Ingress, "x/a", []netip.Addr{a},
			nft.AllowList{AnyPort: []nft.Range{nft.PrefixRange(netip.MustParsePrefix("10.244.2.0/24"))}}, log))
		return r
	}
	logged, plain := build(&nft.DenyLog{Group: 1, Rate: 10, Burst: 5}), build(nil)
	if !strings.Contains(logged.Dump(), `limit name "deny-log-10ps-5" log prefix "nftpolicy drop in-`) {
		t.Errorf("no log rule in:\n%s", logged.Dump())
	}
	for _, p := range []nft.Packet{
		{Hook: nft.HookForward, Src: netip.MustParseAddr("10.244.2.7"), Dst: a, Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateNew},
		{Hook: nft.HookForward, Src: netip.MustParseAddr("10.244.3.5"), Dst: a, Proto: nft.ProtoTCP, DstPort: 80, CtState: nft.CtStateNew},
	} {
		if got, want := logged.Trace(p).Verdict, plain.Trace(p).Verdict; got != want {
			t.Errorf("%s: verdict with log %v, without %v", p, got, want)
		}
	}
	if ops := nft.Diff(plain, logged); len(ops) == 0 || ops[0].Kind != nft.OpAddLimit {
		t.Errorf("turning the log on: first op %v, want add-limit", ops)
	}
	if ops := nft.Diff(logged, plain); len(ops) == 0 || ops[len(ops)-1].Kind != nft.OpDeleteLimit {
		t.Errorf("turning the log off: last op %v, want delete-limit", ops)
	}
}

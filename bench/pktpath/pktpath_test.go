//go:build linux

package pktpath

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy"
)

// The compiled table of every size admits the sender to the receiver's
// UDP port and nothing else of what the run sends: the figure measures a
// table that filters, with the admitting element among n.
func TestSnapshot_AdmitsTheSenderOnly(t *testing.T) {
	for _, n := range []int{0, 1, 1000} {
		rs, warnings := policy.Compile(Snapshot(n))
		if len(warnings) > 0 {
			t.Fatalf("n=%d: warnings %+v", n, warnings)
		}
		allow := 0
		for name, s := range rs.Sets {
			if strings.HasPrefix(name, "in-") {
				allow += len(s.Elements)
			}
		}
		if allow != n {
			t.Errorf("n=%d: the receiver's allow-list has %d elements", n, allow)
		}
		udp := func(from, port int) nft.VerdictKind {
			addr := senderAddr
			if from == 1 {
				addr = outsiderAddr
			}
			return rs.Verdict(nft.Packet{Hook: nft.HookForward, Src: addr, Dst: receiverAddr, Proto: 17, DstPort: uint16(port), CtState: nft.CtStateUntracked})
		}
		wantOutsider := nft.VerdictDrop
		if n == 0 { // no policy: the receiver is not isolated
			wantOutsider = nft.VerdictAccept
		}
		if got := udp(0, Port); got != nft.VerdictAccept {
			t.Errorf("n=%d: sender → receiver UDP %d: %v, want accept", n, Port, got)
		}
		if got := udp(1, Port); got != wantOutsider {
			t.Errorf("n=%d: outsider → receiver UDP %d: %v, want %v", n, Port, got, wantOutsider)
		}
		if n > 0 {
			if got := udp(0, Port+1); got != nft.VerdictDrop {
				t.Errorf("n=%d: sender → receiver UDP %d: %v, want drop", n, Port+1, got)
			}
		}
	}
}

func TestFillerBlock_NeverAdjacentNorInThePodCIDR(t *testing.T) {
	prev := FillerBlock(0).Addr()
	for _, i := range []int{1, 2, 255, 256, 65535, 999_999} {
		a := FillerBlock(i).Addr()
		if a.Next() == prev || prev.Next() == a || podCIDR.Contains(a) || a == senderAddr {
			t.Errorf("FillerBlock(%d) = %s (previous checked %s)", i, a, prev)
		}
		prev = a
	}
}

func TestRotation_EveryConfigOncePerRound(t *testing.T) {
	firsts := map[int]bool{}
	for r := range 6 {
		order := rotation(3, r)
		seen := map[int]bool{}
		for _, i := range order {
			seen[i] = true
		}
		if len(order) != 3 || len(seen) != 3 {
			t.Fatalf("round %d: order %v", r, order)
		}
		firsts[order[0]] = true
	}
	if len(firsts) != 3 {
		t.Fatalf("over 6 rounds only %v came first", firsts)
	}
}

// A short run end to end in namespaces of its own (root): every
// configuration is measured each round, the outsider is blocked exactly
// where a policy isolates the receiver, and a table that cannot commit
// within the bound is reported, not fatal. No rate is asserted.
func TestSmoke_Run(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root (CI is set, so not skipping)")
		}
		t.Skip("needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{Elements: []int{0, 100}, Rounds: 2, Run: 30 * time.Millisecond, MaxPackets: 50_000, Resamples: 100, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Configs) != 3 {
		t.Fatalf("%d configs, want 3", len(res.Configs))
	}
	for i, c := range res.Configs {
		if c.SetupError != "" || len(c.PPSRuns) != 2 || c.RatioVsNoTable.N != 2 {
			t.Errorf("%s: setup %q, %d runs, %d ratios", c.Name, c.SetupError, len(c.PPSRuns), c.RatioVsNoTable.N)
		}
		if wantBlocked := i == 2; c.OutsiderBlocked != wantBlocked {
			t.Errorf("%s: outsider blocked %v", c.Name, c.OutsiderBlocked)
		}
	}
	if c := res.Configs[2]; c.AllowListElements != 100 {
		t.Errorf("%s: allow-list %d elements, want 100", c.Name, c.AllowListElements)
	}
	// The sync bound: an already expired one reports the table unmeasured.
	res, err = Run(ctx, Options{Elements: []int{100}, Rounds: 2, Run: 30 * time.Millisecond, MaxPackets: 50_000, Resamples: 100, SyncTimeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Configs) != 2 || res.Configs[1].SetupError == "" || len(res.Configs[1].PPSRuns) != 0 {
		t.Fatalf("configs %+v: want the 100-element table reported as not committed", res.Configs)
	}
}

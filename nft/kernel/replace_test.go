//go:build linux

package kernel

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/nft"
)

// A full replace (what an agent does on start, and after drift) of a table
// whose content does not change must not drop one packet that both the old
// and the new ruleset allow. Pod c sends a stream of new UDP flows (each
// datagram from a new socket, so that every one is judged, none rides a
// conntrack entry) to pod b, which admits it, while fresh Syncers replace
// the table again and again; b must receive every datagram.
//
// The kernel makes a set's new elements visible when its transaction
// commits, but a pipapo set (concatenated interval keys: our allow-lists)
// publishes its elements only after the new rules are live: a set deleted
// and created again in the batch is empty for that moment, and a packet
// the allow-list admits is dropped. This test failed that way before the
// full replace kept the sets it can keep.
func TestSync_FullReplaceKeepsAllowedFlowsFlowing(t *testing.T) {
	requirePrivileges(t)
	tp := buildTopology(t)
	const port = 53
	var received atomic.Int64
	seen := make([]atomic.Bool, 1<<16)
	err := inNetns(tp.b, func() error {
		c, err := net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		if err != nil {
			return err
		}
		t.Cleanup(func() { c.Close() })
		go func() {
			buf := make([]byte, 64)
			for {
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				if n >= 4 && !seen[binary.BigEndian.Uint32(buf)%(1<<16)].Swap(true) {
					received.Add(1)
				}
			}
		}()
		return nil
	})
	if err != nil {
		t.Fatalf("server in b: %v", err)
	}

	rules := packetPolicy() // b admits c on UDP 53
	sync(t, newSyncer(t, tp.nodeFd), rules)

	// Each replace is a new Syncer: it knows nothing of the kernel's
	// table, like an agent that has just started.
	const replaces = 200
	stop := make(chan struct{})
	var wg gosync.WaitGroup
	var sent int
	var sendErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		sendErr = inNetns(tp.c, func() error {
			dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(podB4, port))
			for seq := uint32(0); seq < 1<<16; seq++ {
				select {
				case <-stop:
					return nil
				default:
				}
				conn, err := net.DialUDP("udp", nil, dst)
				if err != nil {
					return err
				}
				var msg [4]byte
				binary.BigEndian.PutUint32(msg[:], seq)
				_, err = conn.Write(msg[:])
				conn.Close()
				if err != nil {
					return err
				}
				sent++
				time.Sleep(50 * time.Microsecond)
			}
			return nil
		})
	}()
	for range replaces {
		s := newSyncer(t, tp.nodeFd)
		if err := s.Sync(context.Background(), rules); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("full replace: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	if sendErr != nil {
		t.Fatalf("sender in c: %v", sendErr)
	}
	// The last datagrams may still be on their way.
	deadline := time.Now().Add(2 * time.Second)
	for received.Load() < int64(sent) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if sent < 1000 {
		t.Fatalf("only %d datagrams sent during %d replaces: too few to tell", sent, replaces)
	}
	if got := received.Load(); got != int64(sent) {
		t.Errorf("b received %d of %d datagrams c sent during %d full replaces of an unchanged table: %d allowed packets dropped",
			got, sent, replaces, int64(sent)-got)
	}
	t.Logf("%d datagrams, %d full replaces", sent, replaces)
}

// A set the kernel holds under a name desired uses, with the same flags but
// another key type, cannot be kept through a full replace: the kernel
// refuses to add it again (EEXIST) and the whole batch with it, leaving the
// old ruleset in place. The retry deletes every set, and succeeds.
func TestSync_FullReplaceOfASetDefinedOtherwise(t *testing.T) {
	requirePrivileges(t)
	ns, fd := newNetns(t, "redefine")
	withKey := func(kt nft.KeyType, key []byte) *nft.Ruleset {
		r := nft.NewSkeleton()
		r.AddSet(&nft.Set{Name: "peers", KeyTypes: []nft.KeyType{kt}, Elements: []nft.Element{{Key: []nft.Range{{From: key, To: key}}}}})
		return r
	}
	old := withKey(nft.TypeIPv4Addr, []byte{10, 0, 0, 1})
	sync(t, newSyncer(t, fd), old)

	next := withKey(nft.TypeIPv6Addr, netip.MustParseAddr("fd00::1").AsSlice())
	s := newSyncer(t, fd)
	if err := s.Sync(context.Background(), next); err == nil {
		t.Fatal("the first full replace kept a set whose key type changed; want the kernel to refuse it")
	}
	assertReadback(t, ns, old)
	sync(t, s, next)
	assertReadback(t, ns, next)
	if err := s.Verify(context.Background()); err != nil {
		t.Errorf("Verify after the retry: %v", err)
	}
}

// A full replace by a fresh Syncer (an agent that has just started) reads
// the pipapo sets it keeps back and writes only their difference from
// desired: no element the kernel already holds right is deleted or added
// again, every one it holds wrong is deleted, and the table then reads
// back as desired. The expected counts come from nft.Diff of the two
// models, set by set; hash and rbtree sets are emptied and refilled.
func TestSync_FullReplaceWritesOnlyTheDifference(t *testing.T) {
	requirePrivileges(t)
	for _, tc := range []struct {
		name     string
		from, to *nft.Ruleset
	}{
		{"unchanged", rulesetA(), rulesetA()},
		{"pod churn", rulesetA(), rulesetB()},
		{"pod churn undone", rulesetB(), rulesetA()},
		{"tier verdict changed", tierPolicy(nft.Drop, true), tierPolicy(nft.Return, true)},
		{"elements change shape", shapesPolicy(false), shapesPolicy(true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns, fd := newNetns(t, "keep")
			sync(t, newSyncer(t, fd), tc.from)
			s := newSyncer(t, fd)
			sync(t, s, tc.to)
			assertReadback(t, ns, tc.to)
			if err := s.Verify(context.Background()); err != nil {
				t.Errorf("Verify after the replace: %v", err)
			}
			got, want := s.LastReplace(), expectedReplace(tc.from, tc.to)
			t.Logf("%+v", got)
			if got != want {
				t.Errorf("full replace %+v, want %+v", got, want)
			}
		})
	}
}

// expectedReplace is what a full replace from a kernel holding from to
// desired to should do, by the model: a pipapo set both define the same
// way keeps what nft.Diff would not touch, another set both define the
// same way is flushed and refilled; every other set of to is new, all its
// elements added.
func expectedReplace(from, to *nft.Ruleset) ReplaceStats {
	var want ReplaceStats
	for name, ts := range to.Sets {
		fs, ok := from.Sets[name]
		if !ok || fs.Interval != ts.Interval || fs.IsVerdictMap != ts.IsVerdictMap || !slices.Equal(fs.KeyTypes, ts.KeyTypes) {
			want.ElementsAdded += len(ts.Elements)
			continue
		}
		if !ts.Interval || len(ts.KeyTypes) == 1 {
			want.SetsFlushed++
			want.ElementsAdded += len(ts.Elements)
			continue
		}
		a, b := nft.NewRuleset(), nft.NewRuleset()
		a.AddSet(fs)
		b.AddSet(ts)
		added := 0
		for _, op := range nft.Diff(a, b) {
			switch op.Kind {
			case nft.OpAddElements:
				added += len(op.Elements)
			case nft.OpDeleteElements:
				want.ElementsDeleted += len(op.Elements)
			}
		}
		want.ElementsAdded += added
		want.ElementsKept += len(ts.Elements) - added
	}
	return want
}

package nfttest_test

// IP plan: the isolated pod at 10.244.1.2, its peers 10.244.2.N.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

// withPeers is the skeleton with pod ns/b isolated for ingress, admitting
// remote peers 10.244.2.N on TCP 80.
func withPeers(peers ...int) *nft.Ruleset {
	r := nft.NewSkeleton()
	var allow nft.AllowList
	for _, p := range peers {
		peer := nft.Addr(netip.AddrFrom4([4]byte{10, 244, 2, byte(p)}))
		allow.Ports = append(allow.Ports, nft.PortAllow{Peer: peer, Proto: nft.ProtoTCP, Ports: nft.Port(80), Comment: fmt.Sprintf("peer %d", p)})
	}
	r.AddIsolatedEndpoint(nft.Ingress, "ns/b", []netip.Addr{netip.MustParseAddr("10.244.1.2")}, allow)
	return r
}

func TestFakeSyncer_IncrementalAfterFirst(t *testing.T) {
	ctx := context.Background()
	f := nfttest.NewFakeSyncer()
	for i, r := range []*nft.Ruleset{withPeers(1), withPeers(1, 2), withPeers(2), nft.NewSkeleton()} {
		if err := f.Sync(ctx, r); err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
		if got, want := f.Table().Dump(), r.Dump(); got != want {
			t.Fatalf("sync %d: table\n%s\nwant\n%s", i, got, want)
		}
	}
	if full, incremental, _ := f.Syncs(); full != 1 || incremental != 3 {
		t.Errorf("syncs = %d full, %d incremental; want 1, 3", full, incremental)
	}
	// The same ruleset again is nothing to do.
	same := nft.NewSkeleton()
	if err := f.Sync(ctx, same); err != nil {
		t.Fatal(err)
	}
	if _, _, ops := f.Syncs(); ops != 0 {
		t.Errorf("an unchanged ruleset took %d ops, want 0", ops)
	}
}

// TestFakeSyncer_ModifiedAfterSync: a caller that changes a ruleset after
// handing it over breaks the contract kernel.Syncer relies on; the fake
// says so, and the next sync is a full replace.
func TestFakeSyncer_ModifiedAfterSync(t *testing.T) {
	ctx := context.Background()
	f := nfttest.NewFakeSyncer()
	first := withPeers(1)
	if err := f.Sync(ctx, first); err != nil {
		t.Fatal(err)
	}
	// Shared by pointer with the next ruleset, then changed in place:
	// nft.Diff skips the set, so the kernel would never see the change.
	next := withPeers(1)
	for name, s := range first.Sets {
		next.Sets[name] = s
	}
	for name, s := range first.Sets {
		if len(s.Elements) > 0 {
			first.Sets[name].Elements = s.Elements[:0]
		}
	}
	err := f.Sync(ctx, next)
	if !errors.Is(err, nfttest.ErrContract) {
		t.Fatalf("sync after modifying the synced ruleset = %v, want ErrContract", err)
	}
	if err := f.Sync(ctx, withPeers(1)); err != nil {
		t.Fatal(err)
	}
	if full, _, _ := f.Syncs(); full != 2 {
		t.Errorf("full replaces = %d, want 2 (after the error)", full)
	}
}

// TestFakeSyncer_RefusesWhatTheKernelWould: a ruleset whose rule looks up
// a set that does not exist fails the sync and leaves the table as it was.
func TestFakeSyncer_RefusesWhatTheKernelWould(t *testing.T) {
	ctx := context.Background()
	f := nfttest.NewFakeSyncer()
	good := withPeers(1)
	if err := f.Sync(ctx, good); err != nil {
		t.Fatal(err)
	}
	bad := withPeers(1)
	for name, s := range bad.Sets {
		if !s.IsVerdictMap {
			delete(bad.Sets, name)
			break
		}
	}
	if err := f.Sync(ctx, bad); err == nil {
		t.Fatal("sync of a ruleset with a dangling set reference succeeded")
	}
	if got, want := f.Table().Dump(), good.Dump(); got != want {
		t.Errorf("table after a refused sync:\n%s\nwant\n%s", got, want)
	}
}

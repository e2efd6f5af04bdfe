package nfttest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nftpolicy/nftpolicy/nft"
)

// ErrContract is wrapped by Sync's error when the caller broke the Syncer
// contract (modified a ruleset after handing it to Sync) or when the
// incremental ops left the fake table different from the desired ruleset.
var ErrContract = errors.New("dataplane contract broken")

// FakeSyncer is a dataplane without a kernel. Like kernel.Syncer it keeps
// the caller's last synced ruleset (not a copy) and sends only
// nft.Diff(last, desired), or a full replace when last is unknown (the
// first sync, and after an error). The ops are played on a private table
// by Apply, which refuses what the kernel would refuse, and the result must
// read back (Dump) equal to desired. It also checks the caller's side of
// the contract: a ruleset must not change after Sync, since the next diff
// skips the sets and chains shared with it by pointer.
//
// It is safe for concurrent use.
type FakeSyncer struct {
	mu sync.Mutex
	// last is the caller's ruleset of the last successful sync, lastDump
	// its listing at that time; nil after an error.
	last     *nft.Ruleset
	lastDump string
	// table is what the kernel would hold: built by Apply only, it shares
	// nothing with callers' rulesets.
	table *nft.Ruleset
	// full and incremental count successful syncs of each kind; ops is the
	// number of ops of the last successful sync.
	full, incremental, ops int
}

// NewFakeSyncer returns a FakeSyncer with an empty table.
func NewFakeSyncer() *FakeSyncer {
	return &FakeSyncer{table: nft.NewRuleset()}
}

// Sync makes the fake table equal desired, as kernel.Syncer.Sync does: on
// error the table keeps what it held and the next Sync is a full replace.
// desired must not be modified after Sync returns.
func (f *FakeSyncer) Sync(ctx context.Context, desired *nft.Ruleset) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.sync(desired); err != nil {
		f.last, f.lastDump = nil, ""
		return fmt.Errorf("fake sync: %w", err)
	}
	return nil
}

func (f *FakeSyncer) sync(desired *nft.Ruleset) error {
	want := desired.Dump()
	var (
		ops  []nft.Op
		base *nft.Ruleset
	)
	if f.last == nil {
		// A full replace: whatever the table held goes, in the same batch.
		ops, base = nft.Diff(nil, desired), nil
	} else {
		if got := f.last.Dump(); got != f.lastDump {
			return fmt.Errorf("%w: the last synced ruleset was modified after Sync", ErrContract)
		}
		ops, base = nft.Diff(f.last, desired), f.table
	}
	next, err := Apply(base, ops)
	if err != nil {
		return err
	}
	if got := next.Dump(); got != want {
		return fmt.Errorf("%w: the table after %d ops differs from the desired ruleset:\n%s\n--- want\n%s", ErrContract, len(ops), got, want)
	}
	if f.last == nil {
		f.full++
	} else {
		f.incremental++
	}
	f.table, f.last, f.lastDump, f.ops = next, desired, want, len(ops)
	return nil
}

// Table returns a copy of what the fake kernel holds.
func (f *FakeSyncer) Table() *nft.Ruleset {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Clone(f.table)
}

// Syncs returns how many syncs succeeded as full replaces and as
// incremental diffs, and the number of ops the last one sent.
func (f *FakeSyncer) Syncs() (full, incremental, lastOps int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.full, f.incremental, f.ops
}

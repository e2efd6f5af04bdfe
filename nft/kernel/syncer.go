//go:build linux

// Package kernel writes the nft model into the kernel through netlink: one
// atomic batch per sync, incremental after the first, and read back to
// detect drift. It is the only package that imports google/nftables.
package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/nft"
)

// Option configures a Syncer (and Cleanup).
type Option func(*config)

type config struct {
	connOpts []nftables.ConnOption
	// netnsFd is the namespace of WithNetNSFd, for the monitor and NFLOG
	// sockets; 0: the caller's own.
	netnsFd int
}

// WithNetNSFd targets the network namespace behind fd instead of the
// caller's own (tests; an agent in a DaemonSet uses the host's).
func WithNetNSFd(fd int) Option {
	return func(c *config) {
		c.connOpts = append(c.connOpts, nftables.WithNetNSFd(fd))
		c.netnsFd = fd
	}
}

func newConfig(opts []Option) config {
	var c config
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Syncer keeps table inet nftpolicy equal to a desired model. It is not
// safe for concurrent use: the agent syncs from one reconcile loop.
type Syncer struct {
	cfg config
	// last is the desired ruleset of the last successful sync, as the
	// caller passed it (never modified, see Sync), which is what the
	// kernel holds; nil means unknown (start, or after an error), so the
	// next sync replaces everything. Keeping the caller's ruleset instead
	// of a private copy saves a second copy of every element, and lets the
	// next sync skip the sets and chains it shares by pointer
	// (nft.Diff).
	last *nft.Ruleset
	// own holds the port ids of the sockets this Syncer opened lately, for
	// WatchForeignChanges (which runs in another goroutine).
	own ownPorts
	// tightened: the last successful Sync may deny what the kernel
	// allowed before it.
	tightened bool
	// deleteSets makes the next full replace delete every set rather than
	// keep those it can (queueEmptyTable): set after a full replace that
	// kept sets failed, in case a kept set was what the kernel refused.
	deleteSets bool
	// replaced is what the last successful full replace did to the sets
	// it found (LastReplace).
	replaced ReplaceStats
}

// LastReplace reports what the last successful full replace did to the
// sets the kernel held: the elements it kept, deleted and added, and the
// sets it emptied whole. An agent that restarts on a node whose table is
// already right keeps every element of its pipapo sets (port allow-lists,
// tier maps) and refills the others, which is cheap.
func (s *Syncer) LastReplace() ReplaceStats { return s.replaced }

// NewSyncer returns a Syncer whose first Sync replaces whatever the table holds.
func NewSyncer(opts ...Option) (*Syncer, error) {
	s := &Syncer{cfg: newConfig(opts)}
	cc, done, err := s.conn(context.Background())
	if err != nil {
		return nil, err
	}
	defer done()
	if _, err := tableExists(cc); err != nil {
		return nil, err
	}
	return s, nil
}

// conn opens one netlink socket for one Sync or Verify, bounded by ctx:
// its deadline is the socket's, and cancelling ctx moves the socket's
// deadline to the past, so a sync timeout interrupts a batch's acks and a
// read-back's dumps instead of being checked only on entry. (The kernel
// applies a batch inside the one sendmsg, which nothing interrupts: a
// batch is committed whole or not at all, and an interrupted wait for its
// acks only makes the next Sync a full replace.) done closes the socket.
func (s *Syncer) conn(ctx context.Context) (cc *nftables.Conn, done func(), err error) {
	var sock *netlink.Conn
	withDeadline := func(c *netlink.Conn) error {
		sock = c
		if d, ok := ctx.Deadline(); ok {
			return c.SetDeadline(d)
		}
		return nil
	}
	opts := append([]nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(bigBuffers, s.own.recordPort, withDeadline)}, s.cfg.connOpts...)
	cc, err = nftables.New(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("open nftables netlink connection: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = sock.SetDeadline(time.Unix(1, 0)) })
	return cc, func() {
		stop()
		_ = cc.CloseLasting()
	}, nil
}

// ctxError makes an error caused by ctx say so (errors.Is finds
// context.DeadlineExceeded or context.Canceled): the socket's deadline can
// fire a moment before ctx reports it.
func ctxError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	cause := ctx.Err()
	if cause == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		cause = context.DeadlineExceeded
	}
	// google/nftables does not always wrap the socket's error (its
	// SendMessages says "i/o timeout" with %v), so the deadline itself
	// tells: the socket's is ctx's, and it has passed.
	if d, ok := ctx.Deadline(); cause == nil && ok && !time.Now().Before(d) {
		cause = context.DeadlineExceeded
	}
	if cause == nil || errors.Is(err, cause) {
		return err
	}
	return fmt.Errorf("%w: %w", cause, err)
}

// Sync makes the kernel table equal desired in one atomic netlink batch:
// only the difference to the last applied model, or a full replace when
// that model is unknown. On error the kernel keeps its previous ruleset
// (the batch is one transaction) and the next Sync does a full replace.
//
// desired must not be modified after Sync returns: the Syncer keeps it as
// the kernel's state, and takes the sets and chains a later desired shares
// with it by pointer as unchanged, without comparing them.
func (s *Syncer) Sync(ctx context.Context, desired *nft.Ruleset) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tightened, err := s.sync(ctx, desired)
	if err != nil {
		s.last = nil
		return fmt.Errorf("sync table %s %s: %w", nft.TableFamily, nft.TableName, ctxError(ctx, err))
	}
	s.last, s.tightened = desired, tightened
	return nil
}

// Tightened reports whether the last successful Sync may deny a
// connection the kernel allowed before it: a full replace (the table held
// anything before), or a difference that does more than add allow-list
// elements (nft.OnlyWidens). Only then is a conntrack cleanup worth its
// cost.
func (s *Syncer) Tightened() bool { return s.tightened }

// sync sends one batch: a full replace, or the difference from s.last
// (none when there is no difference). It reports whether the batch may
// deny what was allowed before.
func (s *Syncer) sync(ctx context.Context, desired *nft.Ruleset) (tightened bool, err error) {
	cc, done, err := s.conn(ctx)
	if err != nil {
		return false, err
	}
	defer done()
	if s.last == nil {
		var stats ReplaceStats
		stats, err = queueFullReplace(ctx, cc, desired, !s.deleteSets)
		defer func() {
			s.deleteSets = err != nil && !s.deleteSets
			if err == nil {
				s.replaced = stats
			}
		}()
	} else {
		ops := nft.Diff(s.last, desired)
		if len(ops) == 0 {
			return false, nil
		}
		tightened = !nft.OnlyWidens(ops, desired)
		err = queueOps(ctx, cc, ops, s.last, desired)
	}
	if err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err // nothing sent
	}
	if err := cc.Flush(); err != nil {
		return false, fmt.Errorf("netlink batch: %w", err)
	}
	return tightened || s.last == nil, nil
}

// socketBuffer is the netlink socket buffer size in each direction. The
// whole batch goes out in one sendmsg, so the default (about 200 KiB) caps
// a sync at a few thousand elements; acks and rule echoes come back into
// the receive buffer. Like nft, we force the size (CAP_NET_ADMIN), and fall
// back to the ordinary, capped option.
const socketBuffer = 64 << 20

func bigBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var sockErr error
	err = raw.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], socketBuffer) != nil {
				sockErr = errors.Join(sockErr, unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], socketBuffer))
			}
		}
	})
	if err != nil {
		return err
	}
	if sockErr != nil {
		return fmt.Errorf("set netlink socket buffers: %w", sockErr)
	}
	return nil
}

// ErrDrift is wrapped by Verify's error when the kernel no longer holds
// the last applied model.
var ErrDrift = errors.New("kernel table drifted from the last applied ruleset")

// Verify reads the table back and compares it with the last applied
// model: chains, hooks, every rule's expressions and comment, sets and
// their elements. On drift it marks the Syncer dirty, so that the next
// Sync replaces everything, and returns an error wrapping ErrDrift.
func (s *Syncer) Verify(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.last == nil {
		return fmt.Errorf("%w: nothing applied yet (or last sync failed)", ErrDrift)
	}
	cc, done, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer done()
	diffs, err := compareKernel(ctx, cc, s.last)
	if err != nil {
		s.last = nil
		return fmt.Errorf("read back table: %w", ctxError(ctx, err))
	}
	if len(diffs) > 0 {
		s.last = nil
		return fmt.Errorf("%w: %s", ErrDrift, strings.Join(diffs, "; "))
	}
	return nil
}

// Cleanup deletes table inet nftpolicy (for `nftpolicy cleanup` only:
// it opens enforcement). A missing table is not an error.
func Cleanup(opts ...Option) error {
	cfg := newConfig(opts)
	cc, err := nftables.New(cfg.connOpts...)
	if err != nil {
		return fmt.Errorf("open nftables netlink connection: %w", err)
	}
	exists, err := tableExists(cc)
	if err != nil || !exists {
		return err
	}
	cc.DelTable(ourTable())
	if err := cc.Flush(); err != nil {
		return fmt.Errorf("delete table %s %s: %w", nft.TableFamily, nft.TableName, err)
	}
	return nil
}

func tableExists(cc *nftables.Conn) (bool, error) {
	tables, err := cc.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == nft.TableName {
			return true, nil
		}
	}
	return false, nil
}

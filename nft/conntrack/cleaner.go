//go:build linux

package conntrack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/nft"
)

// ErrUnavailable is wrapped by New's error when the kernel does not offer
// conntrack over netlink (no nf_conntrack_netlink, or no permission).
var ErrUnavailable = errors.New("conntrack over netlink is not available")

// Option configures a Cleaner.
type Option func(*config)

type config struct {
	ns netns.NsHandle
}

// WithNetNS works in network namespace ns instead of the caller's own
// (tests; the agent uses the host's).
func WithNetNS(ns netns.NsHandle) Option { return func(c *config) { c.ns = ns } }

// Cleaner deletes the conntrack entries a ruleset denies. It is not safe
// for concurrent use.
type Cleaner struct {
	h *netlink.Handle
}

// New opens netlink and checks that the kernel answers a conntrack dump;
// if it does not, the error wraps ErrUnavailable.
func New(opts ...Option) (*Cleaner, error) {
	cfg := config{ns: netns.None()}
	for _, o := range opts {
		o(&cfg)
	}
	var (
		h   *netlink.Handle
		err error
	)
	if cfg.ns.IsOpen() {
		h, err = netlink.NewHandleAt(cfg.ns, unix.NETLINK_NETFILTER, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_NETFILTER, unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: open netlink: %w", ErrUnavailable, err)
	}
	if _, err := h.ConntrackTableList(netlink.ConntrackTable, netlink.FAMILY_V4); err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		h.Close()
		return nil, fmt.Errorf("%w: conntrack dump: %w", ErrUnavailable, err)
	}
	return &Cleaner{h: h}, nil
}

// Close releases the netlink sockets.
func (c *Cleaner) Close() { c.h.Close() }

// Result counts what one Clean did.
type Result struct {
	Examined int // entries read from the kernel
	Judged   int // entries whose first packet could be judged (see Flow.Packet)
	Traced   int // distinct first packets traced through the ruleset
	Deleted  int // entries deleted because the ruleset denies them
}

// Clean reads the node's conntrack entries (IPv4, then IPv6) and deletes
// those whose first packet rs drops; rs must be what the kernel holds now,
// so that a connection opened after the dump was judged by rs already.
// The error of one family does not stop the other; Result counts both.
func (c *Cleaner) Clean(ctx context.Context, rs *nft.Ruleset) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if d, ok := ctx.Deadline(); ok {
		// Bounds each netlink receive: the dump and every delete.
		if err := c.h.SetSocketTimeout(max(time.Until(d), time.Millisecond)); err != nil {
			return Result{}, fmt.Errorf("conntrack: socket timeout: %w", err)
		}
	}
	local, err := c.localAddrs()
	if err != nil {
		return Result{}, err
	}
	j := NewJudge(rs, func(a netip.Addr) bool { _, ok := local[a.Unmap()]; return ok })
	var res Result
	var errs []error
	for _, fam := range []netlink.InetFamily{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		n, err := c.h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filter{j})
		res.Deleted += int(n)
		if err != nil {
			errs = append(errs, fmt.Errorf("conntrack: family %d: %w", fam, err))
		}
	}
	res.Examined, res.Judged, res.Traced = j.Examined, j.Judged, j.Traced
	return res, errors.Join(errs...)
}

// localAddrs are the addresses of the namespace's interfaces: a packet to
// one of them met the input hook, a packet from one the output hook.
func (c *Cleaner) localAddrs() (map[netip.Addr]struct{}, error) {
	addrs, err := c.h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("conntrack: list local addresses: %w", err)
	}
	local := make(map[netip.Addr]struct{}, len(addrs))
	for _, a := range addrs {
		if ip, ok := addrOf(a.IP); ok {
			local[ip] = struct{}{}
		}
	}
	return local, nil
}

// filter adapts a Judge to netlink's conntrack filter.
type filter struct{ j *Judge }

func (f filter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	return f.j.Denies(flowOf(flow))
}

// flowOf extracts what judging needs from a dumped entry.
func flowOf(c *netlink.ConntrackFlow) Flow {
	f := Flow{Proto: c.Forward.Protocol, ReplySrcPort: c.Reverse.SrcPort}
	f.OrigSrc, _ = addrOf(c.Forward.SrcIP)
	f.ReplySrc, _ = addrOf(c.Reverse.SrcIP)
	return f
}

func addrOf(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}

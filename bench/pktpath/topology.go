//go:build linux

package pktpath

// IP plan of one hop (every address lives only in namespaces this package
// created, which disappear with their last handle):
//
//	sender   eth0 192.168.77.2/24 (and .3, the outsider), default via .1
//	router   s0 192.168.77.1/24, d0 10.244.1.1/24, forwarding on;
//	         the compiled table inet nftpolicy, and a notrack table
//	receiver eth0 10.244.1.2/24 (the pod), default via 10.244.1.1
//
// The router is the node: 10.244.1.0/24 is its pod CIDR, the receiver is
// its one local pod, and the sender is a remote peer.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/nftpolicy/nftpolicy/bench/controlplane"
)

var (
	senderAddr   = netip.MustParseAddr("192.168.77.2")
	outsiderAddr = netip.MustParseAddr("192.168.77.3")
	senderGW     = netip.MustParseAddr("192.168.77.1")
	receiverAddr = netip.MustParseAddr("10.244.1.2")
	receiverGW   = netip.MustParseAddr("10.244.1.1")
	podCIDR      = netip.MustParsePrefix("10.244.1.0/24")
)

// Port is the receiver's UDP port, the one the policy admits.
const Port = 9000

// hop is three namespaces in a row: sender → router → receiver.
type hop struct {
	sender, router, receiver *controlplane.NetNS
	// rx is a netlink handle in the receiver, to read its eth0's
	// rx_packets: what the router forwarded.
	rx *netlink.Handle
	// sink is the receiver's socket on Port (see sink).
	sink io.Closer
}

func (h *hop) Close() {
	if h.sink != nil {
		_ = h.sink.Close()
	}
	if h.rx != nil {
		h.rx.Close()
	}
	for _, ns := range []*controlplane.NetNS{h.sender, h.router, h.receiver} {
		if ns != nil {
			_ = ns.Close()
		}
	}
}

// newHop builds the three namespaces and wires them with two veth pairs.
func newHop() (_ *hop, err error) {
	h := &hop{}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	for _, p := range []**controlplane.NetNS{&h.sender, &h.router, &h.receiver} {
		if *p, err = controlplane.NewNetNS(); err != nil {
			return nil, err
		}
	}
	// No IPv6: its neighbour discovery and MLD would add packets of their
	// own to the receiver's counter.
	for _, ns := range []*controlplane.NetNS{h.sender, h.router, h.receiver} {
		if err := inNetns(ns, func() error {
			for _, k := range []string{"all", "default"} {
				if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte("1"), 0o644); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("disable IPv6: %w", err)
		}
	}
	r, err := netlink.NewHandleAt(netns.NsHandle(h.router.Fd()))
	if err != nil {
		return nil, fmt.Errorf("netlink in router: %w", err)
	}
	defer r.Close()
	if err := link(r, "s0", h.sender, prefix(senderGW, 24)); err != nil {
		return nil, err
	}
	if err := link(r, "d0", h.receiver, prefix(receiverGW, 24)); err != nil {
		return nil, err
	}
	if err := endpoint(h.sender, []netip.Prefix{prefix(senderAddr, 24), prefix(outsiderAddr, 24)}, senderGW); err != nil {
		return nil, fmt.Errorf("sender: %w", err)
	}
	if err := endpoint(h.receiver, []netip.Prefix{prefix(receiverAddr, 24)}, receiverGW); err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	if err := inNetns(h.router, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		return nil, fmt.Errorf("router: ip_forward: %w", err)
	}
	if h.rx, err = netlink.NewHandleAt(netns.NsHandle(h.receiver.Fd())); err != nil {
		return nil, fmt.Errorf("netlink in receiver: %w", err)
	}
	return h, nil
}

func prefix(a netip.Addr, bits int) netip.Prefix { return netip.PrefixFrom(a, bits) }

// link creates veth name in the router with its peer eth0 in peerNS, and
// gives the router's end addr.
func link(r *netlink.Handle, name string, peerNS *controlplane.NetNS, addr netip.Prefix) error {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(peerNS.Fd())}
	if err := r.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s: %w", name, err)
	}
	l, err := r.LinkByName(name)
	if err != nil {
		return err
	}
	if err := r.AddrAdd(l, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return fmt.Errorf("address %s on %s: %w", addr, name, err)
	}
	return r.LinkSetUp(l)
}

// endpoint brings up lo and eth0 of ns with addrs and a default route.
func endpoint(ns *controlplane.NetNS, addrs []netip.Prefix, gw netip.Addr) error {
	h, err := netlink.NewHandleAt(netns.NsHandle(ns.Fd()))
	if err != nil {
		return err
	}
	defer h.Close()
	for _, name := range []string{"lo", "eth0"} {
		l, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		if name == "eth0" {
			for _, a := range addrs {
				if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(a)}); err != nil {
					return fmt.Errorf("address %s: %w", a, err)
				}
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			return err
		}
	}
	return h.RouteAdd(&netlink.Route{Gw: net.IP(gw.AsSlice()), Dst: nil})
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// inNetns runs fn on an OS thread switched into ns. The thread stays
// locked, and is retired by the runtime when the goroutine ends, so no
// other goroutine ever runs in ns; sockets fn creates stay in ns.
func inNetns(ns *controlplane.NetNS, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(netns.NsHandle(ns.Fd())); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// notrackRuleset makes the router skip connection tracking, so that every
// packet, not just a flow's first, walks the whole forward chain of the
// compiled table: its `ct state established` shortcut never fires, and
// the figure is the per-packet cost of the first packet of a connection
// without conntrack's own cost. It is a table of its own, next to
// inet nftpolicy, which it does not touch.
const notrackRuleset = `table inet pktpath-notrack {
	chain prerouting {
		type filter hook prerouting priority raw; policy accept;
		notrack
	}
}
`

// loadNotrack loads notrackRuleset with the nft binary, run from a thread
// inside the router (a child process inherits the thread's namespace).
func loadNotrack(ctx context.Context, router *controlplane.NetNS) error {
	return inNetns(router, func() error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(notrackRuleset)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft -f (notrack table): %w: %s", err, out)
		}
		return nil
	})
}

// The network: node namespaces and their links.

package cluster

import (
	"context"
	"fmt"
	"net/netip"
)

// makeNetwork creates the underlay namespace with its bridge and one
// namespace per node wired to it by a veth pair.
func (c *Config) makeNetwork(_ context.Context, s *State) error {
	underlay := c.Instance.UnderlayNS()
	cmds := [][]string{
		{"ip", "netns", "add", underlay},
		{"ip", "-n", underlay, "link", "set", "lo", "up"},
		{"ip", "-n", underlay, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", underlay, "addr", "add", UnderlayGW + "/24", "dev", "br0"},
		{"ip", "-n", underlay, "link", "set", "br0", "up"},
	}
	v6 := s.stack().Has(IPv6)
	if v6 {
		cmds = append(cmds, []string{"ip", "-n", underlay, "addr", "add", UnderlayGW6 + "/64", "dev", "br0", "nodad"})
	}
	for _, n := range s.Nodes {
		host := fmt.Sprintf("n%d", n.Index)
		cmds = append(cmds,
			[]string{"ip", "netns", "add", n.NetNS},
			[]string{"ip", "-n", n.NetNS, "link", "set", "lo", "up"},
			[]string{"ip", "-n", underlay, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", n.NetNS},
			[]string{"ip", "-n", underlay, "link", "set", host, "master", "br0", "up"},
			[]string{"ip", "-n", n.NetNS, "addr", "add", ip4Of(n) + "/24", "dev", "eth0"},
			[]string{"ip", "-n", n.NetNS, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", n.NetNS, "route", "add", "default", "via", UnderlayGW},
			[]string{"ip", "netns", "exec", n.NetNS, "sysctl", "-q", "-w",
				"net.ipv4.ip_forward=1",
				"net.ipv6.conf.all.forwarding=1",
				"net.bridge.bridge-nf-call-iptables=1",
				"net.bridge.bridge-nf-call-ip6tables=1"},
		)
	}
	if v6 {
		for _, n := range s.Nodes {
			cmds = append(cmds,
				// nodad: the address is usable at once, not after duplicate
				// address detection's second or so.
				[]string{"ip", "-n", n.NetNS, "addr", "add", n.IPIn(IPv6) + "/64", "dev", "eth0", "nodad"},
				[]string{"ip", "-n", n.NetNS, "-6", "route", "add", "default", "via", UnderlayGW6})
		}
	}
	for _, a := range cmds {
		if _, err := run(a...); err != nil {
			return err
		}
	}
	return nil
}

// ip4Of is the node's IPv4 underlay address. Every node has one, even in
// an ipv6 cluster: the underlay itself is dual stack (the cluster's
// objects then name only the IPv6 one), which keeps host-side tools simple.
func ip4Of(n Node) string { return fmt.Sprintf("198.18.0.%d", 10+n.Index) }

// NodeFor returns the node one of whose podCIDRs contains ip.
func (s *State) NodeFor(ip netip.Addr) (Node, bool) {
	for _, n := range s.Nodes {
		cidrs := n.PodCIDRs
		if len(cidrs) == 0 {
			cidrs = []string{n.PodCIDR}
		}
		for _, c := range cidrs {
			if p, err := netip.ParsePrefix(c); err == nil && p.Contains(ip) {
				return n, true
			}
		}
	}
	return Node{}, false
}

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
	for _, n := range s.Nodes {
		host := fmt.Sprintf("n%d", n.Index)
		cmds = append(cmds,
			[]string{"ip", "netns", "add", n.NetNS},
			[]string{"ip", "-n", n.NetNS, "link", "set", "lo", "up"},
			[]string{"ip", "-n", underlay, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", n.NetNS},
			[]string{"ip", "-n", underlay, "link", "set", host, "master", "br0", "up"},
			[]string{"ip", "-n", n.NetNS, "addr", "add", n.IP + "/24", "dev", "eth0"},
			[]string{"ip", "-n", n.NetNS, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", n.NetNS, "route", "add", "default", "via", UnderlayGW},
			[]string{"ip", "netns", "exec", n.NetNS, "sysctl", "-q", "-w",
				"net.ipv4.ip_forward=1",
				"net.ipv6.conf.all.forwarding=1",
				"net.bridge.bridge-nf-call-iptables=1",
				"net.bridge.bridge-nf-call-ip6tables=1"},
		)
	}
	for _, a := range cmds {
		if _, err := run(a...); err != nil {
			return err
		}
	}
	return nil
}

// NodeFor returns the node whose podCIDR contains ip.
func (s *State) NodeFor(ip netip.Addr) (Node, bool) {
	for _, n := range s.Nodes {
		if p, err := netip.ParsePrefix(n.PodCIDR); err == nil && p.Contains(ip) {
			return n, true
		}
	}
	return Node{}, false
}

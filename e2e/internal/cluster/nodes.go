// Node components: flanneld, kube-proxy and the policy agents.

package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

func (c *Config) startFlannel(ctx context.Context, s *State) error {
	for _, n := range s.Nodes {
		netConf := filepath.Join(n.Dir, "net-conf.json")
		if err := os.WriteFile(netConf, flannelNetConf(s.stack()), 0o644); err != nil {
			return err
		}
		args := []string{c.bin("flanneld"), "--kube-subnet-mgr", "--kubeconfig-file", filepath.Join(n.Dir, "flanneld.kubeconfig"),
			"--iface", "eth0", "--ip-masq=false", "--subnet-file", filepath.Join(n.Dir, "subnet.env"),
			"--net-config-path", netConf}
		if ip := n.IPIn(IPv4); ip != "" {
			args = append(args, "--public-ip", ip)
		}
		if ip := n.IPIn(IPv6); ip != "" {
			args = append(args, "--public-ipv6", ip)
		}
		_, err := c.Start(Proc{Name: n.Name + "-flanneld", NetNS: n.NetNS, LogFile: c.logFile(n.Name + "-flanneld"),
			Env: []string{"NODE_NAME=" + n.Name}, Args: args})
		if err != nil {
			return err
		}
	}
	return poll(ctx, 60*time.Second, func() error {
		for _, n := range s.Nodes {
			if !c.Alive(n.Name + "-flanneld") {
				return errStop(n.Name + " flanneld exited")
			}
			if _, err := os.Stat(filepath.Join(n.Dir, "subnet.env")); err != nil {
				return err
			}
		}
		return nil
	})
}

// flannelNetConf is flanneld's net-conf.json for the stack: vxlan in each
// family (flannel sends IPv6 pod traffic over an IPv6 vxlan, flannel-v6.1).
func flannelNetConf(st Stack) []byte {
	conf := map[string]any{"EnableNFTables": true, "Backend": map[string]any{"Type": "vxlan"},
		"EnableIPv4": st.Has(IPv4), "EnableIPv6": st.Has(IPv6)}
	if st.Has(IPv4) {
		conf["Network"] = ClusterCIDR
	}
	if st.Has(IPv6) {
		conf["IPv6Network"] = ClusterCIDR6
	}
	b, _ := json.Marshal(conf)
	return b
}

// clusterCIDRs are the stack's pod networks, primary first, comma-separated
// as kube-proxy and kube-controller-manager take them.
func clusterCIDRs(st Stack) string {
	var out []string
	for _, f := range st.Families() {
		out = append(out, map[Family]string{IPv4: ClusterCIDR, IPv6: ClusterCIDR6}[f])
	}
	return strings.Join(out, ",")
}

// serviceCIDRs are the stack's Service networks, primary first.
func serviceCIDRs(st Stack) string {
	var out []string
	for _, f := range st.Families() {
		out = append(out, map[Family]string{IPv4: ServiceCIDR, IPv6: ServiceCIDR6}[f])
	}
	return strings.Join(out, ",")
}

func (c *Config) startKubeProxy(ctx context.Context, s *State) error {
	for _, n := range s.Nodes {
		_, err := c.Start(Proc{Name: n.Name + "-kube-proxy", NetNS: n.NetNS, LogFile: c.logFile(n.Name + "-kube-proxy"),
			Args: []string{c.bin("kube-proxy"), "--kubeconfig", filepath.Join(n.Dir, "kube-proxy.kubeconfig"),
				"--proxy-mode", "nftables", "--hostname-override", n.Name, "--cluster-cidr", clusterCIDRs(s.stack()),
				"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
				"--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256",
				"--v", "1"}})
		if err != nil {
			return err
		}
	}
	return poll(ctx, 60*time.Second, func() error {
		for _, n := range s.Nodes {
			if !c.Alive(n.Name + "-kube-proxy") {
				return errStop(n.Name + " kube-proxy exited")
			}
			for _, f := range s.Families() {
				if _, err := run("ip", "netns", "exec", n.NetNS, "nft", "list", "map", NFTFamily(f), "kube-proxy", "service-ips"); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// NFTFamily is the nftables table family of f (kube-proxy has one table
// per family).
func NFTFamily(f Family) string {
	if f == IPv6 {
		return "ip6"
	}
	return "ip"
}

// AgentVars are the fields of the agent command template.
type AgentVars struct {
	Node, NodeIP, Kubeconfig, NetNS, StateDir, LogDir string
	// CNISocket is the node's socket for the chained CNI plugin
	// (Node.CNISocket): node namespaces share the host's file system, so
	// each node's agent needs a path of its own.
	CNISocket string
	Index     int
}

// CNISocket is where the node's agent serves its chained CNI plugin.
func (n Node) CNISocket() string { return filepath.Join(n.Dir, "cni.sock") }

// AgentProgram is the path of the program an agent command template runs:
// its first word that is neither env nor an assignment, unquoted; "" when
// there is none.
func AgentProgram(agentCmd string) string {
	for _, f := range strings.Fields(agentCmd) {
		f = strings.Trim(f, `'"`)
		if f == "env" || strings.Contains(f, "=") {
			continue
		}
		return f
	}
	return ""
}

// agentMarker is the program name the agent process will show once the
// shell has exec'd it: the first word that is neither `env` nor a VAR=value
// assignment, without shell quotes.
func agentMarker(fields []string) string {
	for _, f := range fields {
		f = strings.Trim(f, `'"`)
		if f == "env" || strings.Contains(f, "=") {
			continue
		}
		return filepath.Base(f)
	}
	return filepath.Base(strings.Trim(fields[0], `'"`))
}

func (c *Config) startAgents(ctx context.Context, s *State) error {
	if c.AgentCmd == "" {
		return nil
	}
	tmpl, err := template.New("agent").Option("missingkey=error").Parse(c.AgentCmd)
	if err != nil {
		return fmt.Errorf("--agent-cmd: %w", err)
	}
	for _, n := range s.Nodes {
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, AgentVars{Node: n.Name, NodeIP: n.IP, Kubeconfig: filepath.Join(n.Dir, "agent.kubeconfig"),
			NetNS: n.NetNS, StateDir: n.Dir, LogDir: c.LogDir(), CNISocket: n.CNISocket(), Index: n.Index}); err != nil {
			return fmt.Errorf("--agent-cmd: %w", err)
		}
		line := buf.String()
		if err := os.WriteFile(filepath.Join(n.Dir, "agent.cmd"), []byte(line+"\n"), 0o644); err != nil {
			return err
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			return errors.New("--agent-cmd expands to an empty command")
		}
		_, err := c.Start(Proc{Name: n.Name + "-agent", NetNS: n.NetNS, LogFile: c.logFile(n.Name + "-agent"),
			Marker: agentMarker(fields),
			Env:    []string{"NODE_NAME=" + n.Name, "KUBECONFIG=" + filepath.Join(n.Dir, "agent.kubeconfig")},
			Args:   []string{"/bin/sh", "-c", "exec " + line}})
		if err != nil {
			return err
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, n := range s.Nodes {
		if !c.Alive(n.Name + "-agent") {
			return fmt.Errorf("agent on %s exited at once; see %s", n.Name, c.logFile(n.Name+"-agent"))
		}
	}
	return nil
}

// agentBinaryChanged reports whether the agent's program file is newer than
// the running agents (e.g. `make e2e` rebuilt it).
func (c *Config) agentBinaryChanged(s *State) bool {
	f := strings.Fields(c.AgentCmd)
	if len(f) == 0 || len(s.Nodes) == 0 {
		return false
	}
	bin, err := os.Stat(f[0])
	if err != nil {
		return false
	}
	pid, err := os.Stat(filepath.Join(c.pidDir(), s.Nodes[0].Name+"-agent.pid"))
	return err == nil && bin.ModTime().After(pid.ModTime())
}

func (c *Config) restartAgents(s *State) error {
	for _, n := range s.Nodes {
		if err := c.Stop(n.Name + "-agent"); err != nil {
			return err
		}
	}
	return c.startAgents(context.Background(), s)
}

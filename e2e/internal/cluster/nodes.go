// Node components: flanneld, kube-proxy and the policy agents.

package cluster

import (
	"bytes"
	"context"
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
		if err := os.WriteFile(netConf, []byte(`{"Network": "`+ClusterCIDR+`", "EnableNFTables": true, "Backend": {"Type": "vxlan"}}`), 0o644); err != nil {
			return err
		}
		_, err := c.Start(Proc{Name: n.Name + "-flanneld", NetNS: n.NetNS, LogFile: c.logFile(n.Name + "-flanneld"),
			Env: []string{"NODE_NAME=" + n.Name},
			Args: []string{c.bin("flanneld"), "--kube-subnet-mgr", "--kubeconfig-file", filepath.Join(n.Dir, "flanneld.kubeconfig"),
				"--iface", "eth0", "--ip-masq=false", "--subnet-file", filepath.Join(n.Dir, "subnet.env"),
				"--net-config-path", netConf, "--public-ip", n.IP}})
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

func (c *Config) startKubeProxy(ctx context.Context, s *State) error {
	for _, n := range s.Nodes {
		_, err := c.Start(Proc{Name: n.Name + "-kube-proxy", NetNS: n.NetNS, LogFile: c.logFile(n.Name + "-kube-proxy"),
			Args: []string{c.bin("kube-proxy"), "--kubeconfig", filepath.Join(n.Dir, "kube-proxy.kubeconfig"),
				"--proxy-mode", "nftables", "--hostname-override", n.Name, "--cluster-cidr", ClusterCIDR,
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
			if _, err := run("ip", "netns", "exec", n.NetNS, "nft", "list", "map", "ip", "kube-proxy", "service-ips"); err != nil {
				return err
			}
		}
		return nil
	})
}

// AgentVars are the fields of the agent command template.
type AgentVars struct {
	Node, NodeIP, Kubeconfig, NetNS, StateDir, LogDir string
	Index                                             int
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
			NetNS: n.NetNS, StateDir: n.Dir, LogDir: c.LogDir(), Index: n.Index}); err != nil {
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

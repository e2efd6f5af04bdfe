package cluster

// Faults the chaos run injects: stopping and starting single components of
// a running cluster by their pid files.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// AgentProc is the name of node's agent process (its pid and log files).
func AgentProc(node string) string { return node + "-agent" }

// SignalAgent sends sig to node's agent and waits (bounded) until it has
// exited; the pid file goes, so that StartAgent can start another.
func (c *Config) SignalAgent(node string, sig syscall.Signal) error {
	name := AgentProc(node)
	pid, ok := c.readPid(name)
	if !ok {
		return fmt.Errorf("agent on %s is not running", node)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal agent on %s (pid %d): %w", node, pid, err)
	}
	if !waitGone(pid, 30*time.Second) {
		return fmt.Errorf("agent on %s (pid %d) did not exit within 30s of %v", node, pid, sig)
	}
	return c.Stop(name) // removes the pid file; the process is gone
}

// StartAgent starts node's agent with the command line `up` wrote for it
// (agent.cmd in the node's directory); a non-empty bin replaces the agent
// binary in that line (another build of the agent: an upgrade). It returns
// once the process runs, not once it is ready.
func (c *Config) StartAgent(n Node, bin string) error {
	b, err := os.ReadFile(filepath.Join(n.Dir, "agent.cmd"))
	if err != nil {
		return fmt.Errorf("agent command of %s: %w", n.Name, err)
	}
	line := strings.TrimSpace(string(b))
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return fmt.Errorf("agent command of %s is empty", n.Name)
	}
	if bin != "" {
		old := agentMarker(fields)
		replaced := false
		for i, f := range fields {
			if filepath.Base(strings.Trim(f, `'"`)) == old {
				fields[i] = shellQuote(bin)
				replaced = true
				break
			}
		}
		if !replaced {
			return fmt.Errorf("no agent binary %s in %q", old, line)
		}
		line = strings.Join(fields, " ")
	}
	_, err = c.Start(Proc{Name: AgentProc(n.Name), NetNS: n.NetNS, LogFile: c.logFile(AgentProc(n.Name)),
		Marker: agentMarker(strings.Fields(line)),
		Env:    []string{"NODE_NAME=" + n.Name, "KUBECONFIG=" + filepath.Join(n.Dir, "agent.kubeconfig")},
		Args:   []string{"/bin/sh", "-c", "exec " + line}})
	return err
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// StopAPIServer stops kube-apiserver (SIGTERM, then SIGKILL).
func (c *Config) StopAPIServer() error { return c.Stop("kube-apiserver") }

// StartAPIServer starts kube-apiserver again, with the Service ranges of
// the cluster's families, and waits until it is ready.
func (c *Config) StartAPIServer(ctx context.Context) error {
	s, ok := c.LoadState()
	if !ok {
		return fmt.Errorf("no cluster state in %s", c.StateDir)
	}
	return c.startAPIServer(ctx, s)
}

// StopRelay stops the relay through which everything in the node
// namespaces (agents, flanneld, kube-proxy) reaches the apiserver: the
// apiserver keeps serving on the host, the nodes are cut off from it.
func (c *Config) StopRelay() error {
	if err := c.Stop("relay"); err != nil {
		return err
	}
	return os.Remove(filepath.Join(c.StateDir, "relay.ready"))
}

// StartRelay starts the relay again and waits until it listens.
func (c *Config) StartRelay(ctx context.Context, s *State) error { return c.startRelay(ctx, s) }

// HTTPStatusInNetNS sends GET path to 127.0.0.1:port inside the named
// network namespace and returns the response's status code (the agent's
// health port listens there, not on the host).
func HTTPStatusInNetNS(nsName string, port int, path string, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := DialInNetNS(ctx, nsName, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path); err != nil {
		return 0, err
	}
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return 0, err
	}
	var proto string
	var code int
	if _, err := fmt.Sscanf(status, "%s %d", &proto, &code); err != nil {
		return 0, fmt.Errorf("status line %q: %w", status, err)
	}
	return code, nil
}

// Package cluster brings up and tears down the local e2e cluster: etcd,
// kube-apiserver and kube-controller-manager on the host's loopback, and one
// network namespace per node (on an underlay bridge that itself lives in a
// namespace of ours) running flanneld, kube-proxy and the policy agent.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Fixed addresses and names. Everything the harness creates carries the
// instance's NSPrefix so that a crashed run can be found and cleaned. The
// addresses live inside the cluster's own namespaces, so only the host
// loopback ports and the namespace names differ between instances.
const (
	UnderlayGW    = "198.18.0.1"
	ClusterCIDR   = "10.244.0.0/16"
	ServiceCIDR   = "10.96.0.0/16"
	NodeAPIPort   = 6443 // the relay's listener on 127.0.0.1 in each node namespace
	DefaultState  = "/run/nftpolicy-e2e"
	NodeKubeconf  = "node.kubeconfig"
	AdminKubeconf = "admin.kubeconfig"

	// Host loopback ports of instance 0; instance N adds N*instancePortStep.
	baseAPIPort      = 16443
	baseEtcdPort     = 23790
	baseEtcdPeerPort = 23800
	instancePortStep = 100
	// MaxInstance bounds E2E_INSTANCE so that the ports stay apart.
	MaxInstance = 9
)

// Instance numbers a local cluster on this machine: instance 0 is the
// default; others (E2E_INSTANCE=1..MaxInstance) let several worktrees each
// run a cluster of their own at the same time.
type Instance int

// NSPrefix starts the name of every network namespace the instance creates.
func (i Instance) NSPrefix() string {
	if i == 0 {
		return "nftpe2e-"
	}
	return fmt.Sprintf("nftpe2e%d-", int(i))
}

// UnderlayNS is the namespace that holds the nodes' underlay bridge.
func (i Instance) UnderlayNS() string { return i.NSPrefix() + "underlay" }

// APIPort is kube-apiserver's port on the host's 127.0.0.1.
func (i Instance) APIPort() int { return baseAPIPort + int(i)*instancePortStep }

// EtcdPort is etcd's client port on the host's 127.0.0.1.
func (i Instance) EtcdPort() int { return baseEtcdPort + int(i)*instancePortStep }

// EtcdPeerPort is etcd's peer port on the host's 127.0.0.1.
func (i Instance) EtcdPeerPort() int { return baseEtcdPeerPort + int(i)*instancePortStep }

// DefaultStateDir is the instance's state directory unless one is given.
func (i Instance) DefaultStateDir() string {
	if i == 0 {
		return DefaultState
	}
	return fmt.Sprintf("%s-%d", DefaultState, int(i))
}

// ParseInstance reads an E2E_INSTANCE value ("" is instance 0).
func ParseInstance(s string) (Instance, error) {
	if s == "" {
		return 0, nil
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 0 || n > MaxInstance || fmt.Sprint(n) != s {
		return 0, fmt.Errorf("E2E_INSTANCE=%q: want an integer 0..%d", s, MaxInstance)
	}
	return Instance(n), nil
}

// Config is what `up` needs to know.
type Config struct {
	Instance Instance
	StateDir string
	BinDir   string // etcd, kube-apiserver, ..., flanneld, CNI plugins
	Nodes    int
	// Stack is the cluster's IP family mode; "" is ipv4.
	Stack Stack
	// AgentCmd is a text/template for the per-node agent command line, run
	// by /bin/sh inside the node namespace; empty = no agent. Fields:
	// {{.Node}} {{.NodeIP}} {{.Kubeconfig}} {{.NetNS}} {{.StateDir}} {{.LogDir}} {{.CNISocket}} {{.Index}}.
	AgentCmd string
	// AgentRBAC is a directory with the agent's ClusterRole, ClusterRoleBinding
	// (to a ServiceAccount) and ServiceAccount, as the DaemonSet installs them.
	// If set, the agent authenticates as that ServiceAccount (a client
	// certificate with its user name), so the e2e run exercises the shipped
	// RBAC; if empty, the agent gets admin rights.
	AgentRBAC string
	// Kubelet runs containerd and a real kubelet on every node (kubelet.go)
	// instead of the harness playing the kubelet; AgentCmd is then unused.
	Kubelet bool
	// Install is the manifest `kubectl apply`'d once the kubelet nodes are
	// Ready (dist/install.yaml); "" installs no agent (the negative control).
	Install string
	// AgentImageBins holds the static nftpolicy and nftpolicy-cni that the
	// agent image is packed from (built as the Dockerfile builds them).
	AgentImageBins string
	Log            func(format string, args ...any)
}

// Node is one node of the cluster. IP and PodCIDR are of the primary
// family; IPs and PodCIDRs have one entry per family of the stack.
type Node struct {
	Index    int      `json:"index"`
	Name     string   `json:"name"`
	NetNS    string   `json:"netns"`
	IP       string   `json:"ip"`
	PodCIDR  string   `json:"podCIDR"`
	IPs      []string `json:"ips"`
	PodCIDRs []string `json:"podCIDRs"`
	Dir      string   `json:"dir"`
}

// IPIn returns the node's address in family f ("" if it has none).
func (n Node) IPIn(f Family) string {
	for _, ip := range n.IPs {
		if a, err := netip.ParseAddr(ip); err == nil && Of(a) == f {
			return ip
		}
	}
	return ""
}

// State is persisted in StateDir/state.json once the cluster is up.
type State struct {
	Instance Instance `json:"instance"`
	Stack    Stack    `json:"stack"`
	BinDir   string   `json:"binDir"`
	AgentCmd string   `json:"agentCmd"`
	Kubelet  bool     `json:"kubelet,omitempty"`
	Install  string   `json:"install,omitempty"`
	Nodes    []Node   `json:"nodes"`
	Ready    bool     `json:"ready"`
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		c.Log(format, args...)
	}
}

func (c *Config) statePath() string       { return filepath.Join(c.StateDir, "state.json") }
func (c *Config) pkiDir() string          { return filepath.Join(c.StateDir, "pki") }
func (c *Config) LogDir() string          { return filepath.Join(c.StateDir, "logs") }
func (c *Config) AdminKubeconfig() string { return filepath.Join(c.StateDir, AdminKubeconf) }

// LoadState reads the persisted state; ok=false if there is none.
func (c *Config) LoadState() (*State, bool) {
	b, err := os.ReadFile(c.statePath())
	if err != nil {
		return nil, false
	}
	var s State
	if json.Unmarshal(b, &s) != nil {
		return nil, false
	}
	return &s, true
}

func (c *Config) saveState(s *State) error {
	b, _ := json.MarshalIndent(s, "", "  ")
	return os.WriteFile(c.statePath(), b, 0o644)
}

func nodesFor(c *Config) []Node {
	var ns []Node
	for i := 1; i <= c.Nodes; i++ {
		ip4 := netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)})
		n := Node{
			Index: i,
			Name:  fmt.Sprintf("e2e-node-%d", i),
			NetNS: fmt.Sprintf("%snode%d", c.Instance.NSPrefix(), i),
			Dir:   filepath.Join(c.StateDir, "nodes", fmt.Sprintf("node%d", i)),
		}
		for _, f := range c.Stack.Families() {
			ip, _ := InFamily(ip4, f)
			n.IPs = append(n.IPs, ip.String())
			if f == IPv4 {
				n.PodCIDRs = append(n.PodCIDRs, fmt.Sprintf("10.244.%d.0/24", i))
			} else {
				n.PodCIDRs = append(n.PodCIDRs, fmt.Sprintf("fd00:10:244:%d::/64", i))
			}
		}
		n.IP, n.PodCIDR = n.IPs[0], n.PodCIDRs[0]
		ns = append(ns, n)
	}
	return ns
}

// stack is the state's stack; states written before dual stack are ipv4.
func (s *State) stack() Stack {
	if s == nil || s.Stack == "" {
		return StackIPv4
	}
	return s.Stack
}

// Families are the cluster's families, the primary one first.
func (s *State) Families() []Family { return s.stack().Families() }

// controlProcs are the host processes, in start order.
var controlProcs = []string{"etcd", "kube-apiserver", "kube-controller-manager", "relay"}

// Healthy reports whether a previous `up` completed and all its processes run.
func (c *Config) Healthy() (*State, bool) {
	s, ok := c.LoadState()
	if !ok || !s.Ready {
		return s, false
	}
	for _, p := range controlProcs {
		if !c.Alive(p) {
			return s, false
		}
	}
	if s.Kubelet && !c.Alive("kube-scheduler") {
		return s, false
	}
	for _, n := range s.Nodes {
		procs := []string{"flanneld", "kube-proxy"}
		if s.Kubelet {
			procs = append(procs, kubeletProcs...)
		}
		for _, p := range procs {
			if !c.Alive(n.Name + "-" + p) {
				return s, false
			}
		}
		if s.AgentCmd != "" && !c.Alive(n.Name+"-agent") {
			return s, false
		}
	}
	return s, true
}

// Up brings the cluster up; idempotent. A half-made or crashed cluster is
// torn down first. If the cluster runs with another agent command, only the
// agents are replaced.
func (c *Config) Up(ctx context.Context) (*State, error) {
	if c.Stack == "" {
		c.Stack = StackIPv4
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("e2e up needs root (network namespaces, nftables)")
	}
	if s, ok := c.Healthy(); ok {
		if len(s.Nodes) != c.Nodes {
			c.logf("cluster runs with %d nodes, want %d: recreating", len(s.Nodes), c.Nodes)
		} else if s.stack() != c.Stack {
			c.logf("cluster runs %s, want %s: recreating", s.stack(), c.Stack)
		} else if s.Kubelet != c.Kubelet || s.Install != c.Install {
			c.logf("cluster runs kubelet=%v install=%q, want kubelet=%v install=%q: recreating", s.Kubelet, s.Install, c.Kubelet, c.Install)
		} else if s.Kubelet {
			return s, nil
		} else {
			if s.AgentCmd != c.AgentCmd || c.agentBinaryChanged(s) {
				c.logf("replacing the per-node agent")
				if err := c.restartAgents(s); err != nil {
					return nil, err
				}
				s.AgentCmd = c.AgentCmd
				if err := c.saveState(s); err != nil {
					return nil, err
				}
			}
			return s, nil
		}
	}
	if err := c.Down(); err != nil {
		return nil, fmt.Errorf("cleaning a previous cluster: %w", err)
	}
	if err := c.checkBins(); err != nil {
		return nil, err
	}
	start := time.Now()
	if c.Kubelet {
		if c.Stack != StackIPv4 {
			return nil, fmt.Errorf("the kubelet mode is ipv4 only for now (E2E_IP_FAMILY=%s)", c.Stack)
		}
		c.AgentCmd = "" // the agent is the manifest's DaemonSet
	}
	s := &State{Instance: c.Instance, Stack: c.Stack, BinDir: c.BinDir, AgentCmd: c.AgentCmd, Kubelet: c.Kubelet, Install: c.Install, Nodes: nodesFor(c)}
	for _, d := range []string{c.StateDir, c.LogDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := c.saveState(s); err != nil { // so that Down finds the nodes
		return nil, err
	}
	steps := []struct {
		name string
		fn   func(context.Context, *State) error
	}{
		{"certificates", c.makePKI},
		{"network namespaces", c.makeNetwork},
		{"etcd", c.startEtcd},
		{"kube-apiserver", c.startAPIServer},
		{"nodes and RBAC", c.createObjects},
		{"kube-controller-manager", c.startKCM},
		{"apiserver relay", c.startRelay},
		{"flanneld", c.startFlannel},
		{"kube-proxy", c.startKubeProxy},
		{"agents", c.startAgents},
	}
	if c.Kubelet {
		steps = append(steps[:len(steps)-1], []struct {
			name string
			fn   func(context.Context, *State) error
		}{
			{"kube-scheduler", c.startScheduler},
			{"kubernetes endpoint", c.kubernetesEndpoint},
			{"containerd", c.startContainerd},
			{"images", c.importImages},
			{"kubelets (nodes Ready)", c.startKubelets},
			{"agent DaemonSet Ready", c.installAgent},
		}...)
	}
	for _, st := range steps {
		t := time.Now()
		if err := st.fn(ctx, s); err != nil {
			return nil, fmt.Errorf("%s: %w (logs in %s)", st.name, err, c.LogDir())
		}
		c.logf("  %-24s %6.1fs", st.name, time.Since(t).Seconds())
	}
	s.Ready = true
	if err := c.saveState(s); err != nil {
		return nil, err
	}
	c.logf("cluster up in %.1fs (%d nodes); KUBECONFIG=%s", time.Since(start).Seconds(), len(s.Nodes), c.AdminKubeconfig())
	return s, nil
}

func (c *Config) bin(name string) string { return filepath.Join(c.BinDir, name) }

func (c *Config) checkBins() error {
	var errs []error
	bins := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy", "flanneld", "flannel", "bridge", "host-local", "loopback"}
	if c.Kubelet {
		bins = append(bins, "kubelet", "kube-scheduler", "agnhost", "imagepack", "kubectl", "portmap")
		for _, tool := range []string{"containerd", "runc", "ctr", "nsenter", "unshare"} {
			if _, err := exec.LookPath(tool); err != nil {
				errs = append(errs, fmt.Errorf("the kubelet mode needs %s (Debian: apt-get install -y containerd runc util-linux)", tool))
			}
		}
		if _, err := os.Stat(busyboxBinary); err != nil {
			errs = append(errs, fmt.Errorf("the kubelet mode packs %s into the busybox image (Debian: apt-get install -y busybox-static)", busyboxBinary))
		}
		if _, err := os.Stat(bashStaticBinary); err != nil {
			errs = append(errs, fmt.Errorf("the kubelet mode packs %s into the %s image (Debian: apt-get install -y bash-static)", bashStaticBinary, NPAPIAgnhostImage))
		}
	}
	for _, b := range bins {
		if _, err := os.Stat(c.bin(b)); err != nil {
			errs = append(errs, fmt.Errorf("missing tool %s in --bin-dir %q", b, c.BinDir))
		}
	}
	if _, err := os.Stat("/usr/sbin/nft"); err != nil {
		errs = append(errs, errors.New("nft (Debian package nftables) is needed by kube-proxy"))
	}
	return errors.Join(errs...)
}

func (c *Config) logFile(name string) string { return filepath.Join(c.LogDir(), name+".log") }

type stopErr struct{ msg string }

func (e stopErr) Error() string { return e.msg }
func errStop(msg string) error  { return stopErr{msg} }

// poll calls fn until it returns nil, a stopErr, or the timeout passes.
func poll(ctx context.Context, timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return nil
		}
		var se stopErr
		if errors.As(err, &se) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("timed out after %s: %w", timeout, err)
}

// Package cluster brings up and tears down the local e2e cluster: etcd,
// kube-apiserver and kube-controller-manager on the host's loopback, and one
// network namespace per node (on an underlay bridge that itself lives in a
// namespace of ours) running flanneld, kube-proxy and the policy agent.
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// Fixed addresses and names. Everything the harness creates carries the
// NSPrefix so that a crashed run can be found and cleaned.
const (
	NSPrefix      = "nftpe2e-"
	UnderlayNS    = NSPrefix + "underlay"
	UnderlayGW    = "198.18.0.1"
	ClusterCIDR   = "10.244.0.0/16"
	ServiceCIDR   = "10.96.0.0/16"
	APIPort       = 16443 // kube-apiserver on the host's 127.0.0.1
	NodeAPIPort   = 6443  // the relay's listener on 127.0.0.1 in each node namespace
	EtcdPort      = 23790
	EtcdPeerPort  = 23800
	DefaultState  = "/run/nftpolicy-e2e"
	NodeKubeconf  = "node.kubeconfig"
	AdminKubeconf = "admin.kubeconfig"
)

// Config is what `up` needs to know.
type Config struct {
	StateDir string
	BinDir   string // etcd, kube-apiserver, ..., flanneld, CNI plugins
	Nodes    int
	// AgentCmd is a text/template for the per-node agent command line, run
	// by /bin/sh inside the node namespace; empty = no agent. Fields:
	// {{.Node}} {{.NodeIP}} {{.Kubeconfig}} {{.NetNS}} {{.StateDir}} {{.LogDir}} {{.Index}}.
	AgentCmd string
	// AgentRBAC is a directory with the agent's ClusterRole, ClusterRoleBinding
	// (to a ServiceAccount) and ServiceAccount, as the DaemonSet installs them.
	// If set, the agent authenticates as that ServiceAccount (a client
	// certificate with its user name), so the e2e run exercises the shipped
	// RBAC; if empty, the agent gets admin rights.
	AgentRBAC string
	Log       func(format string, args ...any)
}

// Node is one node of the cluster.
type Node struct {
	Index   int    `json:"index"`
	Name    string `json:"name"`
	NetNS   string `json:"netns"`
	IP      string `json:"ip"`
	PodCIDR string `json:"podCIDR"`
	Dir     string `json:"dir"`
}

// State is persisted in StateDir/state.json once the cluster is up.
type State struct {
	BinDir   string `json:"binDir"`
	AgentCmd string `json:"agentCmd"`
	Nodes    []Node `json:"nodes"`
	Ready    bool   `json:"ready"`
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
		ns = append(ns, Node{
			Index:   i,
			Name:    fmt.Sprintf("e2e-node-%d", i),
			NetNS:   fmt.Sprintf("%snode%d", NSPrefix, i),
			IP:      fmt.Sprintf("198.18.0.%d", 10+i),
			PodCIDR: fmt.Sprintf("10.244.%d.0/24", i),
			Dir:     filepath.Join(c.StateDir, "nodes", fmt.Sprintf("node%d", i)),
		})
	}
	return ns
}

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
	for _, n := range s.Nodes {
		for _, p := range []string{"flanneld", "kube-proxy"} {
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
	if os.Geteuid() != 0 {
		return nil, errors.New("e2e up needs root (network namespaces, nftables)")
	}
	if s, ok := c.Healthy(); ok {
		if len(s.Nodes) != c.Nodes {
			c.logf("cluster runs with %d nodes, want %d: recreating", len(s.Nodes), c.Nodes)
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
	s := &State{BinDir: c.BinDir, AgentCmd: c.AgentCmd, Nodes: nodesFor(c)}
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
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy", "flanneld", "flannel", "bridge", "host-local", "loopback"} {
		if _, err := os.Stat(c.bin(b)); err != nil {
			errs = append(errs, fmt.Errorf("missing tool %s in --bin-dir %q", b, c.BinDir))
		}
	}
	if _, err := os.Stat("/usr/sbin/nft"); err != nil {
		errs = append(errs, errors.New("nft (Debian package nftables) is needed by kube-proxy"))
	}
	return errors.Join(errs...)
}

func (c *Config) makePKI(_ context.Context, s *State) error {
	p, err := newPKI(c.pkiDir())
	if err != nil {
		return err
	}
	lo := net.ParseIP("127.0.0.1")
	if err := p.issue("apiserver", "kube-apiserver", nil, true,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{lo, net.ParseIP("10.96.0.1")}); err != nil {
		return err
	}
	if err := p.serviceAccountKey(); err != nil {
		return err
	}
	// Identities: kube-proxy has its built-in RBAC identity. The controller
	// manager runs without per-controller service-account credentials and so
	// needs broad rights, as do the harness and flanneld. The agent gets admin
	// rights too: the RBAC of config/ is exercised by its own tests.
	ids := []struct{ name, cn, org string }{
		{"admin", "e2e-admin", "system:masters"},
		{"kube-proxy", "system:kube-proxy", ""},
		{"kube-controller-manager", "system:kube-controller-manager", "system:masters"},
		{"flanneld", "e2e-flanneld", "system:masters"},
		{"agent", "e2e-nftpolicy-agent", "system:masters"},
	}
	agentSA, err := c.agentServiceAccount()
	if err != nil {
		return err
	}
	for _, id := range ids {
		var orgs []string
		if id.org != "" {
			orgs = []string{id.org}
		}
		if id.name == "agent" && agentSA != nil {
			id.cn = "system:serviceaccount:" + agentSA.Namespace + ":" + agentSA.Name
			orgs = []string{"system:serviceaccounts", "system:serviceaccounts:" + agentSA.Namespace}
		}
		if err := p.issue(id.name, id.cn, orgs, false, nil, nil); err != nil {
			return err
		}
	}
	host := fmt.Sprintf("https://127.0.0.1:%d", APIPort)
	nodeURL := fmt.Sprintf("https://127.0.0.1:%d", NodeAPIPort)
	if err := p.kubeconfig(c.AdminKubeconfig(), host, "admin"); err != nil {
		return err
	}
	if err := p.kubeconfig(filepath.Join(c.StateDir, "kube-controller-manager.kubeconfig"), host, "kube-controller-manager"); err != nil {
		return err
	}
	for _, n := range s.Nodes {
		if err := os.MkdirAll(n.Dir, 0o755); err != nil {
			return err
		}
		for _, id := range []string{"kube-proxy", "flanneld", "agent"} {
			if err := p.kubeconfig(filepath.Join(n.Dir, id+".kubeconfig"), nodeURL, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// makeNetwork creates the underlay namespace with its bridge and one
// namespace per node wired to it by a veth pair.
func (c *Config) makeNetwork(_ context.Context, s *State) error {
	cmds := [][]string{
		{"ip", "netns", "add", UnderlayNS},
		{"ip", "-n", UnderlayNS, "link", "set", "lo", "up"},
		{"ip", "-n", UnderlayNS, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", UnderlayNS, "addr", "add", UnderlayGW + "/24", "dev", "br0"},
		{"ip", "-n", UnderlayNS, "link", "set", "br0", "up"},
	}
	for _, n := range s.Nodes {
		host := fmt.Sprintf("n%d", n.Index)
		cmds = append(cmds,
			[]string{"ip", "netns", "add", n.NetNS},
			[]string{"ip", "-n", n.NetNS, "link", "set", "lo", "up"},
			[]string{"ip", "-n", UnderlayNS, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", n.NetNS},
			[]string{"ip", "-n", UnderlayNS, "link", "set", host, "master", "br0", "up"},
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

func (c *Config) logFile(name string) string { return filepath.Join(c.LogDir(), name+".log") }

func (c *Config) startEtcd(ctx context.Context, _ *State) error {
	u := fmt.Sprintf("http://127.0.0.1:%d", EtcdPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", EtcdPeerPort)
	_, err := c.Start(Proc{Name: "etcd", LogFile: c.logFile("etcd"), Args: []string{
		c.bin("etcd"), "--name", "e2e", "--data-dir", filepath.Join(c.StateDir, "etcd"),
		"--listen-client-urls", u, "--advertise-client-urls", u,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "e2e=" + peer, "--unsafe-no-fsync", "--log-level", "warn",
	}})
	if err != nil {
		return err
	}
	return poll(ctx, 30*time.Second, func() error {
		if !c.Alive("etcd") {
			return errStop("etcd exited")
		}
		resp, err := http.Get(u + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("etcd health %d", resp.StatusCode)
		}
		return nil
	})
}

func (c *Config) startAPIServer(ctx context.Context, _ *State) error {
	p := c.pkiDir()
	_, err := c.Start(Proc{Name: "kube-apiserver", LogFile: c.logFile("kube-apiserver"), Args: []string{
		c.bin("kube-apiserver"),
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", EtcdPort),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", fmt.Sprint(APIPort),
		"--tls-cert-file", filepath.Join(p, "apiserver.crt"), "--tls-private-key-file", filepath.Join(p, "apiserver.key"),
		"--client-ca-file", filepath.Join(p, "ca.crt"),
		"--service-account-key-file", filepath.Join(p, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(p, "sa.key"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", ServiceCIDR,
		"--endpoint-reconciler-type", "none",
		"--allow-privileged=true",
		// No kubelet mounts tokens, and pods must not wait for the default
		// ServiceAccount of a fresh namespace.
		"--disable-admission-plugins", "ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--v", "1",
	}})
	if err != nil {
		return err
	}
	cs, err := c.Client()
	if err != nil {
		return err
	}
	return poll(ctx, 60*time.Second, func() error {
		if !c.Alive("kube-apiserver") {
			return errStop("kube-apiserver exited")
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		b, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		if err != nil {
			return fmt.Errorf("readyz: %w %s", err, b)
		}
		return nil
	})
}

// Client returns a clientset with the admin identity.
func (c *Config) Client() (*kubernetes.Clientset, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig())
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = 200, 400
	return kubernetes.NewForConfig(rc)
}

func (c *Config) createObjects(ctx context.Context, s *State) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	if err := c.applyAgentRBAC(ctx, cs); err != nil {
		return err
	}
	for _, n := range s.Nodes {
		node := &corev1.Node{
			// flanneld writes into the annotations map without creating it.
			ObjectMeta: metav1.ObjectMeta{Name: n.Name, Annotations: map[string]string{"e2e.nftpolicy.io/node": n.NetNS}, Labels: map[string]string{
				// The kubelet's default labels (ClusterNetworkPolicy nodes
				// peers select on them), and ours.
				"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux", "kubernetes.io/arch": runtime.GOARCH,
				"e2e.nftpolicy.io/node": "true",
			}},
			Spec: corev1.NodeSpec{PodCIDR: n.PodCIDR, PodCIDRs: []string{n.PodCIDR}},
		}
		created, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			created, err = cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		}
		if err != nil {
			return err
		}
		now := metav1.Now()
		created.Status = corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.IP}, {Type: corev1.NodeHostName, Address: n.Name}},
			Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "E2EHarness",
				Message: "the e2e harness acts as the kubelet", LastHeartbeatTime: now, LastTransitionTime: now,
			}},
			NodeInfo: corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "amd64", KubeletVersion: "v1.36.4"},
		}
		if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// agentServiceAccount returns the ServiceAccount subject of the agent's
// ClusterRoleBinding in AgentRBAC, or nil without AgentRBAC.
func (c *Config) agentServiceAccount() (*rbacv1.Subject, error) {
	if c.AgentRBAC == "" {
		return nil, nil
	}
	b, err := os.ReadFile(filepath.Join(c.AgentRBAC, "cluster_role_binding.yaml"))
	if err != nil {
		return nil, err
	}
	var crb rbacv1.ClusterRoleBinding
	if err := yaml.Unmarshal(b, &crb); err != nil {
		return nil, fmt.Errorf("%s: %w", c.AgentRBAC, err)
	}
	for _, s := range crb.Subjects {
		if s.Kind == rbacv1.ServiceAccountKind {
			return &s, nil
		}
	}
	return nil, fmt.Errorf("%s/cluster_role_binding.yaml binds no ServiceAccount", c.AgentRBAC)
}

// applyAgentRBAC creates the agent's namespace and applies its RBAC files
// with kubectl, as an installation would.
func (c *Config) applyAgentRBAC(ctx context.Context, cs kubernetes.Interface) error {
	sa, err := c.agentServiceAccount()
	if err != nil || sa == nil {
		return err
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sa.Namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	args := []string{"apply"}
	ents, err := os.ReadDir(c.AgentRBAC)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".yaml") && e.Name() != "kustomization.yaml" {
			args = append(args, "-f", filepath.Join(c.AgentRBAC, e.Name()))
		}
	}
	_, err = c.Kubectl(ctx, args...)
	return err
}

// Kubectl runs the cluster's kubectl as admin and returns its output.
func (c *Config) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.bin("kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.AdminKubeconfig())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

func (c *Config) startKCM(ctx context.Context, _ *State) error {
	p := c.pkiDir()
	_, err := c.Start(Proc{Name: "kube-controller-manager", LogFile: c.logFile("kube-controller-manager"), Args: []string{
		c.bin("kube-controller-manager"),
		"--kubeconfig", filepath.Join(c.StateDir, "kube-controller-manager.kubeconfig"),
		"--authentication-kubeconfig", filepath.Join(c.StateDir, "kube-controller-manager.kubeconfig"),
		"--authorization-kubeconfig", filepath.Join(c.StateDir, "kube-controller-manager.kubeconfig"),
		"--bind-address", "127.0.0.1", "--secure-port", "0",
		"--leader-elect=false",
		// No nodeipam/nodelifecycle: there is no kubelet (they would evict pods).
		"--controllers", "endpointslice-controller,endpointslice-mirroring-controller,namespace-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller",
		"--service-account-private-key-file", filepath.Join(p, "sa.key"),
		"--root-ca-file", filepath.Join(p, "ca.crt"),
		"--use-service-account-credentials=false",
		"--cluster-cidr", ClusterCIDR, "--service-cluster-ip-range", ServiceCIDR,
		"--v", "1",
	}})
	if err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	if !c.Alive("kube-controller-manager") {
		return errors.New("kube-controller-manager exited")
	}
	return nil
}

func (c *Config) self() (string, error) { return os.Executable() }

func (c *Config) startRelay(ctx context.Context, s *State) error {
	exe, err := c.self()
	if err != nil {
		return err
	}
	if _, err := c.Start(Proc{Name: "relay", LogFile: c.logFile("relay"), Args: []string{exe, "relay", "--state-dir", c.StateDir}}); err != nil {
		return err
	}
	// The relay writes its ready file once every listener is open.
	ready := filepath.Join(c.StateDir, "relay.ready")
	return poll(ctx, 10*time.Second, func() error {
		if !c.Alive("relay") {
			return errStop("relay exited")
		}
		_, err := os.Stat(ready)
		return err
	})
}

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

// Down kills every process the harness started, deletes its namespaces and
// its state directory. It works from the pid files and the NSPrefix, so it
// also cleans a crashed run.
func (c *Config) Down() error {
	var errs []error
	// Pods first (podservers), then node components, then the control plane.
	errs = append(errs, c.StopAll("pod-"))
	if s, ok := c.LoadState(); ok {
		for _, n := range s.Nodes {
			for _, p := range []string{"agent", "kube-proxy", "flanneld"} {
				errs = append(errs, c.Stop(n.Name+"-"+p))
			}
		}
	}
	errs = append(errs, c.StopAll("e2e-node-"))
	for i := len(controlProcs) - 1; i >= 0; i-- {
		errs = append(errs, c.Stop(controlProcs[i]))
	}
	errs = append(errs, c.StopAll(""))
	out, err := run("ip", "netns", "list")
	if err == nil {
		var names []string
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) > 0 && strings.HasPrefix(f[0], NSPrefix) {
				names = append(names, f[0])
			}
		}
		// Pod namespaces before node and underlay namespaces.
		for _, pass := range []func(string) bool{
			func(n string) bool { return strings.HasPrefix(n, NSPrefix+"p-") },
			func(n string) bool { return true },
		} {
			for _, n := range names {
				if pass(n) {
					if _, err := os.Stat("/run/netns/" + n); err == nil {
						if _, err := run("ip", "netns", "del", n); err != nil {
							errs = append(errs, err)
						}
					}
				}
			}
		}
	} else {
		errs = append(errs, err)
	}
	if c.StateDir != "" && c.StateDir != "/" {
		errs = append(errs, os.RemoveAll(c.StateDir))
	}
	return errors.Join(errs...)
}

// Status describes what runs.
func (c *Config) Status() string {
	var b strings.Builder
	s, ok := c.LoadState()
	if !ok {
		return "cluster: down (no state in " + c.StateDir + ")\n"
	}
	_, healthy := c.Healthy()
	fmt.Fprintf(&b, "cluster: ready=%v healthy=%v state=%s\nkubeconfig: %s\nagent: %q\n", s.Ready, healthy, c.StateDir, c.AdminKubeconfig(), s.AgentCmd)
	for _, p := range controlProcs {
		fmt.Fprintf(&b, "  %-28s %s\n", p, aliveWord(c.Alive(p)))
	}
	for _, n := range s.Nodes {
		fmt.Fprintf(&b, "  node %s netns=%s ip=%s podCIDR=%s\n", n.Name, n.NetNS, n.IP, n.PodCIDR)
		for _, p := range []string{"flanneld", "kube-proxy", "agent"} {
			if p == "agent" && s.AgentCmd == "" {
				continue
			}
			fmt.Fprintf(&b, "    %-26s %s\n", p, aliveWord(c.Alive(n.Name+"-"+p)))
		}
	}
	return b.String()
}

func aliveWord(ok bool) string {
	if ok {
		return "running"
	}
	return "NOT RUNNING"
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

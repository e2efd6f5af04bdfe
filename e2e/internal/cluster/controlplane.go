// The control plane: PKI, etcd, kube-apiserver, kube-controller-manager,
// the API relay, and the objects every cluster starts with.

package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

func (c *Config) makePKI(_ context.Context, s *State) error {
	p, err := newPKI(c.pkiDir())
	if err != nil {
		return err
	}
	lo := net.ParseIP("127.0.0.1")
	if err := p.issue("apiserver", "kube-apiserver", nil, true,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{lo, net.ParseIP("10.96.0.1"), net.ParseIP("fd00:10:96::1")}); err != nil {
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
	if c.Kubelet {
		// The kubelets authenticate as nodes but, with no Node authorizer
		// here, get admin rights: the cluster is a test bed for the agent,
		// not for node isolation.
		for _, n := range s.Nodes {
			ids = append(ids, struct{ name, cn, org string }{"kubelet-" + n.Name, "system:node:" + n.Name, "system:masters"})
		}
		ids = append(ids, struct{ name, cn, org string }{"kube-scheduler", "system:kube-scheduler", ""})
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
	host := fmt.Sprintf("https://127.0.0.1:%d", c.Instance.APIPort())
	nodeURL := fmt.Sprintf("https://127.0.0.1:%d", NodeAPIPort)
	if err := p.kubeconfig(c.AdminKubeconfig(), host, "admin"); err != nil {
		return err
	}
	if err := p.kubeconfig(filepath.Join(c.StateDir, "kube-controller-manager.kubeconfig"), host, "kube-controller-manager"); err != nil {
		return err
	}
	if c.Kubelet {
		if err := p.kubeconfig(filepath.Join(c.StateDir, "kube-scheduler.kubeconfig"), host, "kube-scheduler"); err != nil {
			return err
		}
		for _, n := range s.Nodes {
			if err := os.MkdirAll(n.Dir, 0o755); err != nil {
				return err
			}
			if err := p.kubeconfig(filepath.Join(n.Dir, "kubelet.kubeconfig"), nodeURL, "kubelet-"+n.Name); err != nil {
				return err
			}
		}
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

func (c *Config) startEtcd(ctx context.Context, _ *State) error {
	u := fmt.Sprintf("http://127.0.0.1:%d", c.Instance.EtcdPort())
	peer := fmt.Sprintf("http://127.0.0.1:%d", c.Instance.EtcdPeerPort())
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

func (c *Config) startAPIServer(ctx context.Context, s *State) error {
	p := c.pkiDir()
	// No kubelet mounts tokens, and pods must not wait for the default
	// ServiceAccount of a fresh namespace; real kubelets mount the tokens
	// the ServiceAccount admission plugin adds (the agent's DaemonSet runs
	// on one).
	admission := []string{"--disable-admission-plugins", "ServiceAccount"}
	if c.Kubelet {
		var err error
		if admission, err = c.kubeletAPIServerArgs(); err != nil {
			return err
		}
	}
	args := []string{
		c.bin("kube-apiserver"),
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", c.Instance.EtcdPort()),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", fmt.Sprint(c.Instance.APIPort()),
		"--tls-cert-file", filepath.Join(p, "apiserver.crt"), "--tls-private-key-file", filepath.Join(p, "apiserver.key"),
		"--client-ca-file", filepath.Join(p, "ca.crt"),
		"--service-account-key-file", filepath.Join(p, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(p, "sa.key"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", serviceCIDRs(s.stack()),
		"--endpoint-reconciler-type", "none",
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		"--v", "1",
	}
	_, err := c.Start(Proc{Name: "kube-apiserver", LogFile: c.logFile("kube-apiserver"), Args: append(args, admission...)})
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
			Spec: corev1.NodeSpec{PodCIDR: n.PodCIDR, PodCIDRs: n.PodCIDRs},
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
			Addresses: nodeAddresses(n),
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

// nodeAddresses are the node's InternalIPs, one per family, primary first
// (kube-proxy and flanneld take the node's families from them), and its
// host name.
func nodeAddresses(n Node) []corev1.NodeAddress {
	var out []corev1.NodeAddress
	for _, ip := range n.IPs {
		out = append(out, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	return append(out, corev1.NodeAddress{Type: corev1.NodeHostName, Address: n.Name})
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

func (c *Config) startKCM(ctx context.Context, s *State) error {
	p := c.pkiDir()
	controllers := "endpointslice-controller,endpointslice-mirroring-controller,namespace-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller"
	if c.Kubelet {
		// Real kubelets run DaemonSets, Deployments and the
		// network-policy-api suite's StatefulSets, and mount the
		// cluster CA that root-ca-certificate-publisher publishes into
		// every namespace; node-lifecycle lifts the not-ready taint a
		// kubelet registers its node with once it is Ready. Still no
		// nodeipam: podCIDRs are the harness's.
		controllers += ",daemonset-controller,replicaset-controller,deployment-controller,statefulset-controller,root-ca-certificate-publisher-controller,pod-garbage-collector-controller,node-lifecycle-controller"
	}
	_, err := c.Start(Proc{Name: "kube-controller-manager", LogFile: c.logFile("kube-controller-manager"), Args: []string{
		c.bin("kube-controller-manager"),
		"--kubeconfig", filepath.Join(c.StateDir, "kube-controller-manager.kubeconfig"),
		"--authentication-kubeconfig", filepath.Join(c.StateDir, "kube-controller-manager.kubeconfig"),
		"--authorization-kubeconfig", filepath.Join(c.StateDir, "kube-controller-manager.kubeconfig"),
		"--bind-address", "127.0.0.1", "--secure-port", "0",
		"--leader-elect=false",
		// No nodeipam/nodelifecycle: there is no kubelet (they would evict pods).
		"--controllers", controllers,
		"--service-account-private-key-file", filepath.Join(p, "sa.key"),
		"--root-ca-file", filepath.Join(p, "ca.crt"),
		"--use-service-account-credentials=false",
		"--cluster-cidr", clusterCIDRs(s.stack()), "--service-cluster-ip-range", serviceCIDRs(s.stack()),
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

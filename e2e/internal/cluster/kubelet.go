// The kubelet mode (Config.Kubelet, `make up E2E_KUBELET=1`): each node
// runs containerd and a real kubelet, pods are containers that the kubelet
// attaches through the node's CNI chain (Flannel, then whatever the agent's
// installer appends), and the agent is installed from the release manifest
// as a DaemonSet running the image this tree builds.
//
// A node is a network namespace (as in the default mode) plus a mount
// namespace shared by its containerd and kubelet: the DaemonSet's hostPath
// volumes (/etc/cni/net.d, /opt/cni/bin, /run/nftpolicy) and /var/lib/cni
// are bind-mounted there from the node's directory, so three nodes on one
// machine do not share one CNI configuration or one agent socket. The mount
// namespace is a slave of the host's: nothing containerd or the kubelet
// mounts reaches the host, and it vanishes with its last process.

package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// nodeHostPaths are the host directories a node gets its own copy of, in
// its mount namespace: the DaemonSet's hostPath volumes and the CNI
// plugins' state.
var nodeHostPaths = []string{"/etc/cni/net.d", "/opt/cni/bin", "/run/nftpolicy", "/var/lib/cni"}

// cniPlugins are the node's CNI binaries (install-cni adds nftpolicy-cni).
var cniPlugins = []string{"flannel", "bridge", "host-local", "loopback", "portmap"}

// kubeletProcs are a kubelet node's processes besides flanneld and kube-proxy.
var kubeletProcs = []string{"containerd", "kubelet"}

func (c *Config) kubeletProxySocket() string { return filepath.Join(c.StateDir, "kubelet-proxy.sock") }

// cgroupRoot is the node's kubelet cgroupRoot; the runtime (containerd and
// its shims) lives beside it in cgroupRoot+"-runtime".
func (n Node) cgroupRoot() string { return "/" + n.NetNS }

func (n Node) containerdSocket() string { return filepath.Join(n.Dir, "containerd", "containerd.sock") }
func (n Node) hostPathDir(p string) string {
	return filepath.Join(n.Dir, "host", strings.TrimPrefix(p, "/"))
}

// egressSelectorConfig sends the apiserver's connections to kubelets
// through the relay's CONNECT proxy.
func (c *Config) egressSelectorConfig() (string, error) {
	path := filepath.Join(c.StateDir, "egress-selector.yaml")
	conf := fmt.Sprintf(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
`, c.kubeletProxySocket())
	return path, os.WriteFile(path, []byte(conf), 0o644)
}

// kubeletAPIServerArgs are kube-apiserver's extra flags in kubelet mode.
func (c *Config) kubeletAPIServerArgs() ([]string, error) {
	egress, err := c.egressSelectorConfig()
	if err != nil {
		return nil, err
	}
	return []string{
		"--kubelet-preferred-address-types", "InternalIP",
		"--egress-selector-config-file", egress,
	}, nil
}

func (c *Config) startScheduler(ctx context.Context, _ *State) error {
	kc := filepath.Join(c.StateDir, "kube-scheduler.kubeconfig")
	if _, err := c.Start(Proc{Name: "kube-scheduler", LogFile: c.logFile("kube-scheduler"), Args: []string{
		c.bin("kube-scheduler"), "--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
		"--bind-address", "127.0.0.1", "--secure-port", "0", "--leader-elect=false", "--v", "1",
	}}); err != nil {
		return err
	}
	return poll(ctx, 3*time.Second, func() error {
		if !c.Alive("kube-scheduler") {
			return errStop("kube-scheduler exited")
		}
		return nil
	})
}

// kubernetesEndpoint points the kubernetes Service at the relay's
// listener in the underlay (the apiserver runs with
// --endpoint-reconciler-type=none: its own address is the host's loopback).
func (c *Config) kubernetesEndpoint(ctx context.Context, _ *State) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default", Labels: map[string]string{
			discoveryv1.LabelServiceName: "kubernetes", discoveryv1.LabelManagedBy: "e2e.nftpolicy.io",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{UnderlayGW}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(NodeAPIPort)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	return poll(ctx, 30*time.Second, func() error {
		_, err := cs.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
}

// containerdConfig is the node's containerd configuration: its own root,
// state (pod network namespaces included) and socket, the CRI plugin with the
// node's CNI directories (its bind mounts), no OOM score adjustment below
// containerd's own (this VM grants no CAP_SYS_RESOURCE), and the pause
// image the harness imports so that nothing is pulled.
func containerdConfig(n Node) string {
	d := filepath.Join(n.Dir, "containerd")
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
`, filepath.Join(d, "root"), filepath.Join(d, "state"), n.containerdSocket(), filepath.Join(d, "ttrpc.sock"),
		filepath.Join(d, "opt"), PauseImage)
}

// startContainerd starts each node's containerd in a new mount namespace
// (the node's: see the file comment) and its network namespace, in a
// cgroup of its own so that teardown finds its shims and containers.
func (c *Config) startContainerd(ctx context.Context, s *State) error {
	for _, n := range s.Nodes {
		d := filepath.Join(n.Dir, "containerd")
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		conf := filepath.Join(d, "config.toml")
		if err := os.WriteFile(conf, []byte(containerdConfig(n)), 0o644); err != nil {
			return err
		}
		var script strings.Builder
		script.WriteString("set -eu\n")
		for _, p := range nodeHostPaths {
			own := n.hostPathDir(p)
			if err := os.MkdirAll(own, 0o755); err != nil {
				return err
			}
			// The mount point must exist on the host: an empty directory.
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			fmt.Fprintf(&script, "mount --bind %q %q\n", own, p)
		}
		for _, plugin := range cniPlugins {
			link := filepath.Join(n.hostPathDir("/opt/cni/bin"), plugin)
			_ = os.Remove(link)
			if err := os.Symlink(c.bin(plugin), link); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(n.hostPathDir("/etc/cni/net.d"), "10-flannel.conflist"), flannelConflist(n), 0o644); err != nil {
			return err
		}
		procs, err := c.makeRuntimeCgroup(n)
		if err != nil {
			return err
		}
		fmt.Fprintf(&script, "echo $$ > %q\n", procs)
		fmt.Fprintf(&script, "exec nsenter --net=%q containerd --config %q\n", "/run/netns/"+n.NetNS, conf)
		// The script's $0 is "containerd", so the process carries its
		// marker from the start, before it execs containerd.
		if _, err := c.Start(Proc{Name: n.Name + "-containerd", LogFile: c.logFile(n.Name + "-containerd"), Marker: "containerd",
			Args: []string{"/usr/bin/unshare", "--mount", "--propagation", "slave", "/bin/sh", "-c", script.String(), "containerd"}}); err != nil {
			return err
		}
	}
	return poll(ctx, 60*time.Second, func() error {
		for _, n := range s.Nodes {
			if !c.Alive(n.Name + "-containerd") {
				return errStop(n.Name + " containerd exited")
			}
			if _, err := run("ctr", "--address", n.containerdSocket(), "version"); err != nil {
				return err
			}
		}
		return nil
	})
}

// flannelConflist is the node's CNI network: Flannel's meta-plugin
// delegating to bridge + host-local on the node's subnet (as Flannel's
// DaemonSet installs it), with its state in the node's directory. The
// bridge must not masquerade: flanneld runs with --ip-masq=false, and the
// meta-plugin then turns the bridge's ipMasq on, which would SNAT pod
// traffic to other nodes to the node's address, and no policy peer would
// match it (the harness kubelet's conflist says the same).
func flannelConflist(n Node) []byte {
	return fmt.Appendf(nil, `{
  "cniVersion": "0.3.1",
  "name": "cbr0",
  "plugins": [
    {"type": "flannel", "subnetFile": %q, "dataDir": %q,
     "delegate": {"ipMasq": false, "hairpinMode": true, "isDefaultGateway": true}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, filepath.Join(n.Dir, "subnet.env"), filepath.Join(n.Dir, "cni-flannel"))
}

// pidsHierarchy is the cgroup v1 hierarchy teardown reads the processes
// of a node's cgroups from.
const pidsHierarchy = "/sys/fs/cgroup/pids"

// makeRuntimeCgroup creates the node's runtime cgroup and returns its
// cgroup.procs file.
func (c *Config) makeRuntimeCgroup(n Node) (string, error) {
	dir := filepath.Join(pidsHierarchy, n.NetNS+"-runtime")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("runtime cgroup: %w", err)
	}
	return filepath.Join(dir, "cgroup.procs"), nil
}

// makeCgroupRoot creates the node's cgroupRoot in every cgroup v1
// hierarchy (the kubelet refuses a root that is missing in one), with the
// parent's CPUs and memory nodes in cpuset, which a new cpuset cgroup
// does not inherit.
func makeCgroupRoot(n Node) error {
	hierarchies, err := filepath.Glob("/sys/fs/cgroup/*")
	if err != nil {
		return err
	}
	for _, h := range hierarchies {
		if filepath.Base(h) == "unified" {
			continue
		}
		if _, err := os.Stat(filepath.Join(h, "cgroup.procs")); err != nil {
			continue
		}
		dir := filepath.Join(h, n.cgroupRoot())
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup root: %w", err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					return fmt.Errorf("cgroup root: %w", err)
				}
			}
		}
	}
	return nil
}

func (c *Config) kubeletConfig(n Node) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 on this machine: kubelet 1.36 refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %s
failSwapOn: false
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://%s
podLogsDir: %s
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization:
  mode: AlwaysAllow
# Disk and memory are shared with other work on this machine: never evict.
evictionHard: {memory.available: "1Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
`, n.cgroupRoot(), n.IP, n.containerdSocket(), filepath.Join(n.Dir, "pod-logs"))
}

// startKubelets starts each node's kubelet in the node's mount namespace
// (containerd's: the kubelet's volume mounts must be what runc sees) and
// network namespace. nsenter, not `ip netns exec`, which remounts /sys and
// hides the cgroup file systems.
func (c *Config) startKubelets(ctx context.Context, s *State) error {
	for _, n := range s.Nodes {
		pid, ok := c.readPid(n.Name + "-containerd")
		if !ok {
			return fmt.Errorf("%s: containerd is not running", n.Name)
		}
		if err := makeCgroupRoot(n); err != nil {
			return err
		}
		conf := filepath.Join(n.Dir, "kubelet.yaml")
		if err := os.WriteFile(conf, []byte(c.kubeletConfig(n)), 0o644); err != nil {
			return err
		}
		if _, err := c.Start(Proc{Name: n.Name + "-kubelet", LogFile: c.logFile(n.Name + "-kubelet"), Marker: "kubelet",
			Args: []string{"/usr/bin/nsenter", fmt.Sprintf("--mount=/proc/%d/ns/mnt", pid), "--net=/run/netns/" + n.NetNS,
				c.bin("kubelet"), "--config", conf, "--kubeconfig", filepath.Join(n.Dir, "kubelet.kubeconfig"),
				"--root-dir", filepath.Join(n.Dir, "kubelet"), "--hostname-override", n.Name, "--node-ip", n.IP,
				"--v", "1"}}); err != nil {
			return err
		}
	}
	cs, err := c.Client()
	if err != nil {
		return err
	}
	return poll(ctx, 120*time.Second, func() error {
		for _, n := range s.Nodes {
			if !c.Alive(n.Name + "-kubelet") {
				return errStop(n.Name + " kubelet exited; see " + c.logFile(n.Name+"-kubelet"))
			}
			node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !nodeReady(node) {
				return fmt.Errorf("node %s is not Ready", n.Name)
			}
		}
		return nil
	})
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue && c.Reason != "E2EHarness"
		}
	}
	return false
}

// installAgent applies the install manifest with kubectl, as a user would,
// and waits for the DaemonSet to roll out Ready on every node.
func (c *Config) installAgent(ctx context.Context, s *State) error {
	if c.Install == "" {
		return nil
	}
	if _, err := c.Kubectl(ctx, "apply", "-f", c.Install); err != nil {
		return err
	}
	out, err := c.Kubectl(ctx, "get", "daemonsets", "-A", "-o", "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}")
	if err != nil {
		return err
	}
	var errs []error
	for _, ds := range strings.Fields(string(out)) {
		ns, name, _ := strings.Cut(ds, "/")
		if _, err := c.Kubectl(ctx, "-n", ns, "rollout", "status", "daemonset/"+name, "--timeout=180s"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killNodeCgroups kills every process in the kubelet nodes' cgroups
// (containers, containerd shims, containerd) and removes the cgroups, in
// every hierarchy, deepest first.
func (c *Config) killNodeCgroups() error {
	prefix := c.Instance.NSPrefix() + "node"
	roots, _ := filepath.Glob(filepath.Join(pidsHierarchy, prefix+"*"))
	for attempt := 0; attempt < 50; attempt++ {
		var pids []int
		for _, r := range roots {
			pids = append(pids, cgroupPids(r)...)
		}
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = killPid(pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var errs []error
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range hierarchies {
		if fi, err := os.Lstat(h); err != nil || !fi.IsDir() { // cpu and cpuacct are symlinks to cpu,cpuacct
			continue
		}
		dirs, _ := filepath.Glob(filepath.Join(h, prefix+"*"))
		for _, d := range dirs {
			errs = append(errs, removeCgroupTree(d))
		}
	}
	return errors.Join(errs...)
}

// cgroupPids lists the processes of a cgroup and its descendants.
func cgroupPids(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(b)) {
			var pid int
			if _, err := fmt.Sscanf(f, "%d", &pid); err == nil && pid > 1 {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// removeCgroupTree removes a cgroup directory and its children, deepest
// first (a cgroup directory is removed with rmdir, never emptied).
func removeCgroupTree(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

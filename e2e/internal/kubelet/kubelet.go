// Package kubelet is the harness's stand-in for the kubelet: it gives each
// pod a network namespace through the real CNI plugins (Flannel delegating to
// bridge + host-local, plus loopback), creates the Pod object with its node,
// labels and named container ports, sets its status through the status
// subresource, starts the pod's podserver, and creates the pod's Service.
//
// A pod created with PodSpec.Pending stops before the status: its namespace,
// address and podserver exist, its Pod object is Pending without an IP, and
// MarkRunning is the kubelet's status update that makes it Running.
package kubelet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/podserver"
)

// Server is one served port with its container port name.
type Server struct {
	Port     int32
	Protocol string
	Name     string
}

// PortName is the container port name: the given one or
// serve-<port>-<proto>, or s<port>-<proto> where that would be longer than
// the 15 characters a port name may have (a 5-digit SCTP port).
func (s Server) PortName() string {
	if s.Name != "" {
		return s.Name
	}
	if n := fmt.Sprintf("serve-%d-%s", s.Port, strings.ToLower(s.Protocol)); len(n) <= 15 {
		return n
	}
	return fmt.Sprintf("s%d-%s", s.Port, strings.ToLower(s.Protocol))
}

// PodSpec is what a scenario asks for.
type PodSpec struct {
	Namespace, Name string
	Labels          map[string]string
	// IP is optional: the exact address, as the scenario writes it (IPv4).
	// The pod gets it in each family of the cluster, mapped to IPv6 by
	// cluster.MapToIPv6.
	IP      string
	Servers []Server
	// Pending leaves the Pod object without a status (phase Pending, no
	// IP), as between scheduling and the kubelet's first status update;
	// MarkRunning makes it Running and clears the flag.
	Pending bool
	// NoService skips the pod's ClusterIP Service and EndpointSlice, for
	// callers that reach pods by IP only (no kube-proxy resync per pod).
	NoService bool
	// NoServer skips the pod's podserver process: the pod has its
	// namespace, CNI address and Running Pod object, and serves nothing
	// (a peer that only needs to exist; a podserver costs ~8 MiB of
	// memory, too much for hundreds of pods). Servers are still declared
	// as container ports.
	NoServer bool
	// HostNetwork makes a host-network pod on node Node (1-based): no
	// namespace or CNI of its own, its servers in the node's namespace, its
	// address the node's. It gets no Service.
	HostNetwork bool
	Node        int
}

// Key is namespace/name.
func (p PodSpec) Key() string { return p.Namespace + "/" + p.Name }

// Addr returns the pod's address in family f.
func (p *Pod) Addr(f cluster.Family) (netip.Addr, bool) {
	for _, a := range p.addrs() {
		if cluster.Of(a) == f {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// addrs are the pod's addresses, one per family, primary first.
func (p *Pod) addrs() []netip.Addr {
	if len(p.IPs) == 0 && p.IP.IsValid() {
		return []netip.Addr{p.IP}
	}
	return p.IPs
}

// ClusterIPIn returns the pod's Service address in family f.
func (p *Pod) ClusterIPIn(f cluster.Family) (string, bool) {
	for _, ip := range p.ClusterIPs {
		if a, err := netip.ParseAddr(ip); err == nil && cluster.Of(a) == f {
			return ip, true
		}
	}
	return "", false
}

// requestedIPs are spec.IP in each of the families.
func requestedIPs(spec PodSpec, fams []cluster.Family) ([]netip.Addr, error) {
	if spec.IP == "" {
		return nil, nil
	}
	ip, err := netip.ParseAddr(spec.IP)
	if err != nil {
		return nil, fmt.Errorf("pod %s: ip: %w", spec.Key(), err)
	}
	var out []netip.Addr
	for _, f := range fams {
		a, err := cluster.InFamily(ip, f)
		if err != nil {
			return nil, fmt.Errorf("pod %s: %w", spec.Key(), err)
		}
		out = append(out, a)
	}
	return out, nil
}

// nodeIPs are the node's addresses, primary first.
func nodeIPs(n cluster.Node) []netip.Addr {
	var out []netip.Addr
	for _, ip := range n.IPs {
		out = append(out, netip.MustParseAddr(ip))
	}
	if len(out) == 0 {
		out = []netip.Addr{netip.MustParseAddr(n.IP)}
	}
	return out
}

// Pod is a running pod.
type Pod struct {
	Spec PodSpec
	Node cluster.Node
	// IP is the pod's address in the cluster's primary family; IPs has one
	// per family, primary first.
	IP      netip.Addr
	IPs     []netip.Addr
	ID      string
	NetNS   string
	Ctl     string // podserver control socket
	Service string // empty with PodSpec.NoService
	// ClusterIP is the Service's primary address; ClusterIPs one per family.
	ClusterIP  string
	ClusterIPs []string

	pending *corev1.Pod // the Pod object as created, while Spec.Pending
	// CNIAdd is how long the CNI chain's ADD took (with nftpolicy-cni:
	// including the wait for the agent).
	CNIAdd time.Duration
}

// Kubelet creates and deletes pods on the cluster's nodes.
type Kubelet struct {
	Cfg   *cluster.Config
	State *cluster.State
	CS    kubernetes.Interface
	Exe   string // this binary, for the podserver

	// ChainPlugin is the path of nftpolicy-cni when the cluster runs our
	// agent (it is built beside the agent binary): the conflists chain it
	// after flannel, as config/ installs it. Empty: flannel alone.
	ChainPlugin string
	// BeforeCNI, if set, is called with each pod once its network
	// namespace exists and before the CNI ADD gives it an address (the
	// first-packet check starts probing from inside it there).
	BeforeCNI func(*Pod)

	mu   sync.Mutex
	run  string // distinguishes pod IDs of different runner processes
	gen  int
	rr   int
	load map[string]int
}

// New returns a Kubelet for the running cluster.
func New(cfg *cluster.Config, st *cluster.State, cs kubernetes.Interface) (*Kubelet, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	k := &Kubelet{Cfg: cfg, State: st, CS: cs, Exe: exe, load: map[string]int{}, run: fmt.Sprintf("%04x", rand.IntN(0x10000))}
	if prog := cluster.AgentProgram(st.AgentCmd); filepath.Base(prog) == "nftpolicy" {
		plugin := filepath.Join(filepath.Dir(prog), chainPluginType)
		if _, err := os.Stat(plugin); err != nil {
			return nil, fmt.Errorf("the agent is nftpolicy but its CNI plugin is missing (make e2e-bin builds it): %w", err)
		}
		k.ChainPlugin = plugin
	}
	for _, n := range st.Nodes {
		if err := os.WriteFile(k.cniConf(n), []byte(k.cniConfList(n)), 0o644); err != nil {
			return nil, err
		}
	}
	return k, os.MkdirAll(k.podDir(), 0o755)
}

func (k *Kubelet) podDir() string                { return filepath.Join(k.Cfg.StateDir, "pods") }
func (k *Kubelet) cniConf(n cluster.Node) string { return filepath.Join(n.Dir, "cni.conflist") }

// chainPluginType is our chained plugin's CNI type (and binary name).
const chainPluginType = "nftpolicy-cni"

// cniConfList is the node's network configuration list: flannel, then, with
// our agent, nftpolicy-cni talking to the node's agent socket.
func (k *Kubelet) cniConfList(n cluster.Node) string {
	plugins := []map[string]any{{
		"type":       "flannel",
		"subnetFile": filepath.Join(n.Dir, "subnet.env"),
		"dataDir":    filepath.Join(n.Dir, "cni-flannel"),
		"ipam":       map[string]any{"dataDir": filepath.Join(n.Dir, "cni-ipam")},
		"delegate":   map[string]any{"ipMasq": false, "hairpinMode": true, "isDefaultGateway": true},
	}}
	if k.ChainPlugin != "" {
		plugins = append(plugins, map[string]any{"type": chainPluginType, "socketPath": n.CNISocket(), "timeout": ChainPluginTimeout.String()})
	}
	b, _ := json.Marshal(map[string]any{"cniVersion": "0.3.1", "name": "e2e-" + n.Name, "plugins": plugins})
	return string(b)
}

// ChainPluginTimeout is how long nftpolicy-cni waits for the agent.
const ChainPluginTimeout = 3 * time.Second

// cniChain runs the node's conflist for command as a container runtime
// does (libcni): ADD through the plugins in order, each after the first
// getting the previous result as prevResult, the last result being the
// pod's; DEL in reverse order.
// ips, if any, go to the flannel plugin as runtimeConfig.ips.
func (k *Kubelet) cniChain(ctx context.Context, n cluster.Node, command, id, netnsName, args string, ips []netip.Addr) ([]byte, error) {
	raw, err := os.ReadFile(k.cniConf(n))
	if err != nil {
		return nil, err
	}
	var list struct {
		CNIVersion string                       `json:"cniVersion"`
		Name       string                       `json:"name"`
		Plugins    []map[string]json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("%s: %w", k.cniConf(n), err)
	}
	plugins := list.Plugins
	if command == "DEL" {
		plugins = slices.Clone(plugins)
		slices.Reverse(plugins)
	}
	var prev json.RawMessage
	for _, conf := range plugins {
		var typ string
		if err := json.Unmarshal(conf["type"], &typ); err != nil {
			return nil, fmt.Errorf("%s: plugin type: %w", k.cniConf(n), err)
		}
		conf = maps.Clone(conf)
		conf["cniVersion"], _ = json.Marshal(list.CNIVersion)
		conf["name"], _ = json.Marshal(list.Name)
		if prev != nil {
			conf["prevResult"] = prev
		}
		if len(ips) > 0 && typ == "flannel" {
			var strs []string
			for _, ip := range ips {
				strs = append(strs, ip.String())
			}
			conf["runtimeConfig"], _ = json.Marshal(map[string]any{"ips": strs})
		}
		stdin, _ := json.Marshal(conf)
		out, err := k.cni(ctx, n, k.pluginPath(typ), command, id, netnsName, "eth0", string(stdin), args)
		if err != nil {
			return nil, err
		}
		if command == "ADD" {
			prev = out
		}
	}
	return prev, nil
}

// pluginPath is the binary of a CNI plugin type.
func (k *Kubelet) pluginPath(typ string) string {
	if typ == chainPluginType && k.ChainPlugin != "" {
		return k.ChainPlugin
	}
	return filepath.Join(k.State.BinDir, typ)
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9-]+`)

func shortName(prefix, s string, max int) string {
	clean := unsafeChars.ReplaceAllString(strings.ToLower(s), "-")
	name := prefix + clean
	if len(name) <= max {
		return name
	}
	h := sha256.Sum256([]byte(s))
	keep := max - len(prefix) - 9
	return prefix + clean[:keep] + "-" + hex.EncodeToString(h[:4])
}

// pickNode returns the node for a pod: the one whose podCIDR holds the
// requested IP, else the least loaded (round robin on ties).
func (k *Kubelet) pickNode(spec PodSpec) (cluster.Node, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if spec.HostNetwork {
		if spec.Node < 1 || spec.Node > len(k.State.Nodes) {
			return cluster.Node{}, fmt.Errorf("pod %s: no node %d", spec.Key(), spec.Node)
		}
		return k.State.Nodes[spec.Node-1], nil
	}
	if spec.IP != "" {
		ips, err := requestedIPs(spec, k.State.Families())
		if err != nil {
			return cluster.Node{}, err
		}
		n, ok := k.State.NodeFor(ips[0])
		if !ok {
			return cluster.Node{}, fmt.Errorf("pod %s: no node's podCIDR holds %s", spec.Key(), ips[0])
		}
		k.load[n.Name]++
		return n, nil
	}
	best := -1
	for i := range k.State.Nodes {
		j := (k.rr + i) % len(k.State.Nodes)
		if best < 0 || k.load[k.State.Nodes[j].Name] < k.load[k.State.Nodes[best].Name] {
			best = j
		}
	}
	k.rr = (best + 1) % len(k.State.Nodes)
	n := k.State.Nodes[best]
	k.load[n.Name]++
	return n, nil
}

type cniResult struct {
	IPs []struct {
		Address string `json:"address"`
	} `json:"ips"`
}

func (k *Kubelet) cni(ctx context.Context, n cluster.Node, plugin, command, id, netnsName, ifname, conf, args string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.NetNS, plugin)
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + id, "CNI_NETNS=/run/netns/" + netnsName,
		"CNI_IFNAME=" + ifname, "CNI_PATH=" + k.State.BinDir, "CNI_ARGS=" + args,
	}
	cmd.Stdin = strings.NewReader(conf)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("CNI %s %s on %s: %w: %s %s", command, filepath.Base(plugin), n.Name, err, out.String(), stderr.String())
	}
	if stderr.Len() > 0 && k.Cfg.Log != nil {
		k.Cfg.Log("CNI %s %s on %s: %s", command, filepath.Base(plugin), n.Name, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}

// CreatePod makes the pod's network namespace, attaches it, starts its
// podserver and creates its Pod object and Service. With spec.Pending it
// stops after creating the Pod object (see MarkRunning).
func (k *Kubelet) CreatePod(ctx context.Context, spec PodSpec) (_ *Pod, err error) {
	node, err := k.pickNode(spec)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.gen++
	gen := k.gen
	k.mu.Unlock()
	id := shortName("", fmt.Sprintf("%s-%s-%s%d", spec.Namespace, spec.Name, k.run, gen), 48)
	p := &Pod{Spec: spec, Node: node, ID: id, NetNS: k.Cfg.Instance.NSPrefix() + "p-" + id,
		Ctl: filepath.Join(k.podDir(), id+".sock")}
	if !spec.NoService {
		p.Service = ServiceName(spec.Name)
	}
	defer func() {
		if err != nil {
			_ = k.DeletePod(context.Background(), p)
		}
	}()
	if spec.HostNetwork {
		p.Service, p.NetNS, p.IP, p.IPs = "", node.NetNS, netip.MustParseAddr(node.IP), nodeIPs(node)
		if err := k.startServer(ctx, p); err != nil {
			return nil, err
		}
		return p, k.createObjects(ctx, p)
	}
	// As the kubelet does: the Pod object exists, without addresses,
	// before the CNI runs, so that the chained plugin's agent can find it.
	created, err := k.createPod(ctx, p)
	if err != nil {
		return nil, err
	}
	if out, err := exec.Command("ip", "netns", "add", p.NetNS).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w: %s", p.NetNS, err, out)
	}
	if k.BeforeCNI != nil {
		k.BeforeCNI(p)
	}
	if _, err := k.cni(ctx, node, filepath.Join(k.State.BinDir, "loopback"), "ADD", id, p.NetNS, "lo", `{"cniVersion":"0.3.1","name":"lo","type":"loopback"}`, ""); err != nil {
		return nil, err
	}
	args := "IgnoreUnknown=1;K8S_POD_NAMESPACE=" + spec.Namespace + ";K8S_POD_NAME=" + spec.Name
	want, err := requestedIPs(spec, k.State.Families())
	if err != nil {
		return nil, err
	}
	cniStart := time.Now()
	// host-local takes one requested address per range set from the
	// runtime configuration ("ips", which the flannel plugin hands to its
	// delegate); CNI_ARGS IP= would take only one.
	out, err := k.cniChain(ctx, node, "ADD", id, p.NetNS, args, want)
	if err != nil {
		return nil, err
	}
	p.CNIAdd = time.Since(cniStart)
	var res cniResult
	if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) == 0 {
		return nil, fmt.Errorf("CNI result without IP: %s", out)
	}
	for _, f := range k.State.Families() {
		for _, r := range res.IPs {
			pfx, err := netip.ParsePrefix(r.Address)
			if err != nil {
				return nil, err
			}
			if cluster.Of(pfx.Addr()) == f {
				p.IPs = append(p.IPs, pfx.Addr())
			}
		}
	}
	if len(p.IPs) != len(k.State.Families()) {
		return nil, fmt.Errorf("pod %s: CNI gave %v, want one address in each of %v", spec.Key(), res.IPs, k.State.Families())
	}
	p.IP = p.IPs[0]
	if len(want) > 0 && !slices.Equal(p.IPs, want) {
		return nil, fmt.Errorf("pod %s asked for %v, CNI gave %v", spec.Key(), want, p.IPs)
	}
	if !spec.NoServer {
		if err := k.startServer(ctx, p); err != nil {
			return nil, err
		}
	}
	if err := k.finishObjects(ctx, p, created); err != nil {
		return nil, err
	}
	return p, nil
}

func (k *Kubelet) startServer(ctx context.Context, p *Pod) error {
	_, err := k.Cfg.Start(cluster.Proc{Name: "pod-" + p.ID, NetNS: p.NetNS,
		LogFile: filepath.Join(k.podDir(), p.ID+".log"),
		Args:    []string{k.Exe, "podserver", "--name", p.Spec.Key(), "--ctl", p.Ctl}})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err = podserver.Call(p.Ctl, podserver.Request{Op: "ping"}, time.Second); err == nil {
			break
		}
		if time.Now().After(deadline) || !k.Cfg.Alive("pod-"+p.ID) {
			return fmt.Errorf("podserver of %s does not answer: %w", p.Spec.Key(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return k.serve(p)
}

// NodeNamespace is the pseudo-namespace of node endpoints in matrices:
// "node/<node name>" probes from or to the node's own network namespace.
const NodeNamespace = "node"

// NodeServer starts a podserver in the node's network namespace (the node's
// "host network"), serving servers on the node IP. It has no Pod object.
func (k *Kubelet) NodeServer(ctx context.Context, n cluster.Node, servers []Server) (*Pod, error) {
	id := "node-" + n.Name
	p := &Pod{Spec: PodSpec{Namespace: NodeNamespace, Name: n.Name, Servers: servers}, Node: n,
		IP: netip.MustParseAddr(n.IP), IPs: nodeIPs(n), ID: id, NetNS: n.NetNS, Ctl: filepath.Join(k.podDir(), id+".sock")}
	if err := k.startServer(ctx, p); err != nil {
		_ = k.Cfg.Stop("pod-" + id)
		return nil, err
	}
	return p, nil
}

// SetNodeServers changes what a node server serves.
func (k *Kubelet) SetNodeServers(p *Pod, servers []Server) error {
	p.Spec.Servers = servers
	return k.serve(p)
}

func (k *Kubelet) serve(p *Pod) error {
	var svs []podserver.Server
	for _, s := range p.Spec.Servers {
		svs = append(svs, podserver.Server{Port: s.Port, Protocol: s.Protocol})
	}
	_, err := podserver.Call(p.Ctl, podserver.Request{Op: "serve", Servers: svs}, 5*time.Second)
	return err
}

// createObjects creates the Pod object, then (unless p.Spec.Pending) sets it
// Running and creates its Service.
func (k *Kubelet) createObjects(ctx context.Context, p *Pod) error {
	created, err := k.createPod(ctx, p)
	if err != nil {
		return err
	}
	return k.finishObjects(ctx, p, created)
}

// createPod creates the Pod object, bound to p's node, with no status.
func (k *Kubelet) createPod(ctx context.Context, p *Pod) (*corev1.Pod, error) {
	var ports []corev1.ContainerPort
	for _, s := range p.Spec.Servers {
		ports = append(ports, corev1.ContainerPort{Name: s.PortName(), ContainerPort: s.Port, Protocol: corev1.Protocol(s.Protocol)})
	}
	zero := int64(0)
	no := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Spec.Namespace, Name: p.Spec.Name, Labels: maps.Clone(p.Spec.Labels),
			Annotations: map[string]string{"e2e.nftpolicy.io/netns": p.NetNS}},
		Spec: corev1.PodSpec{
			NodeName:                      p.Node.Name,
			HostNetwork:                   p.Spec.HostNetwork,
			TerminationGracePeriodSeconds: &zero,
			EnableServiceLinks:            &no,
			AutomountServiceAccountToken:  &no,
			Containers:                    []corev1.Container{{Name: "podserver", Image: "e2e.invalid/nftpolicy-podserver:none", Ports: ports}},
		},
	}
	created, err := k.CS.CoreV1().Pods(p.Spec.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s: %w", p.Spec.Key(), err)
	}
	return created, nil
}

// finishObjects is the rest of createObjects after the Pod object exists:
// unless p.Spec.Pending, it sets the pod Running and creates its Service.
func (k *Kubelet) finishObjects(ctx context.Context, p *Pod, created *corev1.Pod) error {
	if p.Spec.Pending {
		p.pending = created
		return nil
	}
	if err := k.setRunning(ctx, p, created); err != nil {
		return err
	}
	if p.Spec.NoService || p.Spec.HostNetwork {
		return nil
	}
	return k.ensureService(ctx, p, created)
}

// MarkRunning is the kubelet's status update for a pod created with
// PodSpec.Pending: one UpdateStatus to phase Running with the pod's IP, host
// IP and Ready conditions (a fresh read and a retry only if the object
// changed since it was created), then its Service unless PodSpec.NoService.
// The pod then is exactly as CreatePod without Pending would have left it.
func (k *Kubelet) MarkRunning(ctx context.Context, p *Pod) error {
	if !p.Spec.Pending || p.pending == nil {
		return fmt.Errorf("pod %s is not pending", p.Spec.Key())
	}
	obj := p.pending
	err := k.setRunning(ctx, p, obj)
	for i := 0; apierrors.IsConflict(err) && i < 4; i++ {
		if obj, err = k.CS.CoreV1().Pods(p.Spec.Namespace).Get(ctx, p.Spec.Name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("pod %s: %w", p.Spec.Key(), err)
		}
		err = k.setRunning(ctx, p, obj)
	}
	if err != nil {
		return err
	}
	p.Spec.Pending, p.pending = false, nil
	if p.Spec.NoService {
		return nil
	}
	return k.ensureService(ctx, p, obj)
}

// setRunning writes the status of a Running pod with p's IP over obj's
// (through the status subresource; obj's resourceVersion must be current).
func (k *Kubelet) setRunning(ctx context.Context, p *Pod, obj *corev1.Pod) error {
	obj = obj.DeepCopy()
	now := metav1.Now()
	cond := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
	}
	var podIPs []corev1.PodIP
	for _, ip := range p.addrs() {
		podIPs = append(podIPs, corev1.PodIP{IP: ip.String()})
	}
	var hostIPs []corev1.HostIP
	for _, ip := range nodeIPs(p.Node) {
		hostIPs = append(hostIPs, corev1.HostIP{IP: ip.String()})
	}
	obj.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		PodIP:     p.IP.String(),
		PodIPs:    podIPs,
		HostIP:    p.Node.IP,
		HostIPs:   hostIPs,
		StartTime: &now,
		Conditions: []corev1.PodCondition{cond(corev1.PodScheduled), cond(corev1.PodInitialized),
			cond(corev1.ContainersReady), cond(corev1.PodReady)},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "podserver", Ready: true, Image: obj.Spec.Containers[0].Image,
			ContainerID: "e2e://" + p.ID, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
	}
	if _, err := k.CS.CoreV1().Pods(p.Spec.Namespace).UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("pod %s status: %w", p.Spec.Key(), err)
	}
	return nil
}

// ensureService creates or updates the pod's selectorless ClusterIP Service
// and its EndpointSlice. No selector means no extra label on the pod, so the
// policies of a scenario see exactly the labels it declares.
func (k *Kubelet) ensureService(ctx context.Context, p *Pod, pod *corev1.Pod) error {
	var sports []corev1.ServicePort
	var eports []discoveryv1.EndpointPort
	for _, s := range p.Spec.Servers {
		name := s.PortName()
		proto := corev1.Protocol(s.Protocol)
		port := s.Port
		sports = append(sports, corev1.ServicePort{Name: name, Port: s.Port, Protocol: proto, TargetPort: intstr.FromInt32(s.Port)})
		eports = append(eports, discoveryv1.EndpointPort{Name: &name, Port: &port, Protocol: &proto})
	}
	svcs := k.CS.CoreV1().Services(p.Spec.Namespace)
	svc, err := svcs.Get(ctx, p.Service, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		svc, err = svcs.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: p.Service, Namespace: p.Spec.Namespace,
				Labels: map[string]string{"e2e.nftpolicy.io/pod": p.Spec.Name}},
			Spec: k.serviceSpec(sports),
		}, metav1.CreateOptions{})
	} else if err == nil {
		svc.Spec.Ports = sports
		svc, err = svcs.Update(ctx, svc, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("service for %s: %w", p.Spec.Key(), err)
	}
	p.ClusterIP, p.ClusterIPs = svc.Spec.ClusterIP, svc.Spec.ClusterIPs
	yes := true
	nodeName := p.Node.Name
	// One EndpointSlice per family, as the EndpointSlice controller writes
	// them: a slice holds addresses of one type.
	for _, ip := range p.addrs() {
		name, typ := endpointSliceName(p.Service, cluster.Of(ip))
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.Spec.Namespace, Labels: map[string]string{
				discoveryv1.LabelServiceName: p.Service, discoveryv1.LabelManagedBy: "e2e.nftpolicy.io"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID}}},
			AddressType: typ,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{ip.String()}, NodeName: &nodeName,
				Conditions: discoveryv1.EndpointConditions{Ready: &yes, Serving: &yes},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}}},
			Ports: eports,
		}
		slices := k.CS.DiscoveryV1().EndpointSlices(p.Spec.Namespace)
		old, err := slices.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = slices.Create(ctx, slice, metav1.CreateOptions{})
		} else if err == nil {
			slice.ResourceVersion = old.ResourceVersion
			_, err = slices.Update(ctx, slice, metav1.UpdateOptions{})
		}
		if err != nil {
			return fmt.Errorf("endpointslice for %s: %w", p.Spec.Key(), err)
		}
	}
	return nil
}

// endpointSliceName is the name and address type of a Service's slice for
// family f: the IPv4 one keeps the Service's name (as before dual stack),
// the IPv6 one adds -v6.
func endpointSliceName(service string, f cluster.Family) (string, discoveryv1.AddressType) {
	if f == cluster.IPv6 {
		return service + "-v6", discoveryv1.AddressTypeIPv6
	}
	return service, discoveryv1.AddressTypeIPv4
}

// serviceSpec is a pod Service's spec: in a dual-stack cluster it requires
// both families, primary first; otherwise the cluster's one family.
func (k *Kubelet) serviceSpec(ports []corev1.ServicePort) corev1.ServiceSpec {
	spec := corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: ports}
	fams := k.State.Families()
	policy := corev1.IPFamilyPolicySingleStack
	if len(fams) > 1 {
		policy = corev1.IPFamilyPolicyRequireDualStack
	}
	spec.IPFamilyPolicy = &policy
	for _, f := range fams {
		spec.IPFamilies = append(spec.IPFamilies, map[cluster.Family]corev1.IPFamily{cluster.IPv4: corev1.IPv4Protocol, cluster.IPv6: corev1.IPv6Protocol}[f])
	}
	return spec
}

// SetServers changes what a running pod serves. Container ports are
// immutable, so the Pod object is recreated (same netns, same IP), exactly as
// a restarted pod would be.
func (k *Kubelet) SetServers(ctx context.Context, p *Pod, servers []Server) error {
	p.Spec.Servers = servers
	if err := k.forceDelete(ctx, p.Spec.Namespace, p.Spec.Name); err != nil {
		return err
	}
	if err := k.serve(p); err != nil {
		return err
	}
	return k.createObjects(ctx, p)
}

func (k *Kubelet) forceDelete(ctx context.Context, ns, name string) error {
	zero := int64(0)
	err := k.CS.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	// Bounded wait until the name is free again.
	for i := 0; i < 100; i++ {
		if _, err := k.CS.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("pod %s/%s still exists after forced deletion", ns, name)
}

// SetLabels replaces the pod's labels.
func (k *Kubelet) SetLabels(ctx context.Context, p *Pod, labels map[string]string) error {
	pods := k.CS.CoreV1().Pods(p.Spec.Namespace)
	for i := 0; i < 5; i++ {
		obj, err := pods.Get(ctx, p.Spec.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		obj.Labels = maps.Clone(labels)
		_, err = pods.Update(ctx, obj, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return err
		}
		p.Spec.Labels = maps.Clone(labels)
		return nil
	}
	return fmt.Errorf("pod %s: label update keeps conflicting", p.Spec.Key())
}

// DeletePod removes the pod's objects, podserver, attachment and namespace.
func (k *Kubelet) DeletePod(ctx context.Context, p *Pod) error {
	errs := []error{k.DeleteService(ctx, p)}
	if err := k.forceDelete(ctx, p.Spec.Namespace, p.Spec.Name); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	errs = append(errs, k.Cfg.Stop("pod-"+p.ID))
	_ = os.Remove(p.Ctl)
	if p.Spec.HostNetwork {
		return errors.Join(errs...) // the namespace is the node's
	}
	if _, err := os.Stat("/run/netns/" + p.NetNS); err == nil {
		args := "IgnoreUnknown=1;K8S_POD_NAMESPACE=" + p.Spec.Namespace + ";K8S_POD_NAME=" + p.Spec.Name
		if _, err := k.cniChain(ctx, p.Node, "DEL", p.ID, p.NetNS, args, nil); err != nil {
			errs = append(errs, err)
			// host-local would keep the addresses reserved.
			for _, ip := range p.addrs() {
				_ = os.Remove(filepath.Join(p.Node.Dir, "cni-ipam", "e2e-"+p.Node.Name, ip.String()))
			}
		}
		if out, err := exec.Command("ip", "netns", "del", p.NetNS).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns del %s: %w: %s", p.NetNS, err, out))
		}
	}
	k.mu.Lock()
	if k.load[p.Node.Name] > 0 {
		k.load[p.Node.Name]--
	}
	k.mu.Unlock()
	return errors.Join(errs...)
}

// WaitProgrammed waits until kube-proxy on every node DNATs each pod's
// ClusterIP ports to the pod's current IP.
func (k *Kubelet) WaitProgrammed(ctx context.Context, pods []*Pod, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		missing := ""
		for _, n := range k.State.Nodes {
			for _, f := range k.State.Families() {
				if missing = k.unprogrammed(ctx, n, f, pods); missing != "" {
					break
				}
			}
			if missing != "" {
				break
			}
		}
		if missing == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-proxy has not programmed %s after %s%s", missing, timeout, k.serviceState(ctx, pods))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// unprogrammed names the first pod port whose Service address of family f
// kube-proxy on node n does not yet DNAT to the pod, or returns "".
func (k *Kubelet) unprogrammed(ctx context.Context, n cluster.Node, f cluster.Family, pods []*Pod) string {
	table := cluster.NFTFamily(f)
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", n.NetNS, "nft", "list", "table", table, "kube-proxy").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s: nft: %v", n.Name, err)
	}
	text := string(out)
	for _, p := range pods {
		if p.Service == "" {
			continue // reached by its address only (host network, NoService)
		}
		cip, ok1 := p.ClusterIPIn(f)
		ip, ok2 := p.Addr(f)
		if !ok1 || !ok2 {
			return fmt.Sprintf("%s: %s has no %s Service address or pod address", n.Name, p.Spec.Key(), f)
		}
		for _, s := range p.Spec.Servers {
			el := regexp.MustCompile(fmt.Sprintf(`%s \. %s \. %d (comment "[^"]*" )?: goto service-`,
				regexp.QuoteMeta(cip), strings.ToLower(s.Protocol), s.Port))
			// The endpoint chain: "meta l4proto tcp dnat ip to numgen random mod 1 map { 0 : IP . PORT }".
			dn := regexp.MustCompile(fmt.Sprintf(`meta l4proto %s dnat %s to .*: %s \. %d[ ,}]`,
				strings.ToLower(s.Protocol), table, regexp.QuoteMeta(ip.String()), s.Port))
			if !el.MatchString(text) || !dn.MatchString(text) {
				return fmt.Sprintf("%s: %s (%s %s:%d -> %s)", n.Name, p.Spec.Key(), s.Protocol, cip, s.Port, ip)
			}
		}
	}
	return ""
}

// serviceState says what the API server holds for the pods' Services and
// EndpointSlices, for an error report.
func (k *Kubelet) serviceState(ctx context.Context, pods []*Pod) string {
	var b strings.Builder
	for _, p := range pods {
		if p.Service == "" {
			continue
		}
		svc, err := k.CS.CoreV1().Services(p.Spec.Namespace).Get(ctx, p.Service, metav1.GetOptions{})
		if err != nil {
			fmt.Fprintf(&b, "\n  service %s/%s: %v", p.Spec.Namespace, p.Service, err)
		} else {
			fmt.Fprintf(&b, "\n  service %s/%s uid %s clusterIP %s", svc.Namespace, svc.Name, svc.UID, svc.Spec.ClusterIP)
		}
		sl, err := k.CS.DiscoveryV1().EndpointSlices(p.Spec.Namespace).Get(ctx, p.Service, metav1.GetOptions{})
		if err != nil {
			fmt.Fprintf(&b, "; endpointslice: %v", err)
			continue
		}
		var owners, addrs []string
		for _, o := range sl.OwnerReferences {
			owners = append(owners, string(o.UID))
		}
		for _, e := range sl.Endpoints {
			addrs = append(addrs, e.Addresses...)
		}
		fmt.Fprintf(&b, "; endpointslice uid %s owners %v addresses %v", sl.UID, owners, addrs)
	}
	return b.String()
}

package install

// No IP plan: these tests render and read YAML and build the binary.

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// root is the module root, seen from this package's directory.
const root = ".."

// installPath is the rendered manifest, relative to root.
const installPath = "dist/install.yaml"

func render(t *testing.T, out string) []byte {
	t.Helper()
	cmd := exec.Command("hack/manifests.sh", out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/manifests.sh: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInstallYAML_UpToDate fails when dist/install.yaml is not what
// config/default renders to now, and when two renderings differ.
func TestInstallYAML_UpToDate(t *testing.T) {
	dir := t.TempDir()
	first := render(t, filepath.Join(dir, "a.yaml"))
	second := render(t, filepath.Join(dir, "b.yaml"))
	if !bytes.Equal(first, second) {
		t.Fatalf("two renderings of config/default differ: hack/manifests.sh is not reproducible")
	}
	committed, err := os.ReadFile(filepath.Join(root, installPath))
	if err != nil {
		t.Fatalf("%v (run make manifests)", err)
	}
	if !bytes.Equal(committed, first) {
		t.Fatalf("%s is out of date with config/: run make manifests and commit the result\n%s", installPath, lineDiff(committed, first))
	}
}

// lineDiff shows the first differing lines, enough to see what changed.
func lineDiff(a, b []byte) string {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return "line " + strconv.Itoa(i+1) + ":\n- " + x + "\n+ " + y
		}
	}
	return ""
}

// TestInstallYAML_LeastPrivilege pins the security-relevant parts of the
// rendered DaemonSet and ClusterRole, so that widening them is a visible
// test change and not a side effect.
func TestInstallYAML_LeastPrivilege(t *testing.T) {
	objs := installObjects(t)
	ds := typed[*appsv1.DaemonSet](t, objs, "DaemonSet", "nftpolicy-agent")
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || spec.PriorityClassName != "system-node-critical" || spec.NodeSelector["kubernetes.io/os"] != "linux" {
		t.Errorf("pod spec: hostNetwork=%v priorityClassName=%q nodeSelector=%v", spec.HostNetwork, spec.PriorityClassName, spec.NodeSelector)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
		t.Errorf("tolerations = %+v, want one {operator: Exists} (every taint)", spec.Tolerations)
	}
	if len(spec.Containers) != 1 || spec.Containers[0].Name != "agent" {
		t.Fatalf("containers: want exactly the agent, got %d", len(spec.Containers))
	}
	agent := spec.Containers[0]
	sc := agent.SecurityContext
	switch {
	case sc == nil || sc.Capabilities == nil:
		t.Fatal("agent has no securityContext.capabilities")
	case sc.Privileged == nil || *sc.Privileged:
		t.Error("agent must set privileged: false")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("agent must set allowPrivilegeEscalation: false")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("agent must set readOnlyRootFilesystem: true")
	case !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN"}):
		t.Errorf("agent capabilities: drop %v add %v, want drop [ALL] add [NET_ADMIN]", sc.Capabilities.Drop, sc.Capabilities.Add)
	}
	// The agent mounts one directory of the node: the one holding the CNI
	// plugin's socket.
	if len(agent.VolumeMounts) != 1 || agent.VolumeMounts[0].MountPath != "/run/nftpolicy" || agent.VolumeMounts[0].ReadOnly {
		t.Errorf("agent volume mounts %+v: want only /run/nftpolicy (its CNI socket)", agent.VolumeMounts)
	}
	// The one privileged container writes two sysctls and exits; the
	// other init container installs the CNI plugin, unprivileged.
	if len(spec.InitContainers) != 2 {
		t.Fatalf("init containers: want bridge-netfilter and install-cni, got %d", len(spec.InitContainers))
	}
	if ic := spec.InitContainers[0]; ic.Name != "bridge-netfilter" || len(ic.VolumeMounts) != 0 || len(ic.Ports) != 0 {
		t.Errorf("init container %q: must be bridge-netfilter, with no volumes or ports", ic.Name)
	}
	ic := spec.InitContainers[1]
	icsc := ic.SecurityContext
	var mounts []string
	for _, m := range ic.VolumeMounts {
		mounts = append(mounts, m.MountPath)
	}
	switch {
	case ic.Name != "install-cni" || len(ic.Ports) != 0:
		t.Errorf("second init container %q: want install-cni without ports", ic.Name)
	case !slices.Equal(mounts, []string{"/host/opt/cni/bin", "/host/etc/cni/net.d"}):
		t.Errorf("install-cni mounts %v: want the CNI binary and configuration directories only", mounts)
	case icsc == nil || icsc.Privileged == nil || *icsc.Privileged || icsc.AllowPrivilegeEscalation == nil || *icsc.AllowPrivilegeEscalation:
		t.Error("install-cni must be unprivileged without privilege escalation")
	case icsc.ReadOnlyRootFilesystem == nil || !*icsc.ReadOnlyRootFilesystem:
		t.Error("install-cni must set readOnlyRootFilesystem: true")
	case icsc.Capabilities == nil || !slices.Equal(icsc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(icsc.Capabilities.Add) != 0:
		t.Errorf("install-cni capabilities %+v: want drop [ALL], add none", icsc.Capabilities)
	}
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath == nil {
			t.Errorf("volume %s is not a hostPath", v.Name)
			continue
		}
		hostPaths[v.Name] = v.HostPath.Path
	}
	if want := map[string]string{"cni-bin": "/opt/cni/bin", "cni-conf": "/etc/cni/net.d", "cni-socket": "/run/nftpolicy"}; !maps.Equal(hostPaths, want) {
		t.Errorf("volumes %v, want exactly %v", hostPaths, want)
	}

	cr := typed[*rbacv1.ClusterRole](t, objs, "ClusterRole", "nftpolicy-agent")
	for _, r := range cr.Rules {
		for _, v := range r.Verbs {
			if !slices.Contains([]string{"get", "list", "watch", "create", "patch"}, v) {
				t.Errorf("ClusterRole grants %q on %v", v, r.Resources)
			}
			eventsOnly := slices.Equal(r.APIGroups, []string{"events.k8s.io"}) && slices.Equal(r.Resources, []string{"events"})
			if (v == "create" || v == "patch") && !eventsOnly {
				t.Errorf("ClusterRole grants %q on %v/%v: only events may be written", v, r.APIGroups, r.Resources)
			}
		}
		if slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") || slices.Contains(r.Verbs, "*") {
			t.Errorf("ClusterRole rule with a wildcard: %+v", r)
		}
		// CRDs: the ClusterNetworkPolicy one only, which tells whether
		// that API is served; not every CRD's schema.
		if slices.Contains(r.Resources, "customresourcedefinitions") &&
			(!slices.Equal(r.Resources, []string{"customresourcedefinitions"}) || !slices.Equal(r.ResourceNames, []string{"clusternetworkpolicies.policy.networking.k8s.io"})) {
			t.Errorf("ClusterRole rule on customresourcedefinitions %+v: want resourceNames [clusternetworkpolicies.policy.networking.k8s.io] and nothing else", r)
		}
	}
}

// installObjects decodes dist/install.yaml.
func installObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, installPath))
	if err != nil {
		t.Fatalf("%v (run make manifests)", err)
	}
	objs, err := decodeObjects(b)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// typed finds the object of kind and name and converts it.
func typed[T runtime.Object](t *testing.T, objs []*unstructured.Unstructured, kind, name string) T {
	t.Helper()
	var out T
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			out = reflect.New(reflect.TypeFor[T]().Elem()).Interface().(T)
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, out, true); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return out
		}
	}
	t.Fatalf("%s has no %s %s", installPath, kind, name)
	return out
}

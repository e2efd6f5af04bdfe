// Package testenv gives a test binary one real etcd + kube-apiserver, built
// from the Go module proxy by hack/build-tools.sh and found through
// $KUBEBUILDER_ASSETS. It is imported by tests only.
package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/yaml"
)

// APIServer starts once, on first use, and is shared by a package's tests.
// Its kube-apiserver authorizes with RBAC (set explicitly, so RBAC tests do
// not depend on envtest's default); the returned config is in
// system:masters.
type APIServer struct {
	once sync.Once
	env  *envtest.Environment
	cfg  *rest.Config
	err  error
}

// Config starts the API server if needed and returns an admin config.
// Without $KUBEBUILDER_ASSETS the test is skipped, or fails when $CI is set:
// CI must never pass by skipping the real API server.
func (a *APIServer) Config(t testing.TB) *rest.Config {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		msg := "KUBEBUILDER_ASSETS is not set: export KUBEBUILDER_ASSETS=$(hack/build-tools.sh apiserver | tail -1)"
		if os.Getenv("CI") == "" {
			t.Skip(msg + " (with CI set this fails)")
		}
		t.Fatal(msg)
	}
	a.once.Do(func() {
		a.env = &envtest.Environment{}
		a.env.ControlPlane.GetAPIServer().Configure().Set("authorization-mode", "RBAC")
		a.cfg, a.err = a.env.Start()
	})
	if a.err != nil {
		t.Fatalf("start kube-apiserver and etcd: %v", a.err)
	}
	return a.cfg
}

// User returns a config that authenticates as user name in groups with a
// client certificate of the API server's client CA, as a kubeconfig with
// client-certificate-data does.
func (a *APIServer) User(t testing.TB, name string, groups ...string) *rest.Config {
	t.Helper()
	base := a.Config(t)
	u, err := a.env.AddUser(envtest.User{Name: name, Groups: groups}, base)
	if err != nil {
		t.Fatalf("client certificate for %s: %v", name, err)
	}
	return u.Config()
}

// Stop stops the API server if it was started; call it from TestMain.
func (a *APIServer) Stop() {
	if a.env == nil {
		return
	}
	if err := a.env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stop kube-apiserver and etcd: %v\n", err)
	}
}

// Scheme is the client-go scheme (every built-in API type), plus
// CustomResourceDefinitions and ClusterNetworkPolicies (v1beta1), which the
// tests create.
func Scheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, policyv1beta1.Install} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// NetworkPolicyAPIModule is the module that defines ClusterNetworkPolicy;
// its version is the one go.mod requires.
const NetworkPolicyAPIModule = "sigs.k8s.io/network-policy-api"

// ModuleDir returns the directory of module path in the module cache, as
// `go list -m` finds it for this module's go.mod.
func ModuleDir(t testing.TB, path string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-json", path).Output()
	if err != nil {
		var stderr []byte
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -m -json %s: %v\n%s", path, err, stderr)
	}
	var m struct{ Path, Version, Dir string }
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("go list -m -json %s: %v", path, err)
	}
	if m.Dir == "" {
		t.Fatalf("module %s@%s is not in the module cache (go mod download %s)", m.Path, m.Version, m.Path)
	}
	return m.Dir
}

// CNPCRDFile is the path of the ClusterNetworkPolicy CRD of channel
// ("standard" or "experimental") that the network-policy-api module ships.
func CNPCRDFile(t testing.TB, channel string) string {
	t.Helper()
	return filepath.Join(ModuleDir(t, NetworkPolicyAPIModule), "config", "crd", channel, "policy.networking.k8s.io_clusternetworkpolicies.yaml")
}

// crdTimeout bounds the wait for a CRD to be established or gone.
const crdTimeout = 30 * time.Second

// InstallCNPCRD creates the module's ClusterNetworkPolicy CRD of channel
// (unless it exists) and waits until it is established.
func InstallCNPCRD(t testing.TB, c client.Client, channel string) {
	t.Helper()
	InstallCRDFile(t, c, CNPCRDFile(t, channel))
}

// InstallCRDFile creates the CRD in file (unless one of that name exists)
// and waits until it is established.
func InstallCRDFile(t testing.TB, c client.Client, file string) {
	t.Helper()
	ctx := context.Background()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(b, crd); err != nil {
		t.Fatalf("decode %s: %v", file, err)
	}
	if err := c.Create(ctx, crd); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create CRD %s: %v", crd.Name, err)
	}
	waitCRD(t, c, crd.Name, "established", func(got *apiextensionsv1.CustomResourceDefinition, err error) bool {
		if err != nil || got.DeletionTimestamp != nil {
			return false
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true
			}
		}
		return false
	})
}

// UninstallCNPCRD deletes the ClusterNetworkPolicy CRD (and with it every
// ClusterNetworkPolicy), if it exists, and waits until it is gone.
func UninstallCNPCRD(t testing.TB, c client.Client) {
	t.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: CNPCRDName}}
	if err := c.Delete(context.Background(), crd); err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("delete CRD %s: %v", crd.Name, err)
	}
	waitCRD(t, c, crd.Name, "gone", func(_ *apiextensionsv1.CustomResourceDefinition, err error) bool {
		return apierrors.IsNotFound(err)
	})
}

// CNPCRDName is the name of the ClusterNetworkPolicy CRD.
const CNPCRDName = "clusternetworkpolicies.policy.networking.k8s.io"

func waitCRD(t testing.TB, c client.Client, name, what string, done func(*apiextensionsv1.CustomResourceDefinition, error) bool) {
	t.Helper()
	deadline := time.Now().Add(crdTimeout)
	for {
		got := &apiextensionsv1.CustomResourceDefinition{}
		err := c.Get(context.Background(), client.ObjectKey{Name: name}, got)
		if done(got, err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRD %s not %s after %v (last error: %v)", name, what, crdTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

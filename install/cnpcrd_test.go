package install

// No IP plan: these tests compare, render and dry-run-apply the
// ClusterNetworkPolicy CRD components.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/nftpolicy/nftpolicy/internal/testenv"
)

// cnpChannels are the network-policy-api release channels, each a
// component config/components/cnp-crd-<channel>.
var cnpChannels = []string{"standard", "experimental"}

const cnpCRDFile = "policy.networking.k8s.io_clusternetworkpolicies.yaml"

func componentDir(channel string) string {
	return filepath.Join(root, "config", "components", "cnp-crd-"+channel)
}

// TestCNPCRDComponents_MatchModule: the CRD files (and the license they
// come under) in config/components are the network-policy-api module's,
// at the version go.mod requires, byte for byte; and each component is a
// kustomize Component of exactly that file.
func TestCNPCRDComponents_MatchModule(t *testing.T) {
	mod := testenv.ModuleDir(t, testenv.NetworkPolicyAPIModule)
	for _, ch := range cnpChannels {
		t.Run(ch, func(t *testing.T) {
			for _, f := range []struct{ ours, theirs string }{
				{filepath.Join(componentDir(ch), cnpCRDFile), testenv.CNPCRDFile(t, ch)},
				{filepath.Join(componentDir(ch), "LICENSE"), filepath.Join(mod, "LICENSE")},
			} {
				ours, err := os.ReadFile(f.ours)
				if err != nil {
					t.Fatal(err)
				}
				theirs, err := os.ReadFile(f.theirs)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(ours, theirs) {
					t.Errorf("%s differs from %s (copy it anew: cp %s %s)\n%s", f.ours, f.theirs, f.theirs, f.ours, lineDiff(theirs, ours))
				}
			}
			b, err := os.ReadFile(filepath.Join(componentDir(ch), "kustomization.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var k struct {
				APIVersion string   `json:"apiVersion"`
				Kind       string   `json:"kind"`
				Resources  []string `json:"resources"`
			}
			if err := yaml.Unmarshal(b, &k); err != nil {
				t.Fatal(err)
			}
			if k.APIVersion != "kustomize.config.k8s.io/v1alpha1" || k.Kind != "Component" || !reflect.DeepEqual(k.Resources, []string{cnpCRDFile}) {
				t.Errorf("kustomization.yaml = %+v, want a Component of [%s]", k, cnpCRDFile)
			}
		})
	}
}

// TestCNPCRDComponents_WithDefault renders config/default with each
// component, as config/README.md tells users to: the output is the
// install plus exactly the module's CRD, unchanged (no label or namespace
// of ours on it), and dist/install.yaml stays without it.
func TestCNPCRDComponents_WithDefault(t *testing.T) {
	for _, ch := range cnpChannels {
		t.Run(ch, func(t *testing.T) {
			objs, err := decodeObjects(buildOverlay(t, ch))
			if err != nil {
				t.Fatal(err)
			}
			var crds int
			for _, o := range objs {
				if o.GetKind() != "CustomResourceDefinition" {
					continue
				}
				crds++
				b, err := os.ReadFile(testenv.CNPCRDFile(t, ch))
				if err != nil {
					t.Fatal(err)
				}
				var upstream map[string]any
				if err := yaml.Unmarshal(b, &upstream); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(o.Object, upstream) {
					t.Errorf("rendered CRD %s differs from the module's %s file", o.GetName(), ch)
				}
			}
			if crds != 1 {
				t.Errorf("%d CRDs rendered, want 1 (%s)", crds, testenv.CNPCRDName)
			}
			if installed := installObjects(t); len(objs) != len(installed)+1 {
				t.Errorf("%d objects rendered, want those of %s (%d) and the CRD", len(objs), installPath, len(installed))
			}
		})
	}
	for _, o := range installObjects(t) {
		if o.GetKind() == "CustomResourceDefinition" {
			t.Errorf("%s holds CRD %s: the ClusterNetworkPolicy CRD is optional, a component", installPath, o.GetName())
		}
	}
}

// buildOverlay renders a kustomization of config/default plus the
// component of channel, written to a temporary directory (kustomize
// accepts relative paths only).
func buildOverlay(t *testing.T, channel string) []byte {
	t.Helper()
	dir := t.TempDir()
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, abs)
	if err != nil {
		t.Fatal(err)
	}
	k := strings.Join([]string{
		"apiVersion: kustomize.config.k8s.io/v1beta1",
		"kind: Kustomization",
		"resources:",
		"  - " + filepath.ToSlash(filepath.Join(rel, "config", "default")),
		"components:",
		"  - " + filepath.ToSlash(filepath.Join(rel, "config", "components", "cnp-crd-"+channel)),
		"",
	}, "\n")
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "tool", "-modfile=hack/tools/go.mod", "kustomize", "build", dir)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kustomize build: %v\n%s", err, stderr.String())
	}
	return out
}

// TestCNPCRDComponents_ServerSideDryRun: the API server accepts each
// channel's CRD (server-side apply, dryRun=All), as `kubectl apply
// --server-side` would send it.
func TestCNPCRDComponents_ServerSideDryRun(t *testing.T) {
	_, c := apiServer(t)
	for _, ch := range cnpChannels {
		b, err := os.ReadFile(filepath.Join(componentDir(ch), cnpCRDFile))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeObjects(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if _, err := apply(context.Background(), c, o, client.DryRunAll); err != nil {
				t.Errorf("%s: dry-run apply: %v", ch, err)
			}
		}
	}
}

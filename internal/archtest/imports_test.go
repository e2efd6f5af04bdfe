// Package archtest holds the test that keeps imports flowing in the one
// direction ../shared/design.md §1 draws: the pure compiler knows nothing
// of the kernel or the API server's clients, the nft model knows nothing
// but the standard library, and no product code depends on the e2e harness
// or on the test dataplane.
package archtest

import (
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/nftpolicy/nftpolicy"

// rule forbids a package, and everything it imports transitively, from
// depending on any import path with one of the forbidden prefixes.
type rule struct {
	pkg        string
	forbidden  []string
	stdlibOnly bool
}

var rules = []rule{
	// policy may use the ClusterNetworkPolicy types of network-policy-api
	// (sigs.k8s.io/network-policy-api/apis/...): like k8s.io/api they are
	// plain API types over apimachinery. The module's generated clients,
	// informers and listers (.../pkg/client) are API clients and stay out,
	// as client-go does.
	{pkg: "policy", forbidden: []string{
		"k8s.io/client-go", "sigs.k8s.io/controller-runtime", "sigs.k8s.io/network-policy-api/pkg/",
		"github.com/google/nftables", "github.com/vishvananda/", "github.com/mdlayher/",
		module + "/controllers", module + "/nft/kernel",
	}},
	// The benchmarks' workload builders are as pure as the compiler they
	// feed, so that policy's own benchmarks and every command can use them.
	{pkg: "policy/synth", forbidden: []string{
		"k8s.io/client-go", "sigs.k8s.io/controller-runtime", "sigs.k8s.io/network-policy-api/pkg/",
		"github.com/google/nftables", "github.com/vishvananda/", "github.com/mdlayher/",
		module + "/controllers", module + "/nft/kernel", module + "/bench", module + "/e2e",
	}},
	{pkg: "nft", stdlibOnly: true},
	{pkg: "nft/kernel", forbidden: []string{"k8s.io/", "sigs.k8s.io/", module + "/policy", module + "/controllers"}},
	{pkg: "nft/conntrack", forbidden: []string{"k8s.io/", "sigs.k8s.io/", module + "/policy", module + "/controllers"}},
	{pkg: "controllers", forbidden: []string{
		"github.com/google/nftables", "github.com/vishvananda/netlink", "github.com/mdlayher/netlink", module + "/nft/kernel",
		module + "/nft/conntrack",
	}},
	// explain is a client: it reads the API and the agents' applied
	// rulesets, and never touches a kernel table.
	{pkg: "explain", forbidden: []string{
		"github.com/google/nftables", "github.com/vishvananda/netlink", "github.com/mdlayher/netlink", module + "/nft/kernel",
	}},
	{pkg: "api/v1alpha1", forbidden: []string{"sigs.k8s.io/controller-runtime", "github.com/google/nftables"}},
	// The CNI plugin runs once per pod on every node: the protocol and the
	// plugin stay small and static, with nothing of the agent in them.
	{pkg: "cniapi", stdlibOnly: true},
	{pkg: "cmd/nftpolicy-cni", forbidden: []string{
		"k8s.io/", "sigs.k8s.io/", "github.com/google/", "github.com/vishvananda/", "github.com/prometheus/",
		module + "/controllers", module + "/policy", module + "/nft",
	}},
}

type listedPackage struct {
	ImportPath string
	Standard   bool
	Deps       []string
}

func TestImportDirection(t *testing.T) {
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			deps := goListDeps(t, module+"/"+r.pkg)
			for _, d := range deps {
				if r.stdlibOnly && !d.Standard && !strings.HasPrefix(d.ImportPath, module+"/"+r.pkg) {
					t.Errorf("%s must import only the standard library, but depends on %s", r.pkg, d.ImportPath)
				}
				for _, f := range r.forbidden {
					if strings.HasPrefix(d.ImportPath, f) {
						t.Errorf("%s must not depend on %s (prefix %s)", r.pkg, d.ImportPath, f)
					}
				}
			}
		})
	}
}

// TestNoProductCodeImportsTestSupport: the e2e harness, the test
// dataplane (nft/nfttest), the benchmarks and their workload builders
// (bench/, policy/synth) are for tests and measurements only.
func TestNoProductCodeImportsTestSupport(t *testing.T) {
	for _, pkg := range []string{"cmd/nftpolicy", "cmd/nftpolicy-cni", "cniapi", "controllers", "policy", "nft", "nft/kernel", "nft/conntrack", "api/v1alpha1", "explain"} {
		for _, d := range goListDeps(t, module+"/"+pkg) {
			if strings.HasPrefix(d.ImportPath, module+"/e2e") {
				t.Errorf("%s depends on the e2e harness (%s)", pkg, d.ImportPath)
			}
			for _, support := range []string{module + "/nft/nfttest", module + "/bench", module + "/policy/synth"} {
				if strings.HasPrefix(d.ImportPath, support) {
					t.Errorf("%s depends on test support (%s)", pkg, d.ImportPath)
				}
			}
		}
	}
}

// goListDeps lists pkg and its transitive non-test dependencies.
func goListDeps(t *testing.T, pkg string) []listedPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-json=ImportPath,Standard", pkg).Output()
	if err != nil {
		var stderr string
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list -deps %s listed nothing", pkg)
	}
	return pkgs
}

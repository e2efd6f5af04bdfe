// Package npapi runs the network-policy-api conformance suite (the
// ClusterNetworkPolicy profile of sigs.k8s.io/network-policy-api, at the
// version go.mod pins) against the local kubelet cluster; `make
// conformance-npapi` builds it with `go test -c` (hack/build-tools.sh
// npapi) and runs it.
//
// TestConformanceProfiles does what the suite's own TestConformanceProfiles
// does (same flags, same tests, same report) with two differences, both
// forced by a kernel without SCTP sockets and both printed by the run:
//
//   - -skip-tests names tests the suite is not to run. The suite has the
//     option (suite.Options.SkipTests) but no flag for it; its report then
//     lists those tests as skipped (and the profile as failed, since they
//     are not optional), where go test's own -test.skip would make it count
//     tests that never ran as passed.
//   - -drop-sctp-servers removes, from the base manifest's StatefulSets, the
//     containers that serve SCTP (agnhost porter with SERVE_SCTP_PORT_*
//     variables). Without SCTP in the kernel porter exits at once, its
//     container restarts forever, and no base pod ever becomes Ready, so the
//     suite would stop in its setup before any test ran. Every test's own
//     manifests and probes are left as they are.
package npapi_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"text/template"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/yaml"

	api "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/network-policy-api/conformance/tests"
	"sigs.k8s.io/network-policy-api/conformance/utils/flags"
	k8sutil "sigs.k8s.io/network-policy-api/conformance/utils/kubernetes"
	"sigs.k8s.io/network-policy-api/conformance/utils/suite"
)

var (
	skipTests = flag.String("skip-tests", "",
		"comma-separated short names of tests not to run; the report lists them as skipped")
	dropSCTPServers = flag.Bool("drop-sctp-servers", false,
		"remove the base manifest's SCTP server containers (agnhost porter with SERVE_SCTP_PORT_*), "+
			"which exit on a kernel without SCTP and keep the base pods from ever becoming Ready")
)

// sctpServerEnvPrefix marks agnhost porter's SCTP listeners in a container's
// environment (SERVE_SCTP_PORT_<port>).
const sctpServerEnvPrefix = "SERVE_SCTP_PORT_"

// hostNetworkPorts is how many ports the base manifest's host-network pods
// use (it indexes .HostNetworkPorts 0 to 7), from the suite's default start.
const (
	hostNetworkPortStart = 34345
	hostNetworkPorts     = 8
)

func TestConformanceProfiles(t *testing.T) {
	cfg, err := config.GetConfig()
	if err != nil {
		t.Fatalf("loading the kubeconfig: %v", err)
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatalf("creating the client: %v", err)
	}
	if err := api.Install(c.Scheme()); err != nil {
		t.Fatalf("installing the network-policy-api scheme: %v", err)
	}
	if err := apiextensionsv1.AddToScheme(c.Scheme()); err != nil {
		t.Fatalf("installing the apiextensions scheme: %v", err)
	}
	clientSet, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("creating the clientset: %v", err)
	}

	profiles := suite.ParseConformanceProfiles(*flags.ConformanceProfiles)
	if profiles.Len() == 0 {
		t.Fatalf("-conformance-profiles is required (e.g. ClusterNetworkPolicy)")
	}
	implementation, err := suite.ParseImplementation(*flags.ImplementationOrganization, *flags.ImplementationProject,
		*flags.ImplementationURL, *flags.ImplementationVersion, *flags.ImplementationContact,
		*flags.ImplementationAdditionalInformation)
	if err != nil {
		t.Fatalf("the implementation's details: %v", err)
	}
	var skip []string
	if *skipTests != "" {
		skip = strings.Split(*skipTests, ",")
	}
	known := map[string]bool{}
	for _, ct := range tests.ConformanceTests {
		known[ct.ShortName] = true
	}
	for _, name := range skip {
		if !known[name] {
			t.Fatalf("-skip-tests: the suite has no test %q", name)
		}
	}
	t.Logf("profiles %v, all features %t, supported features %q, skipped tests %q, SCTP servers dropped from the base manifest: %t",
		profiles.UnsortedList(), *flags.EnableAllSupportedFeatures, *flags.SupportedFeatures, skip, *dropSCTPServers)

	cSuite, err := suite.NewConformanceProfileTestSuite(suite.ConformanceProfileOptions{
		Options: suite.Options{
			Client:                     c,
			ClientSet:                  clientSet,
			KubeConfig:                 *cfg,
			Debug:                      *flags.ShowDebug,
			CleanupBaseResources:       *flags.CleanupBaseResources,
			SupportedFeatures:          suite.ParseSupportedFeatures(*flags.SupportedFeatures),
			ExemptFeatures:             suite.ParseSupportedFeatures(*flags.ExemptFeatures),
			EnableAllSupportedFeatures: *flags.EnableAllSupportedFeatures,
			SkipTests:                  skip,
		},
		Implementation:      *implementation,
		ConformanceProfiles: profiles,
	})
	if err != nil {
		t.Fatalf("creating the conformance suite: %v", err)
	}

	if *dropSCTPServers {
		setupWithoutSCTPServers(t, &cSuite.ConformanceTestSuite)
	} else {
		cSuite.Setup(t)
	}
	if err := cSuite.Run(t, tests.ConformanceTests); err != nil {
		t.Fatalf("running the suite: %v", err)
	}
	report, err := cSuite.Report()
	if err != nil {
		t.Fatalf("the conformance report: %v", err)
	}
	raw, err := yaml.Marshal(report)
	if err != nil {
		t.Fatalf("the conformance report: %v", err)
	}
	if *flags.ReportOutput != "" {
		if err := os.WriteFile(*flags.ReportOutput, raw, 0o644); err != nil {
			t.Fatalf("writing the conformance report: %v", err)
		}
	}
	t.Logf("Conformance report:\n%s", raw)
}

// setupWithoutSCTPServers is the suite's Setup with the SCTP server
// containers left out of the base manifest: it sets the host-network ports
// as Setup does, creates the manifest's objects (deleted again at the end
// when -cleanup-base-resources), and waits until every base StatefulSet has
// its two Ready pods.
func setupWithoutSCTPServers(t *testing.T, s *suite.ConformanceTestSuite) {
	ports := make([]int, hostNetworkPorts)
	for i := range ports {
		ports[i] = hostNetworkPortStart + i
	}
	s.HostNetworkPortRangeStart, s.HostNetworkPortRangeEnd = ports[0], ports[len(ports)-1]
	s.HostNetworkPorts = ports
	s.Applier.HostNetworkPorts = ports
	s.Applier.FS = s.FS
	if !s.SupportedFeatures.Has(suite.SupportClusterNetworkPolicy) {
		return
	}

	raw, err := s.FS.ReadFile(s.BaseManifests)
	if err != nil {
		t.Fatalf("reading the base manifest: %v", err)
	}
	objs, err := renderManifest(raw, k8sutil.TemplateData{HostNetworkPorts: ports})
	if err != nil {
		t.Fatalf("%s: %v", s.BaseManifests, err)
	}
	var namespaces, statefulSets []string
	for _, obj := range objs {
		if obj.GetKind() != "StatefulSet" {
			continue
		}
		dropped, err := dropSCTPServerContainers(obj)
		if err != nil {
			t.Fatalf("%s: StatefulSet %s/%s: %v", s.BaseManifests, obj.GetNamespace(), obj.GetName(), err)
		}
		t.Logf("base manifest: StatefulSet %s/%s without its SCTP server containers %v (-drop-sctp-servers: a kernel without SCTP sockets)",
			obj.GetNamespace(), obj.GetName(), dropped)
		namespaces = append(namespaces, obj.GetNamespace())
		statefulSets = append(statefulSets, obj.GetName())
	}
	for _, obj := range objs {
		createOrUpdate(t, s, obj)
	}
	k8sutil.NamespacesMustBeReady(t, s.Client, s.TimeoutConfig, namespaces, statefulSets)
}

// renderManifest executes the manifest as the suite's applier does (a
// text/template over the host-network ports) and decodes its objects.
func renderManifest(raw []byte, data k8sutil.TemplateData) ([]*unstructured.Unstructured, error) {
	tmpl, err := template.New("base").Parse(string(raw))
	if err != nil {
		return nil, err
	}
	var rendered bytes.Buffer
	if err := tmpl.Execute(&rendered, data); err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(&rendered, 4096)
	var objs []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(obj); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
}

// dropSCTPServerContainers removes the pod template's containers that
// serve SCTP and returns their names.
func dropSCTPServerContainers(obj *unstructured.Unstructured) ([]string, error) {
	containers, found, err := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
	if err != nil || !found {
		return nil, fmt.Errorf("no pod template containers: %w", err)
	}
	var kept []any
	var dropped []string
	for _, ct := range containers {
		m, ok := ct.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("a container is a %T", ct)
		}
		if servesSCTP(m) {
			name, _ := m["name"].(string)
			dropped = append(dropped, name)
			continue
		}
		kept = append(kept, ct)
	}
	return dropped, unstructured.SetNestedSlice(obj.Object, kept, "spec", "template", "spec", "containers")
}

func servesSCTP(container map[string]any) bool {
	env, _ := container["env"].([]any)
	for _, e := range env {
		if m, ok := e.(map[string]any); ok {
			if name, _ := m["name"].(string); strings.HasPrefix(name, sctpServerEnvPrefix) {
				return true
			}
		}
	}
	return false
}

// createOrUpdate creates obj, or updates it where it exists, as the suite's
// applier does, and deletes it at the end of the run when the suite cleans
// up its base resources.
func createOrUpdate(t *testing.T, s *suite.ConformanceTestSuite, obj *unstructured.Unstructured) {
	ctx, cancel := context.WithTimeout(context.Background(), s.TimeoutConfig.CreateTimeout)
	defer cancel()
	existing := obj.DeepCopy()
	err := s.Client.Get(ctx, client.ObjectKeyFromObject(obj), existing)
	switch {
	case apierrors.IsNotFound(err):
		t.Logf("Creating %s %s", obj.GetName(), obj.GetKind())
		err = s.Client.Create(ctx, obj)
	case err == nil:
		t.Logf("Updating %s %s", obj.GetName(), obj.GetKind())
		obj.SetResourceVersion(existing.GetResourceVersion())
		err = s.Client.Update(ctx, obj)
	}
	if err != nil {
		t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
	if s.Cleanup {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), s.TimeoutConfig.DeleteTimeout)
			defer cancel()
			t.Logf("Deleting %s %s", obj.GetName(), obj.GetKind())
			if err := s.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("deleting %s %s: %v", obj.GetKind(), obj.GetName(), err)
			}
		})
	}
}

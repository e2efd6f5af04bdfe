package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	policyv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

// fieldManager is what `kubectl apply` (client side) sends: policies reach
// the API server as a user's would.
const fieldManager = "kubectl-client-side-apply"

// DefaultCNPCRD is the ClusterNetworkPolicy CRD (experimental channel of
// network-policy-api v0.3.0, a superset of the standard one) that the
// runner installs before the first scenario that needs it.
const DefaultCNPCRD = "config/components/cnp-crd-experimental/policy.networking.k8s.io_clusternetworkpolicies.yaml"

// cnpResource is ClusterNetworkPolicy in apiVersion (v1beta1 when empty).
func cnpResource(apiVersion string) schema.GroupVersionResource {
	version := "v1beta1"
	if _, v, ok := strings.Cut(apiVersion, "/"); ok {
		version = v
	}
	return schema.GroupVersionResource{Group: scenario.ClusterNetworkPolicyGroup, Version: version, Resource: "clusternetworkpolicies"}
}

// createPolicy creates o as a user would, placeholders resolved. A
// ClusterNetworkPolicy is remembered for the end of the scenario.
func (r *Runner) createPolicy(ctx context.Context, o *scenario.PolicyObject) error {
	o = o.DeepCopy()
	if err := o.ResolveFamilies(r.ipsOf); err != nil {
		return err
	}
	if o.NetworkPolicy != nil {
		np := o.NetworkPolicy
		_, err := r.CS.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{FieldManager: fieldManager})
		return err
	}
	u, err := toUnstructured(o)
	if err != nil {
		return err
	}
	if _, err := r.DC.Resource(cnpResource(o.APIVersion)).Create(ctx, u, metav1.CreateOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("ClusterNetworkPolicy %s: %w", o.Name(), err)
	}
	r.createdCNPs[o.ClusterNetworkPolicy.Name] = true
	return nil
}

// updatePolicy replaces the object of the same kind and name with o.
func (r *Runner) updatePolicy(ctx context.Context, o *scenario.PolicyObject) error {
	o = o.DeepCopy()
	if err := o.ResolveFamilies(r.ipsOf); err != nil {
		return err
	}
	for range 5 {
		var err error
		if np := o.NetworkPolicy; np != nil {
			pols := r.CS.NetworkingV1().NetworkPolicies(np.Namespace)
			var cur metav1.Object
			if cur, err = pols.Get(ctx, np.Name, metav1.GetOptions{}); err != nil {
				return err
			}
			upd := np.DeepCopy()
			upd.ResourceVersion = cur.GetResourceVersion()
			_, err = pols.Update(ctx, upd, metav1.UpdateOptions{FieldManager: fieldManager})
		} else {
			res := r.DC.Resource(cnpResource(o.APIVersion))
			var cur *unstructured.Unstructured
			if cur, err = res.Get(ctx, o.ClusterNetworkPolicy.Name, metav1.GetOptions{}); err != nil {
				return fmt.Errorf("ClusterNetworkPolicy %s: %w", o.Name(), err)
			}
			var u *unstructured.Unstructured
			if u, err = toUnstructured(o); err != nil {
				return err
			}
			u.SetResourceVersion(cur.GetResourceVersion())
			_, err = res.Update(ctx, u, metav1.UpdateOptions{FieldManager: fieldManager})
		}
		if !apierrors.IsConflict(err) {
			return err
		}
	}
	return errors.New("update keeps conflicting")
}

// deletePolicy deletes the named object.
func (r *Runner) deletePolicy(ctx context.Context, ref scenario.PolicyRef) error {
	if ref.IsCluster() {
		delete(r.createdCNPs, ref.Name)
		return r.DC.Resource(cnpResource(ref.APIVersion)).Delete(ctx, ref.Name, metav1.DeleteOptions{})
	}
	return r.CS.NetworkingV1().NetworkPolicies(ref.Namespace).Delete(ctx, ref.Name, metav1.DeleteOptions{})
}

// deleteAllPolicies deletes every policy of the listed kinds (default
// NetworkPolicy): NetworkPolicies in the listed namespaces (default every
// namespace the runner manages), ClusterNetworkPolicies cluster-wide.
func (r *Runner) deleteAllPolicies(ctx context.Context, l *scenario.NamespaceList) error {
	kinds := l.Kinds
	if len(kinds) == 0 {
		kinds = []string{scenario.KindNetworkPolicy}
	}
	if slices.Contains(kinds, scenario.KindClusterNetworkPolicy) {
		if err := r.DC.Resource(cnpResource("")).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			return err
		}
		clear(r.createdCNPs)
	}
	if !slices.Contains(kinds, scenario.KindNetworkPolicy) {
		return nil
	}
	nss := l.Namespaces
	if len(nss) == 0 {
		for n := range r.namespaces {
			nss = append(nss, n)
		}
	}
	for _, n := range nss {
		if err := r.CS.NetworkingV1().NetworkPolicies(n).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			return err
		}
	}
	return nil
}

func toUnstructured(o *scenario.PolicyObject) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o.ClusterNetworkPolicy)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(o.APIVersion)
	u.SetKind(scenario.KindClusterNetworkPolicy)
	return u, nil
}

// usesClusterPolicies reports whether s creates a ClusterNetworkPolicy.
func usesClusterPolicies(s *scenario.Scenario) bool {
	for _, st := range s.Steps {
		for _, a := range st.Actions {
			if (a.CreatePolicy != nil && a.CreatePolicy.ClusterNetworkPolicy != nil) ||
				(a.UpdatePolicy != nil && a.UpdatePolicy.ClusterNetworkPolicy != nil) {
				return true
			}
		}
	}
	return false
}

// ensureCNPCRD installs the ClusterNetworkPolicy CRD (once per runner) and
// waits until it is served.
func (r *Runner) ensureCNPCRD(ctx context.Context) error {
	if r.cnpCRDReady {
		return nil
	}
	if err := InstallCNPCRD(ctx, r.Cfg, r.DC, r.Opt.CNPCRD); err != nil {
		return err
	}
	r.cnpCRDReady = true
	return nil
}

// InstallCNPCRD applies the ClusterNetworkPolicy CRD in file to cfg's
// cluster with kubectl, as an admin would, and waits until
// ClusterNetworkPolicies can be listed through dc. The benchmarks install
// it the same way.
func InstallCNPCRD(ctx context.Context, cfg *cluster.Config, dc dynamic.Interface, file string) error {
	if _, err := cfg.Kubectl(ctx, "apply", "--server-side", "--force-conflicts", "-f", file); err != nil {
		return fmt.Errorf("installing the ClusterNetworkPolicy CRD: %w", err)
	}
	// Wait until it is served. (Not `kubectl wait --for=condition=Established`:
	// on a CRD created a moment ago it fails at once, before the API server
	// has written any condition.)
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := dc.Resource(cnpResource("")).List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ClusterNetworkPolicy CRD installed but not served: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkNoForeignCNPs refuses to start a scenario while a
// ClusterNetworkPolicy the runner did not create exists: it would change
// every verdict of the scenario.
func (r *Runner) checkNoForeignCNPs(ctx context.Context) error {
	if !r.cnpCRDReady {
		return nil
	}
	l, err := r.DC.Resource(cnpResource("")).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var foreign []string
	for _, u := range l.Items {
		if !r.createdCNPs[u.GetName()] {
			foreign = append(foreign, u.GetName())
		}
	}
	if len(foreign) > 0 {
		return fmt.Errorf("ClusterNetworkPolicies not created by this run exist (%s): delete them first", strings.Join(foreign, ", "))
	}
	return nil
}

// deleteCreatedCNPs deletes every ClusterNetworkPolicy the scenario
// created, and waits until they are gone.
func (r *Runner) deleteCreatedCNPs(ctx context.Context) error {
	var errs []error
	for name := range r.createdCNPs {
		if err := r.DC.Resource(cnpResource("")).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
			continue
		}
		delete(r.createdCNPs, name)
	}
	return errors.Join(errs...)
}

// newDynamic is the dynamic client of the cluster's admin.
func newDynamic(kubeconfig string) (dynamic.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	return dynamic.NewForConfig(rc)
}

// CreateClusterNetworkPolicy creates p as a user would, installing the
// ClusterNetworkPolicy CRD first when needed; DeleteClusterNetworkPolicies
// deletes every one created so. For checks outside the scenario runner.
func (r *Runner) CreateClusterNetworkPolicy(ctx context.Context, p *policyv1beta1.ClusterNetworkPolicy) error {
	if err := r.ensureCNPCRD(ctx); err != nil {
		return err
	}
	return r.createPolicy(ctx, &scenario.PolicyObject{ClusterNetworkPolicy: p, APIVersion: scenario.ClusterNetworkPolicyGroup + "/v1beta1"})
}

// DeleteClusterNetworkPolicies deletes the ClusterNetworkPolicies created
// with CreateClusterNetworkPolicy.
func (r *Runner) DeleteClusterNetworkPolicies(ctx context.Context) error {
	return r.deleteCreatedCNPs(ctx)
}

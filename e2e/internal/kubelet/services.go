// Pod Services for pods that another backend runs (the scenario runner's
// pods on real kubelets): the same selectorless Service and EndpointSlices,
// and the same wait for kube-proxy, as the harness's own pods get.

package kubelet

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
)

// ServicesOnly returns a Kubelet that runs no pods: only its Service
// methods (EnsureService, DeleteService, WaitProgrammed) may be used.
func ServicesOnly(cfg *cluster.Config, st *cluster.State, cs kubernetes.Interface) *Kubelet {
	return &Kubelet{Cfg: cfg, State: st, CS: cs, load: map[string]int{}}
}

// EnsureService creates or updates p's Service and EndpointSlices (one per
// family) pointing at p's addresses; pod is p's Pod object (the slices'
// targetRef).
func (k *Kubelet) EnsureService(ctx context.Context, p *Pod, pod *corev1.Pod) error {
	return k.ensureService(ctx, p, pod)
}

// DeleteService deletes p's Service and EndpointSlices, if it has one.
func (k *Kubelet) DeleteService(ctx context.Context, p *Pod) error {
	if p.Service == "" {
		return nil
	}
	var errs []error
	if err := k.CS.CoreV1().Services(p.Spec.Namespace).Delete(ctx, p.Service, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	for _, f := range k.State.Families() {
		name, _ := endpointSliceName(p.Service, f)
		if err := k.CS.DiscoveryV1().EndpointSlices(p.Spec.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ServiceName is the Service the harness gives a pod named name.
func ServiceName(name string) string { return shortName("s-", name, 63) }

// Where the scenario's pods run: the harness playing the kubelet, or real
// kubelets running our podserver image.

package runner

import (
	"context"
	"time"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
)

// PodBackend runs a scenario's pods. Both backends give each pod a
// podserver reached over a unix control socket (kubelet.Pod.Ctl), so the
// probes, and how the truth table is judged, are the same in either.
//   - *kubelet.Kubelet (harness mode): a pod is a network namespace
//     attached by the CNI plugins and a podserver process; the harness
//     writes the Pod object's status.
//   - *kubeletpods.Pods (kubelet mode, make up E2E_KUBELET=1): a pod is a
//     Pod object a real kubelet runs as a container of the podserver
//     image; node endpoints, host-network and pending pods are refused.
type PodBackend interface {
	// CreatePod runs a pod serving spec.Servers, with its Service unless
	// spec.NoService, and returns it Running with its addresses.
	CreatePod(ctx context.Context, spec kubelet.PodSpec) (*kubelet.Pod, error)
	DeletePod(ctx context.Context, p *kubelet.Pod) error
	// SetLabels replaces the pod's labels (through the API).
	SetLabels(ctx context.Context, p *kubelet.Pod, labels map[string]string) error
	// SetServers changes what p serves, updating p in place.
	SetServers(ctx context.Context, p *kubelet.Pod, servers []kubelet.Server) error
	// WaitProgrammed waits until kube-proxy on every node maps each pod's
	// Service to its address.
	WaitProgrammed(ctx context.Context, pods []*kubelet.Pod, timeout time.Duration) error
	// NodeServer serves servers in node n's own network namespace
	// (node/<name> endpoints); SetNodeServers changes what it serves.
	NodeServer(ctx context.Context, n cluster.Node, servers []kubelet.Server) (*kubelet.Pod, error)
	SetNodeServers(p *kubelet.Pod, servers []kubelet.Server) error
}

var _ PodBackend = (*kubelet.Kubelet)(nil)

// A step's actions on the cluster.

package runner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

// ipsOf returns the pod's addresses in the families the current scenario
// runs in, in their order.
func (r *Runner) ipsOf(key string) ([]netip.Addr, bool) {
	p, ok := r.pods[key]
	if !ok {
		return nil, false
	}
	var out []netip.Addr
	for _, f := range r.families {
		if a, ok := p.Addr(f); ok {
			out = append(out, a)
		}
	}
	return out, len(out) > 0
}

func (r *Runner) applyActions(ctx context.Context, s *scenario.Scenario, actions []scenario.Action) error {
	var created []*kubelet.Pod
	for i, a := range actions {
		if err := r.apply(ctx, s, a, &created); err != nil {
			return fmt.Errorf("action %d %s: %w", i+1, a.Kind(), err)
		}
	}
	// Only the pods that still exist: one step may create a pod, delete it
	// and create it again under the same name (with a new Service).
	live := slices.DeleteFunc(created, func(p *kubelet.Pod) bool { return r.pods[p.Spec.Key()] != p })
	if len(live) > 0 {
		return r.Backend.WaitProgrammed(ctx, live, 30*time.Second)
	}
	return nil
}

func (r *Runner) apply(ctx context.Context, s *scenario.Scenario, a scenario.Action, created *[]*kubelet.Pod) error {
	switch {
	case a.CreatePolicy != nil:
		return r.createPolicy(ctx, a.CreatePolicy)
	case a.UpdatePolicy != nil:
		return r.updatePolicy(ctx, a.UpdatePolicy)
	case a.DeletePolicy != nil:
		return r.deletePolicy(ctx, *a.DeletePolicy)
	case a.DeleteAllPolicies != nil:
		return r.deleteAllPolicies(ctx, a.DeleteAllPolicies)
	case a.SetNamespaceLabels != nil:
		return r.setNamespaceLabels(ctx, a.SetNamespaceLabels.Name, a.SetNamespaceLabels.Labels)
	case a.SetPodLabels != nil:
		p, ok := r.pods[a.SetPodLabels.Namespace+"/"+a.SetPodLabels.Name]
		if !ok {
			return fmt.Errorf("no pod %s/%s", a.SetPodLabels.Namespace, a.SetPodLabels.Name)
		}
		return r.Backend.SetLabels(ctx, p, a.SetPodLabels.Labels)
	case a.CreateNamespace != nil:
		if _, ok := r.namespaces[a.CreateNamespace.Name]; ok {
			return fmt.Errorf("namespace %s exists", a.CreateNamespace.Name)
		}
		return r.ensureNamespace(ctx, *a.CreateNamespace)
	case a.DeleteNamespace != nil:
		return r.deleteNamespace(ctx, a.DeleteNamespace.Namespace)
	case a.CreatePod != nil:
		wp := *a.CreatePod
		if _, ok := r.pods[wp.Key()]; ok {
			return fmt.Errorf("pod %s exists", wp.Key())
		}
		lp, err := r.Backend.CreatePod(ctx, podSpec(wp, servers(s, wp)))
		if err != nil {
			return err
		}
		r.pods[wp.Key()] = lp
		*created = append(*created, lp)
		return nil
	case a.DeletePod != nil:
		key := a.DeletePod.Namespace + "/" + a.DeletePod.Name
		p, ok := r.pods[key]
		if !ok {
			return fmt.Errorf("no pod %s", key)
		}
		delete(r.pods, key)
		return r.Backend.DeletePod(ctx, p)
	}
	return errors.New("empty action")
}

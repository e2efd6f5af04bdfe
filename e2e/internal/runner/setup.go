// Setting up a scenario's cluster section: namespaces and pods.

package runner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/e2e/internal/kubelet"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
)

// prepare makes the live namespaces and pods equal to the scenario's cluster
// section, reusing pods whose namespace, name, requested IP match.
func (r *Runner) prepare(ctx context.Context, s *scenario.Scenario) error {
	// No policy survives from the previous scenario.
	for ns := range r.namespaces {
		if err := r.CS.NetworkingV1().NetworkPolicies(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	want := map[string]scenario.Namespace{}
	for _, n := range s.Cluster.Namespaces {
		want[n.Name] = n
	}
	for name := range r.namespaces {
		if _, ok := want[name]; !ok {
			if err := r.deleteNamespace(ctx, name); err != nil {
				return err
			}
		}
	}
	for _, n := range s.Cluster.Namespaces {
		if err := r.ensureNamespace(ctx, n); err != nil {
			return err
		}
	}
	wantPods := map[string]scenario.Pod{}
	for _, p := range s.Cluster.Pods {
		wantPods[p.Key()] = p
	}
	var errs []error
	r.servers = servers(s, scenario.Pod{})
	for _, np := range r.nodes {
		errs = append(errs, r.Backend.SetNodeServers(np, r.servers))
	}
	for key, lp := range r.pods {
		wp, ok := wantPods[key]
		if !ok || wp.IP != lp.Spec.IP || wp.HostNetwork != lp.Spec.HostNetwork || wp.Node != lp.Spec.Node {
			errs = append(errs, r.Backend.DeletePod(ctx, lp))
			delete(r.pods, key)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var mu sync.Mutex
	sem := make(chan struct{}, r.createParallel())
	var wg sync.WaitGroup
	var all []*kubelet.Pod
	for _, wp := range s.Cluster.Pods {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			svs := servers(s, wp)
			var err error
			mu.Lock()
			lp := r.pods[wp.Key()]
			mu.Unlock()
			switch {
			case lp == nil:
				lp, err = r.Backend.CreatePod(ctx, podSpec(wp, svs))
			case !slices.Equal(lp.Spec.Servers, svs):
				lp.Spec.Labels = copyMap(wp.Labels)
				err = r.Backend.SetServers(ctx, lp, svs)
			case !maps.Equal(lp.Spec.Labels, wp.Labels):
				err = r.Backend.SetLabels(ctx, lp, wp.Labels)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			r.pods[wp.Key()] = lp
			all = append(all, lp)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return r.Backend.WaitProgrammed(ctx, all, 30*time.Second)
}

func (r *Runner) ensureNamespace(ctx context.Context, n scenario.Namespace) error {
	if live, ok := r.namespaces[n.Name]; ok {
		if maps.Equal(live.labels, n.Labels) {
			return nil
		}
		return r.setNamespaceLabels(ctx, n.Name, n.Labels)
	}
	nss := r.CS.CoreV1().Namespaces()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, err := nss.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: copyMap(n.Labels),
			Annotations: map[string]string{ManagedAnnotation: "true"}}}, metav1.CreateOptions{})
		if err == nil {
			r.namespaces[n.Name] = &liveNS{labels: copyMap(n.Labels), owned: true}
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
		cur, err := nss.Get(ctx, n.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if cur.DeletionTimestamp == nil {
			// A namespace we did not create (e.g. default): adopt it, never delete it.
			r.namespaces[n.Name] = &liveNS{labels: cur.Labels, owned: false}
			return r.setNamespaceLabels(ctx, n.Name, n.Labels)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s stays terminating", n.Name)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (r *Runner) setNamespaceLabels(ctx context.Context, name string, labels map[string]string) error {
	nss := r.CS.CoreV1().Namespaces()
	for i := 0; i < 5; i++ {
		cur, err := nss.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Labels = copyMap(labels)
		_, err = nss.Update(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return err
		}
		if live, ok := r.namespaces[name]; ok {
			live.labels = copyMap(labels)
		}
		return nil
	}
	return fmt.Errorf("namespace %s: label update keeps conflicting", name)
}

func (r *Runner) deleteNamespace(ctx context.Context, name string) error {
	var errs []error
	for key, p := range r.pods {
		if p.Spec.Namespace == name {
			errs = append(errs, r.Backend.DeletePod(ctx, p))
			delete(r.pods, key)
		}
	}
	live := r.namespaces[name]
	delete(r.namespaces, name)
	if live != nil && !live.owned {
		err := r.CS.NetworkingV1().NetworkPolicies(name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		return errors.Join(append(errs, err)...)
	}
	errs = append(errs, r.deleteNamespaceObjects(ctx, name))
	return errors.Join(errs...)
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	return maps.Clone(m)
}

// Prepare sets up a scenario's cluster section (the demo uses it).
func (r *Runner) Prepare(ctx context.Context, s *scenario.Scenario) error { return r.prepare(ctx, s) }

// createParallel is how many pods prepare creates at once: 3 for the
// harness kubelet, whose pod creation is work on this machine (CNI
// plugins, a podserver start); 6 on real kubelets, where a creation is
// mostly waiting for the kubelet's pod workers and status updates.
func (r *Runner) createParallel() int {
	if r.K == nil {
		return 6
	}
	return 3
}

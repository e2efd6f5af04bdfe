package controllers

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/nftpolicy/nftpolicy/policy"
)

// PodStore is the agent's cache of every pod in the cluster (remote pods
// are peers of local ones). Pods are the only objects whose number is the
// cluster's size, so the store keeps each one exactly as policy takes it, a
// *policy.Pod, and nothing else: the informer's transform turns every API
// object into a small record before it is stored, and equal strings, label
// sets and port lists of different pods share one copy (interner). The
// Reconciler hands the stored pointers to policy.NodeCompiler, so the agent holds
// one copy of each pod.
//
// It is a client-go SharedIndexInformer rather than a controller-runtime
// cache, whose stored objects must be *corev1.Pod (1.2 kB of struct even
// when empty). Records are immutable: an update stores a new record.
type PodStore struct {
	informer toolscache.SharedIndexInformer
	mu       sync.Mutex // guards intern (the transform may run on several goroutines)
	intern   *interner
}

// NewPodStore returns a store fed by lw, a list and watch of every pod.
// Start runs it.
func NewPodStore(lw toolscache.ListerWatcher) *PodStore {
	s := &PodStore{intern: newInterner()}
	s.informer = toolscache.NewSharedIndexInformerWithOptions(lw, &corev1.Pod{}, toolscache.SharedIndexInformerOptions{
		ObjectDescription: "pods (policy records)",
	})
	// SetTransform fails only on a started informer.
	if err := s.informer.SetTransform(s.transform); err != nil {
		panic(err)
	}
	return s
}

// PodListWatch lists and watches every pod through cfg (and httpClient, to
// share the manager's connections). It asks for protobuf: decoding 150,000
// pods costs a fraction of the CPU and garbage that JSON does.
func PodListWatch(cfg *rest.Config, httpClient *http.Client) (toolscache.ListerWatcher, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	c, err := corev1client.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("pod client: %w", err)
	}
	pods := c.Pods(metav1.NamespaceAll)
	return &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return pods.Watch(ctx, o)
		},
	}, nil
}

// Start runs the informer until ctx ends (a manager.Runnable).
func (s *PodStore) Start(ctx context.Context) error {
	s.informer.RunWithContext(ctx)
	return nil
}

// NeedLeaderElection is false: every node's agent watches pods.
func (s *PodStore) NeedLeaderElection() bool { return false }

// HasSynced reports whether the store holds the initial list.
func (s *PodStore) HasSynced() bool { return s.informer.HasSynced() }

// Get returns the stored pod, or nil if there is none. The pod must not be
// modified.
func (s *PodStore) Get(namespace, name string) *policy.Pod {
	obj, ok, _ := s.informer.GetIndexer().GetByKey(namespace + "/" + name)
	if r, isRecord := obj.(*podRecord); ok && isRecord {
		return &r.Pod
	}
	return nil
}

// Each calls fn with every stored pod (which must not be modified).
func (s *PodStore) Each(fn func(*policy.Pod)) {
	for _, obj := range s.informer.GetIndexer().List() {
		if r, ok := obj.(*podRecord); ok {
			fn(&r.Pod)
		}
	}
}

// Len is the number of stored pods.
func (s *PodStore) Len() int { return len(s.informer.GetIndexer().ListKeys()) }

// addEventHandler registers h with the informer (see podSource).
func (s *PodStore) addEventHandler(h toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error) {
	return s.informer.AddEventHandler(h)
}

// transform is the informer's transform: a *corev1.Pod becomes a record
// (records and tombstones pass unchanged, so it is idempotent, as client-go
// requires). Once the initial list is in, it also lets the interner forget
// the values of deleted pods (interner.maybeRebuild).
func (s *PodStore) transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		s.mu.Lock()
		defer s.mu.Unlock()
		r := newPodRecord(o, s.intern)
		// Before the initial list is in, the indexer does not hold the
		// live pods yet (the watch-list streams them into a store of its
		// own): a rebuild then would forget values still in use.
		if s.informer.HasSynced() {
			s.intern.maybeRebuild(s.records)
		}
		return r, nil
	case *podRecord, toolscache.DeletedFinalStateUnknown:
		return obj, nil
	}
	return nil, fmt.Errorf("pod store: unexpected object %T", obj)
}

// records lists the stored records.
func (s *PodStore) records() []*podRecord {
	objs := s.informer.GetIndexer().List()
	out := make([]*podRecord, 0, len(objs))
	for _, obj := range objs {
		if r, ok := obj.(*podRecord); ok {
			out = append(out, r)
		}
	}
	return out
}

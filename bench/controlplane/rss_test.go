//go:build linux

package controlplane

// A smoke run of the memory model on a small shape: the pods must go
// through the agent's PodStore (storesOf fails if any is missing), churn
// through its informer, and every figure must be filled in. No size is
// asserted beyond their order.

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/policy/synth"
)

func TestSmoke_MeasureMemory(t *testing.T) {
	requireRoot(t)
	m, err := MeasureMemory(synth.Scaled(1_000), 4, MemoryProfiles{})
	if err != nil {
		t.Fatal(err)
	}
	if m.CacheRSSBytes <= 0 || m.SteadyRSSBytes <= 0 || m.HeapCacheBytes <= 0 || m.HeapSteadyBytes <= 0 || m.CPUSeconds <= 0 {
		t.Errorf("a figure is missing: %+v", m)
	}
	if m.PeakRSSBytes < m.CacheRSSBytes || m.HeapPeakBytes < m.HeapCacheBytes {
		t.Errorf("peak below the baseline: %+v", m)
	}
	if m.Pods != 1_000 || m.ChurnSyncs != 4 {
		t.Errorf("shape: %+v", m)
	}
}

func TestPodListWatch_ListsOnce(t *testing.T) {
	lw, _ := newPodListWatch(nil)
	if _, err := lw.ListWithContextFunc(t.Context(), metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := lw.ListWithContextFunc(t.Context(), metav1.ListOptions{}); err == nil {
		t.Error("second list succeeded; the model must not keep the API objects")
	}
}

func TestSmoke_MeasureMemory_ClusterNetworkPolicies(t *testing.T) {
	requireRoot(t)
	m, err := MeasureMemory(synth.Scaled(1_000).WithClusterNetworkPolicies(100), 2, MemoryProfiles{})
	if err != nil {
		t.Fatal(err)
	}
	if m.ClusterNetworkPolicies != 100 || m.PeakRSSBytes < m.CacheRSSBytes || m.SteadyRSSBytes <= 0 {
		t.Errorf("%+v", m)
	}
}

package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// changeBatch names the objects whose current state a reconcile must read
// from the stores into its policy.NodeCompiler: present → Set, absent → Delete.
// Only names are kept, never objects, so that a batch always applies the
// newest state, however many events it stands for.
type changeBatch struct {
	// all: read everything into a fresh NodeCompiler instead (the first
	// reconcile, and the periodic full rebuild). The sets are empty
	// then.
	all        bool
	pods       map[types.NamespacedName]struct{}
	namespaces map[string]struct{}
	policies   map[types.NamespacedName]struct{}
	// cnps are ClusterNetworkPolicies by name, nodes Nodes by name.
	cnps  map[string]struct{}
	nodes map[string]struct{}
	// allCNPs: make the NodeCompiler's ClusterNetworkPolicies those of the
	// ClusterNetworkPolicy store now, whatever they were (the store was
	// started or stopped: the CRD appeared or went away). Names in cnps
	// are covered by it.
	allCNPs bool
}

// pendingChanges collects what the watch handlers report until a
// reconcile takes it. It starts as "all": the first reconcile loads every
// object, so the events of the initial lists need not be recorded one by
// one (150,000 pod names at once).
type pendingChanges struct {
	mu sync.Mutex
	b  changeBatch
}

func newPendingChanges() *pendingChanges {
	return &pendingChanges{b: changeBatch{all: true}}
}

func (p *pendingChanges) pod(key types.NamespacedName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.b.all {
		p.b.pods = addTo(p.b.pods, key)
	}
}

func (p *pendingChanges) namespace(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.b.all {
		p.b.namespaces = addTo(p.b.namespaces, name)
	}
}

func (p *pendingChanges) policy(key types.NamespacedName) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.b.all {
		p.b.policies = addTo(p.b.policies, key)
	}
}

func (p *pendingChanges) cnp(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.b.all && !p.b.allCNPs {
		p.b.cnps = addTo(p.b.cnps, name)
	}
}

func (p *pendingChanges) node(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.b.all {
		p.b.nodes = addTo(p.b.nodes, name)
	}
}

// everyCNP asks the next reconcile to replace the NodeCompiler's
// ClusterNetworkPolicies with the store's.
func (p *pendingChanges) everyCNP() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.b.all {
		p.b.allCNPs, p.b.cnps = true, nil
	}
}

// everything asks the next reconcile to load every object.
func (p *pendingChanges) everything() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.b = changeBatch{all: true}
}

// take returns what changed and starts an empty batch: changes reported
// from now on are the next reconcile's.
func (p *pendingChanges) take() changeBatch {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.b
	p.b = changeBatch{}
	return b
}

// putBack returns a batch that could not be applied, merged with what
// changed since it was taken, so that the retry applies both.
func (p *pendingChanges) putBack(b changeBatch) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b.all || p.b.all {
		p.b = changeBatch{all: true}
		return
	}
	for k := range b.pods {
		p.b.pods = addTo(p.b.pods, k)
	}
	for k := range b.namespaces {
		p.b.namespaces = addTo(p.b.namespaces, k)
	}
	for k := range b.policies {
		p.b.policies = addTo(p.b.policies, k)
	}
	for k := range b.nodes {
		p.b.nodes = addTo(p.b.nodes, k)
	}
	if b.allCNPs || p.b.allCNPs {
		p.b.allCNPs, p.b.cnps = true, nil
		return
	}
	for k := range b.cnps {
		p.b.cnps = addTo(p.b.cnps, k)
	}
}

func addTo[K comparable](m map[K]struct{}, k K) map[K]struct{} {
	if m == nil {
		m = map[K]struct{}{}
	}
	m[k] = struct{}{}
	return m
}

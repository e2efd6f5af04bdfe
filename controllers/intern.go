package controllers

import (
	"hash/maphash"
	"maps"
	"math/bits"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/nftpolicy/nftpolicy/policy"
)

// minInternEntries is the table size below which an interner never
// rebuilds: a few thousand strings are not worth a pass over every pod.
const minInternEntries = 4096

// interner keeps one copy of each string, label set and port list that pod
// records have in common. Across 150,000 pods the namespaces, node names,
// phases, label keys and values repeat, and so do whole label sets and port
// lists (every replica of a Deployment has the same ones): a record shares
// them instead of holding its own map and slice. Shared maps and slices
// are read-only, like the records.
//
// The tables would otherwise keep the values of every pod ever seen (job
// names, pod-template hashes), so once they hold twice as many entries as
// the live pods needed at the last count, they are rebuilt from the live
// records (maybeRebuild): amortised over the inserts that grew them.
//
// An interner is not safe for concurrent use; PodStore guards it.
type interner struct {
	seed maphash.Seed
	strs map[string]string
	// labelSets and portLists are keyed by a hash of the contents; a hit
	// is checked for equality, and a colliding different value is simply
	// not shared.
	labelSets map[uint64]map[string]string
	portLists map[uint64][]policy.ContainerPort
	// limit is the size (entries over all tables) above which
	// maybeRebuild rebuilds; 0 until its first call sets a baseline.
	limit int
}

func newInterner() *interner {
	return &interner{
		seed:      maphash.MakeSeed(),
		strs:      map[string]string{},
		labelSets: map[uint64]map[string]string{},
		portLists: map[uint64][]policy.ContainerPort{},
	}
}

// size is the number of entries over all tables.
func (in *interner) size() int { return len(in.strs) + len(in.labelSets) + len(in.portLists) }

// str returns the shared copy of s.
func (in *interner) str(s string) string {
	if s == "" {
		return ""
	}
	if c, ok := in.strs[s]; ok {
		return c
	}
	c := strings.Clone(s) // s may point into a larger decoded object
	in.strs[c] = c
	return c
}

// labels returns the shared copy of m (nil when m is empty).
func (in *interner) labels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	h := in.hashLabels(m)
	c, taken := in.labelSets[h]
	if taken && maps.Equal(c, m) {
		return c
	}
	c = make(map[string]string, len(m))
	for k, v := range m {
		c[in.str(k)] = in.str(v)
	}
	if !taken {
		in.labelSets[h] = c
	}
	return c
}

// ports returns the shared copy of ps (nil when ps is empty); ps itself is
// not kept, so it may be a scratch buffer.
func (in *interner) ports(ps []policy.ContainerPort) []policy.ContainerPort {
	if len(ps) == 0 {
		return nil
	}
	h := in.hashPorts(ps)
	c, taken := in.portLists[h]
	if taken && slices.Equal(c, ps) {
		return c
	}
	c = make([]policy.ContainerPort, len(ps))
	for i, p := range ps {
		c[i] = policy.ContainerPort{Name: in.str(p.Name), Protocol: corev1.Protocol(in.str(string(p.Protocol))), Port: p.Port}
	}
	if !taken {
		in.portLists[h] = c
	}
	return c
}

// maybeRebuild rebuilds the tables from the records live returns when they
// have outgrown their limit, and sets the next limit to twice what the
// live records need. The first call only sets the limit from the current
// size: it comes right after the initial list, whose values all belong to
// live pods, so a pass over them would find nothing to forget.
func (in *interner) maybeRebuild(live func() []*podRecord) {
	if in.limit == 0 {
		in.limit = max(minInternEntries, 2*in.size())
		return
	}
	if in.size() <= in.limit {
		return
	}
	in.rebuild(live())
	in.limit = max(minInternEntries, 2*in.size())
}

// rebuild replaces the tables with the values of the given records: the
// values of pods that are gone are forgotten. A record's own copies become
// the shared ones (records are never changed, so nothing is copied).
func (in *interner) rebuild(live []*podRecord) {
	in.strs = make(map[string]string, len(in.strs)/2)
	in.labelSets = make(map[uint64]map[string]string, len(in.labelSets)/2)
	in.portLists = make(map[uint64][]policy.ContainerPort, len(in.portLists)/2)
	keep := func(s string) {
		if _, ok := in.strs[s]; !ok && s != "" {
			in.strs[s] = s
		}
	}
	for _, r := range live {
		keep(r.Namespace)
		keep(r.NodeName)
		keep(string(r.Phase))
		if len(r.Labels) > 0 {
			if h := in.hashLabels(r.Labels); in.labelSets[h] == nil {
				in.labelSets[h] = r.Labels
			}
			for k, v := range r.Labels {
				keep(k)
				keep(v)
			}
		}
		if len(r.Ports) > 0 {
			if h := in.hashPorts(r.Ports); in.portLists[h] == nil {
				in.portLists[h] = r.Ports
			}
			for _, p := range r.Ports {
				keep(p.Name)
				keep(string(p.Protocol))
			}
		}
	}
}

// hashLabels hashes a label set independently of map order (a sum of the
// pairs' hashes).
func (in *interner) hashLabels(m map[string]string) uint64 {
	sum := uint64(len(m))
	for k, v := range m {
		sum += bits.RotateLeft64(maphash.String(in.seed, k), 29) ^ maphash.String(in.seed, v)
	}
	return sum
}

// hashPorts hashes a port list in order.
func (in *interner) hashPorts(ps []policy.ContainerPort) uint64 {
	h := uint64(len(ps))
	for _, p := range ps {
		h = h*0x9e3779b97f4a7c15 + (bits.RotateLeft64(maphash.String(in.seed, p.Name), 29) ^
			maphash.String(in.seed, string(p.Protocol)) ^ uint64(uint32(p.Port)))
	}
	return h
}

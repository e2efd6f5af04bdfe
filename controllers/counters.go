package controllers

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nftpolicy/nftpolicy/nft"
)

// CountersPath is where the agent serves the per-pod counters
// (CountersDoc), on its metrics port beside RulesetPath.
const CountersPath = "/debug/counters"

// Verdicts of the nftpolicy_new_connections_total counter (label "verdict").
const (
	verdictAccepted = "accepted" // reached the end of the forward chain: every policy on the path let it through
	verdictDenied   = "denied"   // dropped by an allow-list or a ClusterNetworkPolicy Deny rule
)

// Counters turns the kernel's counters (nft.Rule.Counter: one on every
// policy drop, one on the new connections that forward accepts) into
// Prometheus metrics of bounded cardinality and a per-pod document:
//
//   - nftpolicy_denied_packets_total{direction,namespace}: packets dropped
//     by a pod's allow-list, by the direction and the namespace of the pod
//     whose chain dropped them; ClusterNetworkPolicy Deny drops, whose
//     chains are shared by every pod a rule applies to, count under
//     namespace "" (per rule at CountersPath);
//   - nftpolicy_new_connections_total{verdict}: new connections (first
//     packets, each retransmission again) the node's table accepted in the
//     forward hook, and denied in any hook;
//   - at CountersPath, per pod and direction, and per Deny rule chain,
//     packets and bytes since the agent started.
//
// The kernel's values are read with one netlink dump (Read) on every
// scrape, every request to CountersPath, and at least every RefreshEvery
// (Start), no more often than minRefreshInterval. A sync that writes a
// chain's rules again restarts its kernel counter; the totals go on
// (nft.CounterTracker), losing only what that chain counted since the last
// read.
type Counters struct {
	node    string
	read    func() ([]nft.RuleCounter, error)
	applied func() *nft.Ruleset
	every   time.Duration
	now     func() time.Time
	log     logr.Logger

	deniedDesc, newConnDesc *prometheus.Desc
	readErrors              prometheus.Counter

	mu        sync.Mutex
	readAt    time.Time
	tracker   nft.CounterTracker
	ruleset   *nft.Ruleset            // the applied ruleset endpoints was made from
	endpoints map[string]nft.Endpoint // allow-list chain -> pod, of ruleset
	denied    map[deniedKey]uint64    // the metric's series
	accepted  uint64
	pods      map[string]*chainCount // per allow-list chain present in the table
	denyRules map[string]*chainCount // per Deny rule chain present in the table
}

type deniedKey struct {
	dir       nft.Direction
	namespace string
}

type chainCount struct {
	endpoint nft.Endpoint
	count    nft.Count
}

// CountersOptions configure NewCounters.
type CountersOptions struct {
	Node string
	// Read returns the kernel's counters (kernel.ReadCounters).
	Read func() ([]nft.RuleCounter, error)
	// Applied returns the ruleset last applied (AppliedRuleset.Last),
	// which tells which pod each chain belongs to; nil before the first.
	Applied func() *nft.Ruleset
	// RefreshEvery bounds the time between two reads without scrapes
	// (and so what a rewritten chain can lose); 0 means 10 s.
	RefreshEvery time.Duration
	Registerer   prometheus.Registerer
	Logger       logr.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// minRefreshInterval keeps scrapes that come together (several
// Prometheus servers, a debug request) to one dump.
const minRefreshInterval = time.Second

// NewCounters returns the counters and registers their metrics.
func NewCounters(o CountersOptions) (*Counters, error) {
	c := &Counters{
		node: o.Node, read: o.Read, applied: o.Applied, every: o.RefreshEvery, now: o.Now, log: o.Logger,
		deniedDesc: prometheus.NewDesc(metricsNamespace+"_denied_packets_total",
			"Packets dropped by policy on this node, by direction and by the namespace of the pod whose allow-list dropped them (\"\" for ClusterNetworkPolicy Deny rules, shared by pods of any namespace). Each dropped first packet of a connection attempt, retransmissions included.",
			[]string{"direction", "namespace"}, nil),
		newConnDesc: prometheus.NewDesc(metricsNamespace+"_new_connections_total",
			"New connections (first packets) on this node: accepted by the forward hook after every policy on their path, or denied by a policy in any hook.",
			[]string{"verdict"}, nil),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "counter_read_errors_total",
			Help: "Failed reads of the table's counters; the metrics keep their last values.",
		}),
		denied:    map[deniedKey]uint64{},
		pods:      map[string]*chainCount{},
		denyRules: map[string]*chainCount{},
	}
	if c.every <= 0 {
		c.every = 10 * time.Second
	}
	if c.now == nil {
		c.now = time.Now
	}
	if o.Registerer != nil {
		for _, col := range []prometheus.Collector{c, c.readErrors} {
			if err := o.Registerer.Register(col); err != nil {
				return nil, fmt.Errorf("register counters: %w", err)
			}
		}
	}
	return c, nil
}

// Start refreshes the counters every RefreshEvery until ctx ends (a
// controller-runtime Runnable).
func (c *Counters) Start(ctx context.Context) error {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.refresh()
		}
	}
}

// refresh reads the kernel's counters, unless that was done less than
// minRefreshInterval ago, and adds what they counted since.
func (c *Counters) refresh() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.readAt.IsZero() && now.Sub(c.readAt) < minRefreshInterval {
		return
	}
	c.readAt = now // a failed read too: scrapes must not make it spin
	readings, err := c.read()
	if err != nil {
		c.readErrors.Inc()
		c.log.Error(err, "read the table's counters")
		return
	}
	if r := c.applied(); r != nil && r != c.ruleset {
		c.ruleset, c.endpoints = r, r.Endpoints()
	}
	present := make(map[string]bool, len(readings))
	for _, rd := range readings {
		present[rd.Chain] = true
		c.entry(rd.Chain) // listed at CountersPath from its first reading, zeros included
	}
	for chain, inc := range c.tracker.Increments(readings) {
		c.add(chain, inc)
	}
	for _, m := range []map[string]*chainCount{c.pods, c.denyRules} {
		for chain := range m {
			if !present[chain] {
				delete(m, chain)
			}
		}
	}
}

// entry is the per-chain count of an allow-list or Deny rule chain (nil
// for forward), created on first use.
func (c *Counters) entry(chain string) *chainCount {
	if chain == nft.ChainForward {
		return nil
	}
	if dir, ok := nft.DenyChainDirection(chain); ok {
		cc := c.denyRules[chain]
		if cc == nil {
			cc = &chainCount{endpoint: nft.Endpoint{Dir: dir}}
			c.denyRules[chain] = cc
		}
		return cc
	}
	cc := c.pods[chain]
	if cc == nil {
		cc = &chainCount{endpoint: endpointFromName(chain)}
		c.pods[chain] = cc
	}
	if ep, ok := c.endpoints[chain]; ok {
		cc.endpoint = ep
	}
	return cc
}

// endpointFromName is the pod and direction an allow-list chain's name
// tells (nft.NamesFor: in-HASH-ns/name, the id cut at 40 bytes), for a
// chain the last applied ruleset does not have yet: a read that raced the
// sync that added it. Its namespace is "" when the cut lost the slash.
func endpointFromName(chain string) nft.Endpoint {
	ep := nft.Endpoint{Dir: nft.Ingress}
	rest, ok := strings.CutPrefix(chain, "in-")
	if !ok {
		ep.Dir = nft.Egress
		rest, _ = strings.CutPrefix(chain, "out-")
	}
	if _, id, ok := strings.Cut(rest, "-"); ok && strings.Contains(id, "/") {
		ep.ID = id
	}
	return ep
}

// add counts inc, which chain counted, where it belongs.
func (c *Counters) add(chain string, inc nft.Count) {
	cc := c.entry(chain)
	if cc == nil {
		c.accepted += inc.Packets
		return
	}
	cc.count = cc.count.Add(inc)
	namespace := "" // a Deny rule's chain: shared by pods of any namespace
	if _, isDeny := nft.DenyChainDirection(chain); !isDeny {
		namespace, _, _ = strings.Cut(cc.endpoint.ID, "/")
	}
	c.denied[deniedKey{dir: cc.endpoint.Dir, namespace: namespace}] += inc.Packets
}

// Describe implements prometheus.Collector.
func (c *Counters) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.deniedDesc
	ch <- c.newConnDesc
}

// Collect implements prometheus.Collector: it reads the kernel first.
func (c *Counters) Collect(ch chan<- prometheus.Metric) {
	c.refresh()
	c.mu.Lock()
	defer c.mu.Unlock()
	var denied uint64
	for k, v := range c.denied {
		denied += v
		ch <- prometheus.MustNewConstMetric(c.deniedDesc, prometheus.CounterValue, float64(v), k.dir.String(), k.namespace)
	}
	ch <- prometheus.MustNewConstMetric(c.newConnDesc, prometheus.CounterValue, float64(c.accepted), verdictAccepted)
	ch <- prometheus.MustNewConstMetric(c.newConnDesc, prometheus.CounterValue, float64(denied), verdictDenied)
}

// CountersDoc is the JSON document served at CountersPath.
type CountersDoc struct {
	Node string `json:"node"`
	// ReadAt is when the kernel's counters were last read (or tried).
	ReadAt time.Time `json:"readAt"`
	// AcceptedNewConnections is what nftpolicy_new_connections_total
	// counts as accepted.
	AcceptedNewConnections uint64 `json:"acceptedNewConnections"`
	// Pods are the drops of each allow-list chain in the table, by pod
	// and direction, since the agent started (or the chain appeared).
	Pods []PodCount `json:"pods"`
	// DenyRules are the drops of each ClusterNetworkPolicy Deny rule's
	// chain, which names the policy and rule.
	DenyRules []DenyRuleCount `json:"denyRules"`
}

// PodCount is what one pod's allow-list dropped in one direction.
type PodCount struct {
	Pod       string `json:"pod"`
	Direction string `json:"direction"`
	Chain     string `json:"chain"`
	Packets   uint64 `json:"packets"`
	Bytes     uint64 `json:"bytes"`
}

// DenyRuleCount is what one Deny rule's chain dropped.
type DenyRuleCount struct {
	Chain     string `json:"chain"`
	Direction string `json:"direction"`
	Packets   uint64 `json:"packets"`
	Bytes     uint64 `json:"bytes"`
}

// Doc reads the kernel and returns the per-pod document.
func (c *Counters) Doc() CountersDoc {
	c.refresh()
	c.mu.Lock()
	defer c.mu.Unlock()
	doc := CountersDoc{Node: c.node, ReadAt: c.readAt, AcceptedNewConnections: c.accepted,
		Pods: []PodCount{}, DenyRules: []DenyRuleCount{}}
	for chain, cc := range c.pods {
		doc.Pods = append(doc.Pods, PodCount{Pod: cc.endpoint.ID, Direction: cc.endpoint.Dir.String(), Chain: chain,
			Packets: cc.count.Packets, Bytes: cc.count.Bytes})
	}
	sort.Slice(doc.Pods, func(i, j int) bool {
		a, b := doc.Pods[i], doc.Pods[j]
		if a.Pod != b.Pod {
			return a.Pod < b.Pod
		}
		return a.Direction < b.Direction
	})
	for chain, cc := range c.denyRules {
		doc.DenyRules = append(doc.DenyRules, DenyRuleCount{Chain: chain, Direction: cc.endpoint.Dir.String(),
			Packets: cc.count.Packets, Bytes: cc.count.Bytes})
	}
	sort.Slice(doc.DenyRules, func(i, j int) bool { return doc.DenyRules[i].Chain < doc.DenyRules[j].Chain })
	return doc
}

// ServeHTTP answers GET with the CountersDoc; nothing else is accepted.
func (c *Counters) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if getOnly(w, req) {
		writeJSON(w, c.Doc())
	}
}

package controllers

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nftpolicy/nftpolicy/nft"
)

// metricsNamespace prefixes every metric name: nftpolicy_<name>.
const metricsNamespace = "nftpolicy"

// Pod categories of the nftpolicy_pods gauge (label "category").
const (
	podsTotal           = "total"            // every pod in the pod store, cluster-wide
	podsLocal           = "local"            // active pods on this node (IP, not hostNetwork, not terminated)
	podsIsolatedIngress = "isolated_ingress" // local pods with an ingress chain
	podsIsolatedEgress  = "isolated_egress"  // local pods with an egress chain
)

// Tiers of the nftpolicy_cluster_network_policies gauge (label "tier"):
// the two of network-policy-api v0.3.0, so at most two series.
const (
	tierAdmin    = "admin"
	tierBaseline = "baseline"
)

// Results of the nftpolicy_cni_announcements_total counter (label "result").
const (
	announceSynced    = "synced"     // the pod's addresses and rules reached the kernel
	announceNotSynced = "not_synced" // the caller (the CNI plugin) stopped waiting first
)

// Metrics are the agent's Prometheus metrics. Create them with NewMetrics.
type Metrics struct {
	syncDuration    prometheus.Histogram
	syncErrors      prometheus.Counter
	compileDuration prometheus.Histogram
	eventToSync     prometheus.Histogram
	lastSuccess     prometheus.Gauge
	policies        prometheus.Gauge
	cnps            *prometheus.GaugeVec
	cnpWatched      prometheus.Gauge
	pods            *prometheus.GaugeVec
	chains          prometheus.Gauge
	rules           prometheus.Gauge
	sets            prometheus.Gauge
	setElements     prometheus.Gauge
	warnings        prometheus.Gauge

	conntrackAvailable prometheus.Gauge
	conntrackDuration  prometheus.Histogram
	conntrackDeleted   prometheus.Counter
	conntrackErrors    prometheus.Counter
	announcements      *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (in the agent
// controller-runtime's metrics.Registry; in tests a fresh registry).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	latency := prometheus.ExponentialBuckets(0.001, 2, 16) // 1ms .. ~33s
	m := &Metrics{
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "sync_duration_seconds",
			Help:    "Time of one Syncer.Sync call (applying the compiled ruleset to the kernel), failed ones included.",
			Buckets: latency,
		}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "sync_errors_total",
			Help: "Failed Syncer.Sync calls. The kernel keeps the previous ruleset; the sync is retried with backoff.",
		}),
		compileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "compile_duration_seconds",
			Help:    "Time to apply the changed objects to the policy state and compile the ruleset (everything is loaded anew on the first reconcile and once per resync period).",
			Buckets: latency,
		}),
		eventToSync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "event_to_sync_seconds",
			Help:    "Time from the first watch event of a batch to the end of the successful sync that includes it.",
			Buckets: latency,
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "last_successful_sync_timestamp_seconds",
			Help: "Unix time of the end of the last successful sync.",
		}),
		policies: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "policies",
			Help: "NetworkPolicies in the cluster, as of the last compile (ClusterNetworkPolicies: cluster_network_policies).",
		}),
		// A gauge of its own rather than a label on nftpolicy_policies:
		// that series stays what it was (benchmarks read it unlabelled).
		cnps: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "cluster_network_policies",
			Help: "ClusterNetworkPolicies in the cluster by tier (admin, baseline), as of the last compile; 0 while their CRD is not served.",
		}, []string{"tier"}),
		cnpWatched: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "cluster_network_policy_crd_watched",
			Help: "1 while the ClusterNetworkPolicy CRD (" + CNPCRDName + ") serves v1beta1 and the agent has listed and watches its objects, else 0 (NetworkPolicies only).",
		}),
		pods: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "pods",
			Help: "Pods as of the last compile: total (cluster-wide), local (active on this node), isolated_ingress and isolated_egress (local pods with a chain for that direction).",
		}, []string{"category"}),
		chains: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "chains",
			Help: "Chains in the last compiled ruleset.",
		}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "rules",
			Help: "Rules in the last compiled ruleset, over all chains.",
		}),
		sets: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "sets",
			Help: "Named sets and verdict maps in the last compiled ruleset.",
		}),
		setElements: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "set_elements",
			Help: "Elements in the last compiled ruleset, over all sets and verdict maps.",
		}),
		warnings: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "policy_warnings",
			Help: "Policy parts that the last compile could not enforce as written.",
		}),
		conntrackAvailable: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "conntrack_netlink_available",
			Help: "1 when the kernel offered conntrack over netlink at start, so that tightened policies can cut established connections (if conntrackCleanup is on), else 0.",
		}),
		conntrackDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "conntrack_cleanup_duration_seconds",
			Help:    "Time of one conntrack cleanup (dump the table, judge each entry by the new ruleset, delete the denied ones), run after each sync that may deny something new.",
			Buckets: latency,
		}),
		conntrackDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "conntrack_entries_deleted_total",
			Help: "Conntrack entries deleted because the ruleset applied just before denies their connection.",
		}),
		conntrackErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "conntrack_cleanup_errors_total",
			Help: "Conntrack cleanups that failed, fully or in part; the next reconcile (within a second) tries again.",
		}),
		announcements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "cni_announcements_total",
			Help: "New pods' addresses announced by the CNI plugin, by result: synced (in the kernel before the plugin returned) or not_synced (the plugin stopped waiting; the pod stays dropped until a sync knows it).",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{
		m.conntrackAvailable, m.conntrackDuration, m.conntrackDeleted, m.conntrackErrors,
		m.syncDuration, m.syncErrors, m.compileDuration, m.eventToSync, m.lastSuccess,
		m.policies, m.cnps, m.cnpWatched, m.pods, m.chains, m.rules, m.sets, m.setElements, m.warnings, m.announcements,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// rulesetStats are counts over one ruleset.
type rulesetStats struct {
	Chains, Rules, Sets, Elements   int
	IsolatedIngress, IsolatedEgress int // distinct pod chains the dispatch maps jump to
}

// statsOf counts r. Isolated pods are counted from the dispatch maps, so a
// dual-stack pod (two elements jumping to one chain) counts once.
func statsOf(r *nft.Ruleset) rulesetStats {
	var st rulesetStats
	if r == nil {
		return st
	}
	st.Chains = len(r.Chains)
	for _, c := range r.Chains {
		st.Rules += len(c.Rules)
	}
	st.Sets = len(r.Sets)
	for _, s := range r.Sets {
		st.Elements += len(s.Elements)
	}
	st.IsolatedIngress = jumpTargets(r, nft.MapIngressV4, nft.MapIngressV6)
	st.IsolatedEgress = jumpTargets(r, nft.MapEgressV4, nft.MapEgressV6)
	return st
}

// jumpTargets counts the distinct chains the named verdict maps jump to.
func jumpTargets(r *nft.Ruleset, maps ...string) int {
	seen := map[string]struct{}{}
	for _, name := range maps {
		s := r.Sets[name]
		if s == nil {
			continue
		}
		for _, e := range s.Elements {
			if e.Verdict.Target() != "" {
				seen[e.Verdict.Chain] = struct{}{}
			}
		}
	}
	return len(seen)
}

package controllers

// IP plan: local pods x/a (10.244.1.10, isolated for ingress) and y/b
// (10.244.1.11, isolated for egress); a ClusterNetworkPolicy Deny rule's
// chain for ingress.

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nftpolicy/nftpolicy/nft"
)

// fakeKernel plays kernel.ReadCounters: the counters of the rules the
// table holds, by chain and handle.
type fakeKernel struct {
	readings []nft.RuleCounter
	err      error
	reads    int
}

func (k *fakeKernel) read() ([]nft.RuleCounter, error) {
	k.reads++
	return k.readings, k.err
}

func TestCounters_MetricsAndDoc(t *testing.T) {
	aIn := nft.NamesFor(nft.Ingress, "x/a").Chain
	bOut := nft.NamesFor(nft.Egress, "y/b").Chain
	deny := nft.DenyChainName(nft.DenyRule{Dir: nft.Ingress, Policy: "no-metadata", Rule: "r0"})
	applied := nft.NewSkeleton()
	applied.AddIsolatedEndpoint(nft.Ingress, "x/a", []netip.Addr{netip.MustParseAddr("10.244.1.10")}, nft.AllowList{})
	applied.AddIsolatedEndpoint(nft.Egress, "y/b", []netip.Addr{netip.MustParseAddr("10.244.1.11")}, nft.AllowList{})

	k := &fakeKernel{}
	now := time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	c, err := NewCounters(CountersOptions{Node: "node-1", Read: k.read, Applied: func() *nft.Ruleset { return applied },
		Registerer: reg, Logger: logr.Discard(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	set := func(forward, a, b, d uint64, aHandle uint64) {
		k.readings = []nft.RuleCounter{
			{Chain: nft.ChainForward, Handle: 20, Packets: forward, Bytes: 60 * forward},
			{Chain: aIn, Handle: aHandle, Packets: a, Bytes: 60 * a},
			{Chain: bOut, Handle: 31, Packets: b, Bytes: 60 * b},
			{Chain: deny, Handle: 40, Packets: d, Bytes: 60 * d},
		}
		now = now.Add(2 * time.Second)
	}
	expect := func(step string, accepted, denied, xIn, yOut, cnpIn int) {
		t.Helper()
		series := func(labels string, n int) string {
			if n == 0 { // a series appears with its first count
				return ""
			}
			return "nftpolicy_denied_packets_total{" + labels + "} " + strconv.Itoa(n) + "\n"
		}
		want := `
# HELP nftpolicy_denied_packets_total Packets dropped by policy on this node, by direction and by the namespace of the pod whose allow-list dropped them ("" for ClusterNetworkPolicy Deny rules, shared by pods of any namespace). Each dropped first packet of a connection attempt, retransmissions included.
# TYPE nftpolicy_denied_packets_total counter
` + series(`direction="egress",namespace="y"`, yOut) + series(`direction="ingress",namespace=""`, cnpIn) +
			series(`direction="ingress",namespace="x"`, xIn) + `# HELP nftpolicy_new_connections_total New connections (first packets) on this node: accepted by the forward hook after every policy on their path, or denied by a policy in any hook.
# TYPE nftpolicy_new_connections_total counter
nftpolicy_new_connections_total{verdict="accepted"} ` + strconv.Itoa(accepted) + `
nftpolicy_new_connections_total{verdict="denied"} ` + strconv.Itoa(denied) + `
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "nftpolicy_denied_packets_total", "nftpolicy_new_connections_total"); err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}

	set(10, 2, 1, 0, 30)
	expect("first read", 10, 3, 2, 1, 0)
	set(15, 5, 1, 4, 30)
	expect("growth", 15, 10, 5, 1, 4)
	// x/a's chain written again by a sync: a new handle, from zero.
	set(16, 1, 1, 4, 33)
	expect("x/a's counter restarted, the total goes on", 16, 11, 6, 1, 4)
	// A failed read keeps the values and is counted.
	now = now.Add(2 * time.Second)
	k.err = errors.New("netlink: EBUSY")
	expect("read error", 16, 11, 6, 1, 4)
	if got := testutil.ToFloat64(c.readErrors); got != 1 {
		t.Errorf("read errors %v, want 1", got)
	}
	k.err = nil
	// Scrapes within a second of a read share it.
	reads := k.reads
	expect("same second", 16, 11, 6, 1, 4)
	if k.reads != reads {
		t.Errorf("%d reads within a second of the last, want none", k.reads-reads)
	}

	rec := httptest.NewRecorder()
	now = now.Add(2 * time.Second)
	c.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, CountersPath, nil))
	var doc CountersDoc
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("status %d, %v: %s", rec.Code, err, rec.Body)
	}
	want := CountersDoc{Node: "node-1", ReadAt: now, AcceptedNewConnections: 16,
		Pods: []PodCount{
			{Pod: "x/a", Direction: "ingress", Chain: aIn, Packets: 6, Bytes: 360},
			{Pod: "y/b", Direction: "egress", Chain: bOut, Packets: 1, Bytes: 60},
		},
		DenyRules: []DenyRuleCount{{Chain: deny, Direction: "ingress", Packets: 4, Bytes: 240}},
	}
	if diff := cmp.Diff(want, doc); diff != "" {
		t.Errorf("%s (-want +got):\n%s", CountersPath, diff)
	}
	if rec := httptest.NewRecorder(); true {
		c.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, CountersPath, nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST: status %d, want 405 (read-only)", rec.Code)
		}
	}

	// y/b's chain leaves the table: it leaves the document; its
	// namespace's series keeps its total (a counter never goes down).
	k.readings = k.readings[:2]
	now = now.Add(2 * time.Second)
	if doc := c.Doc(); len(doc.Pods) != 1 || doc.Pods[0].Pod != "x/a" || len(doc.DenyRules) != 0 {
		t.Errorf("after y/b's chain and the Deny rule left: pods %+v, deny rules %+v", doc.Pods, doc.DenyRules)
	}
	expect("chains gone", 16, 11, 6, 1, 4)
}

// A chain the last applied ruleset does not have yet (a read racing the
// sync that added it) is attributed by its name.
func TestEndpointFromName(t *testing.T) {
	for _, tc := range []struct {
		id  string
		dir nft.Direction
	}{
		{"x/a", nft.Ingress},
		{"kube-system/coredns-5d78c9869d-abcde", nft.Egress},
	} {
		got := endpointFromName(nft.NamesFor(tc.dir, tc.id).Chain)
		if want := (nft.Endpoint{Dir: tc.dir, ID: tc.id}); got != want {
			t.Errorf("endpointFromName(%s) = %+v, want %+v", nft.NamesFor(tc.dir, tc.id).Chain, got, want)
		}
	}
	long := strings.Repeat("n", 50) + "/pod"
	if got := endpointFromName(nft.NamesFor(nft.Ingress, long).Chain); got.ID != "" || got.Dir != nft.Ingress {
		t.Errorf("a namespace cut by the name's limit: %+v, want no pod", got)
	}
}

package policy

// Golden dump of the ruleset compiled for node-1 of the fixture cluster
// (IP plan in fixtures_test.go) under a realistic mix of policies. Run
// `go test ./policy -run TestCompile_Golden -update` after an intended change
// and read the diff: it is exactly what `nft list table inet nftpolicy`
// would show.

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// realisticPolicies: default deny both ways in x, DNS egress, a frontend
// rule with named and ranged ports, an ipBlock with except, dual stack.
var realisticPolicies = []string{
	`
metadata: {namespace: x, name: default-deny}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}`,
	`
metadata: {namespace: x, name: allow-dns}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: [{ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]}]`,
	`
metadata: {namespace: x, name: web}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: blue}}
    - podSelector: {matchLabels: {pod: b}}
    ports: [{port: serve-80-tcp}, {port: 8000, endPort: 8100}]
  - from: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}}, {ipBlock: {cidr: "2001:db8::/64"}}]`,
	`
metadata: {namespace: x, name: b-egress}
spec:
  podSelector: {matchLabels: {pod: b}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}]
    ports: [{port: serve-80-tcp}]`,
	`
metadata: {namespace: y, name: from-x}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}}], ports: [{protocol: SCTP}]}]`,
}

func TestCompile_Golden(t *testing.T) {
	rs, warnings := Compile(withPodCIDRs(fixtureSnapshot(node1, realisticPolicies...)))
	if len(warnings) != 0 {
		t.Errorf("unexpected warnings: %+v", warnings)
	}
	if err := nfttest.Validate(rs); err != nil {
		t.Fatalf("invalid ruleset: %v", err)
	}
	got := rs.Dump()
	path := filepath.Join("testdata", "realistic-node-1.nft")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("dump mismatch (-want +got):\n%s", diff)
	}
}

package policy

// Golden dump of node-1 of the fixture cluster (IP plan in
// compile_cnp_test.go) with all three tiers: Admin policies that deny the
// cloud metadata address to everyone, pass same-team web traffic and deny
// the rest from y; the NetworkPolicy "web" isolating x/a for ingress; a
// Baseline that denies ingress from other namespaces and egress outside
// the cluster to pods no NetworkPolicy isolates. Run
// `go test ./policy -run TestCompile_GoldenTiers -update` after an intended
// change and read the diff.

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

func tiersGoldenSnapshot() *Snapshot {
	return cnpFixtureSnapshot(cnps(
		admin("block-metadata", 0, `subject: {namespaces: {}},
			egress: [{name: metadata, action: Deny, to: [{networks: [169.254.169.254/32, "fd00:ec2::254/128"]}]}]`),
		admin("y-web", 20, `subject: {namespaces: {matchLabels: {ns: x}}},
			ingress: [
			  {name: pass-web, action: Pass, from: [{pods: {namespaceSelector: {matchLabels: {team: blue}}, podSelector: {matchLabels: {pod: b}}}}],
			   protocols: [{tcp: {destinationPort: {range: {start: 8000, end: 8100}}}}, {destinationNamedPort: serve-80-tcp}]},
			  {name: deny-y, action: Deny, from: [{namespaces: {matchLabels: {ns: "y"}}}]}]`),
		baseline("default", 100, `subject: {namespaces: {}},
			ingress: [{name: same-namespace, action: Accept, from: [{namespaces: {matchLabels: {ns: x}}}]},
			          {name: others, action: Deny, from: [{namespaces: {}}]}],
			egress: [{name: cluster, action: Accept, to: [{networks: [10.244.0.0/16, "fd00:10:244::/48"]}, {nodes: {}}]},
			         {name: dns, action: Accept, to: [{networks: [0.0.0.0/0]}], protocols: [{udp: {destinationPort: {number: 53}}}]},
			         {name: outside, action: Deny, to: [{networks: [0.0.0.0/0, "::/0"]}]}]`),
	), realisticPolicies[2])
}

func TestCompile_GoldenTiers(t *testing.T) {
	rs, warnings := Compile(tiersGoldenSnapshot())
	if len(warnings) != 0 {
		t.Errorf("unexpected warnings: %+v", warnings)
	}
	if err := nfttest.Validate(rs); err != nil {
		t.Fatalf("invalid ruleset: %v", err)
	}
	got := rs.Dump()
	path := filepath.Join("testdata", "tiers-node-1.nft")
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

package main

import (
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConformanceSummary(t *testing.T) {
	// A ginkgo v2 JSON report cut down to the fields the summary reads:
	// a suite node, a passed, a failed, a skipped-on-purpose and an
	// unfocused spec, and one outside the focus.
	report := `[{"SpecReports": [
	 {"LeafNodeType": "SynchronizedBeforeSuite", "State": "passed"},
	 {"LeafNodeType": "It", "ContainerHierarchyTexts": ["[sig-network] Netpol", "NetworkPolicy between server and client"],
	  "LeafNodeText": "should support allow-all policy", "State": "passed", "RunTime": 21000000000},
	 {"LeafNodeType": "It", "ContainerHierarchyTexts": ["[sig-network] Netpol", "NetworkPolicy between server and client"],
	  "LeafNodeText": "should support a 'default-deny-ingress' policy", "State": "failed", "RunTime": 90000000000,
	  "Failure": {"Message": "Had 4 wrong results in reachability matrix\nexpected ..."}},
	 {"LeafNodeType": "It", "ContainerHierarchyTexts": ["[sig-network] Netpol [Feature:SCTPConnectivity]"],
	  "LeafNodeText": "should enforce policy based on Ports", "State": "skipped"},
	 {"LeafNodeType": "It", "ContainerHierarchyTexts": ["[sig-network] Netpol API"],
	  "LeafNodeText": "should support creating NetworkPolicy API operations", "State": "skipped"},
	 {"LeafNodeType": "It", "ContainerHierarchyTexts": ["[sig-storage] CSI"], "LeafNodeText": "mounts", "State": "skipped"}
	]}]`
	var out strings.Builder
	sum, err := conformanceSummary(strings.NewReader(report), `\[sig-network\] Netpol`, "SCTPConnectivity", &out)
	if err != nil {
		t.Fatal(err)
	}
	wantLines := `PASSED   [sig-network] Netpol NetworkPolicy between server and client should support allow-all policy (21s)
NOT-RUN  [sig-network] Netpol API should support creating NetworkPolicy API operations
FAILED   [sig-network] Netpol NetworkPolicy between server and client should support a 'default-deny-ingress' policy (90s): Had 4 wrong results in reachability matrix
SKIPPED  [sig-network] Netpol [Feature:SCTPConnectivity] should enforce policy based on Ports
`
	if diff := cmp.Diff(sortLines(wantLines), sortLines(out.String())); diff != "" {
		t.Errorf("spec lines (-want +got):\n%s", diff)
	}
	wantSum := `1 passed / 1 failed / 1 skipped (SCTPConnectivity) of 4 specs matching "\\[sig-network\\] Netpol"; 1 not run (another focus)`
	if sum != wantSum {
		t.Errorf("summary\n got %s\nwant %s", sum, wantSum)
	}
}

func sortLines(s string) []string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines)
	return lines
}

func TestConformanceSummary_BadReport(t *testing.T) {
	if _, err := conformanceSummary(strings.NewReader("not json"), "x", "", &strings.Builder{}); err == nil {
		t.Fatal("a report that is not ginkgo JSON was accepted")
	}
}

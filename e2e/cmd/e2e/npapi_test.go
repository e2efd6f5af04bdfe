package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// events builds test2json lines as `go tool test2json -t` writes them for
// a binary run with -test.v=test2json: each step is "action test [output]",
// one second after the previous one, and no end event has Elapsed.
func events(steps ...string) string {
	var b strings.Builder
	for i, s := range steps {
		f := strings.SplitN(s, " ", 3)
		out := ""
		if len(f) == 3 {
			out = f[2] + "\n"
		}
		test := f[1]
		if test == "-" {
			test = ""
		}
		fmt.Fprintf(&b, `{"Time":"2026-12-02T03:00:%02dZ","Action":%q,"Test":%q,"Output":%q}`+"\n",
			i, f[0], test, out)
	}
	return b.String()
}

const top = "TestConformanceProfiles"

func TestNPAPISummary(t *testing.T) {
	tcpFailed := []string{
		"run " + top + "/CNPAdminTierIngressTCP",
		"run " + top + "/CNPAdminTierIngressTCP/deny",
		"output " + top + "/CNPAdminTierIngressTCP/deny     helper.go:96: FAILED Command was [/agnhost connect --timeout=3s --protocol=tcp 10.244.2.7:80]",
		"output " + top + "/CNPAdminTierIngressTCP/deny     helper.go:97: Expected connection to fail from x/a-0 to 10.244.2.7, but instead it successfully connected.",
		"output " + top + "/CNPAdminTierIngressTCP/deny     helper.go:76: ",
		"output " + top + "/CNPAdminTierIngressTCP/deny         \tError Trace:\thelper.go:76",
		"fail " + top + "/CNPAdminTierIngressTCP/deny",
		"output " + top + "/CNPAdminTierIngressTCP --- FAIL: " + top + "/CNPAdminTierIngressTCP (12.25s)",
		"fail " + top + "/CNPAdminTierIngressTCP",
	}
	sctpOnly := []string{
		"run " + top + "/CNPAdminTierGress",
		"run " + top + "/CNPAdminTierGress/allow",
		// An attempt that failed before the probe converged: not a failure.
		"output " + top + "/CNPAdminTierGress/allow     helper.go:96: FAILED Command was [/agnhost connect --timeout=3s --protocol=udp 10.244.1.5:53]",
		"pass " + top + "/CNPAdminTierGress/allow",
		"run " + top + "/CNPAdminTierGress/deny",
		"output " + top + "/CNPAdminTierGress/deny === RUN   " + top + "/CNPAdminTierGress/deny",
		"output " + top + "/CNPAdminTierGress/deny     helper.go:96: FAILED Command was [/agnhost connect --timeout=3s --protocol=sctp 10.244.1.5:9003]",
		"output " + top + "/CNPAdminTierGress/deny     helper.go:97: Expected connection to be dropped from x/a-0 to 10.244.1.5, but instead it returned a different status: OTHER: protocol not supported",
		"output " + top + "/CNPAdminTierGress/deny         \tError Trace:\thelper.go:76",
		"fail " + top + "/CNPAdminTierGress/deny",
		"output " + top + "/CNPAdminTierGress --- FAIL: " + top + "/CNPAdminTierGress (95.0s)",
		"fail " + top + "/CNPAdminTierGress",
	}
	probeNeverEnded := []string{
		"run " + top + "/CNPAdminTierGress",
		"run " + top + "/CNPAdminTierGress/deny-ports",
		"output " + top + "/CNPAdminTierGress/deny-ports === RUN   " + top + "/CNPAdminTierGress/deny-ports",
		"output " + top + "/CNPAdminTierGress/deny-ports         \tError Trace:\thelper.go:70",
		"output " + top + "/CNPAdminTierGress/deny-ports         \tError:      \tCondition never satisfied",
		"fail " + top + "/CNPAdminTierGress/deny-ports",
		"output " + top + "/CNPAdminTierGress --- FAIL: " + top + "/CNPAdminTierGress (10.0s)",
		"fail " + top + "/CNPAdminTierGress",
	}
	passed := []string{
		"run " + top + "/CNPAdminTierPriorityField",
		// Its duration from go test's line: test2json's end event has no
		// Elapsed for a binary run with -test.v=test2json.
		"output " + top + "/CNPAdminTierPriorityField --- PASS: " + top + "/CNPAdminTierPriorityField (41.5s)",
		// A subtest's line is not the test's.
		"output " + top + "/CNPAdminTierPriorityField/x --- PASS: " + top + "/CNPAdminTierPriorityField/x (3.0s)",
		"pass " + top + "/CNPAdminTierPriorityField",
	}
	skippedOnPurpose := []string{
		"run " + top + "/CNPAdminTierEgressSCTP",
		"output " + top + "/CNPAdminTierEgressSCTP     suite.go:194: Skipping CNPAdminTierEgressSCTP",
		"pass " + top + "/CNPAdminTierEgressSCTP",
	}
	notSupported := []string{
		"run " + top + "/CNPAdminTierEgressNodePeers",
		"skip " + top + "/CNPAdminTierEgressNodePeers",
	}
	cat := func(parts ...[]string) []string {
		all := []string{"start -", "run " + top}
		for _, p := range parts {
			all = append(all, p...)
		}
		return all
	}
	for _, tc := range []struct {
		name      string
		steps     []string
		wantLines string
		wantSum   string
		wantOK    bool
	}{{
		name:  "passed, skipped on purpose, failed only at SCTP probes",
		steps: append(cat(passed, skippedOnPurpose, sctpOnly), "pass "+top),
		wantLines: `PASS          CNPAdminTierPriorityField (42s)
SKIPPED       CNPAdminTierEgressSCTP not runnable here: no SCTP
FAIL          CNPAdminTierGress (95s) only at SCTP probes: no SCTP; each failed subtest stopped there
    - sctp 10.244.1.5:9003: Expected connection to be dropped from x/a-0 to 10.244.1.5, but instead it returned a different status: OTHER: protocol not supported
`,
		wantSum: "1 passed / 1 failed (1 of them only at SCTP probes) / 1 skipped (not runnable here) of 3 tests; setup (base pods Ready) 2s, whole run 21s",
		wantOK:  true,
	}, {
		name:  "a TCP probe failed",
		steps: append(cat(tcpFailed, passed), "fail "+top),
		wantLines: `FAIL          CNPAdminTierIngressTCP (12s)
    - tcp 10.244.2.7:80: Expected connection to fail from x/a-0 to 10.244.2.7, but instead it successfully connected.
PASS          CNPAdminTierPriorityField (42s)
`,
		wantSum: "1 passed / 1 failed / 0 skipped (not runnable here) of 2 tests; setup (base pods Ready) 2s, whole run 15s",
	}, {
		name:  "a probe that never ended is no SCTP failure",
		steps: append(cat(probeNeverEnded), "fail "+top),
		wantLines: `FAIL          CNPAdminTierGress (10s)
    - a probe none of whose attempts ended within the suite's poke timeout (no attempt logged; see the events)
`,
		wantSum: "0 passed / 1 failed / 0 skipped (not runnable here) of 1 tests; setup (base pods Ready) 2s, whole run 10s",
	}, {
		name:  "a feature the run does not claim, and a run cut short",
		steps: cat(notSupported, []string{"run " + top + "/CNPAdminTierIngressUDP"}),
		wantLines: `NOT-SUPPORTED CNPAdminTierEgressNodePeers a feature the run does not claim
NOT-ENDED     CNPAdminTierIngressUDP the run stopped during this test
`,
		wantSum: "0 passed / 0 failed / 0 skipped (not runnable here) / 1 not supported / 1 not ended of 2 tests; setup (base pods Ready) 2s",
	}, {
		name:      "setup failed before any test",
		steps:     []string{"start -", "run " + top, "fail " + top},
		wantLines: "",
		wantSum:   "no conformance test ran (see the events for the setup's failure)",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			got, err := npapiSummary(strings.NewReader(events(tc.steps...)), []string{"CNPAdminTierEgressSCTP"}, "no SCTP", &out)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantLines, out.String()); diff != "" {
				t.Errorf("test lines (-want +got):\n%s", diff)
			}
			if got.line != tc.wantSum {
				t.Errorf("summary:\n got %s\nwant %s", got.line, tc.wantSum)
			}
			if got.ok != tc.wantOK {
				t.Errorf("ok = %t, want %t", got.ok, tc.wantOK)
			}
		})
	}
}

package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// testEvent is one line of `go tool test2json` output.
type testEvent struct {
	Time    time.Time
	Action  string
	Test    string
	Output  string
	Elapsed float64
}

// npapiTest is what the summary knows of one conformance test (a
// subtest of the driver's top-level test).
type npapiTest struct {
	name     string
	action   string // pass, fail, skip, or "" when it never ended
	elapsed  float64
	output   []string // its own and its subtests' output lines, in order
	failures []probeFailure
}

// probeFailure is one failed assertion of a test: the probe the suite
// logged last before it, if any.
type probeFailure struct {
	protocol string // tcp, udp, sctp; "" when no probe was logged
	target   string
	detail   string // the suite's "Expected ..." line
}

var (
	// The suite logs `FAILED Command was [/agnhost connect --timeout=3s --protocol=tcp 10.244.1.5:80]`
	// for every probe attempt that did not give the expected result.
	probeCommandRE = regexp.MustCompile(`FAILED Command was \[/agnhost connect .*--protocol=(\w+) (\S+?)\]`)
	// go test's line at the end of a test: "--- PASS: TestX/Y (10.78s)".
	testEndRE = regexp.MustCompile(`^\s*--- (?:PASS|FAIL|SKIP): (\S+) \(([0-9.]+)s\)`)
	// ... followed by the expectation it missed.
	probeExpectRE = regexp.MustCompile(`(Expected connection .*)$`)
)

// npapiReportCmd prints one line per test of a network-policy-api
// conformance run (test2json events of e2e/tools/npapi), the reason of
// each failure, the summary, and the suite's own report YAML.
func npapiReportCmd(e *env, args []string) int {
	fs := flag.NewFlagSet(e.cmd, flag.ContinueOnError)
	skipped := fs.String("skipped", "", "comma-separated tests the run skipped on purpose (its -skip-tests)")
	reason := fs.String("skip-reason", "no SCTP sockets in this kernel", "why they are not runnable here")
	f, code := openReportArgs(e, fs, args, 2, "e2e npapi-report [--skipped A,B] [--skip-reason TEXT] EVENTS.json [REPORT.yaml]")
	if f == nil {
		return code
	}
	defer f.Close()
	var skip []string
	if *skipped != "" {
		skip = strings.Split(*skipped, ",")
	}
	sum, err := npapiSummary(f, skip, *reason, os.Stdout)
	if err != nil {
		return e.fail(err)
	}
	fmt.Println(sum.line)
	if fs.NArg() == 2 {
		report, err := os.ReadFile(fs.Arg(1))
		if err != nil {
			fmt.Printf("no conformance report: %v\n", err)
			return 1
		}
		fmt.Printf("--- conformance report (%s) ---\n%s", fs.Arg(1), report)
	}
	if !sum.ok {
		return 1
	}
	return 0
}

// npapiResult is the summary line, and whether every test passed, was
// skipped on purpose, or failed only at SCTP probes.
type npapiResult struct {
	line string
	ok   bool
}

// npapiSummary reads test2json events, writes one line per conformance
// test (and the failed assertions of failed ones) to w, and returns the
// summary.
func npapiSummary(r io.Reader, skipped []string, reason string, w io.Writer) (npapiResult, error) {
	var (
		top       string
		start     time.Time
		firstTest time.Time
		topEnd    testEvent
		tests     = map[string]*npapiTest{}
		order     []string
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue // anything the binary printed outside test2json's framing
		}
		var ev testEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return npapiResult{}, fmt.Errorf("test2json event %q: %w", line, err)
		}
		if start.IsZero() && !ev.Time.IsZero() {
			start = ev.Time
		}
		if ev.Test == "" {
			continue
		}
		parts := strings.SplitN(ev.Test, "/", 3)
		if top == "" {
			top = parts[0]
		}
		if len(parts) == 1 {
			if ev.Action == "pass" || ev.Action == "fail" {
				topEnd = ev
			}
			continue
		}
		name := parts[1]
		t, ok := tests[name]
		if !ok {
			t = &npapiTest{name: name}
			tests[name] = t
			order = append(order, name)
			if firstTest.IsZero() {
				firstTest = ev.Time
			}
		}
		switch {
		case ev.Action == "output":
			t.output = append(t.output, strings.TrimRight(ev.Output, "\n"))
			// test2json leaves Elapsed out of the end events of a binary
			// run with -test.v=test2json; go test's own line has it.
			if m := testEndRE.FindStringSubmatch(ev.Output); m != nil && m[1] == parts[0]+"/"+name {
				t.elapsed, _ = strconv.ParseFloat(m[2], 64)
			}
		case len(parts) == 2 && (ev.Action == "pass" || ev.Action == "fail" || ev.Action == "skip"):
			t.action = ev.Action
			if ev.Elapsed > 0 {
				t.elapsed = ev.Elapsed
			}
		}
	}
	if err := sc.Err(); err != nil {
		return npapiResult{}, err
	}
	if len(order) == 0 {
		return npapiResult{line: "no conformance test ran (see the events for the setup's failure)"}, nil
	}

	skip := map[string]bool{}
	for _, s := range skipped {
		skip[s] = true
	}
	counts := map[string]int{}
	sctpOnly := 0
	for _, name := range order {
		t := tests[name]
		t.failures = probeFailures(t.output)
		state, note := strings.ToUpper(t.action), fmt.Sprintf("(%.0fs)", t.elapsed)
		switch {
		case skip[name] && t.action == "pass":
			// The suite returns from a test it is told to skip, so go
			// test calls it passed; its report lists it as skipped.
			state, note = "SKIPPED", "not runnable here: "+reason
		case t.action == "skip":
			state, note = "NOT-SUPPORTED", "a feature the run does not claim"
		case t.action == "":
			state, note = "NOT-ENDED", "the run stopped during this test"
		case t.action == "fail" && onlySCTP(t.failures):
			sctpOnly++
			note += " only at SCTP probes: " + reason + "; each failed subtest stopped there"
		}
		counts[state]++
		fmt.Fprintf(w, "%-13s %s %s\n", state, name, note)
		if t.action == "fail" {
			for _, f := range t.failures {
				if f.protocol == "" {
					fmt.Fprintf(w, "    - %s\n", f.detail)
					continue
				}
				fmt.Fprintf(w, "    - %s %s: %s\n", f.protocol, f.target, f.detail)
			}
		}
	}
	sum := fmt.Sprintf("%d passed / %d failed", counts["PASS"], counts["FAIL"])
	if sctpOnly > 0 {
		sum += fmt.Sprintf(" (%d of them only at SCTP probes)", sctpOnly)
	}
	sum += fmt.Sprintf(" / %d skipped (not runnable here)", counts["SKIPPED"])
	if n := counts["NOT-SUPPORTED"]; n > 0 {
		sum += fmt.Sprintf(" / %d not supported", n)
	}
	if n := counts["NOT-ENDED"]; n > 0 {
		sum += fmt.Sprintf(" / %d not ended", n)
	}
	sum += fmt.Sprintf(" of %d tests", len(order))
	if !firstTest.IsZero() {
		sum += fmt.Sprintf("; setup (base pods Ready) %.0fs", firstTest.Sub(start).Seconds())
	}
	if !topEnd.Time.IsZero() {
		sum += fmt.Sprintf(", whole run %.0fs", topEnd.Time.Sub(start).Seconds())
	}
	ok := counts["FAIL"] == sctpOnly && counts["NOT-ENDED"] == 0 && counts["NOT-SUPPORTED"] == 0
	return npapiResult{line: sum, ok: ok}, nil
}

// probeFailures pairs each failed assertion (testify's "Error Trace:"
// block) with the last probe the suite logged as failed before it: a
// PokeServer that never saw the expected result logs its last attempt and
// then fails.
func probeFailures(output []string) []probeFailure {
	var out []probeFailure
	var last probeFailure
	for _, l := range output {
		if strings.HasPrefix(strings.TrimSpace(l), "=== RUN") {
			last = probeFailure{} // a new subtest: earlier attempts are not its failures
			continue
		}
		if m := probeCommandRE.FindStringSubmatch(l); m != nil {
			last = probeFailure{protocol: m[1], target: m[2]}
			continue
		}
		if m := probeExpectRE.FindStringSubmatch(l); m != nil && last.protocol != "" {
			last.detail = strings.TrimSpace(m[1])
			continue
		}
		if strings.Contains(l, "Error Trace:") {
			if last.protocol == "" {
				last.detail = "an assertion failed without a failed probe before it (see the events)"
			}
			out = append(out, last)
			last = probeFailure{}
			continue
		}
		// A PokeServer none of whose attempts ended within the poke
		// timeout fails with no probe logged: say so rather than guess.
		if n := len(out); n > 0 && out[n-1].protocol == "" && strings.Contains(l, "Condition never satisfied") {
			out[n-1].detail = "a probe none of whose attempts ended within the suite's poke timeout (no attempt logged; see the events)"
		}
	}
	return out
}

// onlySCTP reports whether every failed assertion was an SCTP probe.
func onlySCTP(fs []probeFailure) bool {
	if len(fs) == 0 {
		return false
	}
	for _, f := range fs {
		if f.protocol != "sctp" {
			return false
		}
	}
	return true
}

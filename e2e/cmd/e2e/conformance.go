package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// ginkgoSpec is the part of a ginkgo v2 JSON report's spec that the
// summary reads.
type ginkgoSpec struct {
	ContainerHierarchyTexts []string
	LeafNodeType            string
	LeafNodeText            string
	State                   string
	RunTime                 time.Duration
	Failure                 struct{ Message string }
}

// openReportArgs parses a report command's flags and opens the file its
// first argument names; it takes 1 to maxArgs arguments. On failure it
// returns nil and the command's exit code (2 after printing usage).
func openReportArgs(e *env, fs *flag.FlagSet, args []string, maxArgs int, usage string) (*os.File, int) {
	if err := fs.Parse(args); err != nil || fs.NArg() < 1 || fs.NArg() > maxArgs {
		fmt.Fprintln(os.Stderr, "usage: "+usage)
		return nil, 2
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return nil, e.fail(err)
	}
	return f, 0
}

// conformanceReportCmd prints one line per spec of a ginkgo JSON report
// whose full text matches --focus (and not --skip), then the suite's
// summary: N passed / failed / skipped.
func conformanceReportCmd(e *env, args []string) int {
	fs := flag.NewFlagSet(e.cmd, flag.ContinueOnError)
	focus := fs.String("focus", `\[sig-network\] Netpol`, "regexp: the specs the run selected")
	skip := fs.String("skip", "SCTPConnectivity", "regexp: the specs the run skipped on purpose (listed as such)")
	f, code := openReportArgs(e, fs, args, 1, "e2e conformance-report [--focus RE] [--skip RE] REPORT.json")
	if f == nil {
		return code
	}
	defer f.Close()
	sum, err := conformanceSummary(f, *focus, *skip, os.Stdout)
	if err != nil {
		return e.fail(err)
	}
	fmt.Println(sum)
	return 0
}

// conformanceSummary writes the spec lines to w and returns the summary.
func conformanceSummary(r io.Reader, focus, skip string, w io.Writer) (string, error) {
	focusRE, err := regexp.Compile(focus)
	if err != nil {
		return "", fmt.Errorf("--focus: %w", err)
	}
	skipRE, err := regexp.Compile(skip)
	if err != nil {
		return "", fmt.Errorf("--skip: %w", err)
	}
	var suites []struct{ SpecReports []ginkgoSpec }
	if err := json.NewDecoder(r).Decode(&suites); err != nil {
		return "", fmt.Errorf("ginkgo JSON report: %w", err)
	}
	type line struct{ state, text string }
	var lines []line
	counts := map[string]int{}
	for _, s := range suites {
		for _, sp := range s.SpecReports {
			if sp.LeafNodeType != "It" {
				continue
			}
			text := strings.Join(append(append([]string{}, sp.ContainerHierarchyTexts...), sp.LeafNodeText), " ")
			if !focusRE.MatchString(text) {
				continue
			}
			state := sp.State
			if skip != "" && skipRE.MatchString(text) {
				state = "skipped-on-purpose"
			} else if sp.State == "passed" || sp.State == "failed" {
				text += fmt.Sprintf(" (%.0fs)", sp.RunTime.Seconds())
			}
			if sp.State == "failed" || sp.State == "timedout" || sp.State == "panicked" {
				msg := strings.SplitN(strings.TrimSpace(sp.Failure.Message), "\n", 2)[0]
				text += ": " + msg
				state = "failed"
			}
			counts[state]++
			lines = append(lines, line{state, text})
		}
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].text < lines[j].text })
	word := map[string]string{"skipped-on-purpose": "SKIPPED", "skipped": "NOT-RUN"}
	for _, l := range lines {
		wd, ok := word[l.state]
		if !ok {
			wd = strings.ToUpper(l.state)
		}
		fmt.Fprintf(w, "%-8s %s\n", wd, l.text)
	}
	sum := fmt.Sprintf("%d passed / %d failed / %d skipped (%s) of %d specs matching %q",
		counts["passed"], counts["failed"], counts["skipped-on-purpose"], skip, len(lines), focus)
	if n := counts["skipped"]; n > 0 {
		sum += fmt.Sprintf("; %d not run (another focus)", n)
	}
	return sum, nil
}

//go:build linux

package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nftpolicy/nftpolicy/bench/controlplane"
	"github.com/nftpolicy/nftpolicy/bench/results"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

// EventCPURun is results.json's `event_cpu`.
type EventCPURun struct {
	Started time.Time                    `json:"started"`
	Seconds float64                      `json:"seconds"`
	Machine Machine                      `json:"machine"`
	Shapes  []controlplane.EventCPUShape `json:"shapes"`
}

// runEvents is `nftbench events`: the agent's CPU seconds per 1,000 pod
// events and per 1,000 policy events, one reconcile each (issue 13,
// goal 6), at each shape; it writes the key event_cpu.
func runEvents(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nftbench events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", results.DefaultPath, "results file (only event_cpu is replaced)")
	podsFlag := fs.String("pods", "150000", "cluster sizes")
	events := fs.Int("events", 1000, "events of each kind per shape")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	pods, err := parseInts(*podsFlag)
	if err != nil || len(pods) == 0 || *events < 2 {
		fmt.Fprintf(stderr, "-pods %q, -events %d: %v\n", *podsFlag, *events, err)
		return 2
	}
	run := EventCPURun{Started: time.Now().UTC(), Machine: machine()}
	for _, n := range pods {
		shape := synth.Scaled(n)
		fmt.Fprintf(stderr, "event CPU at %s: %d events of each kind\n", shape, *events)
		s, err := controlplane.MeasureEventCPU(shape, *events)
		if err != nil {
			fmt.Fprintf(stderr, "nftbench events: %s: %v\n", shape, err)
			return 1
		}
		run.Shapes = append(run.Shapes, s)
	}
	run.Machine.LoadAverageEnd = results.LoadAverage()
	run.Seconds = time.Since(run.Started).Seconds()
	printEvents(stdout, &run)
	if err := results.WriteKeys(*out, map[string]any{"event_cpu": run}); err != nil {
		fmt.Fprintf(stderr, "nftbench events: %v\n", err)
		return 1
	}
	return 0
}

func printEvents(w io.Writer, r *EventCPURun) {
	fmt.Fprintf(w, "\nAgent CPU per event (one reconcile per event, back to back; load average %s at the start, %s at the end on %d CPUs)\n",
		r.Machine.LoadAverageStart, r.Machine.LoadAverageEnd, r.Machine.CPUs)
	fmt.Fprintf(w, "%8s %9s %-7s %7s %8s %8s %14s %14s %16s %8s\n", "pods", "policies", "kind", "events", "cpu s", "wall s", "cpu s/1000 ev", "cores unpaced", "ev/s at 0.5 core", "ops/ev")
	for _, s := range r.Shapes {
		for _, k := range s.Kinds {
			fmt.Fprintf(w, "%8d %9d %-7s %7d %8.2f %8.2f %14.2f %14.2f %16.0f %8.1f\n", s.Pods, s.Policies, k.Kind, k.Events,
				k.CPUSeconds, k.WallSeconds, k.CPUSecondsPer1000, k.CoresUnpaced, k.EventsPerSecondAtHalfCore, k.OpsPerEvent)
		}
	}
}

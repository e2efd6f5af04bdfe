//go:build linux

// Command pktbench measures the kernel-level datapath figure of issue 13
// (goal 4): packets per second through one forward hop in network
// namespaces it creates, with the compiled table at several allow-list
// sizes against no table, interleaved in one run (bench/pktpath). It
// prints a table and writes the key `datapath_kernel` of
// bench/results.json, leaving the other keys alone. Needs root.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nftpolicy/nftpolicy/bench/pktpath"
	"github.com/nftpolicy/nftpolicy/bench/results"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pktbench:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pktbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", results.DefaultPath, "results file (only datapath_kernel is replaced)")
	elements := fs.String("elements", "0,1000,10000,100000", "allow-list sizes besides the no-table baseline (0: the table without a policy; 1000000 is left out of the default: here it never committed within -sync-timeout, which make bench would wait out for nothing)")
	rounds := fs.Int("rounds", 20, "rounds; each measures every configuration once, interleaved")
	runFor := fs.Duration("run", 200*time.Millisecond, "length of one measurement (at most 2s)")
	maxPackets := fs.Int("max-packets", 2_000_000, "packets at most per measurement")
	resamples := fs.Int("resamples", 5000, "bootstrap resamples for the 95% intervals")
	syncTimeout := fs.Duration("sync-timeout", 2*time.Minute, "bound on loading one table; a larger one is reported as not committed and left out")
	timeout := fs.Duration("timeout", 20*time.Minute, "the whole run is cut off after this")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *runFor > 2*time.Second {
		return fmt.Errorf("-run %s: at most 2s", *runFor)
	}
	sizes, err := parseSizes(*elements)
	if err != nil {
		return fmt.Errorf("-elements: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := pktpath.Run(ctx, pktpath.Options{Elements: sizes, Rounds: *rounds, Run: *runFor, MaxPackets: *maxPackets,
		SyncTimeout: *syncTimeout, Resamples: *resamples, Seed: 13, Log: stderr})
	if err != nil {
		return err
	}
	Print(stdout, res)
	return results.WriteKeys(*out, map[string]any{"datapath_kernel": res})
}

// parseSizes reads a comma-separated list of allow-list sizes (0 or more).
func parseSizes(list string) ([]int, error) {
	var out []int
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, err
		}
		if n < 0 || n > 4_000_000 {
			return nil, fmt.Errorf("%d: want 0 to 4,000,000", n)
		}
		out = append(out, n)
	}
	return out, nil
}

// Print writes the figure as a table.
func Print(w io.Writer, r *pktpath.Result) {
	fmt.Fprintf(w, "\nKernel datapath — one forward hop, %s (%s); %d interleaved rounds of %.2fs, UDP %d-byte payloads in batches of %d\n",
		r.Machine, r.Conntrack, r.Rounds, r.RunSeconds, r.PayloadBytes, r.BatchPackets)
	fmt.Fprintf(w, "load average %s at the start, %s at the end; ratio = pps ÷ no-table pps of the same round, median [95%% bootstrap interval]\n",
		r.LoadStart, r.LoadEnd)
	fmt.Fprintf(w, "%-26s %10s %10s %9s %9s | %10s %22s | %24s\n", "config", "elements", "allow-list", "sync s", "outsider", "pps", "x no table", "extra ns/packet")
	for _, c := range r.Configs {
		outsider := "passes"
		if c.OutsiderBlocked {
			outsider = "blocked"
		}
		elems := "-"
		if c.Table {
			elems = strconv.Itoa(c.SetElements)
		}
		if c.SetupError != "" {
			fmt.Fprintf(w, "%-26s %10d %10s %9s %9s | not measured: %s\n", c.Name, c.SetElements, "-", "-", "-", c.SetupError)
			continue
		}
		fmt.Fprintf(w, "%-26s %10s %10d %9.2f %9s | %10.0f %6.3f [%6.3f, %6.3f] | %6.0f [%6.0f, %6.0f]\n",
			c.Name, elems, c.AllowListElements, c.SyncSeconds, outsider, c.PPSMedian,
			c.RatioVsNoTable.Median, c.RatioVsNoTable.Low, c.RatioVsNoTable.High,
			c.ExtraNsPerPacket.Median, c.ExtraNsPerPacket.Low, c.ExtraNsPerPacket.High)
	}
}

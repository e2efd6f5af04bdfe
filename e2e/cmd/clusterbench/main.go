// Command clusterbench measures figures 1 (datapath) and 2 (programming
// latency) of issue 5 on the local e2e cluster (`make up AGENT=none`): it
// creates its own pods through the harness's kubelet, starts the nftpolicy
// agent itself on every node (so the no-agent baseline is taken in the same
// run), and writes the keys `datapath` and `programming_latency` (one entry
// per count of background policies) of bench/results.json, leaving the other
// keys alone.
//
// Subcommands serve, load, probe and fetch are the in-namespace halves; they
// are started by `run` through `ip netns exec`.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: clusterbench run|serve|load|probe|fetch [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runMain(os.Args[2:])
	case "serve":
		err = serveMain(os.Args[2:])
	case "load":
		err = loadMain(os.Args[2:])
	case "probe":
		err = probeMain(os.Args[2:])
	case "fetch":
		err = fetchMain(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterbench:", err)
		os.Exit(1)
	}
}

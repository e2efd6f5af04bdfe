// Command e2e-podserver is the podserver alone (package podserver: the
// scenario's servers and the runner's probes, driven over a unix control
// socket), built static so that it can be packed into the image the
// scenario runner's pods run on real kubelets (make e2e E2E_KUBELET=1).
// In harness mode the same code runs as `e2e podserver`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/nftpolicy/nftpolicy/e2e/internal/podserver"
)

func main() {
	name := flag.String("name", "", "the pod's namespace/name: what its servers answer")
	ctl := flag.String("ctl", "", "path of the control socket")
	flag.Parse()
	if *name == "" || *ctl == "" {
		fmt.Fprintln(os.Stderr, "usage: e2e-podserver --name NS/NAME --ctl SOCKET")
		os.Exit(2)
	}
	// Run returns only on failure.
	fmt.Fprintf(os.Stderr, "e2e-podserver: %v\n", podserver.Run(*name, *ctl))
	os.Exit(1)
}

package pktpath

import (
	"fmt"
	"os"
	"runtime"
	"strings"
)

// machineLine describes the machine in one line, as the cluster
// figures do: CPUs, kernel, Go.
func machineLine() string {
	kernelRelease := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernelRelease = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d CPUs, kernel %s, %s", runtime.NumCPU(), kernelRelease, runtime.Version())
}

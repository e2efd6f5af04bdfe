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

// loadAverage is /proc/loadavg's 1, 5 and 15 minute averages: above the
// CPU count, other work shared the machine during the run.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

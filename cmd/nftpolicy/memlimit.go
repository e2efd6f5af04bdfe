package main

import (
	"strconv"
	"strings"
)

// The agent's memory grows with the cluster (every pod is cached), and a
// full compile briefly needs up to twice the live heap with the default
// GOGC. Killed for memory, a restarted agent would load everything again
// and likely be killed again; close to its limit it is better off
// collecting garbage more often. So, unless GOMEMLIMIT is set, the Go
// runtime's soft memory limit is set to memoryLimitShare of the
// container's memory limit. Below that it changes nothing (at 150,000
// pods the agent peaks near 322 MiB, under 90% of the DaemonSet's 512 MiB,
// and runs as many GC cycles as without a limit; README, Performance);
// near it, GC costs CPU instead (capped by the runtime at about half of
// the agent's CPU).
const memoryLimitShare = 0.9

// Where the container's memory limit is: cgroup v2 (with its own cgroup
// namespace, the default with v2) and cgroup v1.
var cgroupMemoryLimitFiles = []string{
	"/sys/fs/cgroup/memory.max",
	"/sys/fs/cgroup/memory/memory.limit_in_bytes",
}

// unlimitedCgroupMemory: cgroup v1 reports "no limit" as a number near
// 2^63; anything this large is no limit.
const unlimitedCgroupMemory = int64(1) << 60

// goMemoryLimit returns the soft memory limit to set (0: none) and the
// container limit it comes from: nothing when GOMEMLIMIT is set (the
// runtime applied it already) or when no cgroup limit can be read.
func goMemoryLimit(getenv func(string) string, readFile func(string) ([]byte, error)) (limit, containerLimit int64) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, 0
	}
	for _, path := range cgroupMemoryLimitFiles {
		data, err := readFile(path)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if err != nil || n <= 0 || n >= unlimitedCgroupMemory { // "max" or no limit
			return 0, 0
		}
		return int64(float64(n) * memoryLimitShare), n
	}
	return 0, 0
}

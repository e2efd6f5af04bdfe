package main

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// agentCPU reads this very process: after burning some CPU, it must agree
// with getrusage's user + system time to within a few 10 ms ticks, so a
// misread field (or a wrong tick length) would show.
func TestAgentCPU_AgreesWithRusage(t *testing.T) {
	for x, deadline := 0, time.Now().Add(200*time.Millisecond); time.Now().Before(deadline); x++ {
		_ = x * x
	}
	got, err := agentCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	want := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if diff := want - got; diff < -30*time.Millisecond || diff > 30*time.Millisecond {
		t.Fatalf("agentCPU = %s, getrusage = %s", got, want)
	}
	if _, err := agentCPU(1 << 30); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}

package controllers

import "runtime/debug"

// FullRebuildGCPercent is the garbage collector's target (as GOGC) while
// a reconcile loads every object into a new NodeCompiler, compiles it and
// syncs the result: the one moment the agent's heap holds its stores, a
// whole ruleset being built and the batch that carries it at once. At the
// default (100) the collector lets the heap grow to twice what was live at
// its last cycle, and the last cycle of a full compile sees the compile's
// intermediate results too: at 150k pods that was 144 MB live, so a heap
// of up to 288 MB. A quarter of the live heap as headroom costs a few
// more collection cycles once per resync period (see bench/README.md:
// cpu_seconds, gc_cycles) and takes ~40 MiB off the agent's peak RSS;
// between full rebuilds the default applies.
const FullRebuildGCPercent = 25

// LowerGCTarget sets the collector's target to percent until restore is
// called, unless a lower one is set already (GOGC, or GOGC=off with a
// memory limit: both are left alone). A memory limit (GOMEMLIMIT, or the
// one the agent derives from its container) still applies throughout.
func LowerGCTarget(percent int) (restore func()) {
	prev := debug.SetGCPercent(percent)
	if prev < 0 || prev <= percent {
		debug.SetGCPercent(prev)
		return func() {}
	}
	return func() { debug.SetGCPercent(prev) }
}

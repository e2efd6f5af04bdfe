# bench.mk — `make bench` (included by the top Makefile). See bench/README.md.
#
#   make bench                      figures 3 and 4 (control plane at scale), table + bench/results.json
#   make bench BENCH_FLAGS='-pods 1000,10000 -reps 3'   a quicker run
#
# Needs root: every apply goes into a throwaway (unnamed) network namespace.
# Nothing here asserts a duration; `make test` runs only a smoke test of the
# same code (bench/controlplane, -count=1 via `make unit`).

BENCH_BIN   ?= bin/nftbench
BENCH_OUT   ?= bench/results.json
BENCH_FLAGS ?=

.PHONY: bench bench-controlplane

bench: bench-controlplane ## the benchmarks: table on stdout, figures in bench/results.json

bench-controlplane:
	$(GO) build -o $(BENCH_BIN) ./bench/cmd/nftbench
	timeout 20m $(BENCH_BIN) -out $(BENCH_OUT) $(BENCH_FLAGS)

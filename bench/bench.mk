# bench.mk — `make bench` (included by the top Makefile). See bench/README.md.
#
#   make bench                      all figures: control plane (3, 4) then the local cluster (1, 2)
#   make bench-denylog              the deny log and counters on vs off in the datapath (issue 11 §5)
#   make bench-controlplane         figures 3 and 4 only, table + bench/results.json; every size
#                                   up to 50,000 pods also with 1,000 ClusterNetworkPolicies (-cnps;
#                                   -cnps '' for none; -cnp-max-pods 0 for 150,000 too, ~6 min more)
#   make bench-latency              figure 2's agent share (update + compile + sync per event, with 0
#                                   and 10,000 background policies; BENCH_LATENCY_FLAGS='-reps 20')
#   make bench BENCH_FLAGS='-pods 1000,10000 -reps 3'   a quicker control-plane run
#   make bench-kernel [BENCH_KERNEL_FLAGS='-elements 0,1000,10000 -rounds 10']
#                                   the kernel-level datapath figure: packets/s through one forward hop
#                                   (netns it creates) with the compiled table at 0..10^5 elements vs no
#                                   table (10^6: -elements 0,1000,10000,100000,1000000), interleaved
#                                   rounds (bench/pktpath; ~5 min, bounded to 25)
#   make bench-events               agent CPU seconds per 1,000 pod / policy events at 150k pods (event_cpu; ~2 min)
#   make bench-cluster [BENCH_CLUSTER_FLAGS='-policies 1000 -reps 1 -latency-reps 20 -latency-background 0,1000']
#                                   figures 1 and 2 on a fresh `make up AGENT=none` (~16 min quiet with
#                                   the restarts and real peers:
#                                   figure 1 has a configuration with 100+100 ClusterNetworkPolicies
#                                   (-cnps 0: none), figure 2 runs with 0 and 10,000 background
#                                   policies and has ClusterNetworkPolicy kinds (-latency-cnp=false:
#                                   none), beside it the server node's agent restarted with 10,000 and 0
#                                   policies (-restart-reps 0: skip) and figure 1 with 500 real peer pods
#                                   (-real-peers 0: skip); the cluster is taken down afterwards unless
#                                   BENCH_KEEP_CLUSTER=1; make bench-cluster E2E_INSTANCE=N uses instance N)
#
# Needs root: every apply goes into a throwaway (unnamed) network namespace.
# Nothing here asserts a duration; `make test` runs only a smoke test of the
# same code (bench/..., e2e/cmd/clusterbench, policy/synth; -count=1 via `make unit`).
# Where the code is: bench/README.md.

BENCH_BIN   ?= bin/nftbench
BENCH_OUT   ?= bench/results.json
BENCH_FLAGS ?=
BENCH_LATENCY_FLAGS ?=

BENCH_KERNEL_BIN   ?= bin/pktbench
BENCH_KERNEL_FLAGS ?=

BENCH_CLUSTER_BIN   ?= bin/clusterbench
BENCH_CLUSTER_FLAGS ?=
BENCH_KEEP_CLUSTER  ?=

.PHONY: bench bench-controlplane bench-events bench-kernel bench-latency bench-cluster bench-denylog

bench: bench-controlplane bench-events bench-kernel bench-latency bench-cluster ## the benchmarks: table on stdout, figures in bench/results.json

bench-controlplane:
	$(GO) build -o $(BENCH_BIN) ./bench/cmd/nftbench
	timeout 40m $(BENCH_BIN) -out $(BENCH_OUT) $(BENCH_FLAGS)

bench-events:
	$(GO) build -o $(BENCH_BIN) ./bench/cmd/nftbench
	timeout 15m $(BENCH_BIN) events -out $(BENCH_OUT)

bench-kernel:
	$(GO) build -o $(BENCH_KERNEL_BIN) ./bench/cmd/pktbench
	timeout 25m $(BENCH_KERNEL_BIN) -out $(BENCH_OUT) $(BENCH_KERNEL_FLAGS)

# Figure 2's agent share on the control plane (the agent_latency key).
bench-latency:
	$(GO) build -o $(BENCH_BIN) ./bench/cmd/nftbench
	timeout 15m $(BENCH_BIN) latency -out $(BENCH_OUT) $(BENCH_LATENCY_FLAGS)

# Figures 1 and 2. The cluster runs without an agent (the baseline);
# clusterbench starts nftpolicy itself on every node after measuring it.
bench-cluster:
	$(GO) build -o $(BENCH_CLUSTER_BIN) ./e2e/cmd/clusterbench
	@# A fresh cluster: an agent that ran before (make e2e, make demo) leaves
	@# its table in the nodes, and the no-agent baseline refuses to run then.
	$(MAKE) down
	$(MAKE) up AGENT=none
	$(MAKE) e2e-bin AGENT=nftpolicy
	rc=0; timeout 35m $(BENCH_CLUSTER_BIN) run -out $(BENCH_OUT) $(BENCH_CLUSTER_FLAGS) || rc=$$?; \
	if [ -z "$(BENCH_KEEP_CLUSTER)" ]; then $(MAKE) down; fi; exit $$rc

# Issue 11 §5: allowed connections a second with the deny log on vs off
# and with the counters on vs off, at 10,000 allow-list elements while 20%
# of new connections are denied, interleaved in one run, in a throwaway
# network namespace (~1-3 min; root). Writes key deny_log_datapath.
bench-denylog:
	BENCH_OUT=$(abspath $(BENCH_OUT)) $(GO) test -run '^$$' -bench DenyLog_AcceptPath -benchtime 1x -count 1 ./nft/kernel/

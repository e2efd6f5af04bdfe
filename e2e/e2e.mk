# e2e.mk — the local cluster and the scenario runner (included by the top Makefile).
#
#   make up [E2E_NODES=3] [AGENT=nftpolicy|none|'<template>']   bring the cluster up (idempotent)
#   make down                                                    remove everything `up` made
#   make e2e [SCENARIOS=<dirs or files>]                         replay scenarios (default e2e/scenarios)
#   make e2e-kubelet                                             the upstream-e2e corpus by our runner on real kubelets (E2E_KUBELET=1)
#   make demo                                                    the demo app, before/after the policies in e2e/demo
#   make denied-log                                              one denied probe, one record in the agents' logs
#   make audit-check                                             a scenario step in audit mode (all connect, the blocked cells logged), then enforced
#   make e2e-families                                            the corpus in ipv4, then ipv6 (make test: dual)
#   make stress [STRESS_PAIR_RUNS=20 STRESS_TRANSITIONS=40 STRESS_SEED=N]   random transitions vs compile and Evaluate
#   make chaos [CHAOS_KILLS=10 CHAOS_API_OUTAGE=60s CHAOS_PARTITION=60s]    faults under continuous probing
#   make conntrack-check                                         a tightening policy cuts the open flows it denies (~10 s)
#
# E2E_IP_FAMILY=ipv4|ipv6|dual picks the cluster's address families (unset:
# the running cluster's, else ipv4); `make up`, `make e2e` and the others
# take it. In dual mode every cell is probed over IPv4 and IPv6.
#
# E2E_KUBELET=1 makes `make up` start containerd and a real kubelet on every
# node and install the agent with `kubectl apply -f dist/install.yaml` (its
# image packed from this tree without Docker); AGENT=none installs nothing.
# `make e2e E2E_KUBELET=1` runs our scenario runner there: its pods are
# containers of a podserver image (e2e/cmd/e2e-podserver), probed exactly as
# in harness mode; the harness-only checks (stress, chaos, conntrack,
# denied-log, audit, firstpacket, demo) refuse that cluster.
# `make conformance` runs the upstream suites on that cluster (conformance.mk).
#
# E2E_INSTANCE=N (1..9) runs a separate cluster beside the default one: its
# own namespaces (nftpe2eN-*), host loopback ports (+100*N) and state dir
# (/run/nftpolicy-e2e-N), e.g. one per git worktree.
#
# Tools (etcd, kube-*, flanneld, CNI plugins) come from hack/build-tools.sh,
# which prints its bin dir as the last line of stdout and caches the build.
# The agent command is a Go text/template run by /bin/sh in each node
# namespace; fields: {{.Node}} {{.NodeIP}} {{.Kubeconfig}} {{.NetNS}} {{.StateDir}} {{.LogDir}} {{.CNISocket}} {{.Index}}.

E2E_BINDIR     ?= $(CURDIR)/e2e/.bin
E2E            := $(E2E_BINDIR)/e2e
E2E_INSTANCE   ?=
E2E_IP_FAMILY  ?=
E2E_STATE_DIR  ?= /run/nftpolicy-e2e$(if $(filter-out 0,$(E2E_INSTANCE)),-$(E2E_INSTANCE))
E2E_NODES      ?= 3
SCENARIOS      ?= e2e/scenarios
E2E_RUN_FLAGS  ?=
AGENT          ?= nftpolicy
E2E_KUBELET    ?=
# The agent image's binaries, built by the Dockerfile's own RUN line.
E2E_IMAGE_BINS := $(E2E_BINDIR)/image
E2E_TOOLS_SUBSET := $(if $(E2E_KUBELET),kubelet,all)
# AGENT=nftpolicy runs our agent exactly as the DaemonSet in dist/install.yaml
# starts it (its args and env, plus --kubeconfig): `e2e agent-cmd` reads it.
ifeq ($(AGENT),nftpolicy)
E2E_AGENT_FLAG = --agent-cmd "$$($(E2E) agent-cmd --manifest dist/install.yaml --bin $(E2E_BINDIR)/nftpolicy)"
else ifeq ($(AGENT),none)
E2E_AGENT_FLAG = --agent-cmd ''
else
E2E_AGENT_FLAG = --agent-cmd '$(AGENT)'
endif
ifneq ($(E2E_KUBELET),)
E2E_AGENT_FLAG = --kubelet --install '$(if $(filter nftpolicy,$(AGENT)),dist/install.yaml)' --agent-image-bins $(E2E_IMAGE_BINS)
endif

export E2E_STATE_DIR E2E_INSTANCE E2E_IP_FAMILY

# The stress run (issue 9's guard): the regression pair replayed
# STRESS_PAIR_RUNS times, then STRESS_TRANSITIONS random policy transitions,
# each checked against a fresh compile (every node's table) and against
# policy.Evaluate (real probes). make test runs the short form.
STRESS_PAIR_RUNS    ?= 20
STRESS_TRANSITIONS  ?= 40
STRESS_SEED         ?= 0
STRESS_SHORT_FLAGS  := STRESS_PAIR_RUNS=2 STRESS_TRANSITIONS=10

.PHONY: e2e-bin e2e-tools e2e-kubelet-deps up down e2e e2e-kubelet e2e-status demo e2e-test e2e-families stress stress-short chaos chaos-short conntrack-check denied-log audit-check firstpacket

# Our own binaries: the harness, and the agent when AGENT=nftpolicy.
e2e-bin:
	@mkdir -p $(E2E_BINDIR)
	go build -o $(E2E) ./e2e/cmd/e2e
	@if [ "$(AGENT)" = nftpolicy ]; then \
	  if [ -d cmd/nftpolicy ]; then go build -o $(E2E_BINDIR)/nftpolicy ./cmd/nftpolicy && \
	    CGO_ENABLED=0 go build -o $(E2E_BINDIR)/nftpolicy-cni ./cmd/nftpolicy-cni; \
	  else echo "cmd/nftpolicy does not exist yet: use AGENT=none" >&2; exit 1; fi; fi
	@if [ -n "$(E2E_KUBELET)" ] && [ "$(AGENT)" = nftpolicy ]; then mkdir -p $(E2E_IMAGE_BINS) && \
	  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(E2E_IMAGE_BINS)/ ./cmd/nftpolicy ./cmd/nftpolicy-cni; fi
	@if [ -n "$(E2E_KUBELET)" ]; then CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o $(E2E_BINDIR)/e2e-podserver ./e2e/cmd/e2e-podserver; fi

# The tool build prints progress on stderr; the bin dir is its last stdout line.
e2e-tools: host-deps
	@test -x hack/build-tools.sh || { echo "hack/build-tools.sh is missing" >&2; exit 1; }
	@mkdir -p $(E2E_BINDIR)
	@echo "==> cluster tools (cached; a cold build takes ~10 min on 2 cores)" >&2
	@start=$$(date +%s); \
	( while sleep 20; do echo "    ... building, $$(( $$(date +%s) - start ))s" >&2; done ) & tick=$$!; \
	rc=0; bin=$$(hack/build-tools.sh $(E2E_TOOLS_SUBSET) | tail -n1) || rc=$$?; kill $$tick 2>/dev/null || true; \
	if [ $$rc -ne 0 ] || [ ! -x "$$bin/kube-apiserver" ]; then echo "hack/build-tools.sh failed" >&2; exit 1; fi; \
	echo "$$bin" > $(E2E_BINDIR)/tools.dir; echo "    tools in $$bin ($$(( $$(date +%s) - start ))s)" >&2

# The kubelet mode's Debian packages: the container runtime, the static
# busybox the DaemonSet's init-container image is packed from, and the
# static bash of the network-policy-api suite's agnhost image.
e2e-kubelet-deps:
	@if [ -n "$(E2E_KUBELET)" ]; then missing=""; \
	  for c in containerd:containerd runc:runc busybox:busybox-static; do command -v $${c%%:*} >/dev/null 2>&1 || missing="$$missing $${c##*:}"; done; \
	  [ -x /bin/busybox ] || missing="$$missing busybox-static"; \
	  [ -x /bin/bash-static ] || missing="$$missing bash-static"; \
	  if [ -n "$$missing" ]; then echo "==> apt-get install$$missing" >&2; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; fi

up: e2e-bin e2e-tools e2e-kubelet-deps
	$(E2E) --bin-dir "$$(cat $(E2E_BINDIR)/tools.dir)" up --nodes $(E2E_NODES) $(E2E_AGENT_FLAG)

down:
	@if [ -x $(E2E) ]; then $(E2E) down; else go run ./e2e/cmd/e2e down; fi

e2e-status:
	@$(E2E) status

e2e: e2e-bin e2e-tools e2e-kubelet-deps
	$(E2E) --bin-dir "$$(cat $(E2E_BINDIR)/tools.dir)" run --nodes $(E2E_NODES) $(E2E_AGENT_FLAG) $(E2E_RUN_FLAGS) $(SCENARIOS)

demo: e2e-bin e2e-tools
	$(E2E) --bin-dir "$$(cat $(E2E_BINDIR)/tools.dir)" demo --nodes $(E2E_NODES) $(E2E_AGENT_FLAG)

stress: e2e-bin e2e-tools ## the regression pair many times, then random transitions checked against compile and Evaluate
	$(E2E) --bin-dir "$$(cat $(E2E_BINDIR)/tools.dir)" run --nodes $(E2E_NODES) $(E2E_AGENT_FLAG) --repeat $(STRESS_PAIR_RUNS) e2e/scenarios/regressions
	$(E2E) --bin-dir "$$(cat $(E2E_BINDIR)/tools.dir)" stress --nodes $(E2E_NODES) $(E2E_AGENT_FLAG) --transitions $(STRESS_TRANSITIONS) --seed $(STRESS_SEED)

stress-short:
	$(MAKE) stress $(STRESS_SHORT_FLAGS)

# The chaos run (issue 12): a fixed matrix probed every few milliseconds
# while the agent is killed and restarted, upgraded to another build (the
# same source with another main.version) and rolled back, the apiserver is
# stopped, the nodes are cut off from it while a policy changes, and the
# table is tampered with by hand. It prints the README's table and fails
# on any wrong verdict or a fault not healed within CHAOS_HEAL_BOUND.
# make test runs the short form (about two minutes).
CHAOS_KILLS        ?= 10
CHAOS_API_OUTAGE   ?= 60s
CHAOS_PARTITION    ?= 60s
CHAOS_HEAL_BOUND   ?= 10s
CHAOS_SHORT_FLAGS  := CHAOS_KILLS=3 CHAOS_API_OUTAGE=10s CHAOS_PARTITION=10s

chaos: e2e-bin e2e-tools
	@if [ "$(AGENT)" != nftpolicy ]; then echo "make chaos needs AGENT=nftpolicy" >&2; exit 1; fi
	go build -ldflags '-X main.version=chaos-next' -o $(E2E_BINDIR)/nftpolicy-next ./cmd/nftpolicy
	$(E2E) --bin-dir "$$(cat $(E2E_BINDIR)/tools.dir)" chaos --nodes $(E2E_NODES) $(E2E_AGENT_FLAG) \
	  --next-agent-bin $(E2E_BINDIR)/nftpolicy-next --kills $(CHAOS_KILLS) --api-outage $(CHAOS_API_OUTAGE) \
	  --partition $(CHAOS_PARTITION) --heal-bound $(CHAOS_HEAL_BOUND)

chaos-short:
	$(MAKE) chaos $(CHAOS_SHORT_FLAGS)

# Issue 12 §3: open TCP connections and UDP flows that a new policy denies
# are cut within a second; the ones it allows lose nothing.
conntrack-check: e2e-bin e2e-tools
	$(E2E) --bin-dir "$$(cat $(E2E_BINDIR)/tools.dir)" conntrack --nodes $(E2E_NODES) $(E2E_AGENT_FLAG)

# The denied-traffic log (about 10 s): one record for a denied probe, naming
# both pods and the isolating policy, and none for an allowed one.
denied-log: e2e-bin e2e-tools
	$(E2E) --bin-dir "$$(cat $(E2E_BINDIR)/tools.dir)" denied-log --nodes $(E2E_NODES) $(E2E_AGENT_FLAG)

# Audit mode (issue 11 §4): a scenario step with every policy annotated
# nftpolicy.io/enforcement: audit must connect every cell and log an audit
# record for exactly the cells the scenario expects enforcement to block;
# the annotation removed, the step's matrix holds. Once for NetworkPolicies
# (AUDIT_FILE, AUDIT_STEP), once for an Admin ClusterNetworkPolicy whose
# rule order mixes Accept, Deny and Pass (AUDIT_CNP_FILE, AUDIT_CNP_STEP):
# about 20 s each in dual stack (45 s for both, builds included).
AUDIT_FILE ?= e2e/scenarios/upstream-e2e/01-tcp-should-support-a-default-deny-ingress-policy.yaml
AUDIT_STEP ?= 1
AUDIT_CNP_FILE ?= e2e/scenarios/cnp-conformance/07-CNPAdminTierIngressTCP.yaml
AUDIT_CNP_STEP ?= 1
audit-check: e2e-bin e2e-tools
	$(E2E) --bin-dir "$$(cat $(E2E_BINDIR)/tools.dir)" audit --nodes $(E2E_NODES) $(E2E_AGENT_FLAG) \
	  --audit-file $(AUDIT_FILE) --audit-step $(AUDIT_STEP)
	$(E2E) --bin-dir "$$(cat $(E2E_BINDIR)/tools.dir)" audit --nodes $(E2E_NODES) $(E2E_AGENT_FLAG) \
	  --audit-file $(AUDIT_CNP_FILE) --audit-step $(AUDIT_CNP_STEP)

# The first-packet check (issue 12 §1): new pods under default deny probed
# from before they have an address, with the agent running and frozen.
firstpacket: e2e-bin e2e-tools ## a new pod is isolated from its first packet; pod creation survives a frozen agent
	$(E2E) --bin-dir "$$(cat $(E2E_BINDIR)/tools.dir)" firstpacket --nodes $(E2E_NODES) $(E2E_AGENT_FLAG)

# `make test` runs the whole corpus with our agent, then the short stress
# and chaos runs, the conntrack, denied-log, audit and first-packet checks, in dual
# stack (every cell over IPv4 and over IPv6: the strongest single mode),
# then four specs of the upstream e2e.test on the kubelet cluster
# (conformance-test); `make e2e-families` runs the corpus in the two others.
E2E_TEST_IP_FAMILY ?= dual
e2e-test::
	$(MAKE) e2e stress-short chaos-short conntrack-check denied-log audit-check firstpacket E2E_IP_FAMILY=$(E2E_TEST_IP_FAMILY)
	$(MAKE) conformance-test

# Issue 16 §3: our runner on the kubelet cluster (pods as containers), on the
# corpus both harnesses share; not part of make test.
E2E_KUBELET_SCENARIOS ?= e2e/scenarios/upstream-e2e
e2e-kubelet: ## the upstream-e2e corpus by our runner on real kubelets
	$(MAKE) --no-print-directory e2e E2E_KUBELET=1 SCENARIOS="$(E2E_KUBELET_SCENARIOS)"

e2e-families: ## the corpus in ipv4, then in ipv6 (make test runs dual)
	$(MAKE) e2e E2E_IP_FAMILY=ipv4
	$(MAKE) e2e E2E_IP_FAMILY=ipv6

# The upstream suites on the kubelet cluster.
-include e2e/conformance.mk

# conformance.mk — the official suites on the kubelet cluster (included by e2e/e2e.mk).
#
#   make conformance [E2E_INSTANCE=N] [AGENT=none]   both suites below on one cluster; fails if either fails
#   make conformance-upstream [CONFORMANCE_PROCS=4] [CONFORMANCE_FOCUS=...]
#   make conformance-npapi [NPAPI_RUN=<go test -run regexp>]
#
# Each brings the cluster up in kubelet mode (E2E_KUBELET=1: containerd and
# a real kubelet per node, nftpolicy from dist/install.yaml as a DaemonSet;
# AGENT=none installs no agent, the negative control).
#
# conformance-upstream runs the unmodified upstream e2e.test of
# KUBERNETES_VERSION (hack/build-tools.sh conformance) with ginkgo in
# parallel, and prints one line per spec and the suite's summary. The
# [Feature:SCTPConnectivity] specs are skipped: this kernel has no SCTP
# sockets, so agnhost's SCTP servers exit and those specs cannot pass here
# with or without an agent. The two specs that only check that an SCTP
# policy does not allow TCP run: they probe TCP only.
#
# conformance-npapi installs the ClusterNetworkPolicy CRD of
# NETWORK_POLICY_API_VERSION (experimental channel: --all-features claims
# the nodes peers and named ports) and runs that module's conformance suite
# (e2e/tools/npapi: profile ClusterNetworkPolicy, --all-features), then
# prints one line per test, each failed assertion's probe, and the suite's
# conformance report YAML. Not runnable here, for want of SCTP sockets: the
# four SCTP-only tests (NPAPI_SKIP_TESTS, reported as skipped) and the SCTP
# server containers of the base pods (they exit, and the pods would never be
# Ready). Tests that mix SCTP probes with TCP and UDP ones run: they fail
# at their first SCTP probe, and the summary says so; the target fails only
# on any other failure.

CONFORMANCE_FOCUS ?= \[sig-network\] Netpol
CONFORMANCE_SKIP  ?= SCTPConnectivity
CONFORMANCE_PROCS ?= 4
CONFORMANCE_DIR   ?= $(E2E_BINDIR)/conformance$(if $(filter-out nftpolicy,$(AGENT)),-$(AGENT))

.PHONY: conformance conformance-upstream conformance-tools

conformance-tools:
	@$(MAKE) --no-print-directory e2e-tools E2E_TOOLS_SUBSET=conformance

conformance: conformance-tools npapi-tools
	@rc=0; $(MAKE) --no-print-directory conformance-upstream || rc=1; \
	$(MAKE) --no-print-directory conformance-npapi || rc=1; exit $$rc

conformance-upstream: conformance-tools
	$(MAKE) --no-print-directory up E2E_KUBELET=1
	@bin=$$(cat $(E2E_BINDIR)/tools.dir); rm -rf $(CONFORMANCE_DIR); mkdir -p $(CONFORMANCE_DIR); \
	start=$$(date +%s); rc=0; \
	KUBECONFIG=$$($(E2E) kubeconfig) $$bin/ginkgo --procs=$(CONFORMANCE_PROCS) --no-color --timeout=3h \
	  --focus='$(CONFORMANCE_FOCUS)' --skip='$(CONFORMANCE_SKIP)' \
	  --junit-report=junit.xml --json-report=report.json --output-dir=$(CONFORMANCE_DIR) \
	  $$bin/e2e.test -- --provider=local --kubeconfig=$$($(E2E) kubeconfig) \
	  --report-dir=$(CONFORMANCE_DIR) --e2e-output-dir=$(CONFORMANCE_DIR) \
	  > $(CONFORMANCE_DIR)/ginkgo.log 2>&1 || rc=$$?; \
	echo "==> upstream e2e.test $$(sed -n 's/^KUBERNETES_VERSION=//p' e2e/tools/versions.env), agent: $(AGENT), $$(( $$(date +%s) - start ))s, log $(CONFORMANCE_DIR)/ginkgo.log"; \
	$(E2E) conformance-report --focus '$(CONFORMANCE_FOCUS)' --skip '$(CONFORMANCE_SKIP)' $(CONFORMANCE_DIR)/report.json; \
	exit $$rc

# A handful of specs (about a minute with the tools built): default deny in
# both directions, an allow-list by pod and namespace selectors, named
# ports, and UDP. `make test` runs them (conformance-test); the whole suite
# is `make conformance` (see README: Conformance with the official suites).
CONFORMANCE_SHORT_FOCUS := \[sig-network\] Netpol .*(should support a .default-deny-all. policy|should enforce policy based on PodSelector and NamespaceSelector|should allow ingress access on one named port|using UDP should support a .default-deny-ingress. policy)

.PHONY: conformance-short
conformance-short:
	$(MAKE) --no-print-directory conformance-upstream CONFORMANCE_FOCUS="$(CONFORMANCE_SHORT_FOCUS)"

# make test's share of the upstream suite: conformance-short on a fresh
# kubelet cluster of this instance, which is then taken down whatever the
# result. The negative control (AGENT=none) is not in it: its specs fail
# only after their probes time out, about 50 s each.
.PHONY: conformance-test
conformance-test:
	@$(MAKE) --no-print-directory down
	@rc=0; $(MAKE) --no-print-directory conformance-short || rc=$$?; \
	$(MAKE) --no-print-directory down; exit $$rc

# The network-policy-api conformance suite (see the top of this file).
NPAPI_VERSION    := $(shell sed -n 's/^NETWORK_POLICY_API_VERSION=//p' e2e/tools/versions.env)
NPAPI_CRD        ?= config/components/cnp-crd-experimental/policy.networking.k8s.io_clusternetworkpolicies.yaml
NPAPI_SKIP_TESTS ?= CNPAdminTierEgressSCTP,CNPAdminTierIngressSCTP,CNPBaselineTierEgressSCTP,CNPBaselineTierIngressSCTP
NPAPI_RUN        ?=
NPAPI_DIR        ?= $(E2E_BINDIR)/conformance-npapi$(if $(filter-out nftpolicy,$(AGENT)),-$(AGENT))

.PHONY: conformance-npapi npapi-tools

npapi-tools:
	@$(MAKE) --no-print-directory e2e-tools E2E_TOOLS_SUBSET=npapi

# The suite's binary fails whenever a test does, the ones that fail only at
# SCTP probes included; npapi-report's verdict is the target's.
conformance-npapi: npapi-tools
	$(MAKE) --no-print-directory up E2E_KUBELET=1
	@bin=$$(cat $(E2E_BINDIR)/tools.dir); kc=$$($(E2E) kubeconfig); rm -rf $(NPAPI_DIR); mkdir -p $(NPAPI_DIR); \
	start=$$(date +%s); \
	$$bin/kubectl --kubeconfig $$kc apply --server-side -f $(NPAPI_CRD) >/dev/null && \
	  $$bin/kubectl --kubeconfig $$kc wait --for condition=established --timeout=60s \
	    crd/clusternetworkpolicies.policy.networking.k8s.io >/dev/null || exit 1; \
	echo "==> ClusterNetworkPolicy CRD $(NPAPI_VERSION) (experimental channel) established in $$(( $$(date +%s) - start ))s"; \
	start=$$(date +%s); \
	go tool test2json -t -p npapi $$bin/npapi-conformance.test -test.v=test2json -test.timeout=2h \
	  $(if $(NPAPI_RUN),-test.run '$(NPAPI_RUN)') -kubeconfig $$kc \
	  -conformance-profiles=ClusterNetworkPolicy -all-features -skip-tests=$(NPAPI_SKIP_TESTS) -drop-sctp-servers \
	  -organization=nftpolicy -project=nftpolicy -url=https://github.com/nftpolicy/nftpolicy -version=$(VERSION) \
	  -contact=https://github.com/nftpolicy/nftpolicy/issues \
	  -additional-info='make conformance-npapi on the local kubelet cluster (e2e/README.md), agent: $(AGENT)' \
	  -report-output=$(NPAPI_DIR)/report.yaml > $(NPAPI_DIR)/events.json 2>&1 || true; \
	echo "==> network-policy-api $(NPAPI_VERSION) conformance, profile ClusterNetworkPolicy, --all-features, agent: $(AGENT), $$(( $$(date +%s) - start ))s, events $(NPAPI_DIR)/events.json"; \
	$(E2E) npapi-report --skipped '$(NPAPI_SKIP_TESTS)' $(NPAPI_DIR)/events.json $(NPAPI_DIR)/report.yaml

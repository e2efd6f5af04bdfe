# conformance.mk — the upstream Netpol suite on the kubelet cluster (included by e2e/e2e.mk).
#
#   make conformance [E2E_INSTANCE=N] [CONFORMANCE_PROCS=4] [CONFORMANCE_FOCUS=...]
#
# Brings the cluster up in kubelet mode (E2E_KUBELET=1: containerd and a
# real kubelet per node, nftpolicy from dist/install.yaml as a DaemonSet;
# AGENT=none installs no agent, the negative control), then runs the
# unmodified upstream e2e.test of KUBERNETES_VERSION (hack/build-tools.sh
# conformance) with ginkgo in parallel, and prints one line per spec and
# the suite's summary. The [Feature:SCTPConnectivity] specs are skipped:
# this kernel has no SCTP sockets, so agnhost's SCTP servers exit and those
# specs cannot pass here with or without an agent. The two specs that only
# check that an SCTP policy does not allow TCP run: they probe TCP only.

CONFORMANCE_FOCUS ?= \[sig-network\] Netpol
CONFORMANCE_SKIP  ?= SCTPConnectivity
CONFORMANCE_PROCS ?= 4
CONFORMANCE_DIR   ?= $(E2E_BINDIR)/conformance$(if $(filter-out nftpolicy,$(AGENT)),-$(AGENT))

.PHONY: conformance conformance-tools

conformance-tools:
	@$(MAKE) --no-print-directory e2e-tools E2E_TOOLS_SUBSET=conformance

conformance: conformance-tools
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
	$(MAKE) --no-print-directory conformance CONFORMANCE_FOCUS="$(CONFORMANCE_SHORT_FOCUS)"

# make test's share of the upstream suite: conformance-short on a fresh
# kubelet cluster of this instance, which is then taken down whatever the
# result. The negative control (AGENT=none) is not in it: its specs fail
# only after their probes time out, about 50 s each.
.PHONY: conformance-test
conformance-test:
	@$(MAKE) --no-print-directory down
	@rc=0; $(MAKE) --no-print-directory conformance-short || rc=$$?; \
	$(MAKE) --no-print-directory down; exit $$rc

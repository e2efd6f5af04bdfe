# nftpolicy — every entry point a developer or CI uses.
#   make test   the whole suite (what .ci/run calls)
#   make run    the agent against $$KUBECONFIG as node $$NODE_NAME
#   make demo   the local cluster with a demo app (see e2e/e2e.mk)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BIN_DIR   := bin
# Fuzz budgets are execution counts (on 2 cores, 2026-12-01's CI run:
# Evaluate 502 s with a cluster run beside it, NodeCompiler 88 s; the
# Evaluate target also checks the decision trace and compiles half its
# inputs with the deny log, so each execution costs more than it did): a
# -fuzztime duration races Go 1.26's fuzz coordinator at the deadline and
# fails the target with a bare "context deadline exceeded" and no input
# (go.dev/issue/75804, fixed in Go 1.27).
FUZZ_EVALUATE_EXECS ?= 120000x
FUZZ_NODECOMPILER_EXECS  ?= 30000x
# The linters are pinned in hack/tools/go.mod and built through the module proxy.
GOLANGCI  := $(GO) tool -modfile=hack/tools/go.mod golangci-lint
GOVULNCHECK := $(GO) tool -modfile=hack/tools/go.mod govulncheck
# govulncheck's database. vuln.go.dev may be out of reach (it is on the
# machines this project is built on), so the database is built from the Go
# module proxy: golang.org/x/vulndb's data/osv holds every OSV entry of the
# Go vulnerability database, and its cmd/indexdb writes the v1 layout that
# `govulncheck -db file://` reads. VULNDB_VERSION is the snapshot: "latest"
# is the newest commit the proxy serves (what this run prints); pin a
# pseudo-version to reproduce a run. VULNDB_URL=https://vuln.go.dev uses the
# live database instead.
VULNDB_VERSION ?= latest
VULNDB_INDEXER ?= golang.org/x/vulndb/cmd/indexdb@v0.0.0-20261105234957-e22db6528018
VULNDB_URL     ?=
# The stdlib is checked as the release image builds it (the Dockerfile's Go),
# fetched as a toolchain module through the proxy when it is not this one.
GO_RELEASE    := $(shell sed -n 's/^ARG GO_VERSION=//p' Dockerfile)

.PHONY: host-deps build run test unit fuzz lint vulncheck fmt-check vet mod-check tools-apiserver tools clean manifests manifests-check

build: ## the agent binary, static, as the container image ships it
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN_DIR)/nftpolicy ./cmd/nftpolicy

run: build ## the agent on this machine, against $$KUBECONFIG, as node $$NODE_NAME
	$(BIN_DIR)/nftpolicy --node-name "$${NODE_NAME:?set NODE_NAME}" --kubeconfig "$${KUBECONFIG:?set KUBECONFIG}"

host-deps: ## Debian packages the tests and the local cluster use (nft for kube-proxy and read-back tests)
	@missing=""; for c in nft:nftables ip:iproute2 git:git conntrack:conntrack; do command -v $${c%%:*} >/dev/null 2>&1 || missing="$$missing $${c##*:}"; done; \
	if [ -n "$$missing" ]; then echo "==> apt-get install$$missing" >&2; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

tools-apiserver: ## etcd + kube-apiserver + kubectl for the controller tests (cached)
	@hack/build-tools.sh apiserver >/dev/null

tools: ## every third-party binary the local cluster runs (cached)
	@hack/build-tools.sh all >/dev/null

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt wants to change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# go.mod must say what the code imports: direct and indirect requirements
# apart, nothing that no package needs.
mod-check:
	@if ! out=$$($(GO) mod tidy -diff 2>&1); then echo "go.mod/go.sum are not tidy; run 'go mod tidy':"; echo "$$out"; exit 1; fi

lint: fmt-check vet mod-check vulncheck ## gofmt, go vet, go mod tidy -diff, golangci-lint and govulncheck
	$(GOLANGCI) run ./...

vulncheck: ## govulncheck over every package, with the release's Go (see VULNDB_*)
	@set -e; db="$(VULNDB_URL)"; \
	if [ -z "$$db" ]; then \
	  dir=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	  [ -d "$$dir/data/osv" ] || { echo "vulncheck: golang.org/x/vulndb@$(VULNDB_VERSION) has no data/osv" >&2; exit 1; }; \
	  out=$${XDG_CACHE_HOME:-$$HOME/.cache}/nftpolicy/vulndb/$$(basename "$$dir"); \
	  if [ ! -f "$$out/index/db.json" ]; then rm -rf "$$out.tmp"; \
	    GOFLAGS= $(GO) run $(VULNDB_INDEXER) -vulns "$$dir/data/osv" -out "$$out.tmp"; mv "$$out.tmp" "$$out"; fi; \
	  db=file://$$out; echo "vulncheck: database $$(basename "$$dir") ($$(ls "$$dir/data/osv" | wc -l) entries), Go $(GO_RELEASE)"; \
	fi; \
	GOTOOLCHAIN=go$(GO_RELEASE) $(GOVULNCHECK) -db "$$db" ./...

unit: host-deps ## every Go test with the race detector, real kernel and real kube-apiserver included
	KUBEBUILDER_ASSETS="$$(hack/build-tools.sh apiserver | tail -n1)" $(GO) test -race -count=1 ./...

# A new interesting input is minimised for at most 200 runs: the default
# (60 s each) spent a whole minute on a few inputs of the NodeCompiler target.
fuzz: ## the differential fuzz targets: compiled dataplane vs reference semantics, incremental vs fresh compile
	$(GO) test -run '^$$' -fuzz '^FuzzCompileMatchesEvaluate$$' -fuzztime $(FUZZ_EVALUATE_EXECS) -fuzzminimizetime 200x ./policy/
	$(GO) test -run '^$$' -fuzz '^FuzzNodeCompilerMatchesFreshCompile$$' -fuzztime $(FUZZ_NODECOMPILER_EXECS) -fuzzminimizetime 200x ./policy/

test: lint unit fuzz e2e-test ## everything CI runs

manifests: ## render config/default into dist/install.yaml (kustomize pinned in hack/tools)
	hack/manifests.sh

manifests-check: ## dist/install.yaml is what config/ renders now (also a test in ./install)
	hack/manifests.sh - | diff -u dist/install.yaml -

clean:
	rm -rf $(BIN_DIR)

# Benchmarks (make bench).
-include bench/bench.mk

# The local cluster, scenario runner and demo.
-include e2e/e2e.mk
# Until e2e/e2e.mk defines it, e2e-test does nothing.
e2e-test::

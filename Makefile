# CloudML: every target a person runs is the one CI runs.
SHELL := /bin/bash
GO    ?= go
# ROOT is this Makefile's directory, so `make -C DIR -f .../Makefile check-tidy
# staticcheck` lints another module with this repository's pinned tools (the
# lint tests in test/lint do that).
ROOT  := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
TOOLS := $(GO) tool -modfile=$(ROOT)/tools/go.mod
BUF   := $(TOOLS) buf
BIN   := bin
PKGS  := ./...

.PHONY: help build generate check-generate lint check-tidy staticcheck test test-short demo demo-swarm demo-do image bench bench-cp mutate mutate-quick clean deps

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

# AGENT_LDFLAGS: the agent every droplet downloads (coordinator
# --agent-bin) leaves out the symbol table and DWARF: 37 MB instead of 54,
# less to fetch and hash before each node starts. Stack traces keep their
# names; `make build AGENT_LDFLAGS=` keeps the debug information.
AGENT_LDFLAGS ?= -s -w
# TAGS: disable_grpc_modules leaves out the gRPC transport of
# cloud.google.com/go/storage (xDS, RLS, Direct Path), which no binary
# uses (buckets are read and written over the JSON API): the agent is 23
# MB instead of 37, the client and the coordinator 35 MB instead of 55, and
# each start runs half the package initialisation (a client command starts
# in 40 ms instead of 55). cmd/cloudml-agent's TestTagsDropGRPCStorage
# checks the tag.
TAGS ?= disable_grpc_modules

build: ## build coordinator, cloudml-agent and cloudml-client into bin/
	$(GO) build -tags '$(TAGS)' -o $(BIN)/ ./cmd/coordinator ./cmd/cloudml-client
	$(GO) build -tags '$(TAGS)' -ldflags='$(AGENT_LDFLAGS)' -o $(BIN)/ ./cmd/cloudml-agent

generate: ## regenerate Go code from proto/
	$(BUF) generate

check-generate: ## fail when the committed generated code is stale
	@tmp=$$(mktemp -d); cp -r proto $$tmp/; $(BUF) generate; \
	if ! diff -r $$tmp/proto proto >/dev/null; then \
		diff -r $$tmp/proto proto | head -20; echo "generated code is stale: run 'make generate' and commit"; rm -rf $$tmp; exit 1; fi; \
	rm -rf $$tmp; echo "generated code is up to date"

lint: check-tidy staticcheck ## go mod tidy -diff, staticcheck, gofmt, go vet, buf lint
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(BUF) lint

check-tidy: ## fail when `go mod tidy` would change go.mod or go.sum (and tools/go.mod)
	@for dir in . $$(test -f tools/go.mod && echo tools); do \
		if ! (cd $$dir && $(GO) mod tidy -diff >/dev/null 2>&1); then \
			(cd $$dir && $(GO) mod tidy -diff); \
			echo "go mod tidy would change $$dir/go.mod or $$dir/go.sum: run 'go mod tidy' there and commit"; exit 1; fi; \
	done

staticcheck: ## staticcheck, pinned in tools/go.mod
	@set -eo pipefail; pkgs=$$($(GO) list $(PKGS)); \
	echo "staticcheck: $$(wc -w <<<"$$pkgs") packages"; \
	$(TOOLS) staticcheck $$pkgs

deps: ## install the system packages the demo and tests need (Debian; root)
	./scripts/deps.sh

test: build ## run every test (real systems included; CI=true makes missing systems fail)
	$(GO) test -count=1 -timeout 30m $(PKGS)

test-short: ## fast in-process tests only
	$(GO) test -short -count=1 $(PKGS)

demo: ## run the linreg Octave sweep on the embedded default (local agents, file:// bucket)
	./scripts/demo.sh

demo-swarm: ## run the linreg sweep as services on a local 3-node Docker Swarm (root, docker.io)
	./scripts/demo-swarm.sh

demo-do: ## cluster up, the linreg sweep and cluster down on a DigitalOcean test server (root, docker.io; no account)
	./scripts/demo-do.sh

image: ## build the Octave image cloudml/octave:7 from Debian packages (debootstrap; no registry needed)
	./scripts/dockerd.sh
	./images/octave/build.sh cloudml/octave:7

bench: build ## benchmarks side by side with their baselines, as ratios
	$(GO) run ./bench

bench-cp: build ## control plane: N simulated agents (100, 300, 1000) against a real coordinator, a 10,000-task sweep of true (issue 11; a few minutes)
	$(GO) run ./bench -parts C -swarm=false

mutate: ## mutation testing (gremlins) on the packages that hold the guarantees; per-package table, goal 85% killed (tens of minutes; not in `make test`)
	$(GO) run ./internal/mutate/cmd/mutate

MUTATE_BASE ?= main
mutate-quick: ## the same on lines changed since MUTATE_BASE (default main; working tree included): run before you stop
	$(GO) run ./internal/mutate/cmd/mutate -diff $(MUTATE_BASE)

clean: ## remove build output
	rm -rf $(BIN)

# CloudML: every target a person runs is the one CI runs.
SHELL := /bin/bash
GO    ?= go
BUF   := $(GO) tool -modfile=tools/go.mod buf
BIN   := bin
PKGS  := ./...

.PHONY: help build generate check-generate lint test test-short demo demo-swarm image bench clean deps

help: ## show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

build: ## build coordinator, cloudml-agent and cloudml-client into bin/
	$(GO) build -o $(BIN)/ ./cmd/coordinator ./cmd/cloudml-agent ./cmd/cloudml-client

generate: ## regenerate Go code from proto/
	$(BUF) generate

check-generate: ## fail when the committed generated code is stale
	@tmp=$$(mktemp -d); cp -r proto $$tmp/; $(BUF) generate; \
	if ! diff -r $$tmp/proto proto >/dev/null; then \
		diff -r $$tmp/proto proto | head -20; echo "generated code is stale: run 'make generate' and commit"; rm -rf $$tmp; exit 1; fi; \
	rm -rf $$tmp; echo "generated code is up to date"

lint: ## gofmt, go vet, buf lint
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(BUF) lint

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

image: ## build the Octave image cloudml/octave:7 from Debian packages (debootstrap; no registry needed)
	./scripts/dockerd.sh
	./images/octave/build.sh cloudml/octave:7

bench: build ## benchmarks side by side with their baselines, as ratios
	$(GO) run ./bench

clean: ## remove build output
	rm -rf $(BIN)

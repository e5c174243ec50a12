# The workspace's modules, as go.work lists them.
MODULES := $(shell sed -n 's|^[[:space:]]*\./||p' go.work)
GO ?= go

.PHONY: run test bench generate lint build check-generated

## run: the whole system on 127.0.0.1 (throwaway PostgreSQL and Redis, control plane, data nodes, demo tenant)
run:
	bash scripts/run.sh

## test: every test of every module against throwaway PostgreSQL and Redis
test:
	bash scripts/test.sh

## bench: the benchmark suite (writes docs/BENCHMARKS.md)
bench:
	bash scripts/bench.sh

## build: static binaries into bin/
build:
	mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ ./controlplane/cmd/... ./datanode/cmd/... ./backupctl/cmd/...

## generate: regenerate the GraphQL code (gqlgen)
generate:
	cd graph && $(GO) generate ./...

## check-generated: fail when regenerating the GraphQL code gives a diff
check-generated: generate
	git diff --exit-code -- graph/

## lint: gofmt and go vet over every module
lint:
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@for m in $(MODULES); do \
		if [ -n "$$(cd $$m && $(GO) list ./... 2>/dev/null)" ]; then (cd $$m && $(GO) vet ./...) || exit 1; fi; \
	done

# Tether. `make help` lists the targets.
GO        ?= go
BIN       ?= bin/tether
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
GOBIN     := $(shell $(GO) env GOPATH)/bin

.PHONY: help build test bench demo demo-vif generate lint cross clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/tether
	$(GO) build -o $(BIN) ./cmd/tether

generate: ## regenerate rpc/ from the .proto files (needs protoc)
	GOFLAGS= $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOFLAGS= $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH="$(GOBIN):$$PATH" protoc -I rpc --go_out=rpc --go_opt=paths=source_relative \
		--go-grpc_out=rpc --go-grpc_opt=paths=source_relative \
		manager/manager.proto daemon/daemon.proto

test: ## run all tests (root: also the namespace-lab end-to-end tests)
	$(GO) vet ./...
	$(GO) test -race -timeout 15m ./...

# A pipe into tee hides go test's exit status (POSIX sh has no pipefail), so
# bench fails by looking for go test's FAIL lines in bench.txt.
bench: ## run the benchmarks (root: the namespace lab, as ratios to the direct veth); output also in bench.txt
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 20m ./e2e/ 2>&1 | tee bench.txt
	$(GO) test -run '^$$' -bench . -benchmem ./vif/ ./tunnel/ 2>&1 | tee -a bench.txt
	@! grep -Eq '^(FAIL|--- FAIL)' bench.txt || { echo 'bench: some benchmarks failed, see bench.txt'; exit 1; }

# The demo runs as its own binary, not under `go run`, so Ctrl-C reaches it
# alone and it cleans up before exiting.
demo: build ## the story of two developers sharing a workload, in network namespaces, about a minute (root)
	$(GO) build -o bin/demo ./internal/netlab/demo
	bin/demo -tether $(BIN)

demo-vif: build ## manager + daemon + a pod in network namespaces, one curl through the VIF (root)
	$(GO) build -o bin/demo ./internal/netlab/demo
	bin/demo -vif -tether $(BIN)

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

cross: ## build tether for macOS and Windows (compile check of the platform files)
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/tether
	GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null ./cmd/tether

clean: ## remove build output
	rm -rf bin bench.txt

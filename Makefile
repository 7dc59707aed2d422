# Tether. `make help` lists the targets.
GO        ?= go
BIN       ?= bin/tether
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
GOBIN     := $(shell $(GO) env GOPATH)/bin

.PHONY: help build test bench bench-k8s demo demo-k8s demo-vif generate lint cross clean kube-bins image image-push kube-up kube-down

# The test cluster (internal/kubelab). The binaries' real store is a cache
# outside the repo, keyed on the tools module (see its build.sh).
KUBE_BINS      ?= bin/kube
KUBE_BIN_CACHE ?= /var/cache/tether/kube-bins
IMAGE_DIR      ?= bin/image
IMAGE_ARCHES   := amd64 arm64
HOST_ARCH      := $(shell $(GO) env GOARCH)
export KUBELAB_DIR ?= /tmp/tether-kubelab

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/tether
	$(GO) build -o $(BIN) ./cmd/tether

generate: ## regenerate rpc/ from the .proto files (needs protoc)
	GOFLAGS= $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOFLAGS= $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH="$(GOBIN):$$PATH" protoc -I rpc --go_out=rpc --go_opt=paths=source_relative \
		--go-grpc_out=rpc --go-grpc_opt=paths=source_relative \
		manager/manager.proto daemon/daemon.proto

test: ## run all tests, never from the test cache: e2e builds the tether binary itself (root: also the namespace-lab end-to-end tests and the test cluster, building its binaries if missing)
	$(GO) vet ./...
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory kube-bins image; fi
	$(GO) test -race -count=1 -timeout 30m ./...

# A pipe into tee hides go test's exit status (POSIX sh has no pipefail), so
# bench fails by looking for go test's FAIL lines in bench.txt.
bench: ## run the benchmarks (root: the namespace lab as ratios to the direct veth, then the test cluster's as ratios to the node's namespace); output also in bench.txt
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 20m ./e2e/ 2>&1 | tee bench.txt
	$(GO) test -run '^$$' -bench . -benchmem ./tunnel/ ./activity/ ./manager/ ./manager/conflict/ ./agent/ 2>&1 | tee -a bench.txt
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory kube-bins image; fi
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 20m ./kube/e2e/ 2>&1 | tee -a bench.txt
	@! grep -Eq '^(FAIL|--- FAIL)' bench.txt || { echo 'bench: some benchmarks failed, see bench.txt'; exit 1; }

bench-k8s: ## only the test cluster's benchmarks (root; skipped with the reason otherwise): through the port-forward and a NodePort Service vs the node's namespace; output also in bench-k8s.txt
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory kube-bins image; fi
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 20m ./kube/e2e/ 2>&1 | tee bench-k8s.txt
	@! grep -Eq '^(FAIL|--- FAIL)' bench-k8s.txt || { echo 'bench-k8s: some benchmarks failed, see bench-k8s.txt'; exit 1; }

# The demo runs as its own binary, not under `go run`, so Ctrl-C reaches it
# alone and it cleans up before exiting.
demo: build ## the story of two developers sharing a workload, in network namespaces, about a minute (root)
	$(GO) build -o bin/demo ./internal/netlab/demo
	bin/demo -tether $(BIN)

demo-k8s: build kube-bins image ## the same story on the test cluster: tether helm install, a real Deployment, laptops through their kubeconfigs (root); the cluster is removed after
	$(GO) build -o bin/demo-k8s ./internal/kubestage/demo
	bin/demo-k8s -tether $(BIN) -bins $(KUBE_BINS) -images $(IMAGE_DIR)

demo-vif: build ## manager + daemon + a pod in network namespaces, one curl through the VIF (root)
	$(GO) build -o bin/demo ./internal/netlab/demo
	bin/demo -vif -tether $(BIN)

lint: ## gofmt and go vet (also of the test cluster's tools module)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	cd internal/kubelab/tools && $(GO) vet ./cmd/ociimage

kube-bins: ## build the test cluster's binaries (etcd, Kubernetes v1.37.2, CoreDNS, kubectl) into bin/kube, cached by the tools module's go.sum
	internal/kubelab/tools/build.sh $(KUBE_BINS) $(KUBE_BIN_CACHE)

# The images' binaries: tether for every arch of the index, pause and
# testapp for this machine's nodes.
$(IMAGE_DIR)/build: FORCE
	mkdir -p $@
	cd internal/kubelab/tools && CGO_ENABLED=0 $(GO) build -o $(CURDIR)/$@/ociimage ./cmd/ociimage
	for a in $(IMAGE_ARCHES); do CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -o $@/tether-$$a ./cmd/tether || exit 1; done
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -o $@/pause ./internal/kubelab/pause
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -o $@/testapp ./internal/kubelab/testapp
TETHER_IMAGE_BINS = $(foreach a,$(IMAGE_ARCHES),-bin linux/$(a)=$(IMAGE_DIR)/build/tether-$(a))

image: $(IMAGE_DIR)/build ## build the tether image (amd64+arm64 OCI index) and the test cluster's pause and testapp images as OCI tarballs in bin/image
	$(IMAGE_DIR)/build/ociimage -name tether.local/tether:dev -path /tether $(TETHER_IMAGE_BINS) -o $(IMAGE_DIR)/tether.tar
	$(IMAGE_DIR)/build/ociimage -name tether.local/pause:dev -path /pause -bin linux/$(HOST_ARCH)=$(IMAGE_DIR)/build/pause -o $(IMAGE_DIR)/pause.tar
	$(IMAGE_DIR)/build/ociimage -name tether.local/testapp:dev -path /testapp -bin linux/$(HOST_ARCH)=$(IMAGE_DIR)/build/testapp -o $(IMAGE_DIR)/testapp.tar

image-push: $(IMAGE_DIR)/build ## push the tether image to a registry: make image-push IMAGE=registry/name:tag (credentials from ~/.docker/config.json)
	@test -n "$(IMAGE)" || { echo 'usage: make image-push IMAGE=registry/name:tag'; exit 2; }
	$(IMAGE_DIR)/build/ociimage -push -name $(IMAGE) -path /tether $(TETHER_IMAGE_BINS)

kube-up: kube-bins image ## start the test cluster and leave it running (root); state in KUBELAB_DIR (/tmp/tether-kubelab)
	@$(GO) run ./internal/kubelab/cmd/kubelab -bins $(KUBE_BINS) -images $(IMAGE_DIR) up

kube-down: ## stop the test cluster and remove everything it created (root)
	$(GO) run ./internal/kubelab/cmd/kubelab down

cross: ## build tether for macOS and Windows (compile check of the platform files)
	GOOS=darwin GOARCH=arm64 $(GO) build -o /dev/null ./cmd/tether
	GOOS=windows GOARCH=amd64 $(GO) build -o /dev/null ./cmd/tether

clean: ## remove build output (the kube-bins cache in /var/cache/tether/kube-bins stays)
	rm -rf bin bench.txt bench-k8s.txt

FORCE:

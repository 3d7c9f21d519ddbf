# likesd — see README.md. `make help` lists the targets.
SHELL   := /usr/bin/env bash
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/likesd
FUZZTIME ?= 30s
SCHEDULES ?= 3000

KUBECTL ?= kubectl
WORKERS ?= 3
IMAGE   ?= likesd:local
K8S     := deploy/k8s

STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOLANGCI_LINT := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0


.PHONY: bench-link bench-front bench-flood crash sim help build run-local test test-loaded check vet staticcheck bench bench-memory bench-durable bench-gset bench-go k8s-check k8s-verify k8s-e2e image e2e faults run scale logs down fmt-check tidy tidy-check fuzz bench lint cluster clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/likesd with the version stamped in
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/likesd

run-local: ## one node in memory on :8080 (same as go run ./cmd/likesd)
	go run ./cmd/likesd --log-format console

test: ## the whole test suite, race detector on (what CI runs)
	go test -race -count=1 ./...

BUSY ?= 4
test-loaded: ## make test beside BUSY (4) busy loops, as on a busy machine; the loops are killed whatever happens
	@pids=""; trap 'kill $$pids 2>/dev/null; wait $$pids 2>/dev/null' EXIT INT TERM; \
	for i in $$(seq $(BUSY)); do yes > /dev/null & pids="$$pids $$!"; done; \
	echo "test-loaded: $(BUSY) busy loops (pids$$pids)"; \
	start=$$(date +%s); status=0; $(MAKE) --no-print-directory test || status=$$?; \
	echo "test-loaded: make test exited $$status after $$(( $$(date +%s) - start ))s beside $(BUSY) busy loops"; \
	exit $$status

check: vet fmt-check tidy-check staticcheck ## static checks CI runs before the tests

vet:
	go vet ./...
	go vet -tags e2e ./test/e2e/...
	go vet -tags faults ./test/faults/...
	cd $(K8S) && go vet ./... && go mod tidy -diff

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

tidy: ## go mod tidy
	go mod tidy

tidy-check: ## fail when go mod tidy would change go.mod or go.sum
	go mod tidy -diff

fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	go test -run '^$$' -fuzz '^FuzzOps$$' -fuzztime $(FUZZTIME) ./internal/gset
	go test -run '^$$' -fuzz '^FuzzDecodeBlocks$$' -fuzztime $(FUZZTIME) ./internal/gset
	go test -run '^$$' -fuzz '^FuzzString$$' -fuzztime $(FUZZTIME) ./internal/wire
	go test -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime $(FUZZTIME) ./internal/cluster
	go test -run '^$$' -fuzz '^FuzzStreamMessages$$' -fuzztime $(FUZZTIME) ./internal/cluster
	go test -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME) ./internal/api
	go test -run '^$$' -fuzz '^FuzzLikeBody$$' -fuzztime $(FUZZTIME) ./internal/api
	go test -run '^$$' -fuzz '^FuzzParseVersion$$' -fuzztime $(FUZZTIME) ./internal/api
	go test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./internal/antientropy
	go test -run '^$$' -fuzz '^FuzzRecovery$$' -fuzztime $(FUZZTIME) ./internal/wal

bench: build ## load benchmark: 3 local nodes beside the bare-handler and seed-design baselines, then write levels (w=1/2/all, a node stopped); writes docs/bench-report.md (~8 min)
	go build -o bin/likesbench ./cmd/likesbench
	bin/likesbench suite --likesd $(BIN) --out docs/bench-report.md

bench-front: build ## one node against a bare handler, same wrk load (fresh likes), rounds in turn, in memory and --data-dir; CPU per request, allocations (~2 min; needs wrk)
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	go build -o bin/likesbench ./cmd/likesbench
	bin/likesbench front --likesd $(BIN) --rounds 3 --duration 10s $(BENCH_FRONT_FLAGS)

bench-flood: build ## a paced reader alone, then beside a flood of fresh likes and 256-byte bulk imports, one node under a memory budget (~40 s)
	go build -o bin/likesbench ./cmd/likesbench
	bin/likesbench flood --likesd $(BIN) --memory-limit 64MiB --phase 15s $(BENCH_FLOOD_FLAGS)

BEFORE ?= dd23aa6^
bench-link: build ## issue 21: BEFORE (default dd23aa6^, built in a temporary worktree) against this build, 3 nodes, rounds in turn: one wrk per node at w=1 and w=2, the generator likewise, CPU per like; then anti-entropy repairing 10,000 likes over sessions and through memberlist; writes docs/benchmarks.md (~5 min; needs wrk)
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	go build -o bin/likesbench ./cmd/likesbench
	bin/likesbench link --likesd $(BIN) --before-commit '$(BEFORE)' --out docs/benchmarks.md $(BENCH_LINK_FLAGS)

CRASH_SCHEDULES ?= 5000
crash: ## the data dir's log crashed at every write, sync, create, rename and remove boundary: CRASH_SCHEDULES seeded schedules (default 5000, ~1 min)
	go test -count=1 -run '^TestCrashAtEveryBoundary$$' -timeout 30m ./internal/wal -crash.schedules=$(CRASH_SCHEDULES) -v

sim: ## anti-entropy and the write path (internal/link) under deterministic simulation: SCHEDULES seeded fault schedules each (default 3000, ~5 min + ~2 min)
	go test -count=1 -run '^TestSimulation$$' -timeout 60m ./internal/antientropy -sim.schedules=$(SCHEDULES) -v
	go test -count=1 -run '^TestSimulation$$' -timeout 60m ./internal/link -sim.schedules=$(SCHEDULES) -v

bench-memory: build ## memory per like: likesd beside redis-server on S1-S4 and a 3-node S2 sync; writes docs/benchmarks.md (~20 min)
	command -v redis-server >/dev/null && command -v redis-cli >/dev/null || (apt-get update && apt-get install -y redis-server)
	go build -o bin/likesbench ./cmd/likesbench
	bin/likesbench memory --likesd $(BIN) --out docs/benchmarks.md $(BENCH_MEMORY_FLAGS)

bench-durable: build ## --data-dir: 3 nodes at w=2 in memory vs on disk, S2 recovery from a snapshot + 1M-like log beside redis-server (RDB, AOF), disk bytes per like; writes docs/benchmarks.md (~15 min; data dirs under DURABLE_DIR, default the temp dir)
	command -v redis-server >/dev/null && command -v redis-cli >/dev/null || (apt-get update && apt-get install -y redis-server)
	go build -o bin/likesbench ./cmd/likesbench
	bin/likesbench durable --likesd $(BIN) --out docs/benchmarks.md $(if $(DURABLE_DIR),--dir $(DURABLE_DIR)) $(BENCH_DURABLE_FLAGS)

bench-gset: ## gset and store Go benchmarks beside the B-tree gset they replaced, interleaved, then benchstat on CPU per op (~12 min; ROUNDS=6)
	scripts/bench-gset.sh $(or $(ROUNDS),6)

bench-go: ## Go benchmarks: store hot path, codec, 1M-like sync, real processes converging
	go test -run '^$$' -bench . -benchmem -count 1 ./...

staticcheck: ## staticcheck, built from the Go module proxy
	go run $(STATICCHECK) ./...
	go run $(STATICCHECK) -tags faults ./test/faults/...

lint: staticcheck ## staticcheck and golangci-lint, installed from the Go module proxy
	go run $(GOLANGCI_LINT) run ./...

cluster: build ## 3 local nodes on :8081-8083 (gossip 7946-7948), their likes in ./data/n1-n3 (rm -rf data to start empty); Ctrl-C stops all
	@scripts/cluster.sh $(BIN)

clean:
	rm -rf bin

k8s-check: ## fast manifest checks: strict decoding into k8s.io/api types (nested module)
	cd $(K8S) && go test -count=1 ./...

k8s-verify: ## apply, scale to 5 and delete the manifests on a real kube-apiserver + etcd on 127.0.0.1
	$(K8S)/verify/k8s-verify.sh

k8s-e2e: ## deploy/k8s on a real one-node Kubernetes in a network namespace (root; cold build 15-25 min, cached after): Ready, DNS join, NodePort, scale, master restart; under load and losing no like: every pod deleted at once, rollout restart, scale down and up
	deploy/k8s/e2e/k8s-e2e.sh

image: build ## the container image from the host-built binary (no registry needed)
	DOCKER_BUILDKIT=0 docker build --target prebuilt --build-arg VERSION=$(VERSION) -t $(IMAGE) .

e2e: ## containers (builds the image itself): master + workers on a private docker network, partitions, restarts, scaling
	go test -race -count=1 -tags e2e -timeout 15m -v ./test/e2e/...

FAULT_TIMEOUT ?= 30m
faults: build ## root: 5 likesd in network namespaces under seeded faults, then the checker (~6-10 min); FAULT_SEEDS=17 replays one, FAULT_SCHEDULES=30 runs more (docs/faults.md)
	FAULT_BIN=$(abspath $(BIN)) go test -count=1 -tags faults -timeout $(FAULT_TIMEOUT) -v ./test/faults/

# --- minikube, as in the original article -------------------------------
run: ## deploy on minikube: image into minikube's docker, deploy/k8s/deploy.sh (as k8s-e2e), print the URL
	eval $$(minikube docker-env) && docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .
	KUBECTL='$(KUBECTL)' $(K8S)/deploy.sh
	minikube service distributed-likes-service-cluster --url

scale: ## scale the workers: make scale WORKERS=5
	$(KUBECTL) scale statefulset/likes-worker --replicas=$(WORKERS)

logs: ## recent logs of every likesd pod
	$(KUBECTL) logs -l application=likes-distributed --prefix --tail=200 --max-log-requests=20

down: ## delete everything make run created but the pods' volumes (PVCs); the data is wiped by: kubectl delete pvc -l application=likes-distributed
	$(KUBECTL) delete -f $(K8S)/ --ignore-not-found
	@echo "down: the pods' volumes stay (kubectl get pvc -l application=likes-distributed); delete them to wipe the likes"


# likesd — see README.md. `make help` lists the targets.
SHELL   := /usr/bin/env bash
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/likesd
FUZZTIME ?= 30s

STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOLANGCI_LINT := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0


.PHONY: help build run-local test check vet staticcheck fmt-check tidy tidy-check fuzz bench lint cluster clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/likesd with the version stamped in
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/likesd

run-local: ## one node in memory on :8080 (same as go run ./cmd/likesd)
	go run ./cmd/likesd --log-format console

test: ## the whole test suite, race detector on (what CI runs)
	go test -race -count=1 ./...

check: vet fmt-check tidy-check staticcheck ## static checks CI runs before the tests

vet:
	go vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

tidy: ## go mod tidy
	go mod tidy

tidy-check: ## fail when go mod tidy would change go.mod or go.sum
	go mod tidy -diff

fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	go test -run '^$$' -fuzz '^FuzzUnmarshalBinary$$' -fuzztime $(FUZZTIME) ./internal/gset
	go test -run '^$$' -fuzz '^FuzzString$$' -fuzztime $(FUZZTIME) ./internal/wire
	go test -run '^$$' -fuzz '^FuzzDecodeLikes$$' -fuzztime $(FUZZTIME) ./internal/cluster
	go test -run '^$$' -fuzz '^FuzzDecodeState$$' -fuzztime $(FUZZTIME) ./internal/cluster
	go test -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME) ./internal/api

bench: ## Go benchmarks, including 3 real processes converging
	go test -run '^$$' -bench . -benchmem -count 1 ./...

staticcheck: ## staticcheck, built from the Go module proxy
	go run $(STATICCHECK) ./...

lint: staticcheck ## staticcheck and golangci-lint, installed from the Go module proxy
	go run $(GOLANGCI_LINT) run ./...

cluster: build ## 3 local nodes on :8081-8083 (gossip 7946-7948); Ctrl-C stops all
	@trap 'kill 0' INT TERM EXIT; \
	$(BIN) --http-addr 127.0.0.1:8081 --gossip-addr 127.0.0.1:7946 --node-name n1 --log-format console & \
	sleep 0.5; \
	$(BIN) --http-addr 127.0.0.1:8082 --gossip-addr 127.0.0.1:7947 --node-name n2 --join 127.0.0.1:7946 --log-format console & \
	$(BIN) --http-addr 127.0.0.1:8083 --gossip-addr 127.0.0.1:7948 --node-name n3 --join 127.0.0.1:7946 --log-format console & \
	wait

clean:
	rm -rf bin

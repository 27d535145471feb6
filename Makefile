# The README names these targets. `make run` and `make test` do all set-up.
SHELL := /bin/bash
FUZZTIME ?= 10s
BENCH_CLUSTERS ?= 200
# The benchmark's requests/s to the management cluster (the server's default is 50).
BENCH_MGMT_QPS ?= 50
BENCH_WATCHED_INTERVAL ?=

.PHONY: run run-service test build migrate vet lint fuzz bench bench-events bench-writes bench-reads bench-render clean-test-dbs

run: ## run the service with a local management cluster (Postgres started if none answers)
	hack/dev.sh

run-service: ## run the service alone, against LOK8S_MGMT_KUBECONFIG if set
	hack/run.sh

test: ## run every test (Postgres started if none answers)
	hack/test.sh

build: ## build bin/lok8s-server
	go build -trimpath -o bin/lok8s-server ./cmd/server

migrate: ## migrate the database at DATABASE_URL and exit
	go run ./cmd/server migrate

vet:
	go vet ./...

lint: ## golangci-lint with .golangci.yml (the pinned linter is built once and cached)
	hack/lint.sh
	@files=$$(find . -name '*.go' -not -path './hack/tools/*' -print0 | xargs -0 gofmt -l); \
	test -z "$$files" || { echo "gofmt would change: $$files"; exit 1; }

fuzz: ## fuzz the spec parser for FUZZTIME
	go test ./internal/spec -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME)

bench: ## provision BENCH_CLUSTERS clusters at once through the API against envtest and print the figures
	hack/postgres.sh
	KUBEBUILDER_ASSETS=$$(hack/test-assets.sh) LOK8S_BENCH_CLUSTERS=$(BENCH_CLUSTERS) \
		LOK8S_BENCH_MGMT_QPS=$(BENCH_MGMT_QPS) $(if $(BENCH_WATCHED_INTERVAL),LOK8S_BENCH_WATCHED_INTERVAL=$(BENCH_WATCHED_INTERVAL)) \
		go test ./internal/e2e -run '^$$' -bench BenchmarkProvisionMany -benchtime=1x -timeout 60m

bench-events: ## 500 event streams on one server while 100 clusters change state
	hack/postgres.sh
	go test ./internal/api -run '^$$' -bench BenchmarkEventStreams -benchtime=1x

bench-writes: ## POST clusters from 32 concurrent clients for 10 s, beside the old global events lock and the store alone
	hack/postgres.sh
	go test ./internal/api -run '^$$' -bench BenchmarkCreateClusters -benchtime=1x

bench-reads: ## status reads of 10,000 clusters from the server process beside kube-apiserver GETs of as many CAPI Clusters
	hack/postgres.sh
	KUBEBUILDER_ASSETS=$$(hack/test-assets.sh) LOK8S_BENCH_READS_CLUSTERS=$${LOK8S_BENCH_READS_CLUSTERS:-10000} \
		go test ./internal/e2e -run '^$$' -bench BenchmarkStatusReads -benchtime=1x -timeout 30m

bench-render: ## Catalog.Render against `clusterctl generate cluster` (built once from the module proxy) on the same template: both and the ratio
	hack/bench-render.sh

clean-test-dbs: ## drop databases left by interrupted test runs
	psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 'DROP DATABASE \"' || datname || '\" WITH (FORCE);' FROM pg_database WHERE datname LIKE 'lok8s_test_%' OR datname LIKE 'lok8s_tmpl_%'" | psql -h 127.0.0.1 -U postgres -d postgres -q

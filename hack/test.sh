#!/usr/bin/env bash
# Runs every test: vet, format and lint checks, the whole Go test suite against a
# real Postgres (started if none answers), and a short fuzz of the spec
# parser. FUZZTIME (default 10s) sets the fuzzing time.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/postgres.sh
# Debian's Chromium, for the dashboard's browser test.
if [ ! -x /usr/bin/chromium ]; then
  echo "== installing Debian's chromium for the browser test" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo=sudo; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
# kube-apiserver and etcd for envtest: built once from the Go module proxy
# (several minutes), then cached under ${XDG_CACHE_HOME:-~/.cache}/lok8s.
KUBEBUILDER_ASSETS=$(hack/test-assets.sh)
# Cluster API's own controllers, for internal/localmgmt's end-to-end test:
# built once (about 4 minutes), then cached there too.
LOK8S_CAPI_CONTROLLERS=$(hack/capi-controllers.sh)
export KUBEBUILDER_ASSETS LOK8S_CAPI_CONTROLLERS

echo "== go vet, gofmt and go.mod's direct requirements" >&2
go vet ./...
unformatted=$(find . -name '*.go' -not -path './hack/tools/*' -print0 | xargs -0 gofmt -l)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2; echo "$unformatted" >&2; exit 1
fi
# go.mod's direct requirements are the modules the code imports (what
# `go mod tidy -diff` would check, if tidy could run here: hack/gomod-direct.sh).
hack/gomod-direct.sh

echo "== golangci-lint (.golangci.yml)" >&2
hack/lint.sh

echo "== go test" >&2
go test -count=1 ./...

# One go test for both, so they share one envtest start; the reads
# benchmark's smoke run (100 clusters, 0.3 s a phase) adds about 10 s.
echo "== make bench and make bench-reads as smoke runs (${LOK8S_BENCH_SMOKE_CLUSTERS:-10} clusters; 100 for reads)" >&2
LOK8S_BENCH_CLUSTERS=${LOK8S_BENCH_SMOKE_CLUSTERS:-10} LOK8S_BENCH_READS_CLUSTERS=100 LOK8S_BENCH_READS_DURATION=300ms \
	go test ./internal/e2e -run '^$' -bench 'BenchmarkProvisionMany|BenchmarkStatusReads' -benchtime=1x

echo "== fuzz the spec parser for ${FUZZTIME:-10s}" >&2
go test ./internal/spec -run '^$' -fuzz FuzzLoad -fuzztime "${FUZZTIME:-10s}"

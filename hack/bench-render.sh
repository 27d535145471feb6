#!/usr/bin/env bash
# Times Catalog.Render against `clusterctl generate cluster` run as a process
# on the same template text, in the same run, and prints both and the ratio
# (`make bench-render`; docs/performance.md, "Rendering", says what exactly
# is compared).
#
# clusterctl is built from the Go module proxy at the cluster-api version of
# go.mod (sigs.k8s.io/cluster-api/cmd/clusterctl, in a temporary module that
# is removed afterwards) and cached per version under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/lok8s/clusterctl-<version>/
# A cold build takes a few minutes on 2 cores. Rebuild with: --rebuild
#
# Environment: BENCH_RENDER_SPEC (hcloud: a spec of internal/capi/testdata/
# specs), BENCH_RENDER_RUNS (rounds, 50: each runs clusterctl once, Render 10
# times and the text path once), BENCH_RENDER_TIME (-benchtime, 2s).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_PREFIX=bench-render
# shellcheck source=hack/lib.sh
source "$root/hack/lib.sh"
parse_args 15 "$@"

command -v go >/dev/null || die "go not found in PATH"
version=$(capi_version)
dir=${XDG_CACHE_HOME:-$HOME/.cache}/lok8s/clusterctl-$version

# Cached when its build info names clusterctl's main package and the release.
have() {
	local info
	[[ -x $dir/clusterctl ]] || return 1
	info=$(go version -m "$dir/clusterctl" 2>/dev/null) || return 1
	grep -Eq "^[[:space:]]*path[[:space:]]+sigs\.k8s\.io/cluster-api/cmd/clusterctl\$" <<<"$info" &&
		grep -Eq "^[[:space:]]*mod[[:space:]]+sigs\.k8s\.io/cluster-api[[:space:]]+${version//./\\.}([[:space:]]|\$)" <<<"$info"
}

(
	open_cache "$dir"
	if $rebuild; then rm -f "$dir/clusterctl"; fi
	if have; then
		log "clusterctl $version: cached"
		exit 0
	fi
	# cluster-api's go.mod replaces its api module with a relative path,
	# so `go install ...@version` refuses it: build in a throwaway module
	# that requires the release (and its api module at the same version).
	mod=$(mktemp -d)
	trap 'rm -rf "$mod"; _remove_tmp_files' EXIT
	(
		cd "$mod"
		export GOFLAGS=-buildvcs=false
		go mod init lok8s.dev/bench/clusterctl >/dev/null 2>&1
		go mod edit -replace "sigs.k8s.io/cluster-api/api=sigs.k8s.io/cluster-api/api@$version"
		go get "sigs.k8s.io/cluster-api/cmd/clusterctl@$version"
	) >&2 || die "could not resolve sigs.k8s.io/cluster-api/cmd/clusterctl@$version"
	ldflags="-s -w -X sigs.k8s.io/cluster-api/version.gitVersion=$version"
	ldflags+=" -X sigs.k8s.io/cluster-api/version.gitMajor=1"
	ldflags+=" -X sigs.k8s.io/cluster-api/version.gitMinor=$(cut -d. -f2 <<<"$version")"
	ldflags+=" -X sigs.k8s.io/cluster-api/version.gitTreeState=clean"
	build clusterctl "$mod" sigs.k8s.io/cluster-api/cmd/clusterctl -ldflags "$ldflags"
	have || die "built clusterctl does not carry cluster-api $version in its build info"
)

cd "$root"
log "Catalog.Render vs $dir/clusterctl ($version), spec ${BENCH_RENDER_SPEC:-hcloud}"
out=$(LOK8S_CLUSTERCTL="$dir/clusterctl" \
	LOK8S_BENCH_RENDER_SPEC="${BENCH_RENDER_SPEC:-hcloud}" \
	LOK8S_BENCH_CLUSTERCTL_RUNS="${BENCH_RENDER_RUNS:-50}" \
	go test ./internal/capi -run '^$' -bench '^BenchmarkRenderVsClusterctl$' \
	-benchtime "${BENCH_RENDER_TIME:-2s}" -benchmem -count 1)
printf '%s\n' "$out"
# The benchmark reports each figure as a metric; print them as a summary.
awk '/^BenchmarkRenderVsClusterctl/ {
	for (i = 2; i < NF; i++) m[$(i + 1)] = $i
	printf "\nmedians of %d interleaved rounds:\n", m["rounds"]
	printf "  clusterctl generate cluster (process): %9.3f ms\n", m["clusterctl-ms"]
	printf "  Catalog.Render:                        %9.3f ms per cluster\n", m["render-ms"]
	printf "  text path (Render before compiling):   %9.3f ms per cluster\n", m["textpath-ms"]
	printf "  ratio clusterctl / Render:             %9.1f x\n", m["ratio"]
	printf "  CPU time (user+sys): clusterctl %.3f ms, Render %.3f ms: %.1f x\n", m["clusterctl-cpu-ms"], m["render-cpu-ms"], m["cpu-ratio"]
	printf "Catalog.Render alone (go test -bench):   %9.3f ms per cluster, %d allocs\n", m["ns/op"] / 1e6, m["allocs/op"]
}' <<<"$out"

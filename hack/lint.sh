#!/usr/bin/env bash
# Runs golangci-lint with .golangci.yml over the main module. The linter is
# built from the Go module proxy (pinned by the tools module hack/tools/lint)
# and cached per version under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/lok8s/golangci-lint-<version>/
# A cold build takes about two minutes; later runs only check the cache.
# Arguments after the options go to `golangci-lint run` (default ./...).
# Rebuild with: --rebuild
set -euo pipefail

LINT_VERSION=v2.15.0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_PREFIX=lint
# shellcheck source=hack/lib.sh
source "$root/hack/lib.sh"
args=()
for arg in "$@"; do
	case "$arg" in
	--rebuild | -h | --help) parse_args 8 "$arg" ;;
	*) args+=("$arg") ;;
	esac
done
rebuild=${rebuild:-false}

tools=$root/hack/tools/lint
grep -Eq "^require github\.com/golangci/golangci-lint/v2 ${LINT_VERSION//./\\.}\$" "$tools/go.mod" ||
	die "hack/tools/lint/go.mod does not require golangci-lint $LINT_VERSION"

dir=${XDG_CACHE_HOME:-$HOME/.cache}/lok8s/golangci-lint-$LINT_VERSION
(
	open_cache "$dir"
	if $rebuild; then rm -f "$dir/golangci-lint"; fi
	# Cached when its build info carries the pinned release.
	if go version -m "$dir/golangci-lint" 2>/dev/null |
		grep -Eq "^[[:space:]]*(mod|dep)[[:space:]]+github\.com/golangci/golangci-lint/v2[[:space:]]+${LINT_VERSION//./\\.}([[:space:]]|\$)"; then
		log "golangci-lint $LINT_VERSION: cached"
	else
		build golangci-lint "$tools" github.com/golangci/golangci-lint/v2/cmd/golangci-lint \
			-ldflags "-s -w -X main.version=${LINT_VERSION#v}"
	fi
)

cd "$root"
log "golangci-lint run ${args[*]:-./...}"
"$dir/golangci-lint" run "${args[@]:-./...}"

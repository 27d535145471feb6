#!/usr/bin/env bash
# Fails when go.mod marks a module "// indirect" that the project's own
# packages or tests import. `go mod tidy -diff` would catch it, but tidy
# cannot run here: it walks cluster-api's test-only imports, which name a
# placeholder version of sigs.k8s.io/cluster-api/api that the module proxy
# refuses (403).
set -euo pipefail
cd "$(dirname "$0")/.."

imports=$(go list -f '{{join .Imports "\n"}}
{{join .TestImports "\n"}}
{{join .XTestImports "\n"}}' ./... | sort -u | grep '\.' | grep -v '^lok8s\.dev/' || true)
# shellcheck disable=SC2086 # one argument per import path
modules=$(go list -f '{{with .Module}}{{.Path}}{{end}}' $imports | sort -u)
bad=""
for m in $modules; do
	if grep -qE "^[[:space:]]+${m//./\\.} [^ ]+ // indirect$" go.mod; then
		bad="$bad $m"
	fi
done
if [ -n "$bad" ]; then
	echo "go.mod marks these imported modules // indirect (move them to the first require block):$bad" >&2
	exit 1
fi

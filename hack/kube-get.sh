#!/usr/bin/env bash
# kube-get.sh KUBECONFIG PATH: GETs PATH (e.g. /api/v1/nodes) from the
# cluster a kubeconfig with embedded certificates names, with curl alone
# (no kubectl needed). Used by the README's walk-through.
set -euo pipefail
kubeconfig=$1 path=$2
field() { sed -n "s/^ *$1: *//p" "$kubeconfig" | head -n 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
field certificate-authority-data | base64 -d >"$dir/ca.crt"
field client-certificate-data | base64 -d >"$dir/client.crt"
field client-key-data | base64 -d >"$dir/client.key"
curl -sS --fail-with-body --cacert "$dir/ca.crt" --cert "$dir/client.crt" --key "$dir/client.key" "$(field server)$path"

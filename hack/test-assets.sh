#!/usr/bin/env bash
# Builds the binaries that internal/testenv (envtest) runs, kube-apiserver and
# etcd, from the Go module proxy, and caches them per version under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/lok8s/k8s-<version>-etcd-<version>/
# The LAST line of stdout is that directory, so callers can write
#   KUBEBUILDER_ASSETS=$(hack/test-assets.sh) go test ./...
# Everything else goes to stderr.
#
# The versions and every dependency are pinned by the tools modules
# hack/tools/k8s (kube-apiserver) and hack/tools/etcd (etcd), go.mod + go.sum.
# A cold build takes several minutes (kube-apiserver is large); later runs only
# check the cache. Rebuild from scratch with: hack/test-assets.sh --rebuild
#
# It also downloads the modules whose CRDs the tests install (Cluster API and
# the AWS provider) into the module cache, so that tests can run offline after
# this script has run once. internal/testenv locates those CRDs itself.
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.16

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_PREFIX=test-assets
# shellcheck source=hack/lib.sh
source "$root/hack/lib.sh"
parse_args 16 "$@"

# The versions internal/testenv reads CRDs at (go.mod's cluster-api,
# testenv.CAPAVersion).
CAPI_MODULE=sigs.k8s.io/cluster-api@$(capi_version)
CAPA_MODULE=sigs.k8s.io/cluster-api-provider-aws/v2@$(capa_version)

k8s_tools=$root/hack/tools/k8s
etcd_tools=$root/hack/tools/etcd

command -v go >/dev/null || die "go not found in PATH"

# The versions above must be the ones the tools modules pin.
grep -Eq "^require k8s\.io/kubernetes ${K8S_VERSION//./\\.}\$" "$k8s_tools/go.mod" ||
	die "hack/tools/k8s/go.mod does not require k8s.io/kubernetes $K8S_VERSION"
grep -Eq "^require go\.etcd\.io/etcd/server/v3 ${ETCD_VERSION//./\\.}\$" "$etcd_tools/go.mod" ||
	die "hack/tools/etcd/go.mod does not require go.etcd.io/etcd/server/v3 $ETCD_VERSION"

cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/lok8s
dir=$cache_root/k8s-$K8S_VERSION-etcd-$ETCD_VERSION
open_cache "$dir"
if $rebuild; then
	rm -f "$dir/kube-apiserver" "$dir/etcd"
fi

# The version strings the binaries must report; a mismatch (or a binary that
# does not run) counts as a miss.
have() {
	local name=$1 want=$2
	[[ -x $dir/$name ]] || return 1
	local out
	out=$("$dir/$name" --version 2>/dev/null) || return 1
	[[ $out == *"$want"* ]]
}

if have kube-apiserver "Kubernetes $K8S_VERSION"; then
	log "kube-apiserver $K8S_VERSION: cached"
else
	minor=${K8S_VERSION#v*.}
	minor=${minor%%.*}
	major=${K8S_VERSION#v}
	major=${major%%.*}
	# Unstamped, kube-apiserver reports v0.0.0-master, which Cluster API
	# controllers refuse as a management cluster.
	build kube-apiserver "$k8s_tools" k8s.io/kubernetes/cmd/kube-apiserver \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
	have kube-apiserver "Kubernetes $K8S_VERSION" || die "built kube-apiserver does not report $K8S_VERSION"
fi

if have etcd "etcd Version: ${ETCD_VERSION#v}"; then
	log "etcd $ETCD_VERSION: cached"
else
	# The root package of go.etcd.io/etcd/server/v3 is etcd's main package.
	build etcd "$etcd_tools" go.etcd.io/etcd/server/v3 -ldflags "-s -w"
	have etcd "etcd Version: ${ETCD_VERSION#v}" || die "built etcd does not report $ETCD_VERSION"
fi

# Warm the module cache with the CRD sources (no-op when already there).
(cd "$cache_root" && GOFLAGS= go mod download "$CAPI_MODULE" "$CAPA_MODULE") >&2 ||
	die "could not download the CRD modules $CAPI_MODULE $CAPA_MODULE"
log "CRD modules in the module cache: $CAPI_MODULE $CAPA_MODULE"

echo "$dir"

#!/usr/bin/env bash
# Builds Cluster API's own controller managers from the Go module proxy and
# caches them per version under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/lok8s/capi-<version>/
# The LAST line of stdout is that directory; everything else goes to stderr.
# internal/localmgmt runs these binaries against a local management cluster.
#
#   capi-core                    sigs.k8s.io/cluster-api/core
#   capi-kubeadm-bootstrap       sigs.k8s.io/cluster-api/bootstrap/kubeadm
#   capi-kubeadm-control-plane   sigs.k8s.io/cluster-api/controlplane/kubeadm
#   capd                         sigs.k8s.io/cluster-api/test/infrastructure/docker
#                                (Docker provider; its Dev* kinds have the
#                                in-memory backend used locally)
#
# The versions and every dependency are pinned by the tools module
# hack/tools/capi (go.mod + go.sum). A cold build takes about 4 minutes on 2
# cores; later runs only check the cache. Rebuild with: --rebuild
#
# It also downloads the modules whose CRDs and webhook manifests
# internal/localmgmt installs (cluster-api and cluster-api/test) into the
# module cache, so that tests can run offline after one run.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_PREFIX=capi-controllers
# shellcheck source=hack/lib.sh
source "$root/hack/lib.sh"
parse_args 21 "$@"

# The release go.mod requires (internal/testenv.CAPIVersion).
CAPI_VERSION=$(capi_version)

tools=$root/hack/tools/capi

command -v go >/dev/null || die "go not found in PATH"

# The version above must be the one the tools module pins, for all three
# modules of the release.
for m in sigs.k8s.io/cluster-api sigs.k8s.io/cluster-api/api sigs.k8s.io/cluster-api/test; do
	grep -Eq "^[[:space:]]*${m//./\\.} => ${m//./\\.} ${CAPI_VERSION//./\\.}\$" "$tools/go.mod" ||
		die "hack/tools/capi/go.mod does not replace $m with $CAPI_VERSION"
done

cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/lok8s
dir=$cache_root/capi-$CAPI_VERSION
open_cache "$dir"
names=(capi-core capi-kubeadm-bootstrap capi-kubeadm-control-plane capd)
if $rebuild; then
	for n in "${names[@]}"; do rm -f "$dir/$n"; done
fi

# The managers log their version at start (and nothing checks it against the
# management cluster), but stamp it like a release build does.
ldflags="-s -w -X sigs.k8s.io/cluster-api/version.gitVersion=$CAPI_VERSION"
ldflags+=" -X sigs.k8s.io/cluster-api/version.gitMajor=1"
ldflags+=" -X sigs.k8s.io/cluster-api/version.gitMinor=$(cut -d. -f2 <<<"$CAPI_VERSION")"
ldflags+=" -X sigs.k8s.io/cluster-api/version.gitTreeState=clean"

# A binary counts as cached when its embedded build info names the main
# package and the pinned cluster-api release (go version -m reads it without
# running the binary; the managers have no --version flag).
have() {
	local name=$1 pkg=$2
	[[ -x $dir/$name ]] || return 1
	local info
	info=$(go version -m "$dir/$name" 2>/dev/null) || return 1
	grep -Eq "^[[:space:]]*path[[:space:]]+${pkg//./\\.}\$" <<<"$info" &&
		grep -Eq "=>[[:space:]]+sigs\.k8s\.io/cluster-api[[:space:]]+${CAPI_VERSION//./\\.}([[:space:]]|\$)" <<<"$info"
}

build_one() {
	local name=$1 pkg=$2
	if have "$name" "$pkg"; then
		log "$name $CAPI_VERSION: cached"
	else
		build "$name" "$tools" "$pkg" -ldflags "$ldflags"
		have "$name" "$pkg" || die "built $name does not carry cluster-api $CAPI_VERSION in its build info"
	fi
}

total=$SECONDS
build_one capi-core sigs.k8s.io/cluster-api/core
build_one capi-kubeadm-bootstrap sigs.k8s.io/cluster-api/bootstrap/kubeadm
build_one capi-kubeadm-control-plane sigs.k8s.io/cluster-api/controlplane/kubeadm
build_one capd sigs.k8s.io/cluster-api/test/infrastructure/docker
log "controllers ready in $((SECONDS - total))s"

# Warm the module cache with the CRD and webhook manifests (no-op when there).
(cd "$cache_root" && GOFLAGS= go mod download \
	"sigs.k8s.io/cluster-api@$CAPI_VERSION" "sigs.k8s.io/cluster-api/test@$CAPI_VERSION") >&2 ||
	die "could not download sigs.k8s.io/cluster-api{,/test}@$CAPI_VERSION"

echo "$dir"

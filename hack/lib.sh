# shellcheck shell=bash
# What hack/test-assets.sh and hack/capi-controllers.sh share: building Go
# binaries from a pinned tools module into a per-version cache directory.
# Sourced, not run; the sourcing script sets LOG_PREFIX first.

log() { printf '%s: %s\n' "$LOG_PREFIX" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# parse_args LAST_HELP_LINE "$@": sets rebuild=true for --rebuild; --help
# prints the calling script's header comment (lines 2 to LAST_HELP_LINE).
parse_args() {
	local help_end=$1
	shift
	rebuild=false
	for arg in "$@"; do
		case "$arg" in
		--rebuild) rebuild=true ;;
		-h | --help)
			sed -n "2,${help_end}p" "$0" | sed 's/^# \{0,1\}//' >&2
			exit 0
			;;
		*) die "unknown argument: $arg (usage: $0 [--rebuild])" ;;
		esac
	done
}

# The Cluster API release is the one go.mod requires (the service imports
# it); internal/testenv.CAPIVersion is checked against it by a test. CAPA is
# not a dependency of the main module: its version is declared once, as
# internal/testenv.CAPAVersion, and read from there. Both need $root.
capi_version() {
	(cd "$root" && GOWORK=off go list -m -f '{{.Version}}' sigs.k8s.io/cluster-api) ||
		die "cannot read the cluster-api version from go.mod"
}
capa_version() {
	local v
	v=$(sed -nE 's/^[[:space:]]*CAPAVersion[[:space:]]*=[[:space:]]*"([^"]+)".*/\1/p' "$root/internal/testenv/crds.go")
	[[ -n $v ]] || die "cannot read CAPAVersion from internal/testenv/crds.go"
	printf '%s\n' "$v"
}

# open_cache DIR: creates DIR and takes its lock, so one build runs at a
# time (test packages run in parallel and each may call the script; the
# others wait and then find the cache filled); removes the temporary
# binaries of an interrupted build; and sets the go environment to use
# exactly the tools modules' go.mod and go.sum.
open_cache() {
	cache_dir=$1
	mkdir -p "$cache_dir"
	exec 9>"$cache_dir/.lock"
	if ! flock -n 9; then
		log "waiting for another build into $cache_dir"
		flock 9
	fi
	rm -f "$cache_dir"/.*.tmp.*
	export GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
	tmp_files=()
	trap '_remove_tmp_files' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

_remove_tmp_files() { if ((${#tmp_files[@]})); then rm -f "${tmp_files[@]}"; fi; }

# build NAME MODULE_DIR PACKAGE [go build flags...]: builds into a temporary
# name in the cache directory and renames it into place only once complete,
# so an interrupted build never leaves a binary that looks cached.
build() {
	local name=$1 moddir=$2 pkg=$3
	shift 3
	local tmp=$cache_dir/.$name.tmp.$$
	tmp_files+=("$tmp")
	log "building $name from $pkg"
	local start=$SECONDS
	(cd "$moddir" && go build -trimpath "$@" -o "$tmp" "$pkg") >&2
	mv -f "$tmp" "$cache_dir/$name"
	log "built $name in $((SECONDS - start))s"
}

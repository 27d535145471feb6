#!/usr/bin/env bash
# Runs the service on one machine with a local management cluster (make run):
#   1. Postgres at 127.0.0.1:5432 (started if none answers), database lok8s;
#   2. kube-apiserver + etcd and Cluster API's controllers, built from the Go
#      module proxy on first use (about 10 minutes) and cached under
#      ${XDG_CACHE_HOME:-~/.cache}/lok8s, started by cmd/devmgmt;
#   3. the service, pointed at that management cluster, with the templates
#      plus the development-only in-memory provider (hack/dev/providers).
# The dev admin token and encryption key are made on first run and kept in
# ${XDG_CONFIG_HOME:-~/.config}/lok8s/dev.env (mode 600). Any LOK8S_* or
# DATABASE_URL variable already set wins. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/postgres.sh lok8s
KUBEBUILDER_ASSETS=$(hack/test-assets.sh)
LOK8S_CAPI_CONTROLLERS=$(hack/capi-controllers.sh)
export KUBEBUILDER_ASSETS LOK8S_CAPI_CONTROLLERS

dev=${XDG_CACHE_HOME:-$HOME/.cache}/lok8s/dev
rm -rf "$dev/templates" "$dev/mgmt"
mkdir -p "$dev/templates"
cp -r templates/. "$dev/templates/"
cp -r hack/dev/providers/. "$dev/templates/providers/"

echo "dev: starting the local management cluster (logs in $dev/mgmt/logs)" >&2
go build -o "$dev/devmgmt" ./cmd/devmgmt
"$dev/devmgmt" -workdir "$dev/mgmt" &
mgmt=$!
trap 'kill -TERM $mgmt 2>/dev/null; wait $mgmt 2>/dev/null' EXIT
for _ in $(seq 1 300); do
  [ -f "$dev/mgmt/ready" ] && break
  kill -0 $mgmt 2>/dev/null || { echo "dev: the management cluster did not start" >&2; exit 1; }
  sleep 1
done
[ -f "$dev/mgmt/ready" ] || { echo "dev: the management cluster was not ready in 5 minutes" >&2; exit 1; }

export LOK8S_MGMT_KUBECONFIG=${LOK8S_MGMT_KUBECONFIG:-$dev/mgmt/kubeconfig.yaml}
export LOK8S_TEMPLATES_DIR=${LOK8S_TEMPLATES_DIR:-$dev/templates}
export LOK8S_CHECK_INTERVAL=${LOK8S_CHECK_INTERVAL:-2s}
# The service in the background, so that a signal interrupts the wait below
# at once; on the way out the service stops first (closing its watches),
# then the management cluster.
hack/run.sh &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null; kill -TERM $mgmt 2>/dev/null; wait $mgmt 2>/dev/null' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
wait $server

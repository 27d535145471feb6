#!/usr/bin/env bash
# Runs the service alone on local defaults (hack/dev.sh, which make run uses,
# adds a local management cluster): Postgres at 127.0.0.1:5432 (started if
# none answers), database "lok8s", and a dev admin token and encryption key
# made on first run and kept in ${XDG_CONFIG_HOME:-~/.config}/lok8s/dev.env
# (mode 600), so credentials stored by one run still open in the next.
# Any LOK8S_* or DATABASE_URL variable already set wins.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/postgres.sh lok8s

conf_dir=${XDG_CONFIG_HOME:-$HOME/.config}/lok8s
dev_env=$conf_dir/dev.env
if [ ! -f "$dev_env" ]; then
  mkdir -p "$conf_dir"
  umask 077
  {
    echo "LOK8S_ADMIN_TOKEN=lok8s_dev_$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    echo "LOK8S_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)"
  } >"$dev_env"
fi
while read -r line; do
  name=${line%%=*}
  [ -n "${!name:-}" ] || export "$line"
done <"$dev_env"
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/lok8s?sslmode=disable}
export LOK8S_ADDR=${LOK8S_ADDR:-127.0.0.1:8080}
export LOK8S_LOG_FORMAT=${LOK8S_LOG_FORMAT:-text}

cat >&2 <<MSG

  lok8s dev server on http://$LOK8S_ADDR
  admin token (from $dev_env):
    export TOKEN=$LOK8S_ADMIN_TOKEN

MSG
# Built, then exec'd: the server itself gets the signals (go run would sit
# between them and could leave it running).
bin=${XDG_CACHE_HOME:-$HOME/.cache}/lok8s/dev/lok8s-server
mkdir -p "$(dirname "$bin")"
go build -o "$bin" ./cmd/server
exec "$bin" serve

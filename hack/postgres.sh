#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at 127.0.0.1:5432 (PGHOST/PGPORT to
# change) and that the databases named as arguments exist on it.
#
# If none answers, it starts Debian's PostgreSQL, installing it from apt
# first if needed. A cluster this script creates trusts local TCP
# connections (loopback only), which is what the service's local defaults
# and the tests expect; an existing server's configuration is left alone.
set -euo pipefail

host=${PGHOST:-127.0.0.1}
port=${PGPORT:-5432}
user=${PGUSER:-postgres}

say() { echo "postgres: $*" >&2; }
answers() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! answers; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    say "no server answers at $host:$port and none is installed: installing Debian's postgresql"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    as_root pg_createcluster "$version" main >/dev/null
  fi
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! as_root grep -q '^# lok8s: trust loopback' "$hba"; then
    # Only for a cluster that does not answer yet, i.e. one we start here.
    as_root sed -i '1i # lok8s: trust loopback\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 30); do answers && break; sleep 1; done
  answers || { say "PostgreSQL did not come up at $host:$port"; exit 1; }
fi

if [ $# -gt 0 ] && ! command -v psql >/dev/null 2>&1; then
  say "installing the psql client"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql-client >/dev/null
fi
for db in "$@"; do
  exists=$(psql -h "$host" -p "$port" -U "$user" -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'")
  if [ "$exists" != 1 ]; then
    say "creating database $db"
    psql -h "$host" -p "$port" -U "$user" -d postgres -qc "CREATE DATABASE \"$db\"" >/dev/null
  fi
done

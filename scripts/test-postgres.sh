#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, `make chaos` and `make bench`: its data and its Unix
# socket in DIR, no TCP port (two trees' servers never meet), trust authentication for the user
# "postgres", fsync off (the tests kill processes, not the machine; what a killed PostgreSQL wrote
# is in the kernel's page cache). synchronous_commit stays on: with it off, an immediate stop loses
# commits already acknowledged (make chaos-replicas found reports lost that way).
#   scripts/test-postgres.sh start DIR     initdb if DIR has no cluster, then start; prints the URL
#   scripts/test-postgres.sh restart DIR   stops it as a crash would (immediate), then starts it
#   scripts/test-postgres.sh stop DIR      stops it and removes DIR
#   scripts/test-postgres.sh url DIR       the URL of database "postgres" there
# PostgreSQL refuses to run as root: as root, the server runs as the system user "postgres"
# (Debian's package makes it), which then owns DIR.
set -euo pipefail

cmd=${1:?usage: test-postgres.sh start|restart|stop|url DIR}
dir=$(realpath -m "${2:?usage: test-postgres.sh start|restart|stop|url DIR}")
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [[ -z "$bin" ]]; then
  echo "test-postgres.sh: no PostgreSQL server installed (scripts/install-deps.sh installs Debian's postgresql)" >&2
  exit 1
fi
# A Unix socket's path holds at most 107 bytes.
if (( ${#dir} + 17 > 107 )); then
  echo "test-postgres.sh: $dir is too long a path for PostgreSQL's socket" >&2
  exit 1
fi

as_owner() {
  if [[ $(id -u) == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

url() { echo "postgresql:///postgres?host=$dir&user=postgres"; }

start() {
  mkdir -p "$dir"
  if [[ $(id -u) == 0 ]]; then chown postgres "$dir"; fi
  if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  if as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    url
    return
  fi
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -c listen_addresses='' -c fsync=off -c max_connections=300" \
    start >/dev/null || { tail -20 "$dir/server.log" >&2; exit 1; }
  url
}

stop() {
  if [[ -f "$dir/data/PG_VERSION" ]]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
}

case "$cmd" in
  start) start ;;
  restart) stop; start ;;
  stop) stop; rm -rf "$dir" ;;
  url) url ;;
  *) echo "test-postgres.sh: unknown command $cmd" >&2; exit 2 ;;
esac

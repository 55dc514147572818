#!/usr/bin/env bash
# A private PostgreSQL server for the tests: `scripts/postgres.sh start|stop|url`.
# Installs Debian's postgresql when its binaries are missing, keeps its data in /tmp (port 55432, loopback only),
# and never touches a system cluster. Idempotent: start on a running server and stop on a stopped one do nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="${TMPDIR:-/tmp}/tuner-pg-$(id -u)-${TUNER_PG_PORT:-55432}"  # outside the checkout: a clone in a private (0700) directory is unreadable to the postgres account
PORT="${TUNER_PG_PORT:-55432}"
URL="postgresql+psycopg://tuner@127.0.0.1:$PORT/tuner_test"

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

as_owner() {  # postgres refuses to run as root: use the postgres account then
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install_if_missing() {
  if [ -z "$(pg_bin)" ]; then
    echo "installing Debian's postgresql ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  fi
}

start() {
  install_if_missing
  local bin; bin="$(pg_bin)"
  mkdir -p "$DATA"
  chmod 700 "$DATA"
  if [ "$(id -u)" = 0 ]; then chown postgres "$DATA"; fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_owner "$bin/initdb" -D "$DATA" -A trust -U tuner >/dev/null
  fi
  if ! as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
      -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
  fi
  if ! as_owner "$bin/psql" -h 127.0.0.1 -p "$PORT" -U tuner -d postgres -tAc \
       "SELECT 1 FROM pg_database WHERE datname='tuner_test'" | grep -q 1; then
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$PORT" -U tuner tuner_test
  fi
  echo "PostgreSQL ready: $URL"
}

stop() {
  local bin; bin="$(pg_bin)"
  if [ -n "$bin" ] && [ -f "$DATA/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    echo "PostgreSQL stopped"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac

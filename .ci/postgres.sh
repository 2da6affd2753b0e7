#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests that need one (Debian's packages).
#   .ci/postgres.sh setup    install (if missing), create the cluster, start it, make the role
#   .ci/postgres.sh stop | start
# The tests find it through BOPSWEEP_TEST_POSTGRES (a URL) and BOPSWEEP_TEST_PG_CTL (this file).
set -euo pipefail
DATA=${BOPSWEEP_PG_DATA:-/tmp/bopsweep-pg}
PORT=${BOPSWEEP_PG_PORT:-55432}
USER_NAME=bopsweep
PASSWORD=${BOPSWEEP_PG_PASSWORD:-s3cret-pw}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }

case "${1:-}" in
  setup)
    if [ -z "$(pg_bin)" ]; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null
      apt-get install -y -qq postgresql >/dev/null
    fi
    BIN=$(pg_bin)
    "$0" stop >/dev/null 2>&1 || true
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres "$DATA"
    as_pg "$BIN/initdb -D $DATA -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null"
    "$0" start
    as_pg "$BIN/psql -h /tmp -p $PORT -U postgres -q -c \"CREATE ROLE $USER_NAME LOGIN CREATEDB PASSWORD '$PASSWORD'\""
    # The tests drop their databases WITH (FORCE), which must also end an autovacuum worker
    # busy there: that takes pg_signal_backend (a test server's role only; no superuser).
    as_pg "$BIN/psql -h /tmp -p $PORT -U postgres -q -c \"GRANT pg_signal_backend TO $USER_NAME\""
    as_pg "$BIN/psql -h /tmp -p $PORT -U postgres -q -c \"CREATE DATABASE $USER_NAME OWNER $USER_NAME\""
    echo "postgresql://$USER_NAME:$PASSWORD@127.0.0.1:$PORT/$USER_NAME"
    ;;
  start)
    as_pg "$(pg_bin)/pg_ctl -D $DATA -l $DATA/server.log -w -o \"-p $PORT -k /tmp -c listen_addresses=127.0.0.1\" start >/dev/null"
    ;;
  stop)
    as_pg "$(pg_bin)/pg_ctl -D $DATA -m fast -w stop >/dev/null"
    ;;
  *)
    echo "usage: $0 setup|start|stop" >&2
    exit 2
    ;;
esac

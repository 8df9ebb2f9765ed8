#!/usr/bin/env bash
# Throwaway PostgreSQL cluster on a free loopback port, for tests and benchmarks.
#   source e2e/pg.sh; pg_start [extra postgres -c options...]   → exports BROTR_TEST_PG_URL
#   pg_restart SECONDS   → crash-stops it (immediate: no checkpoint, clients cut), keeps it down
#                          SECONDS, starts it again on the same port with the same data
#   pg_stop                                                      → stops it and removes its files
#   pgbouncer_start [LINE...] → Debian's PgBouncer in transaction mode in front of it, every
#                     database, user postgres (trust); exports BROTR_TEST_PGBOUNCER_URL; each
#                     LINE ("name = value") is added to the [pgbouncer] section
#   pgbouncer_stop
# Installs Debian's postgresql when no server binaries are present.
set -euo pipefail

pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

pg_install() {
  if ! pg_bindir >/dev/null; then
    echo "e2e/pg.sh: installing postgresql (apt)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
  fi
  command -v psql >/dev/null || apt-get install -y -qq postgresql-client >&2
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

pg_start() {
  pg_install
  local bin; bin=$(pg_bindir)
  PG_DIR=$(mktemp -d /tmp/brotr-pg.XXXXXX)
  chown postgres:postgres "$PG_DIR"
  PG_PORT=$(free_port)
  runuser -u postgres -- "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
  local opts="-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300"
  for o in "$@"; do opts="$opts -c $o"; done
  runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DIR/data" -o "$opts" -l "$PG_DIR/log" -w start >/dev/null
  export PG_DIR PG_PORT PG_BIN="$bin" PG_OPTS="$opts"
  export BROTR_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "e2e/pg.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT ($PG_DIR)" >&2
}

pg_restart() {
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null
  sleep "$1"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -o "$PG_OPTS" -l "$PG_DIR/log" -w start >/dev/null
}

pgbouncer_start() {
  [ -x /usr/sbin/pgbouncer ] || {
    echo "e2e/pg.sh: installing pgbouncer (apt)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >&2
  }
  local d="$PG_DIR/pgbouncer" o i
  mkdir -p "$d"
  PGBOUNCER_PORT=$(free_port)
  # Users it knows (trust): postgres, and any in PGBOUNCER_USERS (space-separated).
  for o in postgres ${PGBOUNCER_USERS:-}; do echo "\"$o\" \"\""; done >"$d/userlist.txt"
  {
    echo "[databases]"
    echo "* = host=127.0.0.1 port=$PG_PORT"
    # Two server connections for every client: where a pooler's sharing shows (tests/pooler.rs).
    echo "brotr_tight = host=127.0.0.1 port=$PG_PORT dbname=brotr_tight pool_size=2"
    echo "[pgbouncer]"
    echo "listen_addr = 127.0.0.1"
    echo "listen_port = $PGBOUNCER_PORT"
    echo "unix_socket_dir ="
    echo "auth_type = trust"
    echo "auth_file = $d/userlist.txt"
    echo "pool_mode = transaction"
    echo "max_client_conn = 2000"
    echo "default_pool_size = 10"
    echo "ignore_startup_parameters = extra_float_digits,options"
    echo "server_reset_query ="
    echo "admin_users = postgres"
    echo "logfile = $d/log"
    echo "pidfile = $d/pid"
    for o in "$@"; do echo "$o"; done
  } >"$d/pgbouncer.ini"
  chown -R postgres:postgres "$d"
  runuser -u postgres -- /usr/sbin/pgbouncer -d "$d/pgbouncer.ini"
  for i in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $PGBOUNCER_PORT), 0.2)" 2>/dev/null && break
    sleep 0.1
  done
  export PGBOUNCER_PORT PGBOUNCER_DIR="$d"
  export BROTR_TEST_PGBOUNCER_URL="postgres://postgres@127.0.0.1:$PGBOUNCER_PORT/postgres"
  echo "e2e/pg.sh: $(/usr/sbin/pgbouncer --version | head -1) (transaction mode) on 127.0.0.1:$PGBOUNCER_PORT" >&2
}

pgbouncer_stop() {
  # Only the pooler of this shell's own server: PGBOUNCER_DIR is exported, and a script this one
  # runs (with a server of its own) must not stop the pooler the tests here use.
  if [ -n "${PGBOUNCER_DIR:-}" ] && [ "$PGBOUNCER_DIR" = "${PG_DIR:-}/pgbouncer" ] && [ -f "$PGBOUNCER_DIR/pid" ]; then
    kill "$(cat "$PGBOUNCER_DIR/pid")" 2>/dev/null || true
  fi
}

pg_stop() {
  pgbouncer_stop
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}

#!/usr/bin/env bash
# The fleet drill: N monitors (BROTR_FLEET_MONITORS, default 200), each a real
# `brotr-probe monitor` process with its own key and one database connection (its seat of the
# connection budget), all started at once and kept running (as a fleet's monitors run: each
# holds its connection between cycles) against one PostgreSQL with max_connections = 50:
#   1. straight to the server: it refuses clients ("too many clients already", "remaining
#      connection slots are reserved"), the failure the pooler is for (so this test can fail);
#   2. through PgBouncer in transaction mode, whose server pool is the budget (40): every monitor
#      writes its results, none is refused, and the server's connection count, sampled from
#      pg_stat_activity every ~50 ms, never exceeds the budget.
# The relays the monitors check are two nostr-rs-relays on loopback. A drill ends when every
# monitor has either written its first results or exited (at most 120 s); then they are stopped.
# Prints the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BROTR_FLEET_MONITORS:-200}
BUDGET=40
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"
PROBE=${BROTR_PROBE_BIN:-$CARGO_TARGET_DIR/debug/brotr-probe}
[ -x "$PROBE" ] || cargo build -q -p brotr-probe
source e2e/pg.sh
source e2e/tools.sh
BROTR_TOOLS=nostr-rs-relay tools_install >/dev/null
set +e  # pg.sh and tools.sh set -e; the drill checks its own results
set -uo pipefail

WORK=$(mktemp -d /tmp/brotr-fleet.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  pg_stop
  [ -n "${BROTR_FLEET_KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "fleet-pooler-test: FAIL: $*" >&2; exit 1; }

pg_start fsync=off max_connections=50 || fail "PostgreSQL did not start"
PGBOUNCER_USERS=brotr pgbouncer_start "max_db_connections = $BUDGET" "default_pool_size = $BUDGET" || fail "PgBouncer did not start"
# The drill's own queries as postgres (a superuser: the server keeps 3 connections for those);
# the monitors as brotr, an ordinary role, as a pipeline's pods connect.
ADMIN=$BROTR_TEST_PG_URL
DIRECT=${ADMIN/postgres@/brotr@}
POOLED=${BROTR_TEST_PGBOUNCER_URL/postgres@/brotr@}
psql -qAtc "CREATE ROLE brotr LOGIN" "$ADMIN" || fail "CREATE ROLE"

relay() {  # relay NAME PORT
  local d="$WORK/relay-$1"
  mkdir -p "$d"
  sed -e "s|@PORT@|$2|g" -e "s|@DATA@|$d|g" -e "s|@NAME@|fleet $1|g" -e "s|@AUTH@|false|g" \
    e2e/system/nostr-rs-relay.toml >"$d/config.toml"
  (cd "$d" && RUST_LOG=warn exec "$BROTR_NOSTR_RS_RELAY" --config "$d/config.toml") >"$d/log" 2>&1 &
  PIDS+=($!)
}
P1=$(free_port) P2=$(free_port)
relay a "$P1"
relay b "$P2"
for p in "$P1" "$P2"; do
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $p), 0.2)" 2>/dev/null && break
    sleep 0.1
  done
done
printf 'ws://127.0.0.1:%s\nws://127.0.0.1:%s\n' "$P1" "$P2" >"$WORK/relays.txt"
# The monitors publish nowhere (signing and sending 30166s is not what is measured; no relay
# beyond loopback here): their keys only keep their results apart.
printf 'finder:\n  sources: []\nmonitor:\n  publish:\n    relays: []\n' >"$WORK/probe.yaml"
probe() { "$PROBE" --config "$WORK/probe.yaml" --allow-private "$@"; }
probe --database "$ADMIN" migrate 2>"$WORK/setup.log" || fail "migrate: $(tail -3 "$WORK/setup.log")"
psql -qAtc "GRANT ALL ON ALL TABLES IN SCHEMA public TO brotr; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO brotr; GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO brotr" "$ADMIN" ||
  fail "GRANT"
probe --database "$DIRECT" seed --file "$WORK/relays.txt" 2>>"$WORK/setup.log" || fail "seed"
probe --database "$DIRECT" validate --once 2>>"$WORK/setup.log" || fail "validate"
relays=$(psql -Atc "SELECT count(*) FROM relay" "$ADMIN")
[ "$relays" = 2 ] || fail "expected 2 validated relays, got $relays: $(tail -5 "$WORK/setup.log")"

# The fleet's connections to the server (role brotr), every ~50 ms, until told to stop.
sample() {
  local out=$1
  : >"$out"
  while [ ! -f "$out.stop" ]; do
    psql -Atc "SELECT count(*) FROM pg_stat_activity WHERE usename = 'brotr'" \
      "$ADMIN" >>"$out" 2>/dev/null
    sleep 0.05
  done
}

# drill NAME URL [probe flags...]: N monitors at once; prints and records the figures.
drill() {
  local name=$1 url=$2; shift 2
  local d="$WORK/$name" i start
  mkdir -p "$d"
  psql -qAtc "TRUNCATE relay_metadata" "$ADMIN"
  local refused_before; refused_before=$(grep -cE "too many clients|remaining connection slots" "$PG_DIR/log")
  sample "$d/samples" &
  local sampler=$!
  start=$(date +%s.%N)
  local pids=()
  for i in $(seq "$N"); do
    # Each monitor its own key, as each RelayMonitor has: its results are its own series.
    BROTR_MONITOR_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))') \
      "$PROBE" --config "$WORK/probe.yaml" --allow-private --database "$url" \
      --db-max-connections 1 "$@" monitor >"$d/$i.log" 2>&1 &
    pids+=($!)
  done
  local gone p deadline=$((SECONDS + 120))
  while :; do
    gone=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || gone=$((gone + 1)); done
    writers=$(psql -Atc "SELECT count(DISTINCT monitor) FROM relay_metadata" "$ADMIN" 2>/dev/null)
    [ $((gone + ${writers:-0})) -ge "$N" ] && break
    [ "$SECONDS" -ge "$deadline" ] && { echo "fleet-pooler-test: $name: 120 s: $writers wrote, $gone exited" >&2; break; }
    sleep 1
  done
  local secs; secs=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  local failed=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || failed=$((failed + 1)); done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  touch "$d/samples.stop"; wait "$sampler"
  # The server's own count of what it refused (sqlx retries a refused connect until its
  # timeout, so a monitor reports "pool timed out" and the log says why).
  refused=$(( $(grep -cE "too many clients|remaining connection slots" "$PG_DIR/log") - refused_before ))
  writers=$(psql -Atc "SELECT count(DISTINCT monitor) FROM relay_metadata" "$ADMIN")
  rows=$(psql -Atc "SELECT count(*) FROM relay_metadata" "$ADMIN")
  peak=$(sort -n "$d/samples" | tail -1)
  samples=$(wc -l <"$d/samples")
  exited=$failed
  echo "fleet-pooler-test: $name: $N monitors, ${secs} s to the first results: $exited exited (failed), $refused connections refused by the server ('too many clients', 'remaining connection slots'), $writers wrote results ($rows rows), server connections peak $peak over $samples samples (max_connections 50, budget $BUDGET)"
}

drill direct "$DIRECT"
[ "$refused" -gt 0 ] || fail "straight to the server, no monitor was refused: the drill cannot show what the pooler fixes"
[ "$writers" -lt "$N" ] || fail "straight to the server, every monitor wrote: expected refusals to cost results"

drill pooled "$POOLED" --db-pooler transaction
[ "$exited" = 0 ] || fail "through the pooler, $exited monitors exited: $(grep -h -m1 -i error "$WORK"/pooled/*.log | head -3)"
[ "$refused" = 0 ] || fail "through the pooler, $refused monitors were refused"
[ "$writers" = "$N" ] || fail "through the pooler, $writers of $N monitors wrote results"
[ "$peak" -le "$BUDGET" ] || fail "through the pooler, the server held $peak connections, over the budget $BUDGET"
echo "fleet-pooler-test: OK"

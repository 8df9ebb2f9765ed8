#!/usr/bin/env bash
# Runs one benchmark of probe/benches (`bash e2e/bench-pg.sh ingest|sync|…`) against a throwaway
# PostgreSQL with default durability settings (fsync on, synchronous_commit on).
# BROTR_BENCH_PG_SETTINGS: extra server settings, space-separated (`shared_buffers=4GB
# max_wal_size=16GB`), e.g. what a server sized for tens of millions of events would have.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:?usage: e2e/bench-pg.sh <bench name>}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"
source e2e/pg.sh
trap pg_stop EXIT
# shellcheck disable=SC2086 # one word per setting
pg_start ${BROTR_BENCH_PG_SETTINGS:-}
BROTR_BENCH_PG_URL="$BROTR_TEST_PG_URL" cargo bench -p brotr-probe --bench "$bench" --locked

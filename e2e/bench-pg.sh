#!/usr/bin/env bash
# Runs one benchmark of probe/benches (`bash e2e/bench-pg.sh ingest|sync|…`) against a throwaway
# PostgreSQL with default durability settings (fsync on, synchronous_commit on).
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:?usage: e2e/bench-pg.sh <bench name>}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"
source e2e/pg.sh
trap pg_stop EXIT
pg_start
BROTR_BENCH_PG_URL="$BROTR_TEST_PG_URL" cargo bench -p brotr-probe --bench "$bench" --locked

#!/usr/bin/env bash
# Synchronizer benchmark (see probe/benches/sync.rs) against a throwaway PostgreSQL with default
# durability settings (fsync on, synchronous_commit on).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"
source e2e/pg.sh
trap pg_stop EXIT
pg_start
BROTR_BENCH_PG_URL="$BROTR_TEST_PG_URL" cargo bench -p brotr-probe --bench sync --locked

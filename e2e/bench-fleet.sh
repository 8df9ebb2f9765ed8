#!/usr/bin/env bash
# Fleet benchmark of the operator (operator/benches/fleet.rs) on a throwaway control plane:
# N RelayMonitors at once (BROTR_BENCH_MONITORS, default 1000), then an idle period
# (BROTR_BENCH_IDLE_SECS, default 300) and a restart. Prints the figures BENCHMARKS.md records.
# The operator measured is the `dist` build the images ship (fat LTO, stripped: its code is
# about 3 MiB of the resident set less than a release build's), unless
# BROTR_BENCH_OPERATOR_BIN names another binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"
DIR=$(mktemp -d /tmp/brotr-bench-fleet.XXXXXX)
trap 'bash e2e/control-plane.sh stop "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
bash e2e/control-plane.sh start "$DIR" >/dev/null
source "$DIR/env"
if [ -z "${BROTR_BENCH_OPERATOR_BIN:-}" ]; then
  cargo build --profile dist --locked -p brotr-operator
  export BROTR_BENCH_OPERATOR_BIN="$CARGO_TARGET_DIR/dist/brotr-operator"
fi
cargo bench -p brotr-operator --bench fleet --locked

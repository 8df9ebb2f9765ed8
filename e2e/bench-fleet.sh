#!/usr/bin/env bash
# Fleet benchmark of the operator (operator/benches/fleet.rs) on a throwaway control plane:
# N RelayMonitors at once (BROTR_BENCH_MONITORS, default 1000), then an idle period
# (BROTR_BENCH_IDLE_SECS, default 300) and a restart. Prints the figures BENCHMARKS.md records.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"
DIR=$(mktemp -d /tmp/brotr-bench-fleet.XXXXXX)
trap 'bash e2e/control-plane.sh stop "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
bash e2e/control-plane.sh start "$DIR" >/dev/null
source "$DIR/env"
cargo bench -p brotr-operator --bench fleet --locked

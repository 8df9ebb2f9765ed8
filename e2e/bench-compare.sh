#!/usr/bin/env bash
# Runs the sync and monitor benchmarks of an older commit and of this checkout side by side, in
# one run, alternating (old, new, old, new, ...), so both see the same machine load:
#
#   bash e2e/bench-compare.sh <old-rev> [rounds]      (default 3 rounds)
#   BROTR_COMPARE=sync|monitor bash e2e/bench-compare.sh <old-rev>   (one of the two)
#
# The old commit is checked out in a temporary worktree and built with the same target dir.
# Sync: one relay of 100,000 events into PostgreSQL full by REQ paging (the `sync` role of both
# binaries; a throwaway PostgreSQL with default durability). Monitor: the 1,000-relay cycle
# (the new binary without its NEG-OPEN-ignoring relays, so both check the same relays).
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: e2e/bench-compare.sh <old-rev> [rounds]}
rounds=${2:-3}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"

tree=$(mktemp -d /tmp/brotr-bench-old.XXXXXX)
source e2e/pg.sh
cleanup() { pg_stop; git worktree remove --force "$tree" >/dev/null 2>&1 || rm -rf "$tree"; }
trap cleanup EXIT
git worktree add --detach --force "$tree" "$old" >/dev/null

# bench_bin DIR NAME: builds the named bench of the checkout in DIR and prints its executable.
bench_bin() {
  (cd "$1" && cargo bench -p brotr-probe --bench "$2" --no-run --message-format=json 2>/dev/null) |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$2" | tail -1
}

echo "building the benches of $old and of this checkout" >&2
old_sync=$(bench_bin "$tree" sync); new_sync=$(bench_bin . sync)
old_mon=$(bench_bin "$tree" monitor); new_mon=$(bench_bin . monitor)
[ -x "$old_sync" ] && [ -x "$new_sync" ] && [ -x "$old_mon" ] && [ -x "$new_mon" ] ||
  { echo "a bench did not build" >&2; exit 1; }

pg_start
export BROTR_BENCH_PG_URL="$BROTR_TEST_PG_URL"
which=${BROTR_COMPARE:-both}
for i in $(seq "$rounds"); do
  for side in old new; do
    [ "$which" = monitor ] && break
    bin=$([ "$side" = old ] && echo "$old_sync" || echo "$new_sync")
    BROTR_BENCH_ROLE=sync BROTR_BENCH_EVENTS=100000 "$bin" |
      grep -E 'REQ paging [0-9]+ events/s|reader alone|NIP-77 first sync' |
      sed "s/^sync N=100000: /round $i $side sync: /"
  done
  for side in old new; do
    [ "$which" = sync ] && break
    bin=$([ "$side" = old ] && echo "$old_mon" || echo "$new_mon")
    echo "round $i $side monitor: $(BROTR_BENCH_NEG_SILENT=0 "$bin" | grep -E 'wall|peak RSS' | tr -s ' ' | paste -sd' ')"
  done
done

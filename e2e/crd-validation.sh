#!/usr/bin/env bash
# CRD validation against a real kube-apiserver (e2e/control-plane.sh):
#   1. apply crds/*.yaml with server-side apply and wait for condition=Established;
#   2. every examples/*.yaml must be accepted (server-side apply, dry-run=server first, then real);
#   3. every examples/invalid/*.yaml must be REJECTED, with the text of its `# expect:` line in
#      kubectl's error. A file with `# base: PATH` is an update test: PATH is applied first (must
#      be accepted), then the file (same object) must be rejected, e.g. the immutable schema.
# Last line: "N passed, M failed"; exits non-zero on any failure. The cluster is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/.." && pwd -P)
CP="$HERE/control-plane.sh"
NS=brotr-crd-e2e

say() { echo "crd-validation: $*" >&2; }

"$CP" build >/dev/null
KUBECTL=$("$CP" kubectl)

DIR=$(mktemp -d /tmp/brotr-crd.XXXXXX)
PASSED=0 FAILED=0
cleanup() {
  local rc=$?
  "$CP" stop "$DIR" >/dev/null 2>&1 || true
  if [ "$FAILED" -eq 0 ] && [ "$rc" -eq 0 ] && [ "${BROTR_KEEP:-0}" != 1 ]; then
    rm -rf "$DIR"
  else
    say "cluster files and logs kept in $DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$CP" start "$DIR" >/dev/null
export KUBECONFIG="$DIR/kubeconfig"
k() { "$KUBECTL" "$@"; }

pass() { PASSED=$((PASSED + 1)); echo "ok    $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL  $*"; }
header() { sed -n "s/^# $2: *//p" "$1" | head -n1; } # header FILE KEY

# 1. CRDs
if out=$(k apply --server-side --field-manager=brotr-e2e -f "$ROOT/crds/" 2>&1); then
  pass "apply crds/ ($(echo "$out" | tr '\n' ' '))"
else
  fail "apply crds/: $out"
  echo "$PASSED passed, $FAILED failed"; exit 1
fi
for f in "$ROOT"/crds/*.yaml; do
  name=$(sed -n 's/^  name: //p' "$f" | head -n1)
  if out=$(k wait --for=condition=Established "crd/$name" --timeout=60s 2>&1); then
    pass "established $name"
  else
    fail "established $name: $out"
  fi
done
k create namespace "$NS" >/dev/null

apply() { k -n "$NS" apply --server-side --field-manager=brotr-e2e "$@" 2>&1; }

# 2. valid examples
for f in "$ROOT"/examples/*.yaml; do
  rel=${f#"$ROOT/"}
  if out=$(apply --dry-run=server -f "$f") && out=$(apply -f "$f"); then
    pass "accepted $rel"
  else
    fail "accepted $rel: $out"
  fi
done
# The printer columns and short names work on what was created.
if out=$(k -n "$NS" get bd 2>&1) && echo "$out" | head -n1 | grep -q 'SCHEMA *READY *REASON *SHARDS *AGE'; then
  pass "kubectl get bd columns: $(echo "$out" | head -n1 | tr -s ' ')"
else
  fail "kubectl get bd columns: $out"
fi
if out=$(k -n "$NS" get rmon 2>&1) && echo "$out" | head -n1 | grep -q 'MODE *READY *REASON *LAST RUN *AGE'; then
  pass "kubectl get rmon columns: $(echo "$out" | head -n1 | tr -s ' ')"
else
  fail "kubectl get rmon columns: $out"
fi

# 3. invalid examples
for f in "$ROOT"/examples/invalid/*.yaml; do
  rel=${f#"$ROOT/"}
  expect=$(header "$f" expect)
  if [ -z "$expect" ]; then fail "$rel: no '# expect:' line"; continue; fi
  base=$(header "$f" base)
  if [ -n "$base" ]; then
    # Update test on a fresh object: create from base (renamed), then apply the change.
    name=$(sed -n 's/^  name: //p' "$f" | head -n1)
    if ! out=$(apply -f "$ROOT/$base"); then fail "$rel: base $base not accepted: $out"; continue; fi
    if ! k -n "$NS" get -f "$f" >/dev/null 2>&1; then fail "$rel: base did not create $name"; continue; fi
  fi
  if out=$(apply -f "$f"); then
    fail "$rel: accepted, expected rejection with: $expect"
    k -n "$NS" delete -f "$f" --wait=false >/dev/null 2>&1 || true
  elif grep -qF -- "$expect" <<<"$out"; then
    pass "rejected $rel"
  else
    fail "$rel: rejected without '$expect': $out"
  fi
done

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]

# shellcheck shell=bash
# Shared by the e2e test scripts: progress lines and a tally of checks.
#
#   source e2e/checks.sh NAME   → say, die, elapsed, phase, pass, fail, expect, wait_every,
#                                 checks_ok, checks_summary, checks_recap; CHECKS_PASSED
#
# A script counts its checks with pass/fail (or expect DESCRIPTION COMMAND…), goes on after a
# failure so one run reports every broken check, and ends with `checks_summary` (exit status:
# 0 only when nothing failed).
CHECKS_NAME=${1:?usage: source e2e/checks.sh NAME}
T0=$(date +%s.%N)
# Prefixed: a script's own variables (a FAILED of its own, say) must not reset the tally.
CHECKS_PASSED=0 CHECKS_FAILED=()

say() { echo "$CHECKS_NAME: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
phase() { echo "== $* ($(elapsed) s)"; }
pass() { CHECKS_PASSED=$((CHECKS_PASSED + 1)); echo "ok    $*"; }
fail() { CHECKS_FAILED+=("$*"); echo "FAIL  $*"; }
# expect DESCRIPTION COMMAND...: the command's success is the check.
expect() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
# wait_every INTERVAL SECONDS COMMAND...: runs the command (quietly) every INTERVAL seconds until
# it succeeds; 1 when SECONDS pass first.
wait_every() {
  local every=$1 end=$(($(date +%s) + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep "$every"
  done
}
# checks_ok: no check failed (so far).
checks_ok() { [ "${#CHECKS_FAILED[@]}" -eq 0 ]; }
checks_summary() { echo "$CHECKS_PASSED passed, ${#CHECKS_FAILED[@]} failed"; checks_ok; }
# checks_recap: the failed checks again, for the end of a long failure dump (CI shows its tail).
checks_recap() {
  checks_ok && return 0
  local f
  echo "-- $CHECKS_NAME: ${#CHECKS_FAILED[@]} failed check(s)"
  for f in "${CHECKS_FAILED[@]}"; do echo "FAIL  $f"; done
}

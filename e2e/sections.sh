# shellcheck shell=bash
# Wall time of each section of a long script, printed as a table at its end.
#
#   source e2e/sections.sh
#   section NAME COMMAND...      runs COMMAND (in this shell: functions and exports work), prints
#                                "== NAME" before and "-- NAME: N s" after; its status is the
#                                command's (under set -e a failure stops the script, named)
#   section_bg NAME COMMAND...   the same in the background; section_wait NAME waits for it,
#                                section_done NAME says whether it has finished
#   sections_table [STATUS]      the table (also written to $BROTR_SECTIONS_FILE when set)
SECTIONS_T0=$(date +%s.%N)
SECTIONS=()          # "seconds|status|name"
declare -A SECTIONS_PID=() SECTIONS_START=() SECTIONS_LOG=()
SECTIONS_CURRENT=""

_sections_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }'; }

section() {
  local name=$1 t0 rc=0
  shift
  t0=$(date +%s.%N)
  SECTIONS_CURRENT=$name
  echo "== $name" >&2
  "$@" || rc=$?
  SECTIONS_CURRENT=""
  SECTIONS+=("$(_sections_since "$t0")|$([ "$rc" -eq 0 ] && echo ok || echo "FAILED ($rc)")|$name")
  echo "-- $name: ${SECTIONS[-1]%%|*} s" >&2
  if [ "$rc" -ne 0 ]; then
    echo "!! section failed: $name (exit $rc)" >&2
  fi
  return "$rc"
}

# section_bg NAME COMMAND...: the command runs in a subshell in the background (its exports do
# not reach this shell), its output kept in a log printed by section_wait.
section_bg() {
  local name=$1 log
  shift
  log=$(mktemp /tmp/brotr-section.XXXXXX)
  SECTIONS_START[$name]=$(date +%s.%N)
  SECTIONS_LOG[$name]=$log
  echo "== $name (in the background)"
  # The job's own end time, so its row is its duration, not the time until it was waited for.
  ( rc=0; "$@" || rc=$?; date +%s.%N >"$log.end"; exit "$rc" ) >"$log" 2>&1 &
  SECTIONS_PID[$name]=$!
}

# section_done NAME: whether the background section has finished (section_wait still reports it).
section_done() { ! kill -0 "${SECTIONS_PID[$1]}" 2>/dev/null; }

section_wait() {
  local name=$1 rc=0 t0
  t0=$(date +%s.%N)
  wait "${SECTIONS_PID[$name]}" || rc=$?
  echo "== $name (background, waited $(_sections_since "$t0") s for it)"
  cat "${SECTIONS_LOG[$name]}"
  local secs
  secs=$(awk -v a="${SECTIONS_START[$name]}" -v b="$(cat "${SECTIONS_LOG[$name]}.end" 2>/dev/null || date +%s.%N)" \
    'BEGIN { printf "%.0f", b - a }')
  rm -f "${SECTIONS_LOG[$name]}" "${SECTIONS_LOG[$name]}.end"
  SECTIONS+=("$secs|$([ "$rc" -eq 0 ] && echo "ok, in the background" || echo "FAILED ($rc)")|$name")
  echo "-- $name: $secs s (in the background, beside what ran meanwhile)"
  if [ "$rc" -ne 0 ]; then
    echo "!! section failed: $name (exit $rc)" >&2
  fi
  return "$rc"
}

sections_table() {
  local status=${1:-0} row secs st name out
  out=$(
    echo
    echo "| section | wall time | status |"
    echo "|---|---:|---|"
    for row in "${SECTIONS[@]}"; do
      IFS='|' read -r secs st name <<<"$row"
      printf '| %s | %d min %02d s | %s |\n' "$name" $((secs / 60)) $((secs % 60)) "$st"
    done
    if [ -n "$SECTIONS_CURRENT" ]; then
      echo "| $SECTIONS_CURRENT | (stopped) | FAILED |"
    fi
    secs=$(_sections_since "$SECTIONS_T0")
    printf '| **total** | **%d min %02d s** | %s |\n' $((secs / 60)) $((secs % 60)) \
      "$([ "$status" -eq 0 ] && echo ok || echo "FAILED ($status)")"
  )
  echo "$out"
  if [ -n "${BROTR_SECTIONS_FILE:-}" ]; then echo "$out" >"$BROTR_SECTIONS_FILE"; fi
}

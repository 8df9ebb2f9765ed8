#!/usr/bin/env bash
# Checks the chart's alert rules and Grafana dashboard (charts/brotr-operator/files/):
#   1. promtool check rules, and promtool test rules on e2e/alerts/rules.test.yaml (every alert
#      fires and stays quiet where it should, with its exact labels and annotations);
#   2. lint: severities, `for`, annotations, runbook anchors; the dashboard's datasource and
#      namespace variables, ids and grid; every dashboard query parsed by promtool;
#   3. every metric name a rule or a dashboard query references is exported by the real binaries:
#      - brotr-probe `run` on SQLite against a real nostr-rs-relay (e2e/tools.sh), seeded with it
#        and with a port that refuses connections, a local finder source and a dead one, the
#        monitor publishing to the relay; /metrics scraped once every service has cycled;
#      - brotr-operator on a throwaway control plane (e2e/control-plane.sh) as its least-privilege
#        user: a RelayMonitor and a BrotrDeployment that become Ready, a RelayMonitor Stalled on a
#        name conflict, and one in a namespace where the operator may not write ConfigMaps
#        (Forbidden, retried); /metrics scraped once all of that is counted.
#      `up` is the only name allowed without an exporter; histograms count as their
#      _bucket/_sum/_count samples;
#   4. the rule file, wrapped as the chart wraps it, is a valid PrometheusRule for the real
#      monitoring.coreos.com CRD (e2e/monitoring-crds.sh), which rejects a broken one.
# Last line: "N passed, M failed"; exits non-zero on any failure.
#
# Installs promtool (Debian package `prometheus`) when missing. BROTR_PROBE_BIN /
# BROTR_OPERATOR_BIN: the binaries (default: the debug builds in $CARGO_TARGET_DIR, else
# $HOME/.cache/brotr/target). BROTR_KEEP=1 keeps the work directory (logs, scraped metrics).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/.." && pwd -P)
CP="$HERE/control-plane.sh"
CHECK="$HERE/alerts/check.py"
RULES="$ROOT/charts/brotr-operator/files/prometheus-rules.yaml"
DASHBOARD="$ROOT/charts/brotr-operator/files/dashboards/brotr.json"
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}
PROBE=${BROTR_PROBE_BIN:-$TARGET/debug/brotr-probe}
OPERATOR=${BROTR_OPERATOR_BIN:-$TARGET/debug/brotr-operator}
source "$HERE/checks.sh" alerts
# run_step LABEL CMD...: one check; its output indented, its last lines only on success
# (STEP_LINES, default 3).
run_step() {
  local label=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "$out" | tail -n "${STEP_LINES:-3}" | sed 's/^/  /'
    pass "$label"
  else
    echo "$out" | sed 's/^/  /'
    fail "$label"
  fi
}

W=$(mktemp -d /tmp/brotr-alerts.XXXXXX)
PIDS=()
K8S_STARTED=0
cleanup() {
  local rc=$?
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$K8S_STARTED" = 1 ]; then "$CP" stop "$W/k8s" >/dev/null 2>&1 || true; fi
  if checks_ok && [ "$rc" -eq 0 ] && [ "${BROTR_KEEP:-0}" != 1 ]; then
    rm -rf "$W"
  else
    say "work files, logs and scraped metrics kept in $W"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ tools: fail loudly, never skip
phase "tools"
# shellcheck source=e2e/tools.sh
source "$HERE/tools.sh"
if ! command -v promtool >/dev/null 2>&1; then
  say "promtool not found: installing Debian's prometheus package (it ships promtool)"
  tools_apt prometheus || die "could not install promtool (apt-get install prometheus)"
fi
command -v promtool >/dev/null 2>&1 || die "promtool is still missing after installing prometheus"
if ! python3 -c 'import yaml' 2>/dev/null; then
  say "installing PyYAML with pip"
  python3 -m pip install --quiet --disable-pip-version-check pyyaml || die "PyYAML is needed"
fi
command -v curl >/dev/null 2>&1 || tools_apt curl || die "curl is needed"
[ -x "$PROBE" ] || die "no probe binary at $PROBE (cargo build -p brotr-probe, or set BROTR_PROBE_BIN)"
[ -x "$OPERATOR" ] || die "no operator binary at $OPERATOR (cargo build -p brotr-operator, or set BROTR_OPERATOR_BIN)"
BROTR_TOOLS=nostr-rs-relay tools_install || die "nostr-rs-relay did not install (e2e/tools.sh)"
"$CP" build >/dev/null
KUBECTL=$("$CP" kubectl)
PY=$(python3 -c 'import sys; print(sys.executable)') # the interpreter itself: its PID is the server's
say "$(promtool --version 2>&1 | head -n1); probe built $(date -r "$PROBE" +%FT%T); operator built $(date -r "$OPERATOR" +%FT%T)"

# ------------------------------------------------------------------ 1. promtool
phase "promtool check rules"
run_step "promtool check rules ${RULES#"$ROOT/"}" promtool check rules "$RULES"
phase "promtool test rules"
run_step "promtool test rules e2e/alerts/rules.test.yaml" promtool test rules "$HERE/alerts/rules.test.yaml"

# ------------------------------------------------------------------ 2. lint, dashboard queries
phase "lint"
run_step "PromQL name extractor self-test" python3 "$CHECK" selftest
run_step "rule metadata and dashboard structure" python3 "$CHECK" lint "$RULES" "$DASHBOARD"
python3 "$CHECK" dashboard-rules "$DASHBOARD" "$W/dashboard-queries.yaml" >/dev/null
run_step "every dashboard query parses (promtool check rules on them as recording rules)" \
  promtool check rules "$W/dashboard-queries.yaml"

# ------------------------------------------------------------------ 3a. the probe, in the background
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_for SECONDS CMD...: retries CMD every half second.
wait_for() { wait_every 0.5 "$@"; }
scrape() { curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics"; }
# metric_at_least PORT SERIES N: the sample SERIES (name and labels exactly as exposed; a
# trailing * matches any labels) has a value >= N.
metric_at_least() {
  scrape "$1" | awk -v s="$2" -v n="$3" '
    /^#/ { next }
    (s ~ /[*]$/ ? index($1, substr(s, 1, length(s) - 1)) == 1 : $1 == s) && $NF + 0 >= n { ok = 1 }
    END { exit !ok }'
}
# stop PID LABEL: SIGTERM, then the exit code must be 0.
stop() {
  local rc=0 p keep=()
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" || rc=$?
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
  if [ "$rc" -eq 0 ]; then pass "$2 stopped cleanly on SIGTERM"; else fail "$2 exited $rc on SIGTERM"; fi
}

phase "probe: relay, finder source, brotr-probe run"
mkdir -p "$W/relay" "$W/www" "$W/probe"
RELAY_PORT=$(free_port)
cat >"$W/relay/config.toml" <<EOF
[info]
relay_url = "ws://127.0.0.1:$RELAY_PORT/"
name = "brotr alerts-test relay"
[database]
engine = "sqlite"
data_directory = "$W/relay"
[network]
address = "127.0.0.1"
port = $RELAY_PORT
[authorization]
nip42_auth = false
EOF
(cd "$W/relay" && exec env RUST_LOG=warn "$BROTR_NOSTR_RS_RELAY" --config config.toml) >"$W/relay/relay.log" 2>&1 &
PIDS+=($!)
relay_up() { curl -fsS --max-time 2 -H 'Accept: application/nostr+json' "http://127.0.0.1:$RELAY_PORT/" | grep -q '"name"'; }
wait_for 20 relay_up || { tail -20 "$W/relay/relay.log" >&2; die "nostr-rs-relay did not answer NIP-11"; }

# A finder source that lists the relay, and one on a port nothing listens on (a failed fetch).
HTTP_PORT=$(free_port) DEAD_PORT=$(free_port)
echo "[\"ws://127.0.0.1:$RELAY_PORT\"]" >"$W/www/relays.json"
"$PY" -m http.server --bind 127.0.0.1 --directory "$W/www" "$HTTP_PORT" >"$W/www/http.log" 2>&1 &
PIDS+=($!)
wait_for 10 curl -fsS --max-time 2 "http://127.0.0.1:$HTTP_PORT/relays.json" || die "finder source did not start"

# Seeds: the relay (promoted) and a port that refuses connections (rejected). Every service
# runs every 5 s; the monitor publishes to the relay with a throwaway key.
printf 'ws://127.0.0.1:%s\nws://127.0.0.1:%s\n' "$RELAY_PORT" "$DEAD_PORT" >"$W/probe/seeds.txt"
cat >"$W/probe/probe.yaml" <<EOF
finder:
  intervalSecs: 5
  sources:
    - {url: "http://127.0.0.1:$HTTP_PORT/relays.json", select: "[*]"}
    - {url: "http://127.0.0.1:$DEAD_PORT/relays.json", select: "[*]"}
validator:
  intervalSecs: 5
monitor:
  intervalSecs: 5
  publish:
    relays: ["ws://127.0.0.1:$RELAY_PORT"]
sync:
  intervalSecs: 5
EOF
PROBE_PORT=$(free_port)
BROTR_MONITOR_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))') \
  "$PROBE" --database "$W/probe/probe.db" --allow-private --config "$W/probe/probe.yaml" \
  --metrics-addr "127.0.0.1:$PROBE_PORT" run --file "$W/probe/seeds.txt" >"$W/probe/probe.log" 2>&1 &
PROBE_PID=$!
PIDS+=("$PROBE_PID")
PROBE_T0=$(date +%s.%N)

# ------------------------------------------------------------------ 3b. the operator (meanwhile)
phase "operator: control plane, RBAC, objects, brotr-operator run"
K8S_STARTED=1
"$CP" start "$W/k8s" >"$W/control-plane.log" 2>&1 || { tail -20 "$W/control-plane.log" >&2; die "control plane did not start"; }
# shellcheck disable=SC1091
source "$W/k8s/env"
k() { "$KUBECTL" "$@"; }
k apply --server-side --field-manager=brotr-e2e -f "$ROOT/crds/" >/dev/null
k wait --for=condition=Established crd/brotrdeployments.brotr.dev crd/relaymonitors.brotr.dev --timeout=60s >/dev/null
k create namespace brotr-ok >/dev/null
k create namespace brotr-denied >/dev/null
# brotr-ok: exactly the generated Role. brotr-denied: the same without writes to ConfigMaps and
# Services, so its reconciles fail with Forbidden and are retried.
k -n brotr-ok apply -f "$ROOT/deploy/rbac/role.yaml" >/dev/null
python3 - "$ROOT/deploy/rbac/role.yaml" >"$W/role-denied.yaml" <<'EOF'
import sys, yaml
role = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d)
for rule in role["rules"]:
    if "configmaps" in rule["resources"]:
        rule["verbs"] = [v for v in rule["verbs"] if v in ("get", "list", "watch")]
print(yaml.safe_dump(role))
EOF
k -n brotr-denied apply -f "$W/role-denied.yaml" >/dev/null
for ns in brotr-ok brotr-denied; do
  k -n "$ns" create rolebinding brotr-operator --role=brotr-operator --user=brotr-operator >/dev/null
  k -n "$ns" create secret generic static-key --from-literal=nsec="$(python3 -c 'import secrets; print(secrets.token_hex(32))')" >/dev/null
  k -n "$ns" apply -f "$ROOT/examples/relaymonitor-interval.yaml" >/dev/null
done
# A BrotrDeployment (its kind in the metrics), and a RelayMonitor whose ConfigMap name is taken
# by an object it does not own: Stalled (NameConflict).
k -n brotr-ok create secret generic pg-app --from-literal=uri=postgres://brotr:secret@db:5432/brotr >/dev/null
k -n brotr-ok apply -f "$ROOT/examples/brotrdeployment-minimal.yaml" >/dev/null
k -n brotr-ok create configmap conflict-rmon --from-literal=owner=someone-else >/dev/null
sed 's/^  name: static-list$/  name: conflict/' "$ROOT/examples/relaymonitor-interval.yaml" | k -n brotr-ok apply -f - >/dev/null
OP_PORT=$(free_port)
KUBECONFIG=$BROTR_K8S_OPERATOR_KUBECONFIG "$OPERATOR" run --namespace brotr-ok --namespace brotr-denied \
  --metrics-addr "127.0.0.1:$OP_PORT" --leader-election --lease-namespace brotr-ok --identity alerts-test \
  --log-format text --log-level info,kube=warn >"$W/operator.log" 2>&1 &
OP_PID=$!
PIDS+=("$OP_PID")
operator_counted() {
  metric_at_least "$OP_PORT" 'brotr_operator_leader' 1 &&
    metric_at_least "$OP_PORT" 'brotr_operator_reconcile_failures_total{kind="RelayMonitor",reason="Forbidden"}' 2 &&
    metric_at_least "$OP_PORT" 'brotr_operator_reconcile_failures_total{kind="RelayMonitor",reason="NameConflict"}' 1 &&
    metric_at_least "$OP_PORT" 'brotr_operator_reconciles_total{kind="BrotrDeployment"}' 1 &&
    [ "$(k -n brotr-ok get bd minimal -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] &&
    [ "$(k -n brotr-ok get rmon static-list -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] &&
    [ "$(k -n brotr-ok get rmon conflict -o jsonpath='{.status.conditions[?(@.type=="Stalled")].status}')" = True ]
}
if wait_for 90 operator_counted; then
  pass "operator: leader, Forbidden retries, a Stalled RelayMonitor, a Ready BrotrDeployment and RelayMonitor"
else
  fail "operator did not reach the expected state within 90 s (log: $W/operator.log)"
  tail -n 20 "$W/operator.log" | sed 's/^/  /'
fi
# The objects gauge (what BrotrObjectStalled reads) counts the Stalled and the Ready objects.
objects_counted() {
  metric_at_least "$OP_PORT" 'brotr_operator_objects{kind="RelayMonitor",status="stalled"}' 1 &&
    metric_at_least "$OP_PORT" 'brotr_operator_objects{kind="RelayMonitor",status="ready"}' 1 &&
    metric_at_least "$OP_PORT" 'brotr_operator_objects{kind="BrotrDeployment",status="ready"}' 1
}
if wait_for 30 objects_counted; then
  pass "brotr_operator_objects counts the Stalled RelayMonitor and the Ready objects"
else
  fail "brotr_operator_objects does not count the Stalled RelayMonitor and the Ready objects (is it exported? $(scrape "$OP_PORT" | grep -c '^brotr_operator_objects{') samples)"
fi
scrape "$OP_PORT" >"$W/operator.metrics"
stop "$OP_PID" operator

# The rule file as the chart ships it (the spec of a PrometheusRule), checked by the real
# Prometheus Operator CRD schema (e2e/monitoring-crds.sh); installed only now, so the operator
# run above did not see the Prometheus Operator.
phase "PrometheusRule: the rule file against the monitoring.coreos.com CRD"
# shellcheck source=e2e/monitoring-crds.sh
source "$HERE/monitoring-crds.sh"
MCRDS=$(monitoring_crds) || die "the monitoring.coreos.com CRDs did not build (e2e/monitoring-crds.sh)"
k apply --server-side --field-manager=brotr-e2e -f "$MCRDS/monitoring.coreos.com_prometheusrules.yaml" >/dev/null
k wait --for=condition=Established crd/prometheusrules.monitoring.coreos.com --timeout=60s >/dev/null
# wrap RULES [BROKEN]: a PrometheusRule whose spec is the rule file (BROKEN: one `for` made invalid).
wrap() {
  python3 - "$@" <<'EOF2'
import sys, yaml
spec = yaml.safe_load(open(sys.argv[1]))
if len(sys.argv) > 2:
    spec["groups"][0]["rules"][0]["for"] = "10 minutes"
print(yaml.safe_dump({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                      "metadata": {"name": "brotr", "namespace": "brotr-ok"}, "spec": spec}))
EOF2
}
wrap "$RULES" >"$W/prometheusrule.yaml"
if out=$(k apply --server-side --dry-run=server --field-manager=brotr-e2e -f "$W/prometheusrule.yaml" 2>&1); then
  pass "the rule file is a valid PrometheusRule spec ($out)"
else
  fail "PrometheusRule rejected: $out"
fi
wrap "$RULES" broken >"$W/prometheusrule-broken.yaml"
if out=$(k apply --server-side --dry-run=server --field-manager=brotr-e2e -f "$W/prometheusrule-broken.yaml" 2>&1); then
  fail "a PrometheusRule with 'for: 10 minutes' was accepted: the schema check above proves nothing"
else
  pass "a PrometheusRule with an invalid duration is rejected (the check is real)"
fi

# ------------------------------------------------------------------ 3c. scrape the probe
phase "probe: wait for every service's cycles"
probe_cycled() {
  local s
  for s in finder validator monitor synchronizer; do
    metric_at_least "$PROBE_PORT" "brotr_service_cycles_total{outcome=\"ok\",service=\"$s\"}" 2 || return 1
  done
  metric_at_least "$PROBE_PORT" brotr_validator_candidates_promoted_total 1 &&
    metric_at_least "$PROBE_PORT" brotr_validator_candidates_rejected_total 1 &&
    metric_at_least "$PROBE_PORT" 'brotr_finder_source_failures_total{*' 1 &&
    metric_at_least "$PROBE_PORT" 'brotr_monitor_relays_reachable_total{network="clearnet"}' 1 &&
    metric_at_least "$PROBE_PORT" 'brotr_monitor_events_published_total{kind="30166"}' 1 &&
    metric_at_least "$PROBE_PORT" brotr_synchronizer_relay_lag_seconds_count 1 &&
    metric_at_least "$PROBE_PORT" brotr_synchronizer_events_stored_total 1 &&
    metric_at_least "$PROBE_PORT" 'brotr_database_pool_connections{state="in_use"}' 0
}
if wait_for 120 probe_cycled; then
  pass "probe: two cycles of each service; a relay promoted, a dead one rejected, a source failed, a 30166 published, events archived ($(awk -v a="$PROBE_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
else
  fail "probe did not cycle every service within 120 s (log: $W/probe/probe.log)"
  tail -n 20 "$W/probe/probe.log" | sed 's/^/  /'
fi
scrape "$PROBE_PORT" >"$W/probe.metrics"
stop "$PROBE_PID" probe

# ------------------------------------------------------------------ 3d. the api over that archive
phase "api: the archive the run filled, read over HTTP; one client over its rate"
API_PORT=$(free_port)
cat >"$W/probe/api.yaml" <<EOF
api:
  requestsPerSecond: 1
  burst: 3
EOF
"$PROBE" --database "$W/probe/probe.db" --config "$W/probe/api.yaml" \
  api --listen "127.0.0.1:$API_PORT" >"$W/probe/api.log" 2>&1 &
API_PID=$!
PIDS+=("$API_PID")
if wait_for 20 curl -fsS --max-time 2 "http://127.0.0.1:$API_PORT/healthz"; then
  # A page of events (an archive read), then more requests than the burst allows: refused.
  curl -fsS --max-time 5 "http://127.0.0.1:$API_PORT/v1/events?limit=5" >"$W/api-events.json" || true
  # One REQ over the relay's WebSocket (node's built-in client): the relay's message counters.
  node --experimental-websocket -e '
    const ws = new WebSocket(process.argv[1]);
    ws.onopen = () => ws.send(JSON.stringify(["REQ", "a", {"limit": 1}]));
    ws.onmessage = (m) => { if (JSON.parse(m.data)[0] === "EOSE") process.exit(0); };
    setTimeout(() => process.exit(1), 5000);' "ws://127.0.0.1:$API_PORT/" 2>/dev/null || true
  for _ in 1 2 3 4 5; do curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$API_PORT/v1/stats" || true; done
  if metric_at_least "$API_PORT" 'brotr_api_query_duration_seconds_count{op="events"}' 1 &&
      metric_at_least "$API_PORT" 'brotr_api_refusals_total{reason="rate_limited"}' 1 &&
      metric_at_least "$API_PORT" 'brotr_api_messages_total{type="REQ"}' 1; then
    pass "api: $(jq '.events | length' "$W/api-events.json" 2>/dev/null || echo 0) events read over HTTP, a REQ over its WebSocket, requests over the rate refused"
  else
    fail "api: no archive read, REQ or refusal counted (log: $W/probe/api.log)"
  fi
else
  fail "api did not start (log: $W/probe/api.log)"
  tail -n 20 "$W/probe/api.log" | sed 's/^/  /'
fi
scrape "$API_PORT" >"$W/api.metrics" || true
stop "$API_PID" api

# ------------------------------------------------------------------ 5. names
phase "every metric name in the rules and the dashboard is exported"
STEP_LINES=100 run_step "metric names referenced by rules and dashboard are exported by brotr-probe or brotr-operator" \
  python3 "$CHECK" check "$RULES" "$DASHBOARD" "$W/probe.metrics" "$W/api.metrics" "$W/operator.metrics"

phase "done"
checks_summary

#!/usr/bin/env bash
# Tests of the Helm chart charts/brotr-operator against a real control plane (e2e/control-plane.sh):
#   1. `helm lint --strict`, and values.schema.json rejecting bad values with a message naming them;
#   2. `helm template` with the defaults, every option on, and the namespaced mode, applied with
#      a server-side dry-run (the Prometheus Operator CRDs installed, so those objects are checked);
#   3. `helm install`, then the real operator binary run exactly as the chart's Deployment says
#      (its args, under a token of the chart's ServiceAccount and so the chart's RBAC: kwok runs
#      no containers) reconciles a BrotrDeployment to Ready, never refused anything;
#   4. `helm upgrade` with changed values rolls the operator; the new one writes nothing to the
#      healthy pipeline (resourceVersions unchanged);
#   5. `helm uninstall` leaves the CRDs, the custom resources and their children alone;
#   6. the namespaced mode (Roles only, two replicas with leader election) reconciles in its
#      namespace and holds the Lease in its own.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"
CHART=charts/brotr-operator
NS=brotr-system
# BROTR_OPERATOR_BIN: the operator binary (the test command passes the one its test build made;
# alone, this script builds it).
OP=${BROTR_OPERATOR_BIN:-$CARGO_TARGET_DIR/debug/brotr-operator}

source e2e/tools.sh
command -v jq >/dev/null 2>&1 || tools_apt jq
command -v curl >/dev/null 2>&1 || tools_apt curl
BROTR_TOOLS=helm tools_install
HELM=$BROTR_HELM
source e2e/monitoring-crds.sh
MONITORING_CRDS=$(monitoring_crds)
[ -n "${BROTR_OPERATOR_BIN:-}" ] || cargo build --quiet --locked -p brotr-operator --bin brotr-operator
[ -x "$OP" ] || { echo "chart-test: no operator binary at $OP" >&2; exit 1; }

PASSED=0
ok() { PASSED=$((PASSED + 1)); echo "  ok: $*"; }
fail() {
  echo "chart-test: FAIL: $*" >&2
  for l in "${K8S_DIR:-/nonexistent}"/op*.log; do [ -f "$l" ] && { echo "--- $l" >&2; tail -15 "$l" >&2; }; done
  exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== helm lint and values.schema.json"
"$HELM" lint --strict "$CHART" >/dev/null || fail "helm lint --strict"
ok "helm lint --strict"
# reject WANT ARGS…: the chart refuses these values, with a message containing WANT.
reject() {
  local want=$1 out; shift
  if out=$("$HELM" template x "$CHART" "$@" 2>&1); then fail "accepted: $*"; fi
  grep -qF -- "$want" <<<"$out" || fail "rejected $* without naming '$want':"$'\n'"$out"
  ok "rejects $* ($(grep -m1 -oF -- "$want" <<<"$out"))"
}
reject /replicaCount --set replicaCount=-1
reject /image/pullPolicy --set image.pullPolicy=Sometimes
reject /logging/format --set logging.format=xml
reject colour --set colour=blue
reject /watchNamespaces/0 --set 'watchNamespaces[0]=Not_A_Namespace'
reject /metrics/serviceMonitor/interval --set metrics.serviceMonitor.interval=5
reject /image/digest --set image.digest=latest
reject /metrics/port --set metrics.port=80
reject /resources/limits/memory --set resources.limits.memory=lots
reject "serviceAccount.name is required" --set serviceAccount.create=false
reject "needs metrics.service.enabled" --set metrics.service.enabled=false \
  --set metrics.serviceMonitor.enabled=true

K8S_DIR=$(mktemp -d /tmp/brotr-chart-test.XXXXXX)
OP_PIDS=()
cleanup() {
  for p in "${OP_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  bash e2e/control-plane.sh stop "$K8S_DIR" >/dev/null 2>&1 || true
  rm -rf "$K8S_DIR"
}
trap cleanup EXIT
bash e2e/control-plane.sh start "$K8S_DIR" >/dev/null
source "$K8S_DIR/env"
kubectl apply --server-side -f "$CHART/crds/" -f "$MONITORING_CRDS" >/dev/null
kubectl wait --for condition=established --timeout=60s crd --all >/dev/null
for n in $NS team-a team-b pipelines; do kubectl create namespace "$n" >/dev/null; done

echo "== helm template | kubectl apply --server-side --dry-run=server"
ALL_ON=(--set metrics.serviceMonitor.enabled=true --set metrics.podMonitor.enabled=true
  --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true --set replicaCount=2)
dry_run() {
  local what=$1 out; shift
  out=$("$HELM" template brotr "$CHART" -n $NS "$@" | kubectl apply --server-side --dry-run=server -f - 2>&1) ||
    fail "$what: the API server refused the rendered chart:"$'\n'"$out"
  ok "$what: $(grep -c 'serverside-applied' <<<"$out") objects accepted"
}
dry_run "defaults"
dry_run "every option on" "${ALL_ON[@]}"
dry_run "namespaced" --set 'watchNamespaces={team-a,team-b}'
"$HELM" template brotr "$CHART" -n $NS "${ALL_ON[@]}" >"$K8S_DIR/all-on.yaml"
for kind in ServiceMonitor PodMonitor PrometheusRule PodDisruptionBudget ConfigMap; do
  grep -q "^kind: $kind$" "$K8S_DIR/all-on.yaml" || fail "every option on renders no $kind"
done
python3 - "$K8S_DIR/all-on.yaml" <<'PY' || fail "the PrometheusRule or the dashboard ConfigMap is empty"
import sys, yaml, json
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
rule = next(d for d in docs if d["kind"] == "PrometheusRule")
alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
cm = next(d for d in docs if d["kind"] == "ConfigMap")
boards = {k: json.loads(v) for k, v in cm["data"].items()}
assert alerts and boards and all(b.get("panels") for b in boards.values())
print(f"  ok: the PrometheusRule holds {len(alerts)} alerts; dashboards: {', '.join(boards)}")
PY
if grep -q "kind: ClusterRole" <("$HELM" template brotr "$CHART" -n $NS --set 'watchNamespaces={team-a}'); then
  fail "the namespaced mode renders a ClusterRole"
fi
ok "the namespaced mode renders no ClusterRole"

# run_operator RELEASE LOG: the operator binary as the release's pod would run it (args, env,
# ServiceAccount token: e2e/operator-as-pod.sh). Prints the pid.
run_operator() {
  BROTR_OPERATOR_BIN="$OP" bash e2e/operator-as-pod.sh $NS "$1" >"$2" 2>&1 &
  echo $!
}
# stop_operator PID: SIGTERM, then wait until it has exited (and freed its port).
stop_operator() {
  kill "$1" 2>/dev/null || true
  local end=$((SECONDS + 30))
  while kill -0 "$1" 2>/dev/null; do
    [ $SECONDS -lt $end ] || fail "the operator ignored SIGTERM for 30 s"
    sleep 0.2
  done
}
metric() {
  curl -sf "http://127.0.0.1:$1/metrics" |
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $2} END {print s + 0}'
}
never_forbidden() {
  if grep -qi forbidden "$1"; then cat "$1" >&2; fail "the operator was refused something under the chart's RBAC"; fi
}
wait_for() {  # wait_for SECONDS WHAT COMMAND…
  local secs=$1 what=$2 end; shift 2
  end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || fail "timed out after ${secs}s waiting for $what"
    sleep 0.5
  done
}
# A fingerprint of a namespace's pipelines and their children: kind/name@resourceVersion, one per
# line (Jobs started by a CronJob on its schedule are the controller-manager's, not compared).
children() {
  kubectl -n "$1" get brotrdeployments,configmaps,services,jobs,cronjobs,deployments,statefulsets,secrets,servicemonitors \
    -o json | python3 -c '
import json, sys
for o in json.load(sys.stdin)["items"]:
    m = o["metadata"]
    if m["name"] == "kube-root-ca.crt" or any(r["kind"] == "CronJob" for r in m.get("ownerReferences", [])):
        continue
    print("%s/%s@%s" % (o["kind"], m["name"], m["resourceVersion"]))' | sort
}

echo "== helm install (cluster-wide) and a BrotrDeployment reconciled under the chart's RBAC"
PORT=$(free_port)
"$HELM" install brotr "$CHART" -n $NS --set metrics.port="$PORT" --wait --timeout 120s >/dev/null
ok "helm install --wait"
OP1=$(run_operator brotr "$K8S_DIR/op1.log"); OP_PIDS+=("$OP1")
wait_for 30 "the operator's /readyz" curl -sf "http://127.0.0.1:$PORT/readyz"
# The minimal example (an external database: the test cluster has no volume provisioner for a
# managed one), with a ServiceMonitor (the Prometheus Operator CRDs are installed).
for n in pipelines team-a; do
  kubectl -n $n create secret generic pg-app --from-literal=uri=postgres://brotr:secret@db:5432/brotr >/dev/null
done
{ cat examples/brotrdeployment-minimal.yaml; echo "  metrics: {serviceMonitor: true}"; } |
  kubectl -n pipelines apply -f - >/dev/null
kubectl -n pipelines wait brotrdeployment/minimal --for=condition=Ready --timeout=120s >/dev/null ||
  { kubectl -n pipelines get brotrdeployment minimal -o yaml >&2; fail "minimal not Ready"; }
never_forbidden "$K8S_DIR/op1.log"
ok "minimal Ready; $(children pipelines | wc -l) objects; nothing forbidden"
[ "$(kubectl -n pipelines get servicemonitors -l brotr.dev/owner-kind=BrotrDeployment \
  -o jsonpath='{.items[*].metadata.ownerReferences[0].name}')" = minimal ] ||
  fail "no ServiceMonitor owned by the pipeline"
ok "the operator made the pipeline's ServiceMonitor"

# Settled: the pipeline's Jobs finish after it is Ready, and the operator writes their state into
# its status. Wait until 5 s pass without a write, so the upgraded operator finds nothing to do.
settled() {
  local a b
  a=$(metric "$PORT" brotr_operator_writes_total); sleep 5; b=$(metric "$PORT" brotr_operator_writes_total)
  [ "$a" = "$b" ]
}
wait_for 90 "the operator's writes to settle" settled
echo "== helm upgrade with changed values"
BEFORE=$(children pipelines)
GEN=$(kubectl -n $NS get deployment brotr-brotr-operator -o jsonpath='{.metadata.generation}')
"$HELM" upgrade brotr "$CHART" -n $NS --reuse-values --set logging.level=debug --set concurrency=8 \
  --wait --timeout 120s >/dev/null
[ "$(kubectl -n $NS get deployment brotr-brotr-operator -o jsonpath='{.metadata.generation}')" -gt "$GEN" ] ||
  fail "helm upgrade did not change the operator's Deployment"
wait_for 60 "a second ReplicaSet (the operator rolled)" \
  test "$(kubectl -n $NS get replicasets -l app.kubernetes.io/instance=brotr -o name | wc -l)" -ge 2
stop_operator "$OP1"
OP2=$(run_operator brotr "$K8S_DIR/op2.log"); OP_PIDS+=("$OP2")
reconciled() { [ "$(metric "$PORT" brotr_operator_reconciles_total)" -ge 1 ]; }
wait_for 30 "the upgraded operator reconciling the pipeline" reconciled
grep -q -- '--log-level=debug' <(tr '\0' '\n' </proc/"$OP2"/cmdline) || fail "the new args are not in use"
sleep 3  # let any write a reconcile would make land
[ "$(children pipelines)" = "$BEFORE" ] ||
  fail "the upgraded operator touched the pipeline:"$'\n'"$(diff <(echo "$BEFORE") <(children pipelines))"
[ "$(metric "$PORT" brotr_operator_writes_total)" = 0 ] || fail "the upgraded operator counted writes"
never_forbidden "$K8S_DIR/op2.log"
ok "the operator rolled (a new ReplicaSet) and the new one wrote nothing"

echo "== helm uninstall leaves user data alone"
stop_operator "$OP2"
"$HELM" uninstall brotr -n $NS --wait >/dev/null
kubectl get crd brotrdeployments.brotr.dev relaymonitors.brotr.dev >/dev/null || fail "uninstall removed a CRD"
[ "$(children pipelines)" = "$BEFORE" ] || fail "uninstall changed the pipeline or its children"
if kubectl get clusterrole brotr-brotr-operator >/dev/null 2>&1; then fail "the ClusterRole survived"; fi
ok "CRDs, the BrotrDeployment and its $(echo "$BEFORE" | wc -l) objects kept; the operator's objects gone"

echo "== namespaced install: Roles only, two replicas with leader election"
PORT2=$(free_port)
"$HELM" install brotr-ns "$CHART" -n $NS --set 'watchNamespaces={team-a}' --set replicaCount=2 \
  --set metrics.port="$PORT2" --wait --timeout 120s >/dev/null
[ -z "$(kubectl get clusterroles,clusterrolebindings -l app.kubernetes.io/instance=brotr-ns -o name)" ] ||
  fail "the namespaced install created cluster-wide RBAC"
kubectl -n $NS get pdb brotr-ns-brotr-operator >/dev/null || fail "two replicas and no PodDisruptionBudget"
OP3=$(run_operator brotr-ns "$K8S_DIR/op3.log"); OP_PIDS+=("$OP3")
sed 's/name: minimal/name: team-pipeline/' examples/brotrdeployment-minimal.yaml | kubectl -n team-a apply -f - >/dev/null
kubectl -n team-a wait brotrdeployment/team-pipeline --for=condition=Ready --timeout=120s >/dev/null ||
  { cat "$K8S_DIR/op3.log" >&2; fail "team-pipeline not Ready under the namespaced install"; }
kubectl -n $NS get leases -o name | grep -q . || fail "no leader Lease in $NS"
never_forbidden "$K8S_DIR/op3.log"
ok "team-pipeline Ready under Roles only; the Lease is in $NS"

echo "chart-test: $PASSED checks passed"

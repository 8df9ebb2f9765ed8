#!/usr/bin/env bash
# GitOps checks on a throwaway control plane (e2e/control-plane.sh), with the operator as a process
# under exactly the generated least-privilege ClusterRole (deploy/rbac/):
#   1. the Argo CD health scripts (deploy/argocd, lua5.1 and lua5.4) on their captured testdata;
#   2. the CRDs applied; every example (examples/*.yaml, the fleet's base and both overlays as
#      `kubectl kustomize` renders them) accepted by `kubectl apply --server-side --dry-run=server`;
#      the argocd-cm snippet merged into a ConfigMap with the command it documents;
#   3. live objects driven through each state (just applied, waiting for a Secret, Ready,
#      Stalled, a failed scheduled run, a spec edit the operator has not seen, stopped, paused),
#      each checked with kstatus (e2e/kstatus-check, sigs.k8s.io/cli-utils: what Flux reads) and
#      with the Argo CD health script, and compared with its captured testdata, so the testdata
#      cannot drift from what the operator really writes;
#   4. the fleet (both overlays, two region node pools) applied for real: every monitor Ready,
#      Current, Healthy, its pods on its region's node.
# Last line: "N passed, M failed"; exits non-zero on any failure.
#
# BROTR_GITOPS_CAPTURE=1 (what e2e/gitops-capture.sh sets) rewrites the testdata from the live
# objects instead of comparing with it. BROTR_OPERATOR_BIN: the operator binary (default: the debug
# build in $CARGO_TARGET_DIR, else $HOME/.cache/brotr/target). BROTR_KEEP=1 keeps the cluster's
# files and logs.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/.." && pwd -P)
CP="$HERE/control-plane.sh"
ARGO="$ROOT/deploy/argocd/health_test.py"
CAPTURE=${BROTR_GITOPS_CAPTURE:-0}
OPERATOR=${BROTR_OPERATOR_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}/debug/brotr-operator}
source "$HERE/checks.sh" gitops

# Tools: fail loudly when one cannot be had, never skip.
phase "tools"
# shellcheck source=e2e/tools.sh
source "$HERE/tools.sh"
tools_apt lua5.1 lua5.4 || die "lua5.1 and lua5.4 are needed (apt-get install lua5.1 lua5.4)"
if ! python3 -c 'import yaml' 2>/dev/null; then
  say "installing PyYAML with pip"
  python3 -m pip install --quiet --disable-pip-version-check pyyaml || die "PyYAML is needed"
fi
tools_go_build kstatus-check KSTATUS || die "e2e/kstatus-check did not build"
[ -x "$OPERATOR" ] || die "no operator binary at $OPERATOR (cargo build -p brotr-operator, or set BROTR_OPERATOR_BIN)"
"$CP" build >/dev/null
KUBECTL=$("$CP" kubectl)

# The Lua suite's own cases count in this script's totals.
lua_tests() {
  local out rc=0 p f
  out=$(python3 "$ARGO" test) || rc=$?
  echo "$out" | sed 's/^/  /'
  read -r p f < <(echo "$out" | tail -n1 | awk '/^[0-9]+ passed, [0-9]+ failed$/ { print $1, $3 }') || true
  if [ "$rc" -eq 0 ] && [ -n "${p:-}" ] && [ "$p" -gt 0 ]; then
    CHECKS_PASSED=$((CHECKS_PASSED + p))
    echo "ok    Argo CD health scripts: $p cases passed (lua5.1 and lua5.4)"
  else
    CHECKS_PASSED=$((CHECKS_PASSED + ${p:-0}))
    fail "Argo CD health scripts: ${p:-?} passed, ${f:-?} failed"
  fi
}

# 1. Lua first: no cluster needed (a capture run checks them at the end, on the new testdata).
if [ "$CAPTURE" != 1 ]; then
  phase "Argo CD health scripts on the captured testdata"
  lua_tests
else
  python3 "$ARGO" argocd-cm --write
fi

# 2. The control plane: two fake nodes, one per region of the fleet's node pools.
phase "control plane"
DIR=$(mktemp -d /tmp/brotr-gitops.XXXXXX)
OP_PID=""
cleanup() {
  local rc=$?
  if [ -n "$OP_PID" ]; then kill -TERM "$OP_PID" 2>/dev/null || true; wait "$OP_PID" 2>/dev/null || true; fi
  "$CP" stop "$DIR" >/dev/null 2>&1 || true
  if checks_ok && [ "$rc" -eq 0 ] && [ "${BROTR_KEEP:-0}" != 1 ]; then
    rm -rf "$DIR"
  else
    say "cluster files and logs kept in $DIR (operator log: $DIR/operator.log)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
BROTR_K8S_NODES=2 "$CP" start "$DIR" >/dev/null
# shellcheck disable=SC1091
source "$DIR/env"
k() { "$KUBECTL" "$@"; }
k label node kwok-node-0 topology.kubernetes.io/region=eu-west >/dev/null
k label node kwok-node-1 topology.kubernetes.io/region=us-east >/dev/null

if out=$(k apply --server-side --field-manager=brotr-e2e -f "$ROOT/crds/" 2>&1) &&
    out=$(k wait --for=condition=Established crd/brotrdeployments.brotr.dev crd/relaymonitors.brotr.dev --timeout=60s 2>&1); then
  pass "CRDs applied and Established"
else
  fail "CRDs: $out"; checks_summary; exit 1
fi
# The operator's user gets exactly the generated ClusterRole, as in operator/tests/support.
k apply --server-side --field-manager=brotr-e2e -f "$ROOT/deploy/rbac/cluster-role.yaml" >/dev/null
k create clusterrolebinding brotr-operator-gitops --clusterrole=brotr-operator --user=brotr-operator >/dev/null
for ns in examples gitops brotr; do k create namespace "$ns" >/dev/null; done

# 3. Every example, as GitOps would apply it (server-side), checked by the real API server.
phase "examples: server-side dry run"
dry_run() { # dry_run LABEL NAMESPACE FILE
  local out
  if out=$(k -n "$2" apply --server-side --dry-run=server --field-manager=brotr-gitops -f "$3" 2>&1); then
    pass "accepted $1 ($(echo "$out" | wc -l) objects)"
  else
    fail "accepted $1: $out"
  fi
}
for f in "$ROOT"/examples/*.yaml; do dry_run "${f#"$ROOT/"}" examples "$f"; done
if k kustomize "$ROOT/examples/fleet/base" >"$DIR/fleet-base.yaml" 2>"$DIR/fleet-base.err"; then
  dry_run "examples/fleet/base (rendered)" examples "$DIR/fleet-base.yaml"
else
  fail "kubectl kustomize examples/fleet/base: $(cat "$DIR/fleet-base.err")"
fi
for o in eu us; do
  if k kustomize "$ROOT/examples/fleet/overlays/$o" >"$DIR/fleet-$o.yaml" 2>"$DIR/fleet-$o.err"; then
    n=$(grep -c '^kind: RelayMonitor$' "$DIR/fleet-$o.yaml" || true)
    if [ "$n" -ge 2 ] && grep -q "^  namespace: brotr$" "$DIR/fleet-$o.yaml" &&
        grep -q "name: $o-monitor-key" "$DIR/fleet-$o.yaml"; then
      pass "kubectl kustomize examples/fleet/overlays/$o: $n RelayMonitors in namespace brotr, key $o-monitor-key"
    else
      fail "examples/fleet/overlays/$o rendered without its RelayMonitors, namespace or key Secret"
    fi
    dry_run "examples/fleet/overlays/$o (rendered)" brotr "$DIR/fleet-$o.yaml"
  else
    fail "kubectl kustomize examples/fleet/overlays/$o: $(cat "$DIR/fleet-$o.err")"
  fi
done
# The overlays differ where a region must (key, geohash, schedules, names), nothing else.
if diff <(sed 's/\beu-/R-/g; s/eu-west/REGION/g' "$DIR/fleet-eu.yaml") \
        <(sed 's/\bus-/R-/g; s/us-east/REGION/g' "$DIR/fleet-us.yaml") >"$DIR/fleet.diff"; then
  fail "the eu and us overlays render the same fleet"
else
  changed=$(grep -c '^<' "$DIR/fleet.diff" || true)
  if grep -q geohash "$DIR/fleet.diff" && grep -q schedule "$DIR/fleet.diff" && grep -q interval "$DIR/fleet.diff"; then
    pass "the overlays differ in geohash, schedule and interval ($changed lines)"
  else
    fail "the overlays do not differ in geohash, schedule and interval: $(cat "$DIR/fleet.diff")"
  fi
fi

# The argocd-cm snippet merges into Argo CD's ConfigMap with the command its header gives, and
# carries each health.lua byte for byte.
k create namespace argocd >/dev/null
k -n argocd create configmap argocd-cm --from-literal=url=https://argocd.example.org >/dev/null
if out=$(k -n argocd patch configmap argocd-cm --patch-file "$ROOT/deploy/argocd/argocd-cm.yaml" 2>&1); then
  for kind in BrotrDeployment RelayMonitor; do
    if k -n argocd get configmap argocd-cm -o json | python3 -c '
import json, sys
data = json.load(sys.stdin)["data"]
want = open(sys.argv[2]).read()
sys.exit(0 if data.get("resource.customizations.health.brotr.dev_" + sys.argv[1]) == want
         and data.get("url") == "https://argocd.example.org" else 1)' "$kind" "$ROOT/deploy/argocd/brotr.dev/$kind/health.lua"; then
      pass "argocd-cm patched: resource.customizations.health.brotr.dev_$kind is health.lua, other keys kept"
    else
      fail "argocd-cm patched: resource.customizations.health.brotr.dev_$kind differs from health.lua"
    fi
  done
else
  fail "kubectl -n argocd patch configmap argocd-cm --patch-file deploy/argocd/argocd-cm.yaml: $out"
fi

# 4. Live objects and their states.
start_operator() {
  KUBECONFIG="$BROTR_K8S_OPERATOR_KUBECONFIG" "$OPERATOR" run --namespace gitops --namespace brotr \
    --metrics-addr "127.0.0.1:0" --log-format text --log-level info,kube=warn \
    >>"$DIR/operator.log" 2>&1 &
  OP_PID=$!
}
stop_operator() {
  kill -TERM "$OP_PID"
  wait "$OP_PID" || die "the operator did not exit cleanly on SIGTERM (log: $DIR/operator.log)"
  OP_PID=""
}

# checkpoint KIND NAME STATE KSTATUS ARGO READY_REASON [SECONDS]
# Waits until one snapshot of the object has the Ready reason (empty: no status at all), the
# kstatus and the Argo CD health expected, then compares it with the captured testdata STATE
# (or, when capturing, writes it). STATE "-" checks without testdata.
checkpoint() {
  local kind=$1 name=$2 state=$3 want_k=$4 want_a=$5 reason=$6 secs=${7:-60}
  local deadline json got_reason kout aout ok
  deadline=$(($(date +%s) + secs))
  while :; do
    ok=1
    json=$(k -n gitops get "$kind" "$name" -o json 2>&1) || ok=0
    if [ "$ok" = 1 ]; then
      got_reason=$(printf '%s' "$json" | python3 -c 'import json,sys
c=[c for c in (json.load(sys.stdin).get("status") or {}).get("conditions", []) if c["type"]=="Ready"]
print(c[0]["reason"] if c else "")')
      [ "$got_reason" = "$reason" ] || ok=0
      kout=$(printf '%s' "$json" | "$KSTATUS" --expect "$want_k" 2>&1) || ok=0
      aout=$(printf '%s' "$json" | python3 "$ARGO" health --expect "$want_a" 2>&1) || ok=0
    fi
    [ "$ok" = 1 ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
      fail "$kind $name ${state}: not reached in ${secs} s (want Ready reason '$reason', kstatus $want_k, Argo $want_a); last: reason '${got_reason:-?}' | ${kout:-?} | ${aout:-?}"
      return 0
    fi
    sleep 0.3
  done
  pass "$kind $name $state: Ready reason '${reason}'; kstatus ${kout#*: }; Argo ${aout#*: }"
  [ "$state" = - ] && return 0
  if [ "$CAPTURE" = 1 ]; then
    printf '%s' "$json" | python3 "$ARGO" capture "$kind" "$state" "${NOTES[$kind/$state]}" >/dev/null
  elif out=$(printf '%s' "$json" | python3 "$ARGO" drift "$kind" "$state" 2>&1); then
    pass "  $out"
  else
    fail "  $out"
  fi
}

# What each captured state is (the first line of its testdata file).
declare -A NOTES=(
  [BrotrDeployment/progressing-no-status]="Just applied, before the operator has written any status."
  [BrotrDeployment/progressing-waiting-for-secret]="Waiting for its database Secret (Reconciling=True, WaitingForReference)."
  [BrotrDeployment/healthy]="examples/brotrdeployment-lite.yaml with its Secrets: every component ready."
  [BrotrDeployment/degraded-migration-failed]="The migration Job exited with code 2 (kwok's brotr.dev/kwok-exit-code): Stalled."
  [BrotrDeployment/degraded-invalid-spec]="A synchronizer filter that sets since, which the probe refuses: Stalled."
  [BrotrDeployment/progressing-generation]="A spec edit the operator has not seen yet (observedGeneration behind generation)."
  [BrotrDeployment/healthy-stopped]="spec.stopped: every service scaled to zero, Ready."
  [BrotrDeployment/suspended]="spec.paused: the operator leaves its children alone."
  [RelayMonitor/progressing-no-status]="Just applied, before the operator has written any status."
  [RelayMonitor/progressing-waiting-for-secret]="Waiting for its key Secret (Reconciling=True, WaitingForReference)."
  [RelayMonitor/healthy]="examples/relaymonitor-interval.yaml with its key Secret: its Deployment ready."
  [RelayMonitor/healthy-scheduled]="A monitor on a schedule: its CronJob in place, no run yet."
  [RelayMonitor/degraded-last-run-failed]="A scheduled monitor whose last run failed: Ready=False, neither Reconciling nor Stalled."
  [RelayMonitor/degraded-name-conflict]="A ConfigMap of the child's name that it does not own: Stalled."
  [RelayMonitor/progressing-generation]="A spec edit the operator has not seen yet (observedGeneration behind generation)."
  [RelayMonitor/suspended]="spec.paused: the operator leaves its children alone."
)

phase "live: applied before the operator runs"
kg() { k -n gitops "$@"; }
kg apply --server-side --field-manager=brotr-gitops -f "$ROOT/examples/brotrdeployment-lite.yaml" \
  -f "$ROOT/examples/relaymonitor-interval.yaml" >/dev/null
# kstatus reads an object without status.observedGeneration or conditions as Current: a
# just-applied resource is "ready" to Flux until the operator's first status write (a kstatus
# limitation, asserted so it stays known). Argo CD's health says Progressing.
checkpoint BrotrDeployment brotr-lite progressing-no-status Current Progressing ""
checkpoint RelayMonitor static-list progressing-no-status Current Progressing ""

phase "live: operator started"
# Objects whose own Secrets exist, and those that stall.
k -n gitops create secret generic pg-app --from-literal=uri=postgres://brotr:secret@db:5432/brotr >/dev/null
k -n gitops create secret generic other-key --from-literal=nsec=00 >/dev/null
k -n gitops create configmap conflict-rmon --from-literal=owner=someone-else >/dev/null
kg apply --server-side --field-manager=brotr-gitops -f - >/dev/null <<'EOF'
apiVersion: brotr.dev/v1alpha1
kind: BrotrDeployment
metadata: {name: refuses}
spec:
  schema: lite
  image: {repository: ghcr.io/example/brotr-probe, tag: "0.1.0"}
  database: {external: {urlSecretRef: {name: pg-app, key: uri}}}
  podOverrides: {annotations: {brotr.dev/kwok-exit-code: "2"}}
---
apiVersion: brotr.dev/v1alpha1
kind: BrotrDeployment
metadata: {name: invalid}
spec:
  schema: lite
  image: {repository: ghcr.io/example/brotr-probe, tag: "0.1.0"}
  database: {external: {urlSecretRef: {name: pg-app, key: uri}}}
  synchronizer: {settings: {filters: [{kinds: [1], since: 5}]}}
---
apiVersion: brotr.dev/v1alpha1
kind: RelayMonitor
metadata: {name: conflict}
spec:
  image: {repository: ghcr.io/example/brotr-probe, tag: "0.1.0"}
  identity: {keySecretRef: {name: other-key, key: nsec}}
  interval: 30m
  targets: {relays: ["wss://relay.damus.io"]}
  settings: {publish: {relays: ["wss://relay.example.org"]}}
---
apiVersion: brotr.dev/v1alpha1
kind: RelayMonitor
metadata: {name: scheduled}
spec:
  image: {repository: ghcr.io/example/brotr-probe, tag: "0.1.0"}
  identity: {keySecretRef: {name: other-key, key: nsec}}
  schedule: "0 0 1 1 *"
  targets: {relays: ["wss://relay.damus.io"]}
  settings: {publish: {relays: ["wss://relay.example.org"]}}
EOF
# The fleet's namespace: the pipeline the `pipeline` monitors store into (the lite example,
# renamed `bigbrotr`), its Secrets and each region's key, then both rendered overlays.
for s in pg-lite-app:uri brotr-lite-key:nsec eu-monitor-key:nsec us-monitor-key:nsec; do
  k -n brotr create secret generic "${s%%:*}" --from-literal="${s##*:}=00" >/dev/null
done
sed 's/^  name: brotr-lite$/  name: bigbrotr/' "$ROOT/examples/brotrdeployment-lite.yaml" |
  k -n brotr apply --server-side --field-manager=brotr-gitops -f - >/dev/null
k apply --server-side --field-manager=brotr-gitops -f "$DIR/fleet-eu.yaml" -f "$DIR/fleet-us.yaml" >/dev/null
start_operator

checkpoint BrotrDeployment brotr-lite progressing-waiting-for-secret InProgress Progressing WaitingForReference
checkpoint RelayMonitor static-list progressing-waiting-for-secret InProgress Progressing WaitingForReference
checkpoint BrotrDeployment invalid degraded-invalid-spec Failed Degraded InvalidSpec
checkpoint RelayMonitor conflict degraded-name-conflict Failed Degraded NameConflict
checkpoint BrotrDeployment refuses degraded-migration-failed Failed Degraded MigrationFailed
checkpoint RelayMonitor scheduled healthy-scheduled Current Healthy Scheduled

phase "live: Secrets created"
k -n gitops create secret generic pg-lite-app --from-literal=uri=postgres://brotr:secret@db:5432/brotr >/dev/null
k -n gitops create secret generic brotr-lite-key --from-literal=nsec=00 >/dev/null
k -n gitops create secret generic static-key --from-literal=nsec=00 >/dev/null
# A missing reference is looked at again every 15 s: allow for that.
checkpoint BrotrDeployment brotr-lite healthy Current Healthy AllComponentsReady 90
checkpoint RelayMonitor static-list healthy Current Healthy Running 60

# A failed run of the scheduled monitor, made from its CronJob as `kubectl create job --from`
# does, with the pod failing (kwok plays exit code 1).
k -n gitops create job scheduled-run-1 --from=cronjob/scheduled-rmon --dry-run=client -o json |
  python3 -c 'import json,sys
j=json.load(sys.stdin)
j["spec"]["template"].setdefault("metadata",{}).setdefault("annotations",{})["brotr.dev/kwok-exit-code"]="1"
print(json.dumps(j))' | k -n gitops create -f - >/dev/null
checkpoint RelayMonitor scheduled degraded-last-run-failed InProgress Degraded LastRunFailed

phase "live: spec edits while the operator is down"
stop_operator
kg patch bd brotr-lite --type=merge -p '{"spec":{"validator":{"interval":"6h"}}}' >/dev/null
kg patch rmon static-list --type=merge -p '{"spec":{"interval":"45m"}}' >/dev/null
checkpoint BrotrDeployment brotr-lite progressing-generation InProgress Progressing AllComponentsReady
checkpoint RelayMonitor static-list progressing-generation InProgress Progressing Running
start_operator
checkpoint BrotrDeployment brotr-lite - Current Healthy AllComponentsReady
checkpoint RelayMonitor static-list - Current Healthy Running

phase "live: stopped and paused"
kg patch bd brotr-lite --type=merge -p '{"spec":{"stopped":true}}' >/dev/null
checkpoint BrotrDeployment brotr-lite healthy-stopped Current Healthy Stopped
kg patch bd brotr-lite --type=merge -p '{"spec":{"paused":true}}' >/dev/null
kg patch rmon static-list --type=merge -p '{"spec":{"paused":true}}' >/dev/null
# Paused and ready: kstatus Current (Ready=True), Argo CD Suspended.
checkpoint BrotrDeployment brotr-lite suspended Current Suspended Paused
checkpoint RelayMonitor static-list suspended Current Suspended Paused

phase "live: the fleet (both overlays)"
fleet_ok=0
deadline=$(($(date +%s) + 90))
while [ "$(date +%s)" -lt "$deadline" ]; do
  json=$(k -n brotr get bd,rmon -o json)
  if kout=$(printf '%s' "$json" | "$KSTATUS" --expect Current 2>&1) &&
      aout=$(printf '%s' "$json" | python3 "$ARGO" health --expect Healthy 2>&1); then
    fleet_ok=1; break
  fi
  sleep 0.5
done
n=$(printf '%s' "$json" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
if [ "$fleet_ok" = 1 ] && [ "$n" = 5 ]; then
  pass "fleet: bigbrotr and 4 RelayMonitors Current and Healthy"
  echo "$kout" | sed 's/^/        /'
else
  fail "fleet: not all Current and Healthy in 90 s ($n objects):"$'\n'"${kout:-}"$'\n'"${aout:-}"
fi
# Each region's long-running monitor runs on its region's node.
for r in eu:kwok-node-0 us:kwok-node-1; do
  node=$(k -n brotr get pods -l app.kubernetes.io/instance="${r%%:*}-popular" \
    -o jsonpath='{.items[*].spec.nodeName}' 2>/dev/null || true)
  if [ "$node" = "${r##*:}" ]; then
    pass "fleet: ${r%%:*}-popular runs on ${r##*:} (its region's node pool)"
  else
    fail "fleet: ${r%%:*}-popular runs on '$node', want ${r##*:}: $(k -n brotr get pods -o wide 2>&1)"
  fi
done

# The operator needed nothing beyond its ClusterRole.
if grep -qi forbidden "$DIR/operator.log"; then
  fail "the operator was refused something its RBAC should allow: $(grep -i forbidden "$DIR/operator.log" | head -3)"
else
  pass "the operator was never Forbidden (least-privilege ClusterRole)"
fi
stop_operator

if [ "$CAPTURE" = 1 ]; then
  phase "Argo CD health scripts on the new testdata"
  lua_tests
fi

phase "done"
checks_summary

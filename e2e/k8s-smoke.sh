#!/usr/bin/env bash
# Smoke test of the throwaway control plane (e2e/control-plane.sh): builds it (cached), starts it
# in a temp dir, and checks that the controllers really work:
#   deployment  Deployment -> ReplicaSet -> Pod scheduled onto a kwok node, Running, Available
#   job         Job -> Pod marked Succeeded by kwok's pod-complete stage -> Job Complete
#   gc          ConfigMap owned (ownerReferences + uid) by another ConfigMap is garbage-collected
#               after the owner is deleted
# Prints timings and "N passed, M failed"; exits non-zero on any failure. The cluster is stopped
# on exit, failure included; its directory is kept on failure (BROTR_KEEP=1 keeps it always).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
CP="$HERE/control-plane.sh"
TIMEOUT=${BROTR_SMOKE_TIMEOUT:-120}
NS=smoke

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "k8s-smoke: $*" >&2; }

T_ALL=$(now)
t=$(now)
"$CP" build >/dev/null
T_BUILD=$(since "$t")

DIR=$(mktemp -d /tmp/brotr-k8s.XXXXXX)
FAILED=0 PASSED=0
cleanup() {
  local rc=$?
  "$CP" stop "$DIR" || true
  if [ "$rc" -eq 0 ] && [ "$FAILED" -eq 0 ] && [ "${BROTR_KEEP:-0}" != 1 ]; then
    rm -rf "$DIR"
  else
    say "cluster files and logs kept in $DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t=$(now)
"$CP" start "$DIR"
T_START=$(since "$t")

KUBECTL=$("$CP" kubectl)
export KUBECONFIG="$DIR/kubeconfig"
k() { "$KUBECTL" "$@"; }

# until_ok DESCRIPTION CMD...: retry CMD every 0.5 s for up to TIMEOUT seconds.
until_ok() {
  local what=$1; shift
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      say "TIMEOUT after ${TIMEOUT}s waiting for: $what"
      return 1
    fi
    sleep 0.5
  done
}

# jsonpath_is EXPECTED ARGS...: `kubectl get ARGS -o jsonpath=...` prints EXPECTED
jsonpath_is() {
  local want=$1; shift
  [ "$(k get "$@" 2>/dev/null)" = "$want" ]
}

# gone ARGS...: `kubectl get ARGS` succeeds and finds nothing (an API error is not "gone").
gone() {
  local out
  out=$(k get "$@" --ignore-not-found -o name 2>/dev/null) && [ -z "$out" ]
}

diagnose() {
  say "--- diagnostics ---"
  k get nodes -o wide >&2 || true
  k -n "$NS" get all,configmaps -o wide >&2 || true
  k -n "$NS" get events --sort-by=.lastTimestamp >&2 || true
}

test_deployment() {
  k -n "$NS" create deployment smoke-web --image=registry.invalid/brotr/smoke:1 --replicas=1 >/dev/null
  until_ok "a pod of deployment smoke-web in phase Running" \
    jsonpath_is Running -n "$NS" pods -l app=smoke-web -o 'jsonpath={.items[0].status.phase}' || return 1
  until_ok "deployment smoke-web condition Available=True" \
    jsonpath_is True -n "$NS" deployment smoke-web \
    -o 'jsonpath={.status.conditions[?(@.type=="Available")].status}' || return 1
  local node; node=$(k -n "$NS" get pods -l app=smoke-web -o 'jsonpath={.items[0].spec.nodeName}')
  say "deployment: pod Running on $node, deployment Available"
}

test_job() {
  k -n "$NS" create job smoke-job --image=registry.invalid/brotr/smoke:1 -- /bin/true >/dev/null
  until_ok "pod of job smoke-job in phase Succeeded" \
    jsonpath_is Succeeded -n "$NS" pods -l job-name=smoke-job -o 'jsonpath={.items[0].status.phase}' || return 1
  until_ok "job smoke-job condition Complete=True" \
    jsonpath_is True -n "$NS" job smoke-job \
    -o 'jsonpath={.status.conditions[?(@.type=="Complete")].status}' || return 1
  say "job: pod Succeeded, job Complete (succeeded=$(k -n "$NS" get job smoke-job -o 'jsonpath={.status.succeeded}'))"
}

test_gc() {
  k -n "$NS" create configmap smoke-owner --from-literal=role=owner >/dev/null
  local uid; uid=$(k -n "$NS" get configmap smoke-owner -o 'jsonpath={.metadata.uid}')
  [ -n "$uid" ] || { say "owner has no uid"; return 1; }
  k -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: smoke-dependent
  ownerReferences:
  - apiVersion: v1
    kind: ConfigMap
    name: smoke-owner
    uid: $uid
data:
  role: dependent
YAML
  jsonpath_is "$uid" -n "$NS" configmap smoke-dependent -o 'jsonpath={.metadata.ownerReferences[0].uid}' ||
    { say "dependent lost its ownerReference"; return 1; }
  k -n "$NS" delete configmap smoke-owner --wait=true >/dev/null
  until_ok "configmap smoke-dependent garbage-collected after its owner was deleted" \
    gone -n "$NS" configmap smoke-dependent || return 1
  say "gc: dependent ConfigMap collected"
}

run() { # run NAME: run test_NAME, time it, count it
  local name=$1 t rc=0
  t=$(now)
  # errexit is ignored inside a subshell that is part of an || list, so toggle it instead.
  set +e; ( set -e; "test_$name" ); rc=$?; set -e
  if [ "$rc" -eq 0 ]; then
    PASSED=$((PASSED + 1)); say "PASS $name ($(since "$t") s)"
  else
    FAILED=$((FAILED + 1)); say "FAIL $name ($(since "$t") s)"; diagnose
  fi
}

k create namespace "$NS" >/dev/null
until_ok "default ServiceAccount in namespace $NS" k -n "$NS" get serviceaccount default ||
  { say "namespace $NS never got its default ServiceAccount"; exit 1; }

T_TESTS=$(now)
run deployment
run job
run gc
say "timings: build ${T_BUILD} s, start ${T_START} s, tests $(since "$T_TESTS") s, total $(since "$T_ALL") s"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]

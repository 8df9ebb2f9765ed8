#!/usr/bin/env bash
# Smoke test of the throwaway control plane (e2e/control-plane.sh): builds it (cached), starts it
# in a temp dir, and checks that the controllers really work:
#   deployment  Deployment -> ReplicaSet -> Pod scheduled onto a kwok node, Running, Available
#   job         Job -> Pod marked Succeeded by kwok's pod-complete stage -> Job Complete
#   gc          ConfigMap owned (ownerReferences + uid) by another ConfigMap is garbage-collected
#               after the owner is deleted
#   operator_rbac  DIR/kubeconfig-operator (user brotr-operator, no groups) is authenticated but
#               Forbidden until a Role + RoleBinding grants it pods get/list in one namespace
#   metrics     the apiserver's /metrics (admin token) has apiserver_request_total and counts
#               brotr-operator's requests under flow_schema="brotr-operator"
#   exit_code   pod annotated brotr.dev/kwok-exit-code: "2" ends Failed, container exitCode 2
#   job_pod_failure_policy  Job (backoffLimit 6, podFailurePolicy FailJob on exit code 2) whose
#               pods carry that annotation: Job Failed, reason PodFailurePolicy, after one pod
#   crash_loop  Deployment whose pods carry brotr.dev/kwok-exit-code: "2" (restartPolicy Always):
#               its one pod Running, not Ready, CrashLoopBackOff with lastState exitCode 2;
#               Deployment Available=False; no replacement pods
#   never_ready pod annotated brotr.dev/kwok-never-ready: "true" is still Pending / not Ready
#               after 5 s, while a plain pod created with it is Ready
#   sidecar_job Job whose pod has a native sidecar (init container with restartPolicy Always and
#               a tcpSocket startupProbe on 9050) completes
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
# kubectl as the operator identity (no groups besides system:authenticated, no RBAC by default)
kop() { "$KUBECTL" --kubeconfig "$DIR/kubeconfig-operator" "$@"; }

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
  grep '"level":"ERROR"' "$DIR/kwok.log" | tail -n 5 >&2 || true
}

# forbidden CMD...: CMD fails and says Forbidden.
forbidden() {
  local out
  if out=$("$@" 2>&1); then say "expected Forbidden, got success: $*"; return 1; fi
  echo "$out" | grep -q Forbidden || { say "expected Forbidden from '$*', got: $out"; return 1; }
}

# pod_status_is POD EXPECTED: "phase ready-condition" of POD in NS, e.g. "Running True".
pod_status_is() {
  jsonpath_is "$2" -n "$NS" pod "$1" \
    -o 'jsonpath={.status.phase} {.status.conditions[?(@.type=="Ready")].status}'
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

test_operator_rbac() {
  local who
  who=$(kop auth whoami -o 'jsonpath={.status.userInfo.username} {.status.userInfo.groups}')
  [ "$who" = 'brotr-operator ["system:authenticated"]' ] ||
    { say "operator identity is '$who', expected brotr-operator in system:authenticated only"; return 1; }
  forbidden kop get pods -n default || return 1
  forbidden kop get pods -n "$NS" || return 1
  kop auth can-i --list -n "$NS" >/dev/null || { say "auth can-i --list failed"; return 1; }
  [ "$(kop auth can-i list pods -n "$NS" 2>/dev/null)" = no ] || { say "can-i list pods is not 'no'"; return 1; }
  k -n "$NS" create role smoke-pod-reader --verb=get,list --resource=pods >/dev/null
  k -n "$NS" create rolebinding smoke-pod-reader --role=smoke-pod-reader --user=brotr-operator >/dev/null
  # The RBAC authorizer reads from an informer cache: the grant shows up within milliseconds.
  until_ok "brotr-operator can list pods in $NS after the RoleBinding" kop get pods -n "$NS" || return 1
  [ "$(kop auth can-i get pods -n "$NS")" = yes ] || { say "can-i get pods is not 'yes'"; return 1; }
  [ "$(kop auth can-i delete pods -n "$NS" 2>/dev/null)" = no ] || { say "can-i delete pods is not 'no'"; return 1; }
  forbidden kop get pods -n default || return 1
  say "operator_rbac: brotr-operator Forbidden by default; get/list pods in $NS after a Role + RoleBinding, still Forbidden elsewhere"
}

test_metrics() {
  # shellcheck disable=SC1091
  source "$DIR/env"
  local metrics n
  kop get pods -n default >/dev/null 2>&1 || true  # one more request by brotr-operator (Forbidden counts too)
  metrics=$(curl -sS -m 10 --cacert "$DIR/pki/ca.crt" -H "Authorization: Bearer $BROTR_K8S_TOKEN" \
    "$BROTR_K8S_SERVER/metrics")
  # (here-strings, not echo | grep -q: with pipefail, grep -q closing the pipe early fails it)
  grep -q '^apiserver_request_total{' <<<"$metrics" || { say "no apiserver_request_total in /metrics"; return 1; }
  n=$(awk '/^apiserver_flowcontrol_dispatched_requests_total\{flow_schema="brotr-operator"/ { print $2 }' <<<"$metrics")
  [ -n "$n" ] && [ "$n" -ge 1 ] || { say "no brotr-operator requests counted in /metrics (got '$n')"; return 1; }
  forbidden curl -sS -m 10 --fail-with-body --cacert "$DIR/pki/ca.crt" \
    -H "Authorization: Bearer $BROTR_K8S_OPERATOR_TOKEN" "$BROTR_K8S_SERVER/metrics" || return 1
  say "metrics: /metrics readable with the admin token (Forbidden to brotr-operator); brotr-operator requests so far: $n"
}

test_exit_code() {
  k -n "$NS" apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  name: smoke-exit2
  annotations:
    brotr.dev/kwok-exit-code: "2"
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: registry.invalid/brotr/smoke:1
YAML
  until_ok "pod smoke-exit2 in phase Failed" \
    jsonpath_is Failed -n "$NS" pod smoke-exit2 -o 'jsonpath={.status.phase}' || return 1
  local term
  term=$(k -n "$NS" get pod smoke-exit2 \
    -o 'jsonpath={.status.containerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].state.terminated.reason}')
  [ "$term" = "2 Error" ] || { say "container terminated state is '$term', expected '2 Error'"; return 1; }
  say "exit_code: pod Failed, container terminated with exitCode 2, reason Error"
}

test_job_pod_failure_policy() {
  k -n "$NS" apply -f - >/dev/null <<'YAML'
apiVersion: batch/v1
kind: Job
metadata:
  name: smoke-pfp
spec:
  backoffLimit: 6
  podFailurePolicy:
    rules:
    - action: FailJob
      onExitCodes:
        operator: In
        values: [2]
  template:
    metadata:
      annotations:
        brotr.dev/kwok-exit-code: "2"
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: registry.invalid/brotr/smoke:1
YAML
  until_ok "job smoke-pfp condition Failed=True" \
    jsonpath_is True -n "$NS" job smoke-pfp \
    -o 'jsonpath={.status.conditions[?(@.type=="Failed")].status}' || return 1
  local reason failed pods
  reason=$(k -n "$NS" get job smoke-pfp -o 'jsonpath={.status.conditions[?(@.type=="Failed")].reason}')
  failed=$(k -n "$NS" get job smoke-pfp -o 'jsonpath={.status.failed}')
  pods=$(k -n "$NS" get pods -l job-name=smoke-pfp -o name | wc -l)
  [ "$reason" = PodFailurePolicy ] || { say "job failed with reason '$reason', expected PodFailurePolicy"; return 1; }
  [ "$failed" = 1 ] && [ "$pods" -eq 1 ] || { say "job failed=$failed with $pods pod(s), expected 1 and 1"; return 1; }
  say "job_pod_failure_policy: job Failed (reason PodFailurePolicy) after 1 pod"
}

test_crash_loop() {
  k -n "$NS" apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: smoke-crash
spec:
  replicas: 1
  selector:
    matchLabels:
      app: smoke-crash
  template:
    metadata:
      labels:
        app: smoke-crash
      annotations:
        brotr.dev/kwok-exit-code: "2"
    spec:
      containers:
      - name: main
        image: registry.invalid/brotr/smoke:1
YAML
  until_ok "pod of deployment smoke-crash in CrashLoopBackOff" \
    jsonpath_is "Running False CrashLoopBackOff 2" -n "$NS" pods -l app=smoke-crash -o 'jsonpath={.items[0].status.phase} {.items[0].status.conditions[?(@.type=="Ready")].status} {.items[0].status.containerStatuses[0].state.waiting.reason} {.items[0].status.containerStatuses[0].lastState.terminated.exitCode}' || return 1
  until_ok "deployment smoke-crash condition Available=False" \
    jsonpath_is False -n "$NS" deployment smoke-crash \
    -o 'jsonpath={.status.conditions[?(@.type=="Available")].status}' || return 1
  sleep 1  # a Failed pod would have been replaced by now
  local pods; pods=$(k -n "$NS" get pods -l app=smoke-crash -o name | wc -l)
  [ "$pods" -eq 1 ] || { say "deployment smoke-crash has $pods pods, expected 1"; return 1; }
  say "crash_loop: deployment pod Running, not Ready, CrashLoopBackOff (last exit code 2); deployment Available=False; 1 pod"
}

test_never_ready() {
  local t0; t0=$(date +%s)
  k -n "$NS" apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  name: smoke-never-ready
  annotations:
    brotr.dev/kwok-never-ready: "true"
spec:
  containers:
  - name: main
    image: registry.invalid/brotr/smoke:1
---
apiVersion: v1
kind: Pod
metadata:
  name: smoke-ready
spec:
  containers:
  - name: main
    image: registry.invalid/brotr/smoke:1
YAML
  until_ok "pod smoke-ready Running and Ready" pod_status_is smoke-ready "Running True" || return 1
  local wait=$(( t0 + 5 - $(date +%s) ))
  [ "$wait" -le 0 ] || sleep "$wait"
  local st node
  st=$(k -n "$NS" get pod smoke-never-ready \
    -o 'jsonpath={.status.phase} {.status.conditions[?(@.type=="Ready")].status}')
  node=$(k -n "$NS" get pod smoke-never-ready -o 'jsonpath={.spec.nodeName}')
  [ -n "$node" ] || { say "pod smoke-never-ready was not scheduled"; return 1; }
  case "$st" in
    "Pending "|"Pending False") ;;
    *) say "pod smoke-never-ready is '$st' after 5 s, expected Pending and not Ready"; return 1 ;;
  esac
  say "never_ready: after 5 s the annotated pod is Pending (scheduled on $node, not Ready), the plain pod Running and Ready"
}

test_sidecar_job() {
  k -n "$NS" apply -f - >/dev/null <<'YAML'
apiVersion: batch/v1
kind: Job
metadata:
  name: smoke-sidecar
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      initContainers:
      - name: tor
        image: registry.invalid/brotr/tor:1
        restartPolicy: Always
        startupProbe:
          tcpSocket:
            port: 9050
      containers:
      - name: main
        image: registry.invalid/brotr/smoke:1
YAML
  until_ok "pod of job smoke-sidecar in phase Succeeded" \
    jsonpath_is Succeeded -n "$NS" pods -l job-name=smoke-sidecar -o 'jsonpath={.items[0].status.phase}' || return 1
  until_ok "job smoke-sidecar condition Complete=True" \
    jsonpath_is True -n "$NS" job smoke-sidecar \
    -o 'jsonpath={.status.conditions[?(@.type=="Complete")].status}' || return 1
  say "sidecar_job: pod with a native sidecar Succeeded, job Complete"
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
run operator_rbac
run metrics
run exit_code
run job_pod_failure_policy
run crash_loop
run never_ready
run sidecar_job
say "timings: build ${T_BUILD} s, start ${T_START} s, tests $(since "$T_TESTS") s, total $(since "$T_ALL") s"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]

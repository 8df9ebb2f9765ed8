#!/usr/bin/env bash
# Pods that really run: e2e/kubelet/ (a kubelet for the test control plane) runs the pods bound
# to its Node `runc-node` from the real images (e2e/images.sh) under runc, and this script checks
# it through the API server and on the host, case by case:
#   version    a Job running `brotr-probe --version` → Complete, pod Succeeded, exit code 0, the
#              output in the kubelet's log file; the process ran as 65532 with no capabilities
#   migrate    a Job `brotr-probe migrate`, DATABASE_URL from a Secret (SQLite file in an emptyDir)
#              → Complete; the file holds the schema, owned by 65532
#   exit2      a Job whose DATABASE_URL has a scheme the probe refuses (exit 2, "bad usage or
#              configuration"), with the operator's podFailurePolicy → Failed (PodFailurePolicy)
#              after one pod, exitCode 2 in the pod's status
#   service    a Deployment as the operator renders a service: init container `migrate`, then
#              `brotr-probe validate --metrics-addr` with readiness/liveness probes on
#              /readyz and /healthz, hardened securityContext, a service-account token → Ready;
#              the host process: uid/gid, no capabilities, read-only root, env from fieldRef;
#              deleting the Deployment stops it (no runc container, no process left)
#   crashloop  a restartPolicy Always pod that exits 2 → restartCount grows, CrashLoopBackOff,
#              lastState.terminated.exitCode 2
#   liveness   a livenessProbe that fails → the container is stopped (TERM) and restarted
#   sidecar    a Job with a native sidecar (the Tor image, mapped to a host-command SOCKS5
#              stand-in) gated on its startupProbe → the main container starts after it, the
#              Job completes, the sidecar is stopped
#   ports      two pods declaring the same containerPort: the second waits Pending (PortInUse)
#              until the first is deleted (pods share the host network)
#   operator   the real brotr-operator, run as a pod on runc-node from its image (in-cluster
#              config, a ServiceAccount bound to the generated ClusterRole), and a
#              BrotrDeployment on runc-node against a real PostgreSQL (e2e/pg.sh): the migration
#              Job creates the tables, the seeder loads relays, the validator runs and is Ready,
#              the BrotrDeployment is Ready; deleting it removes the pods, deleting the
#              operator leaves no container
#   node       still Ready and untainted at the end, its Lease renewed within 15 s
#   shutdown   SIGTERM to the kubelet with a pod running: every container is stopped
# Ends with "N passed, N failed"; exits 1 on any failure.
#
# Environment:
#   BROTR_IMAGES_DIR          as for e2e/images.sh
#   BROTR_KUBELET_REUSE_IMAGES=1  use the archives already in BROTR_IMAGES_DIR instead of running
#                             e2e/images.sh (which rebuilds when the sources changed)
# shellcheck disable=SC2016  # bash -c '… "$1" …' _ ARG: the inner shell expands them
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=e2e/checks.sh
source e2e/checks.sh kubelet-test

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"
OUT=${BROTR_IMAGES_DIR:-$HOME/.cache/brotr/images}
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml","rb"))["workspace"]["package"]["version"])')
PROBE_IMAGE=ghcr.io/brotr-dev/brotr-probe:$VERSION   # the operator's default for its version
NODE=runc-node

source e2e/tools.sh  # tools_apt
command -v runc >/dev/null 2>&1 || tools_apt runc
command -v jq >/dev/null 2>&1 || tools_apt jq
command -v curl >/dev/null 2>&1 || tools_apt curl
python3 -c 'import yaml' 2>/dev/null || tools_apt python3-yaml
python3 -c 'import yaml' || { echo "kubelet-test: PyYAML missing for $(command -v python3)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "kubelet-test: runc needs root" >&2; exit 1; }

if [ "${BROTR_KUBELET_REUSE_IMAGES:-}" = 1 ]; then
  echo "== images: reusing $OUT (BROTR_KUBELET_REUSE_IMAGES=1)"
else
  echo "== images (e2e/images.sh: builds or reuses)"
  bash e2e/images.sh
fi
for name in brotr-probe brotr-operator; do
  [ -f "$OUT/$name-$VERSION.oci.tar" ] || { echo "kubelet-test: no $OUT/$name-$VERSION.oci.tar" >&2; exit 1; }
done

source e2e/pg.sh
WORK=$(mktemp -d /tmp/brotr-kubelet-test.XXXXXX)
chmod 0755 "$WORK"
CP="$WORK/cp" STATE="$WORK/kubelet"
RUNC=(runc --root "$STATE/runc")
KUBELET_PID=""
cleanup() {
  local rc=$?
  if [ -n "$KUBELET_PID" ] && kill -0 "$KUBELET_PID" 2>/dev/null; then
    kill "$KUBELET_PID" 2>/dev/null || true
    wait "$KUBELET_PID" 2>/dev/null || true
  fi
  local id
  for id in $("${RUNC[@]}" list -q 2>/dev/null); do "${RUNC[@]}" delete -f "$id" >/dev/null 2>&1 || true; done
  if [ "$rc" != 0 ]; then
    echo "-- kubelet log (tail)"; tail -40 "$WORK/kubelet.log" 2>/dev/null || true
    for f in "$STATE"/pods/brotr-system_*/logs/operator.*; do
      [ -f "$f" ] && { echo "-- ${f#"$STATE"/pods/} (tail)"; tail -20 "$f"; }
    done
  fi
  bash e2e/control-plane.sh stop "$CP" >/dev/null 2>&1 || true
  pg_stop
  rm -rf "$WORK"
  checks_recap
}
trap cleanup EXIT

# wait_for SECONDS COMMAND...: polls every 0.5 s until the command succeeds.
wait_for() { wait_every 0.5 "$@"; }
# jp NS KIND/NAME JSONPATH: one field (empty when absent).
jp() { kubectl -n "$1" get "$2" -o "jsonpath=$3" 2>/dev/null || true; }
job_pod() { kubectl -n "$1" get pods -l "job-name=$2" -o 'jsonpath={.items[0].metadata.name}'; }
# container_pid POD CONTAINER: the host PID of a running runc container of the pod.
container_pid() {
  local id
  id=$("${RUNC[@]}" list -q | grep -E "^$1-[0-9a-f]{8}-$2\$" | head -1)
  [ -n "$id" ] && "${RUNC[@]}" state "$id" | jq -r .pid
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
case_start() { echo "== $1"; CASE_T0=$(date +%s.%N); }
case_time() { awk -v a="$CASE_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'; }

# The operator renders fixed ports (metrics 9090, Tor 9050); on the shared host network they
# must be free, or those pods wait (PortInUse).
for port in 9090 9050; do
  python3 -c 'import socket, sys; s = socket.socket(); s.bind(("0.0.0.0", int(sys.argv[1])))' "$port" 2>/dev/null ||
    { echo "kubelet-test: port $port is in use on this host; the pods that serve it would wait" >&2; exit 1; }
done

echo "== control plane and the kubelet"
bash e2e/control-plane.sh start "$CP" >/dev/null
# shellcheck source=/dev/null  # written by control-plane.sh start
source "$CP/env"
cat >"$WORK/images.yaml" <<EOF
# image reference (or repository: every tag) → archive, or a host command standing in for it
ghcr.io/brotr-dev/brotr-probe: {archive: $OUT/brotr-probe-$VERSION.oci.tar}
ghcr.io/brotr-dev/brotr-operator: {archive: $OUT/brotr-operator-$VERSION.oci.tar}
EOF
# The Tor image has no archive here: a SOCKS5 proxy on the sidecar's port (the operator's
# TOR_PORT, 9050) stands in for it.
SOCKS_PORT=9050
echo "docker.io/fphammerle/tor-proxy: {hostCommand: [python3, $PWD/e2e/kubelet/socks5.py, --listen, '127.0.0.1:$SOCKS_PORT']}" >>"$WORK/images.yaml"
python3 e2e/kubelet/kubelet.py --kubeconfig "$KUBECONFIG" --node-name "$NODE" --state-dir "$STATE" \
  --images "$WORK/images.yaml" --restart-backoff 1 >"$WORK/kubelet.log" 2>&1 &
KUBELET_PID=$!
node_ready() {
  [ "$(jp default "node/$NODE" '{.status.conditions[?(@.type=="Ready")].status}')" = True ] &&
    [ -z "$(jp default "node/$NODE" '{.spec.taints}')" ]
}
t=$(date +%s.%N)
if wait_for 60 node_ready; then
  pass "node $NODE registered, Ready and untainted in $(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }')"
else
  fail "node $NODE not Ready/untainted"; exit 1
fi
expect "node labels brotr.dev/runc=true, kubernetes.io/hostname=$NODE" \
  test "$(jp default "node/$NODE" '{.metadata.labels.brotr\.dev/runc} {.metadata.labels.kubernetes\.io/hostname}')" = "true $NODE"
expect "Lease kube-node-lease/$NODE held by the kubelet" \
  test "$(jp kube-node-lease "lease/$NODE" '{.spec.holderIdentity}')" = "$NODE"

NS=kubelet-test
kubectl create namespace "$NS" >/dev/null
wait_for 30 kubectl -n "$NS" get serviceaccount default
# The operator's pod hardening, for the pods below.
POD_SC='{runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: {type: RuntimeDefault}}'
SC='{readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, runAsNonRoot: true, privileged: false, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}'
job() {  # job NAME EXTRA_SPEC POD_SPEC_YAML(indented 6)
  cat <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: $1, namespace: $NS}
spec:
  backoffLimit: 6
$2
  template:
    spec:
      restartPolicy: Never
      nodeSelector: {brotr.dev/runc: "true"}
      automountServiceAccountToken: false
      securityContext: $POD_SC
$3
EOF
}
PF='  podFailurePolicy: {rules: [{action: FailJob, onExitCodes: {containerName: probe, operator: In, values: [2]}}]}'

case_start "version: a Job running brotr-probe --version from the image"
job version "$PF" "      containers:
      - {name: probe, image: $PROBE_IMAGE, args: [--version], securityContext: $SC}" | kubectl apply -f - >/dev/null
if kubectl -n "$NS" wait --for=condition=Complete job/version --timeout=60s >/dev/null; then
  pass "Job version Complete ($(case_time))"
else
  fail "Job version not Complete"
fi
P=$(job_pod "$NS" version)
expect "pod $P ran on $NODE" test "$(jp "$NS" "pod/$P" '{.spec.nodeName}')" = "$NODE"
expect "pod Succeeded, exit code 0, reason Completed" \
  test "$(jp "$NS" "pod/$P" '{.status.phase} {.status.containerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].state.terminated.reason}')" = "Succeeded 0 Completed"
LOG=$(ls "$STATE/pods/${NS}_${P}"_*/logs/probe.0.stdout 2>/dev/null || true)
expect "the container's stdout (${LOG#"$WORK"/}) says 'brotr-probe $VERSION'" \
  test "$(cat "$LOG" 2>/dev/null)" = "brotr-probe $VERSION"
expect "the kubelet's log names the output file" grep -qF "$LOG" "$WORK/kubelet.log"
expect "the container ran as 65532:65532, read-only root, no capabilities (kubelet log)" \
  grep -qF "$NS/$P/probe: started ['/usr/local/bin/brotr-probe', '--version'] as 65532:65532 (readonly root True, caps none)" "$WORK/kubelet.log"

case_start "migrate: DATABASE_URL from a Secret, SQLite in an emptyDir"
kubectl -n "$NS" create secret generic db \
  --from-literal=url=/var/lib/brotr/data/brotr.db \
  --from-literal=bad=mysql://brotr@127.0.0.1:3306/brotr >/dev/null
job migrate "$PF" "      volumes: [{name: data, emptyDir: {}}, {name: tmp, emptyDir: {}}]
      containers:
      - name: probe
        image: $PROBE_IMAGE
        args: [migrate, --log-format, json]
        env:
        - {name: DATABASE_URL, valueFrom: {secretKeyRef: {name: db, key: url, optional: false}}}
        - {name: BROTR_SCHEMA, value: full}
        volumeMounts: [{name: data, mountPath: /var/lib/brotr/data}, {name: tmp, mountPath: /tmp}]
        securityContext: $SC" | kubectl apply -f - >/dev/null
if kubectl -n "$NS" wait --for=condition=Complete job/migrate --timeout=60s >/dev/null; then
  pass "Job migrate Complete ($(case_time))"
else
  fail "Job migrate not Complete"
fi
P=$(job_pod "$NS" migrate)
DB=$(ls "$STATE/pods/${NS}_${P}"_*/volumes/data/brotr.db 2>/dev/null || true)
expect "brotr.db is in the pod's emptyDir on the host, owned by 65532:65532" \
  test "$(stat -c %u:%g "$DB" 2>/dev/null)" = "65532:65532"
TABLES=$(python3 -c 'import sqlite3, sys; print(" ".join(r[0] for r in sqlite3.connect(sys.argv[1]).execute("select name from sqlite_master where type=\"table\" order by name")))' "$DB" 2>/dev/null || true)
expect "the SQLite file holds the schema (tables: $(wc -w <<<"$TABLES"), relay among them)" \
  grep -qw relay <<<"$TABLES"

case_start "exit2: a refused configuration fails the Job through the podFailurePolicy"
job exit2 "$PF" "      containers:
      - name: probe
        image: $PROBE_IMAGE
        args: [migrate]
        env: [{name: DATABASE_URL, valueFrom: {secretKeyRef: {name: db, key: bad}}}]
        securityContext: $SC" | kubectl apply -f - >/dev/null
if kubectl -n "$NS" wait --for=condition=Failed job/exit2 --timeout=60s >/dev/null; then
  pass "Job exit2 Failed ($(case_time))"
else
  fail "Job exit2 not Failed"
fi
expect "Job failed by PodFailurePolicy after one pod (failed=1)" \
  test "$(jp "$NS" job/exit2 '{.status.conditions[?(@.type=="Failed")].reason} {.status.failed}')" = "PodFailurePolicy 1"
P=$(job_pod "$NS" exit2)
expect "pod Failed with exitCode 2 (reason Error)" \
  test "$(jp "$NS" "pod/$P" '{.status.phase} {.status.containerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].state.terminated.reason}')" = "Failed 2 Error"
expect "its stderr says why (unsupported scheme)" \
  grep -q 'unsupported scheme "mysql"' "$STATE/pods/${NS}_${P}"_*/logs/probe.0.stderr

case_start "service: a long-running probe Deployment with probes becomes Ready"
MPORT=$(free_port)
cat <<EOF | kubectl apply -f - >/dev/null
apiVersion: apps/v1
kind: Deployment
metadata: {name: validator, namespace: $NS}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: validator}}
  template:
    metadata: {labels: {app: validator}}
    spec:
      nodeSelector: {brotr.dev/runc: "true"}
      securityContext: $POD_SC
      terminationGracePeriodSeconds: 30
      volumes: [{name: data, emptyDir: {}}, {name: tmp, emptyDir: {}}]
      initContainers:
      - name: migrate
        image: $PROBE_IMAGE
        args: [migrate, --log-format, json]
        env: [{name: DATABASE_URL, valueFrom: {secretKeyRef: {name: db, key: url}}}]
        volumeMounts: [{name: data, mountPath: /var/lib/brotr/data}, {name: tmp, mountPath: /tmp}]
        securityContext: $SC
      containers:
      - name: probe
        image: $PROBE_IMAGE
        args: [validate, --log-format, json, --metrics-addr, "0.0.0.0:$MPORT"]
        env:
        - {name: DATABASE_URL, valueFrom: {secretKeyRef: {name: db, key: url}}}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: GREETING, value: "hello \$(POD_NAME)"}
        ports: [{name: metrics, containerPort: $MPORT, protocol: TCP}]
        readinessProbe: {httpGet: {path: /readyz, port: metrics}, periodSeconds: 2, timeoutSeconds: 3, failureThreshold: 3}
        livenessProbe: {httpGet: {path: /healthz, port: metrics}, periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 6}
        volumeMounts: [{name: data, mountPath: /var/lib/brotr/data}, {name: tmp, mountPath: /tmp}]
        securityContext: $SC
EOF
if kubectl -n "$NS" wait --for=condition=Available deployment/validator --timeout=90s >/dev/null; then
  pass "Deployment validator Available ($(case_time))"
else
  fail "Deployment validator not Available"
fi
P=$(kubectl -n "$NS" get pods -l app=validator -o 'jsonpath={.items[0].metadata.name}')
expect "pod Running, Ready=True, ContainersReady=True, container ready and started" \
  test "$(jp "$NS" "pod/$P" '{.status.phase} {.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="ContainersReady")].status} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].started}')" = "Running True True true true"
expect "init container migrate terminated with exit code 0" \
  test "$(jp "$NS" "pod/$P" '{.status.initContainerStatuses[0].state.terminated.exitCode}')" = 0
expect "/readyz answers on 127.0.0.1:$MPORT" curl -sf -o /dev/null "http://127.0.0.1:$MPORT/readyz"
expect "/metrics answers with brotr_ series" bash -c 'curl -sf "http://127.0.0.1:$1/metrics" | grep -q "^brotr_"' _ "$MPORT"
PID=$(container_pid "$P" probe || true)
if [ -n "$PID" ] && [ -d "/proc/$PID" ]; then
  expect "host process $PID is brotr-probe validate" grep -q validate "/proc/$PID/cmdline"
  expect "it runs as uid/gid 65532 with group 65532 (fsGroup)" \
    bash -c 'grep -qP "^Uid:\t65532\t65532\t65532\t65532" "$1" && grep -qP "^Gid:\t65532\t" "$1" && grep -qP "^Groups:\t65532 ?$" "$1"' _ "/proc/$PID/status"
  expect "it has no capabilities (CapEff/CapPrm/CapBnd all 0) and no_new_privs" \
    bash -c 'for c in CapEff CapPrm CapBnd; do grep -qP "^$c:\t0+$" "$1" || exit 1; done; grep -qP "^NoNewPrivs:\t1" "$1"' _ "/proc/$PID/status"
  expect "its root filesystem is read-only" \
    bash -c 'awk "\$5 == \"/\" { print \$6 }" "$1" | grep -q "^ro"' _ "/proc/$PID/mountinfo"
  ENVIRON=$(tr '\0' '\n' <"/proc/$PID/environ")
  expect "env: POD_NAME from fieldRef, \$(VAR) expanded, DATABASE_URL from the Secret, KUBERNETES_SERVICE_HOST" \
    bash -c 'grep -qx "POD_NAME=$2" <<<"$1" && grep -qx "GREETING=hello $2" <<<"$1" && grep -qx "DATABASE_URL=/var/lib/brotr/data/brotr.db" <<<"$1" && grep -qx "KUBERNETES_SERVICE_HOST=127.0.0.1" <<<"$1"' _ "$ENVIRON" "$P"
  expect "the service-account token is mounted (projected volume, TokenRequest)" \
    bash -c 'test -s "$(ls "$1"/pods/"$2"_*/volumes/kube-api-access-*/token)"' _ "$STATE" "${NS}_${P}"
else
  fail "no running runc container for $P/probe"
fi
t=$(date +%s.%N)
kubectl -n "$NS" delete deployment validator --wait=false >/dev/null
gone() { ! kubectl -n "$NS" get pod "$P" >/dev/null 2>&1; }
expect "deleting the Deployment deletes its pod (kubelet confirmed with grace 0)" wait_for 60 gone
expect "the process is gone and no runc container remains ($(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'))" \
  bash -c '! kill -0 "$1" 2>/dev/null && [ -z "$("${@:2}" list -q)" ]' _ "${PID:-0}" "${RUNC[@]}"
expect "SIGTERM ended it cleanly (kubelet log: stopped, exit code 0)" \
  grep -qF "$NS/$P/probe: stopped (exit code 0)" "$WORK/kubelet.log"

case_start "crashloop: an Always pod whose container exits 2 is restarted with back-off"
cat <<EOF | kubectl apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: crasher, namespace: $NS}
spec:
  nodeSelector: {brotr.dev/runc: "true"}
  automountServiceAccountToken: false
  securityContext: $POD_SC
  containers:
  - name: probe
    image: $PROBE_IMAGE
    args: [migrate]
    env: [{name: DATABASE_URL, value: "mysql://nowhere"}]
    securityContext: $SC
EOF
restarts() { jp "$NS" pod/crasher '{.status.containerStatuses[0].restartCount}'; }
if wait_for 60 bash -c '[ "$(kubectl -n "$1" get pod crasher -o jsonpath={.status.containerStatuses[0].restartCount})" -ge 3 ]' _ "$NS"; then
  pass "restartCount reached $(restarts) ($(case_time); back-off 1 s, 2 s, 4 s…)"
else
  fail "restartCount stayed at $(restarts)"
fi
expect "lastState.terminated exitCode 2 (Error), phase Running, Ready False" \
  test "$(jp "$NS" pod/crasher '{.status.containerStatuses[0].lastState.terminated.exitCode} {.status.containerStatuses[0].lastState.terminated.reason} {.status.phase} {.status.conditions[?(@.type=="Ready")].status}')" = "2 Error Running False"
expect "waiting reason CrashLoopBackOff seen" \
  wait_for 20 bash -c '[ "$(kubectl -n "$1" get pod crasher -o jsonpath={.status.containerStatuses[0].state.waiting.reason})" = CrashLoopBackOff ]' _ "$NS"
expect "one output file per run (probe.0, probe.1, probe.2 … .stderr)" \
  bash -c 'set -- "$1"/pods/"$2"_crasher_*/logs/probe.*.stderr; [ "$#" -ge 3 ]' _ "$STATE" "$NS"
kubectl -n "$NS" delete pod crasher --wait=true --timeout=60s >/dev/null

case_start "liveness: a failing livenessProbe restarts the container"
LVPORT=$(free_port)
cat <<EOF | kubectl apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: unlively, namespace: $NS}
spec:
  nodeSelector: {brotr.dev/runc: "true"}
  automountServiceAccountToken: false
  securityContext: $POD_SC
  terminationGracePeriodSeconds: 5
  volumes: [{name: data, emptyDir: {}}]
  initContainers:
  - name: migrate
    image: $PROBE_IMAGE
    args: [migrate]
    env: [{name: DATABASE_URL, value: /var/lib/brotr/data/brotr.db}]
    volumeMounts: [{name: data, mountPath: /var/lib/brotr/data}]
    securityContext: $SC
  containers:
  - name: probe
    image: $PROBE_IMAGE
    args: [validate, --metrics-addr, "127.0.0.1:$LVPORT"]
    env: [{name: DATABASE_URL, value: /var/lib/brotr/data/brotr.db}]
    livenessProbe: {httpGet: {path: /no-such-path, port: $LVPORT}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 2}
    volumeMounts: [{name: data, mountPath: /var/lib/brotr/data}]
    securityContext: $SC
EOF
if wait_for 60 bash -c '[ "$(kubectl -n "$1" get pod unlively -o jsonpath={.status.containerStatuses[0].restartCount})" -ge 1 ]' _ "$NS"; then
  pass "restarted after the liveness probe failed ($(case_time))"
else
  fail "not restarted after a failing liveness probe"
fi
expect "the kubelet said why, and the run ended on TERM (lastState exit code 0)" \
  bash -c 'grep -qF "$1/unlively/probe: liveness probe failed 2 times: restarting it" "$2" && [ "$(kubectl -n "$1" get pod unlively -o jsonpath={.status.containerStatuses[0].lastState.terminated.exitCode})" = 0 ]' _ "$NS" "$WORK/kubelet.log"
kubectl -n "$NS" delete pod unlively --wait=true --timeout=60s >/dev/null

case_start "sidecar: a native sidecar (Tor image → host-command SOCKS5 stand-in) gates the Job's container"
job sidecar "$PF" "      volumes: [{name: tmp, emptyDir: {}}]
      initContainers:
      - name: tor
        image: docker.io/fphammerle/tor-proxy:latest
        restartPolicy: Always
        ports: [{name: socks, containerPort: $SOCKS_PORT}]
        startupProbe: {tcpSocket: {port: $SOCKS_PORT}, periodSeconds: 1, failureThreshold: 30}
        securityContext: $SC
      containers:
      - {name: probe, image: $PROBE_IMAGE, args: [--version], securityContext: $SC}" | kubectl apply -f - >/dev/null
if kubectl -n "$NS" wait --for=condition=Complete job/sidecar --timeout=60s >/dev/null; then
  pass "Job sidecar Complete ($(case_time))"
else
  fail "Job sidecar not Complete"
fi
P=$(job_pod "$NS" sidecar)
expect "the kubelet says the Tor image ran as a host-command stand-in" \
  grep -qF "$NS/$P/tor: STAND-IN: image docker.io/fphammerle/tor-proxy:latest has no archive" "$WORK/kubelet.log"
expect "imageID of the sidecar says host-command://" \
  bash -c 'kubectl -n "$1" get pod "$2" -o jsonpath={.status.initContainerStatuses[0].imageID} | grep -q "^host-command://"' _ "$NS" "$P"
expect "the container started after the sidecar's startup probe passed" \
  bash -c 'a=$(grep -n "$1/tor: startup probe passed" "$2" | cut -d: -f1); b=$(grep -n "$1/probe: started" "$2" | cut -d: -f1); [ -n "$a" ] && [ -n "$b" ] && [ "$a" -lt "$b" ]' _ "$NS/$P" "$WORK/kubelet.log"
expect "the sidecar was stopped when the container ended (terminated, stand-in process gone)" \
  bash -c '[ -n "$(kubectl -n "$1" get pod "$2" -o jsonpath={.status.initContainerStatuses[0].state.terminated})" ] && ! pgrep -f "socks5.py --listen 127.0.0.1:$3" >/dev/null' _ "$NS" "$P" "$SOCKS_PORT"
expect "the stand-in answered on its port (its log)" \
  grep -q "listening on 127.0.0.1:$SOCKS_PORT" "$STATE/pods/${NS}_${P}"_*/logs/tor.0.stdout

case_start "ports: two pods declaring the same port (shared host network)"
CPORT=$(free_port)
for n in first second; do
  cat <<EOF | kubectl apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: port-$n, namespace: $NS}
spec:
  nodeSelector: {brotr.dev/runc: "true"}
  automountServiceAccountToken: false
  securityContext: $POD_SC
  terminationGracePeriodSeconds: 5
  volumes: [{name: data, emptyDir: {}}]
  initContainers:
  - name: migrate
    image: $PROBE_IMAGE
    args: [migrate]
    env: [{name: DATABASE_URL, value: /var/lib/brotr/data/brotr.db}]
    volumeMounts: [{name: data, mountPath: /var/lib/brotr/data}]
    securityContext: $SC
  containers:
  - name: probe
    image: $PROBE_IMAGE
    args: [validate, --metrics-addr, "0.0.0.0:$CPORT"]
    env: [{name: DATABASE_URL, value: /var/lib/brotr/data/brotr.db}]
    ports: [{name: metrics, containerPort: $CPORT}]
    readinessProbe: {tcpSocket: {port: metrics}, periodSeconds: 1}
    volumeMounts: [{name: data, mountPath: /var/lib/brotr/data}]
    securityContext: $SC
EOF
  if [ "$n" = first ]; then
    wait_for 60 bash -c '[ "$(kubectl -n "$1" get pod port-first -o jsonpath={.status.containerStatuses[0].ready})" = true ]' _ "$NS" || true
  fi
done
expect "the first pod is Ready" test "$(jp "$NS" pod/port-first '{.status.containerStatuses[0].ready}')" = true
expect "the second waits Pending with reason PortInUse naming the first" \
  wait_for 20 bash -c 'kubectl -n "$1" get pod port-second -o jsonpath="{.status.phase} {.status.containerStatuses[0].state.waiting.reason} {.status.containerStatuses[0].state.waiting.message}" | grep -q "^Pending PortInUse port $2 is used by pod $1/port-first"' _ "$NS" "$CPORT"
kubectl -n "$NS" delete pod port-first --wait=false >/dev/null
expect "once the first is deleted, the second runs and is Ready ($(case_time))" \
  wait_for 60 bash -c '[ "$(kubectl -n "$1" get pod port-second -o jsonpath={.status.containerStatuses[0].ready})" = true ]' _ "$NS"
kubectl -n "$NS" delete pod port-second --wait=true --timeout=60s >/dev/null

case_start "operator: a BrotrDeployment on $NODE against a real PostgreSQL"
# The probe's services all serve metrics on the operator's fixed port 9090; on the shared host
# network only one can run at a time, so this pipeline runs one service (the validator), with
# Tor enabled: the operator gives it the Tor sidecar (the SOCKS5 stand-in on 9050).
pg_start fsync=off
kubectl apply --server-side -f crds/ -f deploy/rbac/cluster-role.yaml >/dev/null
wait_for 60 kubectl wait --for=condition=Established crd/brotrdeployments.brotr.dev --timeout=5s
OPS=brotr
kubectl create namespace "$OPS" >/dev/null
kubectl create namespace brotr-system >/dev/null
wait_for 30 kubectl -n "$OPS" get serviceaccount default
wait_for 30 kubectl -n brotr-system get serviceaccount default
# The operator itself runs as a pod on runc-node, from its image, with in-cluster config: its
# ServiceAccount's projected token, bound to exactly the generated ClusterRole, and the API
# server's address in KUBERNETES_SERVICE_HOST/PORT.
kubectl -n brotr-system create serviceaccount brotr-operator >/dev/null
kubectl create clusterrolebinding brotr-operator-kubelet-test --clusterrole=brotr-operator \
  --serviceaccount=brotr-system:brotr-operator >/dev/null
OPORT=$(free_port)
cat <<EOF | kubectl apply -f - >/dev/null
apiVersion: apps/v1
kind: Deployment
metadata: {name: brotr-operator, namespace: brotr-system}
spec:
  replicas: 1
  selector: {matchLabels: {app.kubernetes.io/name: brotr-operator}}
  template:
    metadata: {labels: {app.kubernetes.io/name: brotr-operator}}
    spec:
      serviceAccountName: brotr-operator
      nodeSelector: {brotr.dev/runc: "true"}
      securityContext: $POD_SC
      containers:
      - name: operator
        image: ghcr.io/brotr-dev/brotr-operator:$VERSION
        args: [run, --namespace, $OPS, --metrics-addr, "127.0.0.1:$OPORT", --log-format, text]
        env:
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        - {name: POD_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
        ports: [{name: metrics, containerPort: $OPORT}]
        readinessProbe: {httpGet: {path: /readyz, port: metrics}, periodSeconds: 2}
        livenessProbe: {httpGet: {path: /healthz, port: metrics}, periodSeconds: 10}
        securityContext: $SC
EOF
if kubectl -n brotr-system wait --for=condition=Available deployment/brotr-operator --timeout=60s >/dev/null; then
  pass "the operator runs from its image as a pod on $NODE, Ready ($(case_time))"
else
  fail "the operator's Deployment is not Available"
fi
OP_POD=$(kubectl -n brotr-system get pods -l app.kubernetes.io/name=brotr-operator -o 'jsonpath={.items[0].metadata.name}')
OPLOG=$(ls -d "$STATE/pods/brotr-system_${OP_POD}"_*/logs 2>/dev/null || echo /nonexistent)
# The migration Job's probe reaches the database on the host's loopback (shared network).
kubectl -n "$OPS" create secret generic pg-app --from-literal=uri="$BROTR_TEST_PG_URL" >/dev/null
cat <<EOF | kubectl apply -f - >/dev/null
apiVersion: brotr.dev/v1alpha1
kind: BrotrDeployment
metadata: {name: minimal, namespace: $OPS}
spec:
  schema: full
  database:
    external:
      urlSecretRef: {name: pg-app, key: uri}
  networks:
    tor: {enabled: true}
  seeder:
    relays: ["wss://relay.example.com", "wss://nos.example.org"]
  finder: {enabled: false}
  monitor: {enabled: false}
  synchronizer: {enabled: false}
  maintenance:
    refresh: {enabled: false}
    retention: {enabled: false}
    cleanup: {enabled: false}
  podOverrides:
    nodeSelector: {brotr.dev/runc: "true"}
EOF
bd_ready() { [ "$(jp "$OPS" bd/minimal '{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
if wait_for 180 bd_ready; then
  pass "BrotrDeployment minimal Ready ($(case_time)): $(jp "$OPS" bd/minimal '{.status.conditions[?(@.type=="Ready")].reason}')"
else
  fail "BrotrDeployment minimal not Ready: $(jp "$OPS" bd/minimal '{.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}')"
fi
MJOB=$(kubectl -n "$OPS" get jobs -o name | grep -- '-migrate-' | head -1)
expect "migration Job ${MJOB#*/} Complete, its pod ran on $NODE and Succeeded" \
  bash -c '[ "$(kubectl -n "$1" get "$2" -o jsonpath="{.status.succeeded}")" = 1 ] && kubectl -n "$1" get pods -l job-name="${2#*/}" -o jsonpath="{.items[0].spec.nodeName} {.items[0].status.phase}" | grep -qx "$3 Succeeded"' _ "$OPS" "$MJOB" "$NODE"
PGTABLES=$(psql "$BROTR_TEST_PG_URL" -Atc "select count(*) from information_schema.tables where table_schema = 'public'" 2>/dev/null || echo 0)
expect "the migration created the schema in PostgreSQL ($PGTABLES tables; relay among them)" \
  test "$(psql "$BROTR_TEST_PG_URL" -Atc "select to_regclass('public.relay') is not null" 2>/dev/null)" = t
SJOB=$(kubectl -n "$OPS" get jobs -o name | grep -- '-seed-' | head -1)
expect "seeder Job ${SJOB#*/} Complete" test "$(jp "$OPS" "$SJOB" '{.status.succeeded}')" = 1
# Seeds become validator candidates (service_state), or relays once a validation passed.
SEEDED=$(psql "$BROTR_TEST_PG_URL" -Atc "select string_agg(u, ' ' order by u) from (select state_key as u from service_state where service_name = 'validator' and state_type = 'checkpoint' union select url from relay) s" 2>/dev/null || true)
expect "the seeder wrote the two relays to PostgreSQL ($SEEDED)" \
  bash -c 'grep -q "wss://relay.example.com" <<<"$1" && grep -q "wss://nos.example.org" <<<"$1"' _ "$SEEDED"
VP=$(kubectl -n "$OPS" get pods -l app.kubernetes.io/component=validator -o 'jsonpath={.items[0].metadata.name}')
expect "validator pod $VP Ready on $NODE" \
  test "$(jp "$OPS" "pod/$VP" '{.spec.nodeName} {.status.conditions[?(@.type=="Ready")].status}')" = "$NODE True"
expect "its native Tor sidecar (host-command stand-in) is started and ready" \
  test "$(jp "$OPS" "pod/$VP" '{.spec.initContainers[0].name} {.spec.initContainers[0].restartPolicy} {.status.initContainerStatuses[0].started} {.status.initContainerStatuses[0].ready}')" = "tor Always true true"
expect "the probe container started after the sidecar's startup probe passed" \
  bash -c 'a=$(grep -n "$1/tor: startup probe passed" "$2" | cut -d: -f1); b=$(grep -n "$1/probe: started" "$2" | cut -d: -f1); [ -n "$a" ] && [ -n "$b" ] && [ "$a" -lt "$b" ]' _ "$OPS/$VP" "$WORK/kubelet.log"
expect "the probe's config sends Tor through it (tor.proxyUrl socks5h://127.0.0.1:9050)" \
  bash -c 'kubectl -n "$1" get configmap minimal-config -o jsonpath="{.data.probe\.yaml}" | grep -q "socks5h://127.0.0.1:9050"' _ "$OPS"
VPID=$(container_pid "$VP" probe || true)
expect "its brotr-probe validate process runs under runc (pid ${VPID:-none}), /readyz on :9090 answers" \
  bash -c '[ -n "$1" ] && grep -q validate "/proc/$1/cmdline" && curl -sf -o /dev/null http://127.0.0.1:9090/readyz' _ "$VPID"
expect "the operator applied the children and logged no Forbidden (${OPLOG#"$WORK"/})" \
  bash -c 'grep -rq "applied" "$1" && ! grep -rq Forbidden "$1"' _ "$OPLOG"
t=$(date +%s.%N)
kubectl -n "$OPS" delete bd minimal --wait=true --timeout=60s >/dev/null
# The garbage collector deletes the children; it learns a new CRD's kind at its next discovery
# (every 30 s), so this can take that long.
if wait_for 90 bash -c '[ -z "$(kubectl -n "$1" get pods -o name)" ]' _ "$OPS"; then
  pass "deleting the BrotrDeployment removes its pods ($(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'))"
else
  fail "pods of the deleted BrotrDeployment remain: $(kubectl -n "$OPS" get pods -o name | tr '\n' ' ')"
fi
kubectl -n brotr-system delete deployment brotr-operator --wait=false >/dev/null
expect "deleting the operator's Deployment stops it: no runc container remains" \
  wait_for 60 bash -c '[ -z "$(kubectl -n brotr-system get pods -o name)" ] && [ -z "$("${@:2}" list -q)" ]' _ x "${RUNC[@]}"

echo "== the node after $(elapsed) s"
expect "still Ready and untainted (status heartbeat every 10 s)" node_ready
lease_age() {
  python3 -c 'import sys, datetime as d; t = d.datetime.strptime(sys.argv[1], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=d.timezone.utc); print(int((d.datetime.now(d.timezone.utc) - t).total_seconds()))' \
    "$(jp kube-node-lease "lease/$NODE" '{.spec.renewTime}')"
}
expect "the Lease was renewed in the last 15 s ($(lease_age) s ago)" test "$(lease_age)" -le 15

case_start "shutdown: SIGTERM to the kubelet stops the containers it runs"
LPORT=$(free_port)
cat <<EOF | kubectl apply -f - >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: last, namespace: $NS}
spec:
  nodeSelector: {brotr.dev/runc: "true"}
  automountServiceAccountToken: false
  securityContext: $POD_SC
  volumes: [{name: data, emptyDir: {}}]
  initContainers:
  - name: migrate
    image: $PROBE_IMAGE
    args: [migrate]
    env: [{name: DATABASE_URL, value: /var/lib/brotr/data/brotr.db}]
    volumeMounts: [{name: data, mountPath: /var/lib/brotr/data}]
    securityContext: $SC
  containers:
  - name: probe
    image: $PROBE_IMAGE
    args: [validate, --metrics-addr, "127.0.0.1:$LPORT"]
    env: [{name: DATABASE_URL, value: /var/lib/brotr/data/brotr.db}]
    readinessProbe: {tcpSocket: {port: $LPORT}, periodSeconds: 1}
    volumeMounts: [{name: data, mountPath: /var/lib/brotr/data}]
    securityContext: $SC
EOF
# Ready: the probe has installed its signal handlers (PID 1 of its namespace ignores an
# unhandled TERM, as in any container).
wait_for 60 bash -c '[ "$(kubectl -n "$1" get pod last -o jsonpath={.status.containerStatuses[0].ready})" = true ]' _ "$NS" || true
LPID=$(container_pid last probe || true)
kill "$KUBELET_PID"
rc=0; wait "$KUBELET_PID" || rc=$?
KUBELET_PID=""
expect "the kubelet exited 0 after SIGTERM ($(case_time))" test "$rc" = 0
expect "its container process (pid ${LPID:-none}) is gone and runc lists nothing" \
  bash -c '[ -n "$1" ] && ! kill -0 "$1" 2>/dev/null && [ -z "$("${@:2}" list -q)" ]' _ "$LPID" "${RUNC[@]}"
expect "it ended on TERM (exit code 0), not KILL" grep -qF "$NS/last/probe: stopped (exit code 0)" "$WORK/kubelet.log"

echo "kubelet log: $(wc -l <"$WORK/kubelet.log") lines; total $(elapsed) s"
checks_summary

#!/usr/bin/env bash
# Throwaway Kubernetes control plane for tests, built from the Go module proxy.
#
#   e2e/control-plane.sh build        build (or reuse) kube-apiserver, kube-controller-manager,
#                                     kube-scheduler, etcd and kwok; prints the bin dir
#   e2e/control-plane.sh start DIR    start etcd + apiserver + controller-manager + scheduler +
#                                     kwok + fake node(s) on 127.0.0.1 (random ports), state in DIR;
#                                     writes DIR/kubeconfig (admin), DIR/kubeconfig-operator (user
#                                     brotr-operator, no groups, no RBAC grants), DIR/env,
#                                     DIR/pids, DIR/*.log
#   e2e/control-plane.sh stop DIR     kill every PID in DIR/pids (TERM, then KILL); idempotent
#   e2e/control-plane.sh bindir       print the bin dir (no build)
#   e2e/control-plane.sh kubectl      print the kubectl this script uses
#
# Environment:
#   BROTR_K8S_CACHE     binaries root        (default $HOME/.cache/brotr/k8s)
#   BROTR_GO_CACHE      GOMODCACHE/GOCACHE   (default $HOME/.cache/brotr/go)
#   BROTR_K8S_VERSION   Kubernetes version   (default v1.34.4; newest v1.34.x if not served)
#   BROTR_ETCD_VERSION  etcd version         (default v3.6.16; newest v3.6.x if not served)
#   BROTR_KWOK_VERSION  kwok version         (default v0.8.0)
#   BROTR_K8S_NODES     fake nodes to create (default 1)
#   BROTR_K8S_WAIT      seconds to wait for each component during start (default 120)
#   BROTR_KUBECTL       kubectl binary to use (default: kubectl.1.33 from the gcloud SDK, then PATH,
#                       else one built into the bin dir)
# See e2e/README-control-plane.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# Brotr's own kwok stages (annotation-driven pod failure / never-ready), read from the repo at
# every start, never cached (see e2e/kwok-stages/).
BROTR_STAGES="$HERE/kwok-stages/brotr-pod-stages.yaml"
OPERATOR_USER=brotr-operator

K8S_CACHE=${BROTR_K8S_CACHE:-$HOME/.cache/brotr/k8s}
GO_CACHE_ROOT=${BROTR_GO_CACHE:-$HOME/.cache/brotr/go}
K8S_VERSION=${BROTR_K8S_VERSION:-v1.34.4}
ETCD_VERSION=${BROTR_ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${BROTR_KWOK_VERSION:-v0.8.0}
NODES=${BROTR_K8S_NODES:-1}
WAIT_SECS=${BROTR_K8S_WAIT:-120}

log() { echo "control-plane: $*" >&2; }
die() { echo "control-plane: ERROR: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

need_cmd() { # need_cmd CMD [apt-package]
  command -v "$1" >/dev/null 2>&1 && return 0
  log "$1 not found; installing ${2:-$1} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq "${2:-$1}" >&2
  command -v "$1" >/dev/null 2>&1 || die "could not install $1"
}

go_env() {
  export GOMODCACHE="$GO_CACHE_ROOT/mod" GOCACHE="$GO_CACHE_ROOT/build"
  export GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0
  export GOFLAGS="-modcacherw -buildvcs=false"
  mkdir -p "$GOMODCACHE" "$GOCACHE"
}

key_dir() { echo "$K8S_CACHE/${K8S_VERSION}-etcd${ETCD_VERSION#v}-kwok${KWOK_VERSION#v}"; }

# Binaries a usable bin dir must contain.
REQUIRED_BINS=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok)

have_bins() { # have_bins BIN: all binaries plus the kwok stage file next to them
  local b
  for b in "${REQUIRED_BINS[@]}"; do [ -x "$1/$b" ] || return 1; done
  [ -s "$1/kwok-stages.yaml" ]
}

system_kubectl() {
  local k
  for k in "${BROTR_KUBECTL:-}" /usr/lib/google-cloud-sdk/bin/kubectl.1.33 "$(command -v kubectl || true)"; do
    [ -n "$k" ] && [ -x "$k" ] && { echo "$k"; return 0; }
  done
  return 1
}

# newest_patch MODULE WANTED: WANTED if the proxy serves it, else the newest release of its minor.
newest_patch() {
  local mod=$1 want=$2 minor versions
  minor=$(echo "$want" | cut -d. -f1-2)
  versions=$(cd "$K8S_CACHE" && go list -m -versions "$mod" | tr ' ' '\n' | grep -E "^${minor//./\\.}\.[0-9]+$" || true)
  if echo "$versions" | grep -qx "$want"; then echo "$want"; return; fi
  local best; best=$(echo "$versions" | sort -V | tail -1)
  [ -n "$best" ] || die "no $minor.x release of $mod on the module proxy"
  log "$mod $want not served by the proxy; using $best"
  echo "$best"
}

build_k8s() { # build_k8s BIN
  local bin=$1 src="$K8S_CACHE/src/k8s-$K8S_VERSION" stage gomod m
  local sv="v0.${K8S_VERSION#v1.}"  # v1.34.4 -> v0.34.4 (staging modules)
  mkdir -p "$src"
  # The staging list comes from k8s.io/kubernetes' own go.mod (its replace block maps each
  # staging module to ./staging/src/...); a scratch main module must replace every one of
  # them with the published v0.X.Y, because k8s.io/kubernetes requires them at v0.0.0.
  gomod=$(cd "$K8S_CACHE" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  stage=$(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#\1#p' "$gomod")
  [ "$(echo "$stage" | wc -l)" -ge 25 ] || die "could not read the staging list from $gomod"
  local godebug; godebug=$(grep -m1 '^godebug ' "$gomod" || true)
  {
    echo "module local/k8sbin"
    echo
    echo "go 1.26"
    echo
    [ -n "$godebug" ] && { echo "$godebug"; echo; }
    echo "replace ("
    for m in $stage; do printf '\t%s => %s %s\n' "$m" "$m" "$sv"; done
    echo ")"
  } >"$src/go.mod"
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler)
  system_kubectl >/dev/null || { log "no kubectl on this machine; building one"; cmds+=(kubectl); }
  local pkgs=() c
  for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c@$K8S_VERSION"); done
  (cd "$src" && go get -tool "${pkgs[@]}")
  local minor; minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ld+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ld+=" -X k8s.io/component-base/version.gitTreeState=clean"
  ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  pkgs=(); for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  mkdir -p "$bin/.tmp"
  (cd "$src" && go build -trimpath -pgo=off -ldflags "$ld" -o "$bin/.tmp/" "${pkgs[@]}")
  for c in "${cmds[@]}"; do mv -f "$bin/.tmp/$c" "$bin/$c"; done
}

build_etcd() { # build_etcd BIN
  local bin=$1 src="$K8S_CACHE/src/etcd-$ETCD_VERSION"
  mkdir -p "$src"
  # go install go.etcd.io/etcd/server/v3@... is refused (its go.mod has replace directives);
  # in a scratch main module those are ignored and the published api/client/pkg modules of the
  # same tag are used.
  printf 'module local/etcdbin\n\ngo 1.26\n' >"$src/go.mod"
  (cd "$src" && go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  mkdir -p "$bin/.tmp"
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$bin/.tmp/etcd" go.etcd.io/etcd/server/v3)
  mv -f "$bin/.tmp/etcd" "$bin/etcd"
}

build_kwok() { # build_kwok BIN
  local bin=$1
  mkdir -p "$bin/.tmp"
  (cd "$K8S_CACHE" && GOBIN="$bin/.tmp" go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
  mv -f "$bin/.tmp/kwok" "$bin/kwok"
}

# The kwok binary has no built-in stages (v0.8 refuses to start: "no stages found"); kwokctl
# writes its defaults into the config it hands to kwok. Do the same with the stage YAMLs of the
# very kwok version we built: node-initialize + node-heartbeat-with-lease (kwok renews Leases
# because we pass --node-lease-duration-seconds) and pod-ready / pod-complete (pods owned by a
# Job go Running -> Succeeded) / pod-delete.
write_kwok_stages() { # write_kwok_stages BIN
  local bin=$1 dir f
  dir=$(cd "$K8S_CACHE" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  : >"$bin/.tmp/kwok-stages.yaml"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [ -s "$dir/kustomize/stage/$f" ] || die "kwok $KWOK_VERSION has no kustomize/stage/$f"
    { echo "---"; cat "$dir/kustomize/stage/$f"; } >>"$bin/.tmp/kwok-stages.yaml"
  done
  mv -f "$bin/.tmp/kwok-stages.yaml" "$bin/kwok-stages.yaml"
}

cmd_build() {
  local bin; bin="$(key_dir)/bin"
  if have_bins "$bin"; then
    log "binaries cached in $bin"
    echo "$bin"; return 0
  fi
  need_cmd python3; need_cmd flock util-linux
  command -v go >/dev/null || die "go is not installed (Go >= 1.26 is needed to build)"
  go_env
  mkdir -p "$K8S_CACHE"
  exec 9>"$K8S_CACHE/.build.lock"
  flock 9
  # Versions the proxy does not serve fall back to the newest patch of the same minor.
  K8S_VERSION=$(newest_patch k8s.io/kubernetes "$K8S_VERSION")
  ETCD_VERSION=$(newest_patch go.etcd.io/etcd/server/v3 "$ETCD_VERSION")
  bin="$(key_dir)/bin"
  if have_bins "$bin"; then log "binaries cached in $bin"; echo "$bin"; return 0; fi
  mkdir -p "$bin"
  local t0 t; t0=$(now)
  if [ ! -x "$bin/etcd" ]; then
    t=$(now); log "building etcd $ETCD_VERSION"; build_etcd "$bin"; log "etcd built in $(since "$t") s"
  fi
  if [ ! -x "$bin/kwok" ]; then
    t=$(now); log "building kwok $KWOK_VERSION"; build_kwok "$bin"; log "kwok built in $(since "$t") s"
  fi
  if [ ! -s "$bin/kwok-stages.yaml" ]; then mkdir -p "$bin/.tmp"; write_kwok_stages "$bin"; fi
  if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/kube-controller-manager" ] || [ ! -x "$bin/kube-scheduler" ]; then
    t=$(now); log "building kube-apiserver, kube-controller-manager, kube-scheduler $K8S_VERSION"
    build_k8s "$bin"; log "kubernetes binaries built in $(since "$t") s"
  fi
  rmdir "$bin/.tmp" 2>/dev/null || true
  have_bins "$bin" || die "build finished but binaries are missing from $bin"
  log "cold build done in $(since "$t0") s -> $bin"
  echo "$bin"
}

# ---------------------------------------------------------------------------------------------
# start / stop

kubectl_bin() {
  local k
  if k=$(system_kubectl); then echo "$k"; return 0; fi
  k="$(key_dir)/bin/kubectl"
  [ -x "$k" ] && { echo "$k"; return 0; }
  die "no kubectl: set BROTR_KUBECTL, install one, or run '$0 build' on a machine without kubectl"
}

free_ports() { # free_ports N: N distinct free TCP ports on 127.0.0.1
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# spawn NAME CMD...: run CMD in the background, log to $DIR/NAME.log, record its PID.
spawn() {
  local name=$1; shift
  nohup "$@" >"$DIR/$name.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >>"$DIR/pids"
  eval "PID_${name//-/_}=$pid"
}

# wait_for WHAT PID CMD...: retry CMD (quietly) every 0.25 s until it succeeds, the process PID
# dies, or WAIT_SECS pass.
wait_for() {
  local what=$1 pid=$2; shift 2
  local deadline=$(( $(date +%s) + WAIT_SECS ))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      die "$what: process $pid exited (its log is printed below)"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || die "$what: not ready after ${WAIT_SECS}s"
    sleep 0.25
  done
}

http_ok() { # http_ok URL [curl args...]: body is "ok" / etcd health true
  local url=$1 body; shift
  body=$(curl -sS -m 5 "$@" "$url") || return 1
  [ "$body" = ok ] || echo "$body" | grep -q '"health":"true"'
}

show_logs_on_failure() {
  local rc=$? f
  [ "$rc" -eq 0 ] && return 0
  for f in "$DIR"/*.log; do
    [ -s "$f" ] || continue
    echo "----- last lines of $f -----" >&2
    tail -n 25 "$f" >&2
  done
  log "start failed (exit $rc); stopping what was started"
  cmd_stop "$DIR" || true
  exit "$rc"
}

cmd_start() {
  [ -n "${1:-}" ] || die "usage: $0 start DIR"
  mkdir -p "$1"
  DIR=$(cd "$1" && pwd -P)
  if [ -s "$DIR/pids" ]; then
    local p; for p in $(cat "$DIR/pids"); do
      owned "$p" && die "$DIR already has running processes (pid $p); run '$0 stop $DIR' first"
    done
  fi
  need_cmd openssl; need_cmd curl; need_cmd python3; need_cmd flock util-linux
  [ -s "$BROTR_STAGES" ] || die "missing $BROTR_STAGES"
  local bin; bin=$(cmd_build) || die "build failed"
  local kubectl; kubectl=$(kubectl_bin)
  local t0; t0=$(now)
  : >"$DIR/pids"
  trap show_logs_on_failure EXIT

  local ports; read -r P_ETCD P_PEER P_API P_KCM P_SCHED P_KWOK <<<"$(free_ports 6)"
  ports="etcd=$P_ETCD etcd-peer=$P_PEER apiserver=$P_API controller-manager=$P_KCM scheduler=$P_SCHED kwok=$P_KWOK"
  echo "$ports" >"$DIR/ports"

  # Credentials: an admin token in system:masters; a token for the user brotr-operator with no
  # group (the apiserver adds only system:authenticated), so it can do nothing until a test
  # grants it RBAC; a service-account signing key pair.
  mkdir -p "$DIR/pki" "$DIR/pki/apiserver" "$DIR/pki/controller-manager" "$DIR/pki/scheduler"
  local token op_token
  token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  op_token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "$token" >"$DIR/token"
  echo "$op_token" >"$DIR/token-operator"
  {
    echo "$token,admin,admin,system:masters"
    echo "$op_token,$OPERATOR_USER,$OPERATOR_USER"
  } >"$DIR/pki/tokens.csv"
  openssl genrsa -out "$DIR/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$DIR/pki/sa.key" -pubout -out "$DIR/pki/sa.pub" 2>/dev/null
  chmod 600 "$DIR/token" "$DIR/token-operator" "$DIR/pki/tokens.csv" "$DIR/pki/sa.key"

  # etcd
  spawn etcd "$bin/etcd" --name=brotr --data-dir="$DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$P_ETCD" --advertise-client-urls="http://127.0.0.1:$P_ETCD" \
    --listen-peer-urls="http://127.0.0.1:$P_PEER" --initial-advertise-peer-urls="http://127.0.0.1:$P_PEER" \
    --initial-cluster="brotr=http://127.0.0.1:$P_PEER" \
    --unsafe-no-fsync=true --snapshot-count=100000 --log-level=warn
  wait_for "etcd" "$PID_etcd" http_ok "http://127.0.0.1:$P_ETCD/health"

  # kube-apiserver (self-signed serving cert in --cert-dir, token auth, RBAC)
  local api="https://127.0.0.1:$P_API"
  spawn kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$P_ETCD" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$P_API" \
    --cert-dir="$DIR/pki/apiserver" \
    --token-auth-file="$DIR/pki/tokens.csv" --authorization-mode=RBAC \
    --service-account-issuer="$api" \
    --service-account-key-file="$DIR/pki/sa.pub" --service-account-signing-key-file="$DIR/pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true \
    --profiling=false
  wait_for "kube-apiserver /readyz" "$PID_kube_apiserver" \
    http_ok "$api/readyz" -k -H "Authorization: Bearer $token"

  # The serving certificate the apiserver generated is signed by a CA it wrote to the same
  # file (leaf first, CA last): trust that CA.
  local crt="$DIR/pki/apiserver/apiserver.crt"
  [ -s "$crt" ] || die "kube-apiserver wrote no $crt"
  awk '/-----BEGIN CERTIFICATE-----/ { n++; buf = "" } { buf = buf $0 "\n" }
       /-----END CERTIFICATE-----/ { last = buf } END { printf "%s", last }' "$crt" >"$DIR/pki/ca.crt"
  curl -sS -m 5 --cacert "$DIR/pki/ca.crt" -H "Authorization: Bearer $token" "$api/readyz" >/dev/null ||
    die "the apiserver certificate does not verify against $DIR/pki/ca.crt"

  write_kubeconfig "$DIR/kubeconfig" "$api" admin "$token" "$DIR/pki/ca.crt"
  write_kubeconfig "$DIR/kubeconfig-operator" "$api" "$OPERATOR_USER" "$op_token" "$DIR/pki/ca.crt"

  # kube-controller-manager and kube-scheduler, authenticating with the admin token. The
  # apiserver has no client CA / request-header config, so it never publishes the
  # kube-system/extension-apiserver-authentication ConfigMap; skip looking it up (otherwise both
  # log 'configmap "extension-apiserver-authentication" not found' in a loop).
  spawn kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$DIR/kubeconfig" \
    --authentication-kubeconfig="$DIR/kubeconfig" --authorization-kubeconfig="$DIR/kubeconfig" \
    --authentication-skip-lookup=true \
    --bind-address=127.0.0.1 --secure-port="$P_KCM" --cert-dir="$DIR/pki/controller-manager" \
    --leader-elect=false --use-service-account-credentials=false \
    --service-account-private-key-file="$DIR/pki/sa.key" --root-ca-file="$DIR/pki/ca.crt" \
    --service-cluster-ip-range=10.96.0.0/16 --profiling=false \
    --kube-api-qps=300 --kube-api-burst=600
  # (Client rate limits raised: the fleet tests create hundreds of workloads at once, and the
  # defaults of 20 requests/s would measure the controller-manager, not the operator.)
  spawn kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig="$DIR/kubeconfig" \
    --authentication-kubeconfig="$DIR/kubeconfig" --authorization-kubeconfig="$DIR/kubeconfig" \
    --authentication-skip-lookup=true \
    --bind-address=127.0.0.1 --secure-port="$P_SCHED" --cert-dir="$DIR/pki/scheduler" \
    --leader-elect=false --profiling=false --kube-api-qps=300 --kube-api-burst=600

  # kwok: manages nodes annotated kwok.x-k8s.io/node=fake (kwok's convention), HOME pointed
  # into DIR so a stray ~/.kwok/kwok.yaml is never merged into our config. --config is a string
  # slice in kwok (pkg/config/flags.go): the cached default stages, then Brotr's stages, copied
  # from the repo at every start so a changed file is never served stale.
  mkdir -p "$DIR/kwok-home"
  cp "$BROTR_STAGES" "$DIR/kwok-brotr-stages.yaml"
  spawn kwok env HOME="$DIR/kwok-home" "$bin/kwok" \
    --kubeconfig="$DIR/kubeconfig" \
    --config="$bin/kwok-stages.yaml" --config="$DIR/kwok-brotr-stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr=10.244.0.0/16 --node-ip=192.0.2.1 \
    --server-address="127.0.0.1:$P_KWOK" --node-port="$P_KWOK" \
    --node-lease-duration-seconds=40

  wait_for "kube-controller-manager /healthz" "$PID_kube_controller_manager" \
    http_ok "https://127.0.0.1:$P_KCM/healthz" -k
  wait_for "kube-scheduler /healthz" "$PID_kube_scheduler" \
    http_ok "https://127.0.0.1:$P_SCHED/healthz" -k
  wait_for "kwok /healthz" "$PID_kwok" http_ok "http://127.0.0.1:$P_KWOK/healthz"

  # Fake nodes.
  local i
  for ((i = 0; i < NODES; i++)); do node_yaml "kwok-node-$i"; done >"$DIR/nodes.yaml"
  KUBECONFIG="$DIR/kubeconfig" "$kubectl" apply -f "$DIR/nodes.yaml" >/dev/null
  for ((i = 0; i < NODES; i++)); do
    wait_for "node kwok-node-$i Ready" "$PID_kwok" \
      env KUBECONFIG="$DIR/kubeconfig" "$kubectl" wait --for=condition=Ready "node/kwok-node-$i" --timeout=5s
  done

  # The ServiceAccount admission plugin rejects pods until the controller-manager has created
  # the namespace's default ServiceAccount.
  wait_for "default namespace + ServiceAccount" "$PID_kube_controller_manager" \
    env KUBECONFIG="$DIR/kubeconfig" "$kubectl" -n default get serviceaccount default

  # A FlowSchema that matches only brotr-operator (same priority level as the built-in
  # global-default it would otherwise fall into, so nothing changes but the label): the
  # apiserver's /metrics then counts that user's requests under flow_schema="brotr-operator"
  # (apiserver_flowcontrol_dispatched_requests_total); apiserver_request_total has no user label.
  flowschema_yaml | KUBECONFIG="$DIR/kubeconfig" "$kubectl" apply -f - >/dev/null

  {
    echo "export KUBECONFIG=$DIR/kubeconfig"
    echo "export BROTR_K8S_SERVER=$api"
    echo "export BROTR_K8S_TOKEN=$token"
    echo "export BROTR_K8S_OPERATOR_KUBECONFIG=$DIR/kubeconfig-operator"
    echo "export BROTR_K8S_OPERATOR_TOKEN=$op_token"
  } >"$DIR/env"
  trap - EXIT
  log "cluster up in $(since "$t0") s: $api ($ports)"
  log "KUBECONFIG=$DIR/kubeconfig   (source $DIR/env)"
  log "operator (no RBAC until granted): $DIR/kubeconfig-operator"
}

write_kubeconfig() { # write_kubeconfig FILE SERVER USER TOKEN CA
  local ca
  ca=$(base64 -w0 <"$5")
  umask 077
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: brotr-test
  cluster:
    server: $2
    certificate-authority-data: $ca
users:
- name: $3
  user:
    token: $4
contexts:
- name: brotr-test
  context:
    cluster: brotr-test
    user: $3
    namespace: default
current-context: brotr-test
KC
}

flowschema_yaml() {
  # Writes first (lower precedence number wins): the operator's writes are counted under
  # flow_schema="$OPERATOR_USER-writes", everything else it asks under "$OPERATOR_USER".
  cat <<FS
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata:
  name: $OPERATOR_USER-writes
spec:
  matchingPrecedence: 9700
  priorityLevelConfiguration:
    name: global-default
  distinguisherMethod:
    type: ByUser
  rules:
  - subjects:
    - kind: User
      user:
        name: $OPERATOR_USER
    resourceRules:
    - verbs: ["create", "update", "patch", "delete", "deletecollection"]
      apiGroups: ["*"]
      resources: ["*"]
      clusterScope: true
      namespaces: ["*"]
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata:
  name: $OPERATOR_USER
spec:
  matchingPrecedence: 9800
  priorityLevelConfiguration:
    name: global-default
  distinguisherMethod:
    type: ByUser
  rules:
  - subjects:
    - kind: User
      user:
        name: $OPERATOR_USER
    resourceRules:
    - verbs: ["*"]
      apiGroups: ["*"]
      resources: ["*"]
      clusterScope: true
      namespaces: ["*"]
    nonResourceRules:
    - verbs: ["*"]
      nonResourceURLs: ["*"]
FS
}

node_yaml() { # node_yaml NAME: a Node kwok will manage (no taint: every node here is fake)
  cat <<NODE
---
apiVersion: v1
kind: Node
metadata:
  name: $1
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    beta.kubernetes.io/arch: amd64
    beta.kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: $1
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
status:
  allocatable: {cpu: "1000", memory: 4Ti, pods: "5000"}
  capacity: {cpu: "1000", memory: 4Ti, pods: "5000"}
  nodeInfo: {architecture: amd64, operatingSystem: linux, kubeletVersion: fake, kubeProxyVersion: fake}
NODE
}

# owned PID: PID is alive and its command line mentions $DIR (guards against PID reuse).
owned() {
  [ -r "/proc/$1/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$DIR"
}

cmd_stop() {
  [ -n "${1:-}" ] || die "usage: $0 stop DIR"
  [ -d "$1" ] || { log "stop: $1 does not exist; nothing to do"; return 0; }
  DIR=$(cd "$1" && pwd -P)
  [ -s "$DIR/pids" ] || { log "stop: no $DIR/pids; nothing to do"; return 0; }
  local pids=() p i n=0
  # One at a time, in reverse start order (kwok, scheduler, controller-manager, apiserver,
  # etcd): each exits in milliseconds on TERM. Signalling all at once makes the apiserver
  # lose etcd mid-shutdown and hang until KILL.
  mapfile -t pids < <(tac "$DIR/pids")
  for p in "${pids[@]}"; do
    owned "$p" || continue
    n=$((n + 1))
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do owned "$p" || break; sleep 0.1; done
    if owned "$p"; then
      log "stop: pid $p ($(cat "/proc/$p/comm" 2>/dev/null)) ignored TERM for 5 s; sending KILL"
      kill -KILL "$p" 2>/dev/null || true
      for ((i = 0; i < 20; i++)); do owned "$p" || break; sleep 0.1; done
      owned "$p" && die "stop: pid $p survived KILL"
    fi
  done
  log "stopped $n of ${#pids[@]} process(es) listed in $DIR/pids"
}

case "${1:-}" in
  build) cmd_build ;;
  start) cmd_start "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  bindir) echo "$(key_dir)/bin" ;;
  kubectl) kubectl_bin ;;
  *) echo "usage: $0 build | start DIR | stop DIR | bindir | kubectl" >&2; exit 2 ;;
esac

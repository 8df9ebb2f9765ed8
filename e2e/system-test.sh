#!/usr/bin/env bash
# The whole system, end to end, with every pod really running: a test control plane
# (e2e/control-plane.sh) whose node `runc-node` is the runc kubelet (e2e/kubelet/, per-pod
# ports), a real PostgreSQL (e2e/pg.sh), the images of e2e/images.sh, and local Nostr relays
# holding known signed events:
#   open    nostr-rs-relay
#   auth    nostr-rs-relay with NIP-42 (kind 4 DMs served only to their authenticated recipient)
#   neg     e2e/neg-relay (go-nostr, NIP-77)
#   onion   another neg-relay, reached only as ws://<v3>.onion through the node's Tor stand-in
#           (e2e/kubelet/socks5.py with an .onion map: real Tor cannot bootstrap offline)
#   decoy   an HTTP server, not a Nostr relay (seeded, must never be validated)
#   publish a neg-relay the monitors publish their NIP-66 events to (not seeded)
# The operator is installed with the Helm chart (charts/brotr-operator) and runs as a pod from its
# image on runc-node, with in-cluster config (the kubelet's projected token). A BrotrDeployment
# (schema full, identity, Tor, every service, synchronizer shards 2, seeds = the four relays + the
# decoy, allowPrivate, 1-minute intervals) and three interval RelayMonitors (own keys and
# geohashes, publishing to the publish relay) are applied; then, through the API server, psql,
# the pods' own logs and a Nostr client:
#   operator   Available from `helm install --wait`; its image, the projected token and
#              KUBERNETES_SERVICE_HOST in its process, /readyz on its own host port
#   pods       11 pods, all on runc-node; Jobs Succeeded, services Ready; every pod created and
#              started after the migration Job completed; 8 service pods on distinct host ports
#              for their 9090 (/readyz on each); the Tor sidecars of the 7 relay pods attached to
#              the node's one SOCKS5 stand-in
#   validation the four relays in `relay` (the onion one as network tor, reached through the
#              stand-in), the decoy still a candidate with a failure
#   archive    per relay exactly its events in event_relay, `event` their union, the stranger's DM
#              never; each shard received and stored exactly the events of the relays it owns by
#              FNV-1a (distinct subset sums: no relay synced by both); a cursor per relay; the DMs
#              to the pipeline's key (served only after NIP-42 AUTH)
#   NIP-66     a 10166 (own geohash) and a 30166 per relay from each of the 4 monitors, every
#              signature valid for nostr-tools and go-nostr, n and rtt-* tags equal to the
#              nip66_rtt rows stored under each monitor's key; no 30166 for the decoy
#   next cycle events added to one relay of each shard: the next cycles receive and store exactly
#              those, earlier rows untouched, every cursor advanced
#   maintain   a Job from the refresh CronJob (as `kubectl create job --from=cronjob/…`) on
#              runc-node brings event_stats, relay_stats and relay_metadata_latest_by_monitor to
#              the live counts
#   before the drills  no container restarted, the operator logged no Forbidden or error
# then the failure drills, each on the running system:
#   pod killed     20,000 events on the NIP-77 relay; once its shard's cycle has committed a first
#                  batch, the probe process SIGKILLed and the pod force-deleted: the StatefulSet's
#                  replacement stores exactly the events not yet committed, none lost or twice
#   PostgreSQL     another 20,000; mid-sync the server is stopped immediately (connections cut)
#                  for 5 s: the shard's connections are cut, the rest is stored by itself, once,
#                  every service pod is Ready again, nothing restarted
#   hostile relay  the open relay's port taken over by e2e/system/hostile-relay.py (floods forged
#                  events, non-JSON, binary and 2 MiB frames, never ends an answer): events added
#                  to the other relays are archived by both shards, nothing forged stored
#   operator kill  a new RelayMonitor; the operator SIGKILLed as soon as it wrote a child: after
#                  its restart the monitor is Ready, no duplicate children, nothing rewritten
#   API server     kube-apiserver SIGKILLed, down 30 s, started again: a change made after it
#                  converges, the operator not restarted, the node Ready
#   end        one restart in all (the operator's), no Forbidden ever, the node Ready
# Ends with "N passed, N failed"; exits 1 on any failure.
#
# Environment:
#   BROTR_IMAGES_DIR               as for e2e/images.sh
#   BROTR_SYSTEM_REUSE_IMAGES=1    use the archives already in BROTR_IMAGES_DIR instead of running
#                                  e2e/images.sh (which rebuilds when the sources changed)
#   BROTR_SYSTEM_KEEP=1            keep the work dir (logs, kubelet state) after the run
# shellcheck disable=SC2016  # bash -c '… "$1" …' _ ARG: the inner shell expands them
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=e2e/checks.sh
source e2e/checks.sh system-test

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"
OUT=${BROTR_IMAGES_DIR:-$HOME/.cache/brotr/images}
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml","rb"))["workspace"]["package"]["version"])')
NODE=runc-node
NS=brotr            # the pipeline's namespace
OPNS=brotr-system   # the Helm release's
BD=system           # the BrotrDeployment
TOR_PORT=9050       # fixed by the operator (the probe's config names socks5h://127.0.0.1:9050)

source e2e/tools.sh
command -v runc >/dev/null 2>&1 || tools_apt runc
command -v jq >/dev/null 2>&1 || tools_apt jq
command -v curl >/dev/null 2>&1 || tools_apt curl
python3 -c 'import yaml' 2>/dev/null || tools_apt python3-yaml
python3 -c 'import yaml' || { echo "system-test: PyYAML missing for $(command -v python3)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "system-test: runc needs root" >&2; exit 1; }
# The Tor stand-in serves the operator's fixed SOCKS port for the whole node.
python3 -c 'import socket, sys; s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$TOR_PORT" 2>/dev/null ||
  { echo "system-test: port $TOR_PORT is in use on this host (the node's Tor stand-in needs it)" >&2; exit 1; }

echo "== tools and images"
BROTR_TOOLS=nostr-rs-relay,nostr-tools,go-nostr,neg-relay,helm tools_install
# The test's Nostr client (e2e/system/nostr-client, go-nostr), built like e2e/tools.sh builds its
# Go tools: once per content of its sources, into the tools cache.
client_build() {
  local src=e2e/system/nostr-client key bin cache=${BROTR_TOOLS_CACHE:-$HOME/.cache/brotr}
  key=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)
  bin="$cache/bin/nostr-client-$key"
  if [ ! -x "$bin" ]; then
    mkdir -p "$cache/bin"
    (cd "$src" && GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build" GOTOOLCHAIN=${GOTOOLCHAIN:-local} \
      CGO_ENABLED=0 GOFLAGS="-mod=readonly -modcacherw -buildvcs=false" go build -o "$bin.tmp" .) ||
      { echo "system-test: go build e2e/system/nostr-client failed" >&2; exit 1; }
    mv "$bin.tmp" "$bin"
  fi
  NOSTR=$bin
}
client_build
if [ "${BROTR_SYSTEM_REUSE_IMAGES:-}" = 1 ]; then
  echo "images: reusing $OUT (BROTR_SYSTEM_REUSE_IMAGES=1)"
else
  bash e2e/images.sh
fi
for name in brotr-probe brotr-operator; do
  [ -f "$OUT/$name-$VERSION.oci.tar" ] || { echo "system-test: no $OUT/$name-$VERSION.oci.tar" >&2; exit 1; }
done
T_READY=$(elapsed)

source e2e/pg.sh
WORK=$(mktemp -d /tmp/brotr-system-test.XXXXXX)
chmod 0755 "$WORK"
CP="$WORK/cp" STATE="$WORK/kubelet"
RUNC=(runc --root "$STATE/runc")
KUBELET_PID="" PIDS=()
cleanup() {
  local rc=$? p id
  if [ -n "$KUBELET_PID" ] && kill -0 "$KUBELET_PID" 2>/dev/null; then
    kill "$KUBELET_PID" 2>/dev/null || true
    wait "$KUBELET_PID" 2>/dev/null || true
  fi
  for id in $("${RUNC[@]}" list -q 2>/dev/null); do "${RUNC[@]}" delete -f "$id" >/dev/null 2>&1 || true; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "$rc" != 0 ]; then
    echo "-- kubelet log (tail)"; tail -30 "$WORK/kubelet.log" 2>/dev/null || true
    for f in "$STATE"/pods/*/logs/*.stderr; do
      [ -s "$f" ] && grep -qiE 'error|warn|panic' "$f" && { echo "-- ${f#"$STATE"/pods/} (errors, tail)"; grep -iE 'error|warn|panic' "$f" | tail -5; }
    done
  fi
  bash e2e/control-plane.sh stop "$CP" >/dev/null 2>&1 || true
  pg_stop
  if [ "${BROTR_SYSTEM_KEEP:-}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  checks_recap
}
trap cleanup EXIT
# A TERM from the runner (another section failed) still runs cleanup: the control plane is daemonized.
trap 'exit 143' TERM INT

# wait_for SECONDS COMMAND...: polls every second until the command succeeds.
wait_for() { wait_every 1 "$@"; }
jp() { kubectl -n "$1" get "$2" -o "jsonpath=$3" 2>/dev/null || true; }
sql() { psql "$BROTR_TEST_PG_URL" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret_key() { python3 -c 'import secrets; print(secrets.token_hex(32))'; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'; }
# shard_of URL N: the synchronizer shard that owns URL (FNV-1a 64 of the URL mod N, as
# probe/src/config/sync.rs Shard::owns).
shard_of() {
  python3 -c 'import sys
h = 0xcbf29ce484222325
for b in sys.argv[1].encode():
    h = ((h ^ b) * 0x100000001b3) % 2**64
print(h % int(sys.argv[2]))' "$1" "$2"
}
# pod_log NS POD CONTAINER: every output file of the container's runs (the kubelet keeps them).
pod_logs() { cat "$STATE/pods/${1}_${2}"_*/logs/"$3".*.std* 2>/dev/null || true; }

echo "== local relays with known events"
T=$(date +%s.%N)
ONION=brotrsystemtestonionrelay$(printf 'a%.0s' $(seq 30))d.onion   # a v3 name: 56 base32 chars ending in d
ONION_URL=ws://$ONION
# Ports such that the two synchronizer shards each own at least one of the four relays, and the
# open relay (the one that turns hostile in a drill) shares its shard with another relay.
while :; do
  P_OPEN=$(free_port) P_AUTH=$(free_port) P_NEG=$(free_port)
  s=""
  for u in "ws://127.0.0.1:$P_OPEN" "ws://127.0.0.1:$P_AUTH" "ws://127.0.0.1:$P_NEG" "$ONION_URL"; do
    s+=$(shard_of "$u" 2)
  done
  [[ $s == *0* && $s == *1* && ${s:1} == *${s:0:1}* ]] && break
done
P_ONION=$(free_port) P_PUB=$(free_port) P_DECOY=$(free_port)
OPEN_URL=ws://127.0.0.1:$P_OPEN AUTH_URL=ws://127.0.0.1:$P_AUTH NEG_URL=ws://127.0.0.1:$P_NEG
PUB_URL=ws://127.0.0.1:$P_PUB DECOY_URL=ws://127.0.0.1:$P_DECOY
RELAYS=("$OPEN_URL" "$AUTH_URL" "$NEG_URL" "$ONION_URL")
declare -A RELAY_PID
nostr_rs_relay() {  # nostr_rs_relay NAME PORT AUTH
  local d="$WORK/relay-$1"
  mkdir -p "$d"
  sed -e "s|@PORT@|$2|g" -e "s|@DATA@|$d|g" -e "s|@NAME@|brotr system test $1|g" -e "s|@AUTH@|$3|g" \
    e2e/system/nostr-rs-relay.toml >"$d/config.toml"
  # debug: the log shows each connection's REQs and AUTH in order
  (cd "$d" && RUST_LOG=warn,nostr_rs_relay=debug exec "$BROTR_NOSTR_RS_RELAY" --config "$d/config.toml") >"$d/relay.log" 2>&1 &
  PIDS+=($!)
  RELAY_PID[$1]=$!
}
nostr_rs_relay open "$P_OPEN" false
nostr_rs_relay auth "$P_AUTH" true
# NEG-MSG frames capped at 60 kB, as relays serving large sets cap them: the drills' 20,000-event
# differences then take many rounds. (Without a cap the relay would list them in one 1.3 MB
# message, over the synchronizer's 1 MiB message limit: it would page with REQ instead, see
# probe/tests/external_peers.rs.)
for r in neg:$P_NEG onion:$P_ONION publish:$P_PUB; do
  "$BROTR_NEG_RELAY" -frame-limit 60000 "${r#*:}" >"$WORK/relay-${r%%:*}.log" 2>&1 &
  PIDS+=($!)
done
mkdir -p "$WORK/decoy" && echo "not a Nostr relay" >"$WORK/decoy/index.html"
python3 -m http.server --bind 127.0.0.1 --directory "$WORK/decoy" "$P_DECOY" >"$WORK/decoy.log" 2>&1 &
PIDS+=($!)
nip11() { curl -sf -H 'Accept: application/nostr+json' "http://127.0.0.1:$1/" | jq -e .supported_nips >/dev/null; }
for p in "$P_OPEN" "$P_AUTH" "$P_NEG" "$P_ONION" "$P_PUB"; do
  wait_for 30 nip11 "$p" || { echo "system-test: the relay on port $p did not start" >&2; tail "$WORK"/relay-*.log >&2; exit 1; }
done
wait_for 10 curl -sf "http://127.0.0.1:$P_DECOY/" || { echo "system-test: the decoy did not start" >&2; exit 1; }

AUTHOR=$(secret_key) BD_KEY=$(secret_key) STRANGER=$(secret_key)
BD_PUB=$($NOSTR pubkey "$BD_KEY") STRANGER_PUB=$($NOSTR pubkey "$STRANGER")
# Known events, distinct per relay, created an hour ago. The counts (open 2, auth 3 notes and 2
# DMs to the pipeline, neg 6, onion 12) have distinct subset sums with or without the DMs, so
# what a shard received says which relays it synced.
BASE=$(($(date +%s) - 3600))
EV="$WORK/events"; mkdir -p "$EV"
$NOSTR gen -key "$AUTHOR" -n 2 -content "open relay note" -created-at "$BASE" >"$EV/open.jsonl"
$NOSTR gen -key "$AUTHOR" -n 3 -content "auth relay note" -created-at "$BASE" >"$EV/auth.jsonl"
$NOSTR gen -key "$AUTHOR" -kind 4 -n 2 -content "dm to the pipeline" -p "$BD_PUB" -created-at $((BASE + 10)) >"$EV/auth-dm.jsonl"
$NOSTR gen -key "$AUTHOR" -kind 4 -n 1 -content "dm to a stranger" -p "$STRANGER_PUB" -created-at $((BASE + 20)) >"$EV/auth-stranger.jsonl"
$NOSTR gen -key "$AUTHOR" -n 6 -content "negentropy relay note" -created-at "$BASE" >"$EV/neg.jsonl"
$NOSTR gen -key "$AUTHOR" -n 12 -content "onion relay note" -created-at "$BASE" >"$EV/onion.jsonl"
publish() { $NOSTR publish -relay "$1" <"$2" >/dev/null; }
publish "$OPEN_URL" "$EV/open.jsonl"
publish "$AUTH_URL" "$EV/auth.jsonl"
publish "$AUTH_URL" "$EV/auth-dm.jsonl"
publish "$AUTH_URL" "$EV/auth-stranger.jsonl"
publish "$NEG_URL" "$EV/neg.jsonl"
publish "ws://127.0.0.1:$P_ONION" "$EV/onion.jsonl"
count() { $NOSTR req -relay "$1" -filter "$2" "${@:3}" | wc -l; }
expect "relays up and seeded with signed events: open 2, auth 3 notes + 3 DMs, neg 6, onion 12 ($(since "$T"))" \
  test "$(count "$OPEN_URL" '{}') $(count "$AUTH_URL" '{"kinds":[1]}') $(count "$NEG_URL" '{}') $(count "ws://127.0.0.1:$P_ONION" '{}')" = "2 3 6 12"
expect "the auth relay serves no DM without AUTH, the 2 DMs to the pipeline's key after NIP-42 AUTH as it" \
  test "$(count "$AUTH_URL" '{"kinds":[4]}') $(count "$AUTH_URL" '{"kinds":[4]}' -auth-key "$BD_KEY")" = "0 2"
echo "   relays: open $OPEN_URL (shard $(shard_of "$OPEN_URL" 2)), auth $AUTH_URL (shard $(shard_of "$AUTH_URL" 2)), neg $NEG_URL (shard $(shard_of "$NEG_URL" 2)), onion $ONION_URL → 127.0.0.1:$P_ONION (shard $(shard_of "$ONION_URL" 2)); publish $PUB_URL; decoy $DECOY_URL"

echo "== control plane, PostgreSQL, the kubelet (per-pod ports)"
T=$(date +%s.%N)
pg_start fsync=off
bash e2e/control-plane.sh start "$CP" >/dev/null
# shellcheck source=/dev/null  # written by control-plane.sh start
source "$CP/env"
cat >"$WORK/images.yaml" <<EOF
# image reference (or repository: every tag) → archive, or a host command standing in for it
ghcr.io/brotr-dev/brotr-probe: {archive: $OUT/brotr-probe-$VERSION.oci.tar}
ghcr.io/brotr-dev/brotr-operator: {archive: $OUT/brotr-operator-$VERSION.oci.tar}
# The Tor image has no archive and Tor cannot bootstrap offline: one SOCKS5 stand-in per node on
# the operator's fixed port, serving the onion relay's name (every pod's sidecar attaches to it).
docker.io/fphammerle/tor-proxy: {shared: true, hostCommand: [python3, $PWD/e2e/kubelet/socks5.py, --listen, '127.0.0.1:$TOR_PORT', --onion, '$ONION=127.0.0.1:$P_ONION']}
EOF
python3 e2e/kubelet/kubelet.py --kubeconfig "$KUBECONFIG" --node-name "$NODE" --state-dir "$STATE" \
  --images "$WORK/images.yaml" --pod-ports per-pod --restart-backoff 2 >"$WORK/kubelet.log" 2>&1 &
KUBELET_PID=$!
node_ready() { [ "$(jp default "node/$NODE" '{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
if wait_for 60 node_ready; then
  pass "control plane, PostgreSQL and node $NODE Ready ($(since "$T"))"
else
  fail "node $NODE not Ready"; exit 1
fi

echo "== the operator: Helm chart, a pod from its image on $NODE"
T=$(date +%s.%N)
if ! "$BROTR_HELM" install brotr charts/brotr-operator -n "$OPNS" --create-namespace \
    --set-string 'nodeSelector.brotr\.dev/runc=true' --wait --timeout 180s >"$WORK/helm.log" 2>&1; then
  cat "$WORK/helm.log"; fail "helm install"; exit 1
fi
OP_POD=$(kubectl -n "$OPNS" get pods -l app.kubernetes.io/instance=brotr -o 'jsonpath={.items[0].metadata.name}')
pass "helm install --wait: the operator's Deployment is Available ($(since "$T")), pod $OP_POD"
OP_LOGS=$(ls -d "$STATE/pods/${OPNS}_${OP_POD}"_*/logs)
OP_PID=$(cat "/sys/fs/cgroup/does-not-exist" 2>/dev/null || true)
container_pid() {  # container_pid POD CONTAINER: host PID of its running runc container
  local id
  id=$("${RUNC[@]}" list -q | grep -E "^${1:0:40}-[0-9a-f]{8}-$2\$" | head -1)
  [ -n "$id" ] && "${RUNC[@]}" state "$id" | jq -r .pid
}
OP_PID=$(container_pid "$OP_POD" operator || true)
OP_PORT=$(jp "$OPNS" "pod/$OP_POD" '{.status.conditions[?(@.type=="brotr.dev/HostPorts")].message}')
expect "it runs on $NODE from its image (imageID oci-archive://…) under runc (pid ${OP_PID:-none})" \
  bash -c 'kubectl -n "$1" get pod "$2" -o jsonpath="{.spec.nodeName} {.status.containerStatuses[0].imageID}" | grep -q "^$3 oci-archive://" && [ -n "$4" ]' _ "$OPNS" "$OP_POD" "$NODE" "$OP_PID"
# Where in-cluster clients read the token, inside the container's root (/proc/PID/root).
SA_TOKEN=/var/run/secrets/kubernetes.io/serviceaccount/token
expect "in-cluster config: the kubelet's projected service-account token and KUBERNETES_SERVICE_HOST in its process" \
  bash -c 'kubectl -n "$1" get pod "$2" -o jsonpath="{.spec.volumes[*].projected.sources[*].serviceAccountToken.path}" | grep -qw token && tr "\0" "\n" <"/proc/$3/environ" | grep -q "^KUBERNETES_SERVICE_HOST=127.0.0.1$" && [ -s "/proc/$3/root$4" ]' _ "$OPNS" "$OP_POD" "${OP_PID:-0}" "$SA_TOKEN"
expect "its metrics port 8080 is its own host port (per-pod ports: $OP_PORT) and /readyz answers there" \
  bash -c '[[ $1 == 8080=* ]] && curl -sf "http://127.0.0.1:${1#8080=}/readyz" >/dev/null' _ "$OP_PORT"

echo "== a BrotrDeployment: every service, Tor, 2 shards, seeds = the four relays and the decoy"
T=$(date +%s.%N)
kubectl create namespace "$NS" >/dev/null
kubectl -n "$NS" create secret generic pg-app --from-literal=uri="$BROTR_TEST_PG_URL" >/dev/null
kubectl -n "$NS" create secret generic pipeline-key --from-literal=key="$BD_KEY" >/dev/null
# The api's read-only login, made by an administrator before the pipeline exists (the external
# database's way, docs/operations.md): a member of brotr_reader, which the migration then
# grants SELECT on what the api serves.
API_PW=$(secret_key | cut -c1-24)
sql "CREATE ROLE brotr_reader NOLOGIN; CREATE ROLE brotr_api LOGIN PASSWORD '$API_PW' IN ROLE brotr_reader"
API_DB_URL=${BROTR_TEST_PG_URL/:\/\/postgres@/://brotr_api:$API_PW@}
kubectl -n "$NS" create secret generic pg-api --from-literal=uri="$API_DB_URL" >/dev/null
CHECKS='{nip11: {timeoutSecs: 5}, rtt: {timeoutSecs: 5}, nip77: {timeoutSecs: 5}, http: {timeoutSecs: 5}}'
cat <<EOF | kubectl apply -f - >/dev/null
apiVersion: brotr.dev/v1alpha1
kind: BrotrDeployment
metadata: {name: $BD, namespace: $NS}
spec:
  schema: full
  identity: {keySecretRef: {name: pipeline-key, key: key}}
  database:
    external: {urlSecretRef: {name: pg-app, key: uri}}
  networks:
    tor: {enabled: true}          # no proxyUrl: the operator's Tor sidecar in every relay pod
  limits: {allowPrivate: true}    # the relays are on loopback
  seeder:
    relays: ["$OPEN_URL", "$AUTH_URL", "$NEG_URL", "$ONION_URL", "$DECOY_URL"]
  finder:
    interval: 1m
    settings: {sources: []}       # no internet: no HTTP API to ask
  validator:
    interval: 1m
  monitor:
    interval: 1m
    settings:
      checks: $CHECKS
      publish: {relays: ["$PUB_URL"], geohash: u33db}
  synchronizer:
    interval: 1m
    shards: 2
    settings:
      # Kinds 1 and 4: what the relays were seeded with (the monitors' RTT write probes, kind
      # 22456, are stored by neg-relay and are not wanted). lookbackSecs 0: a cycle reads only
      # past its cursors, so its counts say exactly what was new.
      filters: [{kinds: [1, 4]}]
      lookbackSecs: 0
  maintenance:
    # Far apart: the test runs the refresh itself (a Job from the CronJob).
    refresh: {schedule: "0 0 1 1 *"}
    retention: {schedule: "0 0 1 1 *"}
    cleanup: {schedule: "0 0 1 1 *"}
    consensus: {schedule: "0 0 1 1 *"}
  api:
    databaseUrlSecretRef: {name: pg-api, key: uri}
  podOverrides:
    nodeSelector: {brotr.dev/runc: "true"}
EOF
bd_ready() { [ "$(jp "$NS" "bd/$BD" '{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
if wait_for 180 bd_ready; then
  pass "BrotrDeployment $BD Ready ($(since "$T")): $(jp "$NS" "bd/$BD" '{.status.conditions[?(@.type=="Ready")].reason}')"
else
  fail "BrotrDeployment $BD not Ready: $(jp "$NS" "bd/$BD" '{.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}')"
  exit 1
fi

echo "== three RelayMonitors of the pipeline (own keys and geohashes, interval mode)"
T=$(date +%s.%N)
# rm_yaml NAME GEOHASH: an interval RelayMonitor of the pipeline with its own key Secret
# NAME-key, publishing to the publish relay.
rm_yaml() {
  cat <<EOF
apiVersion: brotr.dev/v1alpha1
kind: RelayMonitor
metadata: {name: $1, namespace: $NS}
spec:
  identity: {keySecretRef: {name: $1-key, key: key}}
  interval: 1m
  targets: {brotrDeploymentRef: {name: $BD}}
  networks: {tor: {enabled: true}}
  limits: {allowPrivate: true}
  settings:
    checks: $CHECKS
    publish: {relays: ["$PUB_URL"], geohash: $2}
  workload:
    podOverrides: {nodeSelector: {brotr.dev/runc: "true"}}
EOF
}
MONITORS=(zurich newyork tokyo)
declare -A GEOHASH=([zurich]=u0qj8 [newyork]=dr5ru [tokyo]=xn76u) MKEY MPUB
for m in "${MONITORS[@]}"; do
  MKEY[$m]=$(secret_key)
  MPUB[$m]=$($NOSTR pubkey "${MKEY[$m]}")
  kubectl -n "$NS" create secret generic "$m-key" --from-literal=key="${MKEY[$m]}" >/dev/null
  rm_yaml "$m" "${GEOHASH[$m]}" | kubectl apply -f - >/dev/null
done
rm_ready() {
  local m
  for m in "${MONITORS[@]}"; do
    [ "$(jp "$NS" "rmon/$m" '{.status.conditions[?(@.type=="Ready")].status}')" = True ] || return 1
  done
}
if wait_for 120 rm_ready; then
  pass "RelayMonitors ${MONITORS[*]} Ready ($(since "$T"))"
else
  fail "RelayMonitors not Ready: $(kubectl -n "$NS" get rmon -o jsonpath='{range .items[*]}{.metadata.name}: {.status.conditions[?(@.type=="Ready")].reason} {.status.conditions[?(@.type=="Ready")].message}; {end}')"
fi

echo "== the pods: all on $NODE, migration first, own ports, one Tor stand-in"
MJOB=$(kubectl -n "$NS" get jobs -o name | grep -- "-migrate-" | head -1)
MDONE=$(jp "$NS" "$MJOB" '{.status.completionTime}')
kubectl -n "$NS" get pods -o json >"$WORK/pods.json"
python3 - "$WORK/pods.json" "$NODE" "$MDONE" "${MJOB#*/}" >"$WORK/pods.txt" <<'PY' || true
import json, sys
pods, node, mdone, mjob = json.load(open(sys.argv[1]))["items"], sys.argv[2], sys.argv[3], sys.argv[4]
bad = []
for p in pods:
    m, st = p["metadata"], p["status"]
    name, phase = m["name"], st.get("phase")
    if p["spec"].get("nodeName") != node:
        bad.append(f"{name} on {p['spec'].get('nodeName')}")
    job = m.get("labels", {}).get("job-name", "")
    if job:
        if phase != "Succeeded":
            bad.append(f"{name} {phase}")
    elif phase != "Running" or not all(c["ready"] for c in st.get("containerStatuses", [])):
        bad.append(f"{name} {phase} not ready")
    # Created and started after the migration Job completed (RFC 3339 UTC strings compare).
    if job != mjob and not (m["creationTimestamp"] >= mdone and st.get("startTime", "") >= mdone):
        bad.append(f"{name} created {m['creationTimestamp']} started {st.get('startTime')} before {mdone}")
print(len(pods), "; ".join(bad))
PY
read -r NPODS PODS_BAD <"$WORK/pods.txt" || true
expect "$NPODS pods on $NODE (migrate, seed, finder, validator, monitor, sync-0, sync-1, api, 3 RelayMonitors): Jobs Succeeded, services Running and Ready${PODS_BAD:+: $PODS_BAD}" \
  test -z "$PODS_BAD" -a "$NPODS" = 11
expect "migration Job ${MJOB#*/} completed ($MDONE) before every other pod was created and started" \
  test -n "$MDONE" -a -z "$PODS_BAD"
LONG=$(kubectl -n "$NS" get pods -l 'brotr.dev/owner-kind in (BrotrDeployment,RelayMonitor),!job-name' -o name | sed 's|pod/||' | sort)
HOSTPORTS=""
for p in $LONG; do HOSTPORTS+="$(jp "$NS" "pod/$p" '{.status.conditions[?(@.type=="brotr.dev/HostPorts")].message}') "; done
N_LONG=$(wc -w <<<"$LONG") READYZ=0
for hp in $(tr ' ' '\n' <<<"$HOSTPORTS" | sed -n 's/^9090=//p'); do
  curl -sf "http://127.0.0.1:$hp/readyz" >/dev/null && READYZ=$((READYZ + 1))
done
expect "per-pod ports: the $N_LONG service pods all declare 9090, each has a host port of its own ($(tr ' ' '\n' <<<"$HOSTPORTS" | grep '^9090=' | sort -u | wc -l) distinct), /readyz answers on $READYZ" \
  test "$(tr ' ' '\n' <<<"$HOSTPORTS" | grep '^9090=[0-9]*$' | sort -u | wc -l) $READYZ" = "$N_LONG $N_LONG"
TOR_PODS=$(kubectl -n "$NS" get pods -o jsonpath='{range .items[?(@.spec.initContainers[0].name=="tor")]}{.metadata.name} {.status.initContainerStatuses[0].started} {.status.initContainerStatuses[0].imageID}{"\n"}{end}')
expect "the Tor sidecar of the $(grep -c . <<<"$TOR_PODS") pods that talk to relays (validator, monitor, 2 shards, 3 RelayMonitors) is started, attached to the node's one SOCKS5 stand-in (host-command://)" \
  test "$(grep -c " true host-command://python3 .*socks5.py --listen 127.0.0.1:$TOR_PORT --onion" <<<"$TOR_PODS") $(grep -c . <<<"$TOR_PODS")" = "7 7"
expect "exactly one process listens on 127.0.0.1:$TOR_PORT (the shared stand-in)" \
  test "$(ss -Hltn "sport = :$TOR_PORT" | wc -l)" = 1

echo "== validation: the four relays promoted (the onion one through the Tor stand-in), the decoy not"
expect "relay table: the four relays, the onion one on network tor, the decoy absent" \
  test "$(sql "select string_agg(url || '=' || network, ' ' order by url) from relay")" = \
  "$(printf '%s\n' "$OPEN_URL=clearnet" "$AUTH_URL=clearnet" "$NEG_URL=clearnet" "$ONION_URL=tor" | sort | tr '\n' ' ' | sed 's/ $//')"
DECOY_STATE=$(sql "select state_value::text from service_state where service_name = 'validator' and state_type = 'checkpoint' and state_key = '$DECOY_URL'")
expect "the decoy stays a candidate with a failed validation ($DECOY_STATE)" \
  bash -c 'jq -e ".failures >= 1" <<<"$1" >/dev/null' _ "$DECOY_STATE"
STANDIN_LOG=("$STATE"/shared/stand-in-*.log)
expect "the stand-in carried connections to $ONION:80 to the onion relay (127.0.0.1:$P_ONION)" \
  grep -qF "onion $ONION:80 → 127.0.0.1:$P_ONION" "${STANDIN_LOG[0]}"

echo "== archive: every event of every relay once, split over the two shards"
T=$(date +%s.%N)
cursors() { sql "select state_key || '=' || coalesce(state_value->>'doneUntil', '') from service_state where service_name = 'synchronizer' and state_type = 'cursor' order by state_key"; }
synced() { [ "$(cursors | grep -c '=[0-9]')" = 4 ] && [ "$(sql 'select count(*) from event_relay')" -ge 23 ]; }
wait_for 120 synced || true
CURSORS1=$(cursors)
expect "a cursor for each relay (filter kinds 1,4), past its newest event (waited $(since "$T"))" \
  bash -c 'for u in "${@:3}"; do grep -q "^$u#[0-9a-f]*=[0-9]*$" <<<"$1" || exit 1; done; for t in $(sed "s/.*=//" <<<"$1"); do [ "$t" -ge "$2" ] || exit 1; done' _ "$CURSORS1" $((BASE + 20)) "${RELAYS[@]}"
sql "select r.url, encode(er.event_id, 'hex'), er.seen_at from event_relay er join relay r on r.id = er.relay_id" >"$WORK/archive1.txt"
sql "select encode(id, 'hex') from event" >"$WORK/events1.txt"
# check_archive: per relay, the archived ids against the events it was seeded with.
check_archive() {
  python3 - "$WORK/archive1.txt" "$WORK/events1.txt" "$EV" "$OPEN_URL" "$AUTH_URL" "$NEG_URL" "$ONION_URL" <<'PY'
import json, sys
rows = [l.split("|") for l in open(sys.argv[1]).read().split()]
events = set(open(sys.argv[2]).read().split())
ev = sys.argv[3]
ids = lambda f: {json.loads(l)["id"] for l in open(f"{ev}/{f}.jsonl")}
want = {sys.argv[4]: ids("open"), sys.argv[5]: ids("auth"), sys.argv[6]: ids("neg"), sys.argv[7]: ids("onion")}
dms, stranger = ids("auth-dm"), ids("auth-stranger")
got = {}
for url, eid, _ in rows:
    got.setdefault(url, []).append(eid)
problems = []
for url, w in want.items():
    g = got.get(url, [])
    extra = set(g) - w - (dms if url == sys.argv[5] else set())
    if len(g) != len(set(g)) or not w <= set(g) or extra:
        problems.append(f"{url}: {len(g)} rows, missing {len(w - set(g))}, unexpected {len(extra)}")
if set(got) - set(want):
    problems.append(f"rows for other relays: {sorted(set(got) - set(want))}")
if stranger & events:
    problems.append("the DM to a stranger was archived")
expected = set().union(*want.values()) | (dms & events)
if events != expected:
    problems.append(f"event table: {len(events)} rows, {len(expected)} expected")
print(" ".join(f"{len(set(got.get(u, [])))}" for u in want), len(dms & events), "; ".join(problems))
PY
}
read -r N_OPEN N_AUTH N_NEG N_ONION N_DM ARCHIVE_BAD < <(check_archive) || true
expect "archived exactly once each: open $N_OPEN, auth $N_AUTH, neg $N_NEG (NIP-77), onion $N_ONION (via Tor); event table = their union; the stranger's DM never${ARCHIVE_BAD:+: $ARCHIVE_BAD}" \
  test -z "$ARCHIVE_BAD" -a "$N_OPEN $((N_AUTH - N_DM)) $N_NEG $N_ONION" = "2 3 6 12"
# A relay that serves DMs only after NIP-42 AUTH and leaves them out silently before it: the
# synchronizer reads a window again when its AUTH went out during the answer.
expect "the 2 DMs to the pipeline's key (served only after NIP-42 AUTH) were archived (got $N_DM)" \
  test "$N_DM" = 2
# The shards' own accounts: each "sync cycle done" line of each shard's pod (JSON logs).
shard_totals() {  # shard_totals SHARD [AFTER_ISO]: "cycles relays_max events_new received"
  cat "$STATE/pods/${NS}_$BD-sync-$1"_*/logs/probe.*.std* 2>/dev/null | python3 -c '
import json, sys
after = sys.argv[1] if len(sys.argv) > 1 else ""
n = rmax = new = rec = 0
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("message") == "sync cycle done" and e["timestamp"] > after:
        n, rmax = n + 1, max(rmax, e["relays"])
        new, rec = new + e["events_new"], rec + e["received"]
print(n, rmax, new, rec)' "${@:2}"
}
declare -A DB_COUNT=([$OPEN_URL]=$N_OPEN [$AUTH_URL]=$N_AUTH [$NEG_URL]=$N_NEG [$ONION_URL]=$N_ONION)
for i in 0 1; do
  own=() want=0
  for u in "${RELAYS[@]}"; do
    [ "$(shard_of "$u" 2)" = "$i" ] && { own+=("$u"); want=$((want + DB_COUNT[$u])); }
  done
  read -r cycles rmax new rec < <(shard_totals "$i")
  # The shard of the NIP-42 relay may read its first window twice: when its AUTH went out while
  # the relay was answering, that answer (up to all of the relay's events) comes again and is
  # not stored again. Every other relay's events are received exactly once.
  reread=0
  [ "$(shard_of "$AUTH_URL" 2)" = "$i" ] && reread=$N_AUTH
  expect "shard $i (pod $BD-sync-$i, --shard $i/2) synced only its ${#own[@]} relays (FNV-1a of the URL): at most ${#own[@]} per cycle ($rmax), stored $new = their $want events, received $rec (at most $reread of them read again before AUTH), in $cycles cycles" \
    test "$rmax $new" = "${#own[@]} $want" -a "$rec" -ge "$want" -a "$rec" -le $((want + reread))
done

echo "== the api: through its Service, the archive the pipeline wrote, on the read-only login"
# svc_port NS SERVICE: what kube-proxy would pick: a Ready pod the Service's selector matches,
# the container port its targetPort names, then that pod's host port (this kubelet's per-pod
# ports). Not the EndpointSlice: the test kubelet's pods have the loopback address, which the
# API server refuses as an endpoint, so the slices stay empty here.
svc_port() {
  local sel tp pod port
  sel=$(kubectl -n "$1" get svc "$2" -o json | jq -r '.spec.selector | to_entries | map("\(.key)=\(.value)") | join(",")')
  tp=$(kubectl -n "$1" get svc "$2" -o jsonpath='{.spec.ports[0].targetPort}')
  [ -n "$sel" ] && [ -n "$tp" ] || return 1
  pod=$(kubectl -n "$1" get pods -l "$sel" -o json |
    jq -r '[.items[] | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))][0].metadata.name // empty')
  [ -n "$pod" ] || return 1
  port=$(kubectl -n "$1" get pod "$pod" -o json |
    jq -r --arg tp "$tp" '[.spec.containers[].ports[]? | select(.name == $tp or (.containerPort | tostring) == $tp) | .containerPort][0] // empty')
  [ -n "$port" ] || return 1
  jp "$1" "pod/$pod" '{.status.conditions[?(@.type=="brotr.dev/HostPorts")].message}' | tr ' ' '\n' | sed -n "s/^$port=//p"
}
API_PORT=$(svc_port "$NS" "$BD-api" || true)
API_ENDPOINT=$(jp "$NS" "bd/$BD" '{.status.api.endpoint}')
expect "status.api.endpoint $API_ENDPOINT; the Service $BD-api selects a Ready pod (its api port on host port ${API_PORT:-none})" \
  test "$API_ENDPOINT" = "ws://$BD-api.$NS.svc" -a -n "$API_PORT"
API="127.0.0.1:${API_PORT:-1}"
$NOSTR req -relay "ws://$API" -filter '{"kinds":[1,4]}' >"$WORK/api-req.jsonl" || true
# What it may serve: every archived event but the direct messages (api.hiddenKinds: the relay
# gave those to the pipeline's key only, after AUTH).
sql "select encode(id, 'hex') from event where kind <> 4" >"$WORK/events-public.txt"
expect "REQ through it (go-nostr) returns exactly the $(wc -l <"$WORK/events-public.txt") archived events but the DMs ($(wc -l <"$WORK/api-req.jsonl") events, $(jq -s 'map(select(.kind == 4)) | length' "$WORK/api-req.jsonl") of kind 4)" \
  bash -c 'diff <(jq -r .id "$1" | sort) <(sort "$2") >/dev/null' _ "$WORK/api-req.jsonl" "$WORK/events-public.txt"
# (go-nostr's QuerySync hands events over in its own order; NIP-01's order is checked by the
# Rust tests of the api against nostr's own matcher.)
expect "NIP-11 from it: supported_nips has 1, 11, 45 and 77, restricted_writes" \
  bash -c 'set -o pipefail; curl -sf -H "Accept: application/nostr+json" "http://$1/" | jq -e "(.supported_nips | contains([1, 11, 45, 77])) and .limitation.restricted_writes" >/dev/null' _ "$API"
expect "GET /v1/stats answers, and /v1/relays lists the four relays" \
  bash -c 'set -o pipefail; curl -sf "http://$1/v1/stats" | jq -e .events >/dev/null && [ "$(curl -sf "http://$1/v1/relays" | jq ".relays | length")" = 4 ]' _ "$API"
expect "the web page: GET / as a browser renders the four relays' rows, and the image serves the map's script" \
  bash -c 'set -o pipefail; [ "$(curl -sf -H "Accept: text/html" "http://$1/" | grep -o "<tr data-url=" | wc -l)" = 4 ] && [ "$(curl -sf -o /dev/null -w "%{content_type}" "http://$1/assets/app.js")" = "text/javascript; charset=utf-8" ]' _ "$API"
N_API_CONN=$(sql "select count(*) from pg_stat_activity where usename = 'brotr_api'")
expect "it reads as brotr_api ($N_API_CONN connections in pg_stat_activity), which may not write" \
  bash -c '[ "$1" -ge 1 ] && psql "$2" -XAtq -c "delete from relay" 2>&1 | grep -q "permission denied"' _ "$N_API_CONN" "$API_DB_URL"

echo "== NIP-66: what each monitor published, checked by an independent client, against its rows"
T=$(date +%s.%N)
declare -A GEO=([$BD_PUB]=u33db)
MON_PUBS=("$BD_PUB")
for m in "${MONITORS[@]}"; do GEO[${MPUB[$m]}]=${GEOHASH[$m]}; MON_PUBS+=("${MPUB[$m]}"); done
AUTHORS=$(printf '"%s",' "${MON_PUBS[@]}")
fetch_nip66() { $NOSTR req -relay "$PUB_URL" -filter "{\"kinds\":[30166,10166],\"authors\":[${AUTHORS%,}]}" >"$WORK/nip66.jsonl"; }
published() {
  fetch_nip66 || return 1
  # every monitor: its 10166 and a 30166 for each of the four relays
  [ "$(jq -r 'select(.kind == 10166) | .pubkey' "$WORK/nip66.jsonl" | sort -u | wc -l)" = 4 ] &&
    [ "$(jq -r 'select(.kind == 30166) | .pubkey + " " + (.tags[] | select(.[0] == "d") | .[1])' "$WORK/nip66.jsonl" | sort -u | wc -l)" = 16 ]
}
if wait_for 120 published; then
  pass "the pipeline's monitor and the 3 RelayMonitors published 10166 and a 30166 for each relay to $PUB_URL ($(wc -l <"$WORK/nip66.jsonl") events, $(since "$T"))"
else
  fetch_nip66 || true
  fail "NIP-66 events missing on the publish relay: $(jq -r '"\(.kind) \(.pubkey[:8]) \(.tags[] | select(.[0] == "d") | .[1])"' "$WORK/nip66.jsonl" 2>/dev/null | sort | tr '\n' ';')"
fi
NODE_OK=$(node "$BROTR_NODE_VERIFY" <"$WORK/nip66.jsonl" | jq -s '[.[] | select(.valid)] | length')
GO_OK=$("$BROTR_GO_VERIFY" <"$WORK/nip66.jsonl" | jq -s '[.[] | select(.valid)] | length')
expect "all $(wc -l <"$WORK/nip66.jsonl") have a valid id and Schnorr signature: nostr-tools ($NODE_OK) and go-nostr ($GO_OK)" \
  test "$NODE_OK $GO_OK" = "$(wc -l <"$WORK/nip66.jsonl") $(wc -l <"$WORK/nip66.jsonl")"
sql "select r.url, encode(rm.monitor, 'hex'), rm.metadata_type, rm.generated_at, coalesce(rm.success::text, ''), m.data::text
     from relay_metadata rm join relay r on r.id = rm.relay_id
     join metadata m on m.id = rm.metadata_id and m.type = rm.metadata_type" >"$WORK/relay_metadata.txt"
# check_nip66: every monitor's events parse back to what it measured and stored.
check_nip66() {
  python3 - "$WORK/nip66.jsonl" "$WORK/relay_metadata.txt" "$ONION_URL" "${RELAYS[@]}" <<PY
import json, sys
geo = {$(for k in "${!GEO[@]}"; do printf '"%s": "%s", ' "$k" "${GEO[$k]}"; done)}
events = [json.loads(l) for l in open(sys.argv[1])]
rows = [l.split("|", 5) for l in open(sys.argv[2]).read().splitlines()]
onion, relays = sys.argv[3], sys.argv[4:]
tag = lambda e, k: [t[1] for t in e["tags"] if t[0] == k and len(t) > 1]
problems, rtts, per_monitor = [], 0, {}
for pk, gh in geo.items():
    ann = [e for e in events if e["kind"] == 10166 and e["pubkey"] == pk]
    if not ann or tag(ann[-1], "g") != [gh] or not tag(ann[-1], "frequency"):
        problems.append(f"{pk[:8]}: 10166 g={ann and tag(ann[-1], 'g')}, want {gh}")
    mine = [r for r in rows if r[1] == pk]
    per_monitor[pk] = len({(r[0], r[2]) for r in mine})
    for url in relays:
        ds = sorted((e for e in events if e["kind"] == 30166 and e["pubkey"] == pk and tag(e, "d") == [url]),
                    key=lambda e: e["created_at"])
        rtt = sorted((r for r in mine if r[0] == url and r[2] == "nip66_rtt"), key=lambda r: int(r[3]))
        if not ds or not rtt:
            problems.append(f"{pk[:8]} {url}: {len(ds)} 30166, {len(rtt)} nip66_rtt rows")
            continue
        e, data = ds[-1], json.loads(rtt[-1][5])
        if tag(e, "n") != ["tor" if url == onion else "clearnet"]:
            problems.append(f"{pk[:8]} {url}: n={tag(e, 'n')}")
        for k in ("open", "read", "write"):
            v = data.get(f"rtt_{k}")
            if (tag(e, f"rtt-{k}") or [None])[0] != (None if v is None else str(v)):
                problems.append(f"{pk[:8]} {url}: rtt-{k} {tag(e, f'rtt-{k}')} vs stored {v}")
            rtts += v is not None
print(rtts, min(per_monitor.values()), "; ".join(problems))
PY
}
read -r N_RTT MIN_ROWS NIP66_BAD < <(check_nip66) || true
expect "per monitor: 10166 with its own geohash (g) and frequency; per relay a 30166 whose n and rtt-open/read/write tags equal the nip66_rtt row it stored under its key ($N_RTT values compared)${NIP66_BAD:+: $NIP66_BAD}" \
  test -z "$NIP66_BAD" -a "${N_RTT:-0}" -ge 16
expect "relay_metadata: each of the 4 monitors has its own rows (≥ $MIN_ROWS relay×check series each) for the 4 relays" \
  test "$(cut -d'|' -f1,2 "$WORK/relay_metadata.txt" | sort -u | wc -l)" = 16 -a "${MIN_ROWS:-0}" -ge 8
expect "no 30166 for the decoy" bash -c '! grep -qF "\"$1\"" "$2"' _ "$DECOY_URL" "$WORK/nip66.jsonl"

echo "== new events on one relay of each shard: the next cycle archives those, and only those"
T=$(date +%s.%N)
declare -A ADD_URL ADD_N
for i in 0 1; do
  for u in "${RELAYS[@]}"; do [ "$(shard_of "$u" 2)" = "$i" ] && { ADD_URL[$i]=$u; break; }; done
done
ADD_N[0]=2 ADD_N[1]=3
# After the cycle in progress, if any: the new events are newer than every cursor.
sleep 1
T_PUB=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
for i in 0 1; do
  u=${ADD_URL[$i]}
  $NOSTR gen -key "$AUTHOR" -n "${ADD_N[$i]}" -content "added later to shard $i" -created-at "$(date +%s)" >"$EV/added-$i.jsonl"
  [ "$u" = "$ONION_URL" ] && u=ws://127.0.0.1:$P_ONION   # published directly, not through Tor
  publish "$u" "$EV/added-$i.jsonl"
done
next_cycles() { [ "$(shard_totals 0 "$T_PUB" | cut -d' ' -f1)" -ge 1 ] && [ "$(shard_totals 1 "$T_PUB" | cut -d' ' -f1)" -ge 1 ]; }
if wait_for 100 next_cycles; then
  pass "both shards ran their next cycle ($(since "$T") after the events were published; interval 1m)"
else
  fail "no sync cycle after the new events within 100 s"
fi
for i in 0 1; do
  read -r cycles rmax new rec < <(shard_totals "$i" "$T_PUB")
  # On the NIP-42 relay's shard a window answered before AUTH is read again (see above): what
  # it held, already archived, may come twice and is not stored again.
  if [ "$(shard_of "$AUTH_URL" 2)" = "$i" ]; then
    expect "shard $i: the cycle(s) since then stored exactly the ${ADD_N[$i]} new events of ${ADD_URL[$i]} ($new stored; $rec received, re-reads before AUTH on the NIP-42 relay included)" \
      test "$new" = "${ADD_N[$i]}" -a "$rec" -ge "$new" -a "$rec" -le $((new + N_AUTH))
  else
    expect "shard $i: the cycle(s) since then received and stored exactly the ${ADD_N[$i]} new events of ${ADD_URL[$i]} ($rec received, $new stored)" \
      test "$rec $new" = "${ADD_N[$i]} ${ADD_N[$i]}"
  fi
done
sql "select r.url, encode(er.event_id, 'hex'), er.seen_at from event_relay er join relay r on r.id = er.relay_id" >"$WORK/archive2.txt"
expect "the new events are archived on their relay; every earlier row is unchanged (same seen_at), nothing else was added" \
  python3 - "$WORK/archive1.txt" "$WORK/archive2.txt" "$EV" "${ADD_URL[0]}" "${ADD_URL[1]}" <<'PY'
import json, sys
a = set(open(sys.argv[1]).read().split())
b = set(open(sys.argv[2]).read().split())
ids = lambda f: {json.loads(l)["id"] for l in open(f"{sys.argv[3]}/{f}.jsonl")}
new = {tuple(r.split("|")[:2]) for r in b - a}
want = {(sys.argv[4], i) for i in ids("added-0")} | {(sys.argv[5], i) for i in ids("added-1")}
sys.exit(0 if a <= b and new == want else 1)
PY
CURSORS2=$(cursors)
expect "every relay's cursor advanced" \
  python3 -c 'import sys
a = dict(l.split("=") for l in sys.argv[1].split())
b = dict(l.split("=") for l in sys.argv[2].split())
sys.exit(0 if a.keys() == b.keys() and all(int(b[k]) > int(a[k]) for k in a) else 1)' "$CURSORS1" "$CURSORS2"

echo "== maintenance: a run of the refresh CronJob (kubectl create job --from=cronjob/…) refreshes the views"
T=$(date +%s.%N)
views() { sql "select (select event_count from event_stats) || ' ' || (select count(*) from relay_stats) || ' ' || (select count(distinct monitor) from relay_metadata_latest_by_monitor)"; }
BEFORE=$(views)
LIVE="$(sql 'select count(*) from event') 4 4"
kubectl -n "$NS" create job refresh-now --from="cronjob/$BD-refresh" >/dev/null
if kubectl -n "$NS" wait --for=condition=Complete job/refresh-now --timeout=90s >/dev/null; then
  pass "Job refresh-now from cronjob/$BD-refresh Complete on $NODE ($(since "$T")): $(kubectl -n "$NS" get pods -l job-name=refresh-now -o jsonpath='{.items[0].spec.containers[0].args}')"
else
  fail "Job refresh-now not Complete"
fi
AFTER=$(views)
expect "views (event_stats.event_count, relay_stats rows, monitors in relay_metadata_latest_by_monitor): $BEFORE before, $AFTER after, live $LIVE" \
  test "$AFTER" = "$LIVE" -a "$BEFORE" != "$LIVE"

echo "== before the drills: no restarts, nothing forbidden, no error, the node healthy"
RESTARTS=$(kubectl get pods -A -o jsonpath='{range .items[*]}{range .status.containerStatuses[*]}{.restartCount}{"\n"}{end}{range .status.initContainerStatuses[*]}{.restartCount}{"\n"}{end}{end}' | awk '{s += $1} END {print s + 0}')
expect "no container restarted ($RESTARTS restarts)" test "$RESTARTS" = 0
expect "the operator (under the chart's RBAC) logged no Forbidden and no error" \
  bash -c '! grep -qiE "forbidden|\"level\":\"ERROR\"" "$1"/operator.*' _ "$OP_LOGS"
expect "the node is Ready; the kubelet logged no crashed worker" \
  bash -c '[ "$(kubectl get node "$1" -o jsonpath="{.status.conditions[?(@.type==\"Ready\")].status}")" = True ] && ! grep -q "worker crashed" "$2"' _ "$NODE" "$WORK/kubelet.log"


echo "== drills: helpers"
now_iso() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }
rows_of() { sql "select count(*) from event_relay er join relay r on r.id = er.relay_id where r.url = '$1'"; }
# wait_fast SECONDS COMMAND...: polls every 50 ms (wait_for's second is too coarse to catch a batch).
wait_fast() { wait_every 0.05 "$@"; }
cycle_after() { [ "$(shard_totals "$1" "$2" | cut -d' ' -f1)" -ge 1 ]; }
# after_cycle SHARD: returns once the shard has just finished a cycle, so that its next one is
# about an interval away.
after_cycle() { local t; t=$(now_iso); wait_for 100 cycle_after "$1" "$t"; }
grew() { [ "$(rows_of "$1")" -gt "$2" ]; }
has_rows() { [ "$(rows_of "$1")" -ge "$2" ]; }
pod_ready() { [ "$(jp "$1" "pod/$2" '{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
# all_ready: every running pod of the pipeline Ready, and /readyz 200 on each service pod.
all_ready() {
  local p hp
  for p in $(kubectl -n "$NS" get pods -l '!job-name' -o name | sed 's|pod/||'); do
    pod_ready "$NS" "$p" || return 1
    hp=$(jp "$NS" "pod/$p" '{.status.conditions[?(@.type=="brotr.dev/HostPorts")].message}' |
      tr ' ' '\n' | sed -n 's/^9090=//p')
    curl -sf "http://127.0.0.1:$hp/readyz" >/dev/null || return 1
  done
}
restarts() { kubectl get pods -A -o jsonpath='{range .items[*]}{range .status.containerStatuses[*]}{.restartCount}{"\n"}{end}{range .status.initContainerStatuses[*]}{.restartCount}{"\n"}{end}{end}' | awk '{s += $1} END {print s + 0}'; }
SN=$(shard_of "$NEG_URL" 2) SPOD=$BD-sync-$(shard_of "$NEG_URL" 2) BULK=20000
# bulk FILE CONTENT: BULK events backdated one a second over the last hours, published to the
# NIP-77 relay right after a cycle of its shard (so that the next cycle finds all of them).
# NIP-77 reconciles the whole history, not only what is newer than the cursor.
bulk() {
  $NOSTR gen -key "$AUTHOR" -n "$BULK" -content "$2" -created-at $(($(date +%s) - BULK - 10)) >"$1"
  after_cycle "$SN" || true
  $NOSTR publish -relay "$NEG_URL" -workers 16 <"$1" >/dev/null
}
echo "   the NIP-77 relay $NEG_URL is synced by shard $SN (pod $SPOD); bulk batches of $BULK events"

echo "== drill: a synchronizer pod killed mid-batch; its replacement resumes with no loss"
T=$(date +%s.%N)
SUID=$(jp "$NS" "pod/$SPOD" '{.metadata.uid}')
B0=$(rows_of "$NEG_URL")
bulk "$EV/bulk-kill.jsonl" "bulk for the kill drill"
echo "   $BULK events published ($(since "$T")); waiting for the shard's next cycle"
if wait_fast 90 grew "$NEG_URL" "$B0"; then
  SPID=$(container_pid "$SPOD" probe || true)
  kill -KILL "$SPID" 2>/dev/null || true
  T_KILL=$(now_iso)
  # Counted before the pod is deleted: its replacement starts within a second of that.
  sleep 0.3
  K=$(($(rows_of "$NEG_URL") - B0))
  kubectl -n "$NS" delete pod "$SPOD" --grace-period=0 --force >/dev/null 2>&1 || true
  expect "the probe of $SPOD (pid ${SPID:-none}) SIGKILLed mid-batch: $K of $BULK stored; the pod force-deleted" \
    test -n "$SPID" -a "$K" -gt 0 -a "$K" -lt "$BULK"
else
  fail "the shard never started storing the bulk"; K=0 T_KILL=$(now_iso)
fi
replaced() { local u; u=$(jp "$NS" "pod/$SPOD" '{.metadata.uid}'); [ -n "$u" ] && [ "$u" != "$SUID" ] && pod_ready "$NS" "$SPOD"; }
if wait_for 90 replaced; then
  pass "its StatefulSet replaced it: pod $SPOD uid $(jp "$NS" "pod/$SPOD" '{.metadata.uid}' | cut -c1-8) (was ${SUID:0:8}) Ready on $(jp "$NS" "pod/$SPOD" '{.spec.nodeName}') ($(since "$T"))"
else
  fail "no Ready replacement for $SPOD"
fi
wait_for 120 has_rows "$NEG_URL" $((B0 + BULK)) || true
read -r cycles rmax new rec < <(shard_totals "$SN" "$T_KILL")
# NIP-77 against the ids already stored: each missing event fetched once, none of the stored
# ones (bar what the NIP-42 relay, if on this shard, answers again before AUTH; see above).
reread=0
[ "$(shard_of "$AUTH_URL" 2)" = "$SN" ] && reread=$N_AUTH
expect "the replacement's cycle fetched and stored exactly the $((BULK - K)) events the killed one had not committed ($new stored, $rec received)" \
  test "$new" = $((BULK - K)) -a "$rec" -ge "$new" -a "$rec" -le $((new + reread))
expect "nothing lost, nothing twice: the relay has $B0 + $BULK event_relay rows ($(rows_of "$NEG_URL")), each bulk event once in event" \
  test "$(rows_of "$NEG_URL") $(sql "select count(*) from event where content like 'bulk for the kill drill %'")" = "$((B0 + BULK)) $BULK"

echo "== drill: PostgreSQL crash-restarted mid-sync; nothing lost or duplicated, the services recover by themselves"
T=$(date +%s.%N)
B1=$(rows_of "$NEG_URL")
R0=$(restarts)
bulk "$EV/bulk-pg.jsonl" "bulk for the PostgreSQL drill"
if wait_fast 90 grew "$NEG_URL" "$B1"; then
  T_DOWN=$(now_iso)
  pg_restart 5
  K=$(($(rows_of "$NEG_URL") - B1))
  expect "PostgreSQL stopped (immediate: connections cut, no checkpoint) with $K of $BULK stored, down 5 s, started again" \
    test "$K" -gt 0 -a "$K" -lt "$BULK"
else
  fail "the shard never started storing the bulk"; T_DOWN=$(now_iso)
fi
# What the shard's pod saw of the outage, in its log since: PostgreSQL's notice on the cut
# connections, and whether a cycle or a relay failed for it.
outage_seen() {
  cat "$STATE/pods/${NS}_${SPOD}"_*/logs/probe.*.std* 2>/dev/null | python3 -c '
import json, sys
cut = failed = 0
for line in sys.stdin:
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e["timestamp"] <= sys.argv[1]:
        continue
    cut += e.get("message") == "terminating connection due to immediate shutdown command"
    failed += e.get("message") in ("cycle failed", "relay not fully synced this cycle")
print(cut, failed)' "$T_DOWN"
}
read -r CUT CYCLES_FAILED < <(outage_seen) || true
expect "the shard's pod was cut off mid-work: $CUT of its connections ended by the shutdown; $CYCLES_FAILED failed cycles or relays" \
  test "${CUT:-0}" -ge 1
if wait_for 150 has_rows "$NEG_URL" $((B1 + BULK)); then
  pass "the rest was stored without help ($(since "$T") since the bulk)"
else
  fail "the bulk is not complete after the outage: $(($(rows_of "$NEG_URL") - B1)) of $BULK"
fi
expect "nothing lost, nothing twice: $B1 + $BULK event_relay rows ($(rows_of "$NEG_URL")), each bulk event once in event" \
  test "$(rows_of "$NEG_URL") $(sql "select count(*) from event where content like 'bulk for the PostgreSQL drill %'")" = "$((B1 + BULK)) $BULK"
if wait_for 150 all_ready; then
  pass "every service pod Ready again, /readyz 200 on each, without a restart ($(($(restarts) - R0)) restarts) ($(since "$T"))"
else
  fail "services not all Ready after the outage"
fi
expect "no container restarted through the outage" test "$(restarts)" = "$R0"

echo "== drill: a relay turns hostile mid-run (floods garbage, never ends an answer); the others are still archived"
T=$(date +%s.%N)
kill "${RELAY_PID[open]}" 2>/dev/null || true
port_free() { ! ss -Hltn "sport = :$P_OPEN" | grep -q .; }
wait_for 10 port_free || true
python3 e2e/system/hostile-relay.py --listen "127.0.0.1:$P_OPEN" >"$WORK/hostile.log" 2>&1 &
PIDS+=($!)
wait_for 10 bash -c '! curl -sf "http://127.0.0.1:$1/" | jq . >/dev/null 2>&1 && ss -Hltn "sport = :$1" | grep -q .' _ "$P_OPEN" || true
T_H=$(now_iso)
O0=$(rows_of "$OPEN_URL") E0=$(sql 'select count(*) from event')
declare -A HOSTILE_ADD=([$AUTH_URL]=2 [$NEG_URL]=3 [$ONION_URL]=4)
for u in "${!HOSTILE_ADD[@]}"; do
  f="$EV/while-hostile-$(shard_of "$u" 2)-${HOSTILE_ADD[$u]}.jsonl"
  $NOSTR gen -key "$AUTHOR" -n "${HOSTILE_ADD[$u]}" -content "while a relay is hostile, on $u" -created-at "$(date +%s)" >"$f"
  [ "$u" = "$ONION_URL" ] && p=ws://127.0.0.1:$P_ONION || p=$u
  publish "$p" "$f"
done
# A cycle running while the events were published may miss them; the next one has them.
both_cycled() { cycle_after 0 "$T_H" && cycle_after 1 "$T_H" && [ "$(($(sql 'select count(*) from event') - E0))" -ge 9 ]; }
if wait_for 200 both_cycled; then
  pass "both shards completed cycles with the hostile relay in them, the added events stored ($(since "$T"))"
else
  fail "the shards did not store the added events with the hostile relay in their cycles"
fi
FLOODED=$(grep -c 'first \["\(REQ\|NEG-OPEN\)' "$WORK/hostile.log" || true)
expect "the hostile relay flooded $FLOODED subscriptions ($(awk '/ frames /{n += $(NF - 5)} END {print n + 0}' "$WORK/hostile.log" 2>/dev/null) frames of forged events, non-JSON, binary, 2 MiB frames; no EOSE)" \
  test "$FLOODED" -ge 1
for i in 0 1; do
  want=0
  for u in "${!HOSTILE_ADD[@]}"; do [ "$(shard_of "$u" 2)" = "$i" ] && want=$((want + HOSTILE_ADD[$u])); done
  read -r cycles rmax new rec < <(shard_totals "$i" "$T_H")
  hostile=""; [ "$(shard_of "$OPEN_URL" 2)" = "$i" ] && hostile=" (owns the hostile relay)"
  expect "shard $i$hostile: its cycles since stored exactly the $want events added to its healthy relays ($new)" \
    test "$new" = "$want"
done
expect "the hostile relay's rows are unchanged ($O0), the event table grew by exactly the 9 added, no forged event stored" \
  test "$(rows_of "$OPEN_URL") $(($(sql 'select count(*) from event') - E0)) $(sql "select count(*) from event where content like 'forged %'")" = "$O0 9 0"
RSS=""
for i in 0 1; do
  pid=$(container_pid "$BD-sync-$i" probe || true)
  RSS+="sync-$i $(awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$pid/status" 2>/dev/null) "
done
expect "no container restarted; the synchronizers' peak RSS: $RSS" test "$(restarts)" = "$R0"

echo "== drill: the operator killed mid-reconcile (a new RelayMonitor); it converges, no duplicate children"
T=$(date +%s.%N)
PKEY=$(secret_key)
kubectl -n "$NS" create secret generic paris-key --from-literal=key="$PKEY" >/dev/null
OP_R0=$(jp "$OPNS" "pod/$OP_POD" '{.status.containerStatuses[0].restartCount}')
OP_PID=$(container_pid "$OP_POD" operator || true)
rm_yaml paris u09tu | kubectl apply -f - >/dev/null
PUID=$(jp "$NS" rmon/paris '{.metadata.uid}')
children() { kubectl -n "$NS" get configmaps,deployments,services,cronjobs -l "brotr.dev/owner-uid=$PUID" -o name 2>/dev/null; }
wrote_some() { [ -n "$(children)" ]; }
wait_fast 30 wrote_some || true
kill -KILL "$OP_PID" 2>/dev/null || true
AT_KILL=$(children | tr '\n' ' ')
echo "   operator (pid ${OP_PID:-none}) SIGKILLed $(since "$T") after the apply; children then: ${AT_KILL:-none}"
paris_ready() {
  [ "$(jp "$NS" rmon/paris '{.status.conditions[?(@.type=="Ready")].status} {.status.observedGeneration}')" = "True $(jp "$NS" rmon/paris '{.metadata.generation}')" ]
}
if wait_for 120 paris_ready; then
  pass "RelayMonitor paris Ready for its generation after the operator came back ($(since "$T"))"
else
  fail "paris not Ready: $(jp "$NS" rmon/paris '{.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}')"
fi
# The kubelet reports the restarted container Ready a probe period after it is: wait for it.
op_back() {
  [ "$(jp "$OPNS" "pod/$OP_POD" '{.status.containerStatuses[0].restartCount}')" = $((OP_R0 + 1)) ] &&
    [ "$(jp "$OPNS" "pod/$OP_POD" '{.status.containerStatuses[0].ready}')" = true ]
}
wait_for 30 op_back || true
expect "the operator's container restarted once (restartCount $OP_R0 → $(jp "$OPNS" "pod/$OP_POD" '{.status.containerStatuses[0].restartCount}')) and is Ready" \
  bash -c '[ "$1" = $(($2 + 1)) ] && [ "$3" = true ]' _ "$(jp "$OPNS" "pod/$OP_POD" '{.status.containerStatuses[0].restartCount}')" "$OP_R0" "$(jp "$OPNS" "pod/$OP_POD" '{.status.containerStatuses[0].ready}')"
CH=$(children)
KINDS=$(cut -d/ -f1 <<<"$CH" | sort | uniq -c | awk '{printf "%s %s, ", $1, $2}')
DUPS=$(cut -d/ -f1 <<<"$CH" | sort | uniq -d)
DGEN=$(kubectl -n "$NS" get deployments -l "brotr.dev/owner-uid=$PUID" -o jsonpath='{.items[*].metadata.generation}')
NPOD=$(kubectl -n "$NS" get pods -l "brotr.dev/owner-uid=$PUID" --field-selector=status.phase=Running -o name | wc -l)
expect "no duplicate children (${KINDS%, }); the Deployment at generation $DGEN (not rewritten after the restart); $NPOD pod of paris Running" \
  test -z "$DUPS" -a -n "$CH" -a "$DGEN" = 1 -a "$NPOD" = 1

echo "== drill: the API server down for 30 s (SIGKILL); the operator rides it out and converges after"
T=$(date +%s.%N)
OP_R1=$(jp "$OPNS" "pod/$OP_POD" '{.status.containerStatuses[0].restartCount}')
APID=$(while read -r p; do if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = kube-apiserver ]; then echo "$p"; fi; done <"$CP/pids" | head -1)
[ -n "$APID" ] || { fail "no running kube-apiserver in $CP/pids"; exit 1; }
# Its command line and environment, to start the same server again.
python3 - "$APID" "$WORK/apiserver.cmd" <<'PY'
import json, sys
pid = sys.argv[1]
split = lambda f: [a.decode() for a in open(f"/proc/{pid}/{f}", "rb").read().split(b"\0") if a]
json.dump({"args": split("cmdline"), "env": dict(kv.split("=", 1) for kv in split("environ") if "=" in kv)}, open(sys.argv[2], "w"))
PY
kill -KILL "$APID"
api_down() { ! kubectl get --raw /readyz >/dev/null 2>&1; }
wait_for 10 api_down || true
sleep 30
python3 - "$WORK/apiserver.cmd" "$CP/kube-apiserver.log" "$CP/pids" <<'PY'
import json, subprocess, sys
c = json.load(open(sys.argv[1]))
log = open(sys.argv[2], "ab")
p = subprocess.Popen(c["args"], env=c["env"], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
open(sys.argv[3], "a").write(f"{p.pid}\n")
PY
api_up() { kubectl get --raw /readyz >/dev/null 2>&1; }
if wait_for 60 api_up; then
  pass "kube-apiserver (pid $APID) SIGKILLed, down 30 s, the same command started again ($(since "$T"))"
else
  fail "kube-apiserver did not come back"; exit 1
fi
T=$(date +%s.%N)
rm_yaml paris u09wh | kubectl apply -f - >/dev/null
PGEN=$(jp "$NS" rmon/paris '{.metadata.generation}')
paris_moved() {
  paris_ready && [ "$(jp "$NS" rmon/paris '{.status.observedGeneration}')" = "$PGEN" ] &&
    kubectl -n "$NS" get configmaps -l "brotr.dev/owner-uid=$PUID" -o yaml | grep -q u09wh &&
    [ "$(kubectl -n "$NS" get pods -l "brotr.dev/owner-uid=$PUID" -o name | wc -l)" = 1 ] &&
    pod_ready "$NS" "$(kubectl -n "$NS" get pods -l "brotr.dev/owner-uid=$PUID" -o jsonpath='{.items[0].metadata.name}')"
}
if wait_for 150 paris_moved; then
  pass "a change made after the outage (paris's geohash) converged: Ready for generation $PGEN, its config rendered, its pod rolled and Ready ($(since "$T"))"
else
  fail "the change after the outage did not converge: $(jp "$NS" rmon/paris '{.status.observedGeneration} {.status.conditions[?(@.type=="Ready")].reason}')"
fi
expect "the operator was not restarted by the outage (restartCount $OP_R1 → $(jp "$OPNS" "pod/$OP_POD" '{.status.containerStatuses[0].restartCount}')): no crash loop" \
  test "$(jp "$OPNS" "pod/$OP_POD" '{.status.containerStatuses[0].restartCount}')" = "$OP_R1"
expect "the node is Ready again" node_ready

echo "== the end: only the operator's deliberate kill restarted anything, nothing forbidden, the node healthy"
expect "one container restart in all: the operator's, SIGKILLed in its drill ($(restarts))" test "$(restarts)" = 1
expect "the operator (under the chart's RBAC) never logged Forbidden, outage included" \
  bash -c '! grep -qi "forbidden" "$1"/operator.*' _ "$OP_LOGS"
expect "the node is Ready; the kubelet logged no crashed worker" \
  bash -c '[ "$(kubectl get node "$1" -o jsonpath="{.status.conditions[?(@.type==\"Ready\")].status}")" = True ] && ! grep -q "worker crashed" "$2"' _ "$NODE" "$WORK/kubelet.log"

echo "setup (tools, images) ${T_READY} s; total $(elapsed) s"
checks_summary

#!/usr/bin/env bash
# Checks the images that e2e/images.sh built (run it first) and runs them as a cluster would:
# under runc, as the image's user (65532), with a read-only root filesystem and nothing writable
# but the volumes mounted for a case. For each image: its config (user, entrypoint, working dir,
# OCI labels, no secret-looking Env), its contents (no shell), its uncompressed size (limits:
# probe 25 MB, operator 30 MB for the dist images that ship; 45 MB each for the images the test
# command makes from its unoptimised test build, BROTR_IMAGE_PROFILE=debug), and the binary's own
# answers: `--version` is Cargo's version,
# `brotr-operator crd` prints both CRDs, `brotr-probe migrate` fails on the read-only root and
# works in a mounted data volume, and `brotr-probe check` reaches a real nostr-rs-relay on the
# host's loopback with GeoIP databases and a config file mounted the way the operator mounts them.
# Also checks that probe/Dockerfile and operator/Dockerfile (not buildable here: no registry)
# describe the same image. Ends with "N passed, N failed"; exits 1 on any failure.
#
# runc, not podman/crun (both fail on this machine kind): the rootfs is unpacked from the OCI
# archive, config.json comes from `runc spec` without the network and cgroup namespaces (the
# container shares the host's loopback, where the relay listens).
#
# Environment: BROTR_IMAGES_DIR as for e2e/images.sh.
# shellcheck disable=SC2016  # bash -c '… "$1" …' _ ARG: the inner shell expands them
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${BROTR_IMAGES_DIR:-$HOME/.cache/brotr/images}
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml","rb"))["workspace"]["package"]["version"])')
PROFILE=$(cat "$OUT/.profile" 2>/dev/null || echo dist)
case "$PROFILE" in
  dist) declare -A MAX_MB=([brotr-probe]=25 [brotr-operator]=30) ;;
  # The test build at opt-level 0, stripped: ~32 MB each today. The limit still catches a
  # dependency that bloats the binary by half.
  debug) declare -A MAX_MB=([brotr-probe]=45 [brotr-operator]=45) ;;
  *) echo "images-test: $OUT/.profile says '$PROFILE': expected dist or debug" >&2; exit 1 ;;
esac
echo "images-test: the $PROFILE images in $OUT"
LABELS=(title description source licenses version)

source e2e/tools.sh  # tools_apt, tools_install
command -v runc >/dev/null 2>&1 || tools_apt runc
command -v jq >/dev/null 2>&1 || tools_apt jq
command -v curl >/dev/null 2>&1 || tools_apt curl
BROTR_TOOLS=nostr-rs-relay,geoip-test tools_install  # BROTR_NOSTR_RS_RELAY, BROTR_GEOIP_TEST_DIR

WORK=$(mktemp -d /tmp/brotr-images-test.XXXXXX)
chmod 0755 "$WORK"  # the container user must traverse to the rootfs and the mounted files
RUNC=(runc --root "$WORK/runc-state")
RELAY_PID=""
RUNS=0
cleanup() {
  local id
  for id in $("${RUNC[@]}" list -q 2>/dev/null); do "${RUNC[@]}" delete -f "$id" >/dev/null 2>&1 || true; done
  if [ -n "$RELAY_PID" ]; then kill "$RELAY_PID" 2>/dev/null || true; wait "$RELAY_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

source e2e/checks.sh images-test

# unpack NAME: $WORK/NAME/{config.json (the image config), rootfs/}; prints "<bytes> <layers>".
unpack() {
  local name=$1 archive="$OUT/$1-$VERSION.oci.tar" d="$WORK/$1"
  [ -f "$archive" ] || { echo "images-test: no $archive (run e2e/images.sh first)" >&2; return 1; }
  mkdir -p "$d/oci" "$d/rootfs"
  tar -xf "$archive" -C "$d/oci"
  local manifest config
  manifest=$(jq -r '.manifests[0].digest' "$d/oci/index.json")
  manifest="$d/oci/blobs/${manifest/://}"
  config=$(jq -r '.config.digest' "$manifest")
  cp "$d/oci/blobs/${config/://}" "$d/config.json"
  local bytes=0 layer blob
  for layer in $(jq -r '.layers[].digest' "$manifest"); do
    blob="$d/oci/blobs/${layer/://}"
    bytes=$((bytes + $(gzip -dc "$blob" | wc -c)))
    # Whiteouts would need an overlay-aware unpacker; images.sh makes one layer without any.
    if gzip -dc "$blob" | tar -t | grep -q '\.wh\.'; then
      echo "images-test: $name has whiteout entries" >&2; return 1
    fi
    tar -xzf "$blob" -C "$d/rootfs" --numeric-owner --same-permissions
  done
  echo "$bytes $(jq '.layers | length' "$manifest")"
}

# run NAME OUTPREFIX MOUNTS ARG...: runs the image's entrypoint with ARGs under runc as the
# image's user, read-only root, cwd = the image's working dir; MOUNTS is a space-separated list of
# SRC:DEST:ro|rw bind mounts ("" for none). Output in OUTPREFIX.out/.err; returns the exit code.
run() {
  local name=$1 prefix=$2 mounts=$3; shift 3
  local d="$WORK/$name" bundle="$WORK/bundle-$RUNS" id="brotr-images-test-$$-$RUNS" m
  RUNS=$((RUNS + 1))
  mkdir -p "$bundle"
  (cd "$bundle" && runc spec)
  local user uid gid mounts_json='[]' args_json
  # Every container runtime (Docker, the kubelet) bind-mounts these; the probe's DNS resolver
  # reads /etc/resolv.conf at start.
  mounts="/etc/resolv.conf:/etc/resolv.conf:ro /etc/hosts:/etc/hosts:ro $mounts"
  user=$(jq -r '.config.User' "$d/config.json")
  uid=${user%%:*} gid=${user#*:}
  for m in $mounts; do
    IFS=: read -r src dst mode <<<"$m"
    mounts_json=$(jq -c --arg s "$src" --arg d "$dst" --arg o "$mode" \
      '. + [{destination: $d, type: "bind", source: $s, options: ["rbind", $o, "nosuid", "nodev"]}]' \
      <<<"$mounts_json")
  done
  # The arguments as a JSON array (jq would read "--version" as its own option).
  args_json=$(python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@")
  jq --arg root "$d/rootfs" --argjson uid "$uid" --argjson gid "$gid" --argjson mounts "$mounts_json" \
    --argjson args "$args_json" --slurpfile image "$d/config.json" '
    .root = {path: $root, readonly: true}
    | .process.terminal = false
    | .process.user = {uid: $uid, gid: $gid}
    | .process.args = ($image[0].config.Entrypoint + $args)
    | .process.cwd = ($image[0].config.WorkingDir // "/")
    | .process.env = ($image[0].config.Env // ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    | .process.capabilities = {bounding: [], effective: [], inheritable: [], permitted: [], ambient: []}
    | .process.noNewPrivileges = true
    | .linux.namespaces |= map(select(.type != "network" and .type != "cgroup"))
    | .mounts += $mounts' "$bundle/config.json" >"$bundle/config.next"
  mv "$bundle/config.next" "$bundle/config.json"
  local rc=0
  timeout 120 "${RUNC[@]}" run --bundle "$bundle" "$id" </dev/null >"$prefix.out" 2>"$prefix.err" || rc=$?
  "${RUNC[@]}" delete -f "$id" >/dev/null 2>&1 || true
  return "$rc"
}

# show FILE: indented, for the log.
show() { sed 's/^/     | /' "$1"; }

for name in brotr-probe brotr-operator; do
  echo "== $name $VERSION"
  unpack "$name" >"$WORK/$name.size"
  read -r bytes layers <"$WORK/$name.size"
  d="$WORK/$name" cfg="$WORK/$name/config.json"
  mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')
  archive_mb=$(awk -v b="$(stat -c %s "$OUT/$name-$VERSION.oci.tar")" 'BEGIN { printf "%.1f", b / 1e6 }')
  expect "$name: $mb MB uncompressed ($layers layer, $archive_mb MB archive) <= ${MAX_MB[$name]} MB" \
    test "$bytes" -le $((MAX_MB[$name] * 1000000))

  # Config: what a runtime reads.
  expect "$name: user 65532:65532" test "$(jq -r .config.User "$cfg")" = "65532:65532"
  expect "$name: entrypoint is the binary" \
    test "$(jq -c .config.Entrypoint "$cfg")" = "[\"/usr/local/bin/$name\"]"
  expect "$name: no Cmd" test "$(jq -c '.config.Cmd // []' "$cfg")" = "[]"
  for l in "${LABELS[@]}"; do
    v=$(jq -r --arg k "org.opencontainers.image.$l" '.config.Labels[$k] // ""' "$cfg")
    expect "$name: label org.opencontainers.image.$l=\"$v\"" test -n "$v"
  done
  expect "$name: label version is Cargo's ($VERSION)" \
    test "$(jq -r '.config.Labels["org.opencontainers.image.version"]' "$cfg")" = "$VERSION"
  expect "$name: label title is the binary" \
    test "$(jq -r '.config.Labels["org.opencontainers.image.title"]' "$cfg")" = "$name"
  expect "$name: Env has no secret-looking variable ($(jq -c '.config.Env // []' "$cfg"))" \
    bash -c '! jq -r ".config.Env // [] | .[]" "$1" | grep -qiE "pass|secret|token|key|credential|database_url"' _ "$cfg"

  # Contents: the binary, its libraries, CA bundle, passwd/group; no shell, no setuid files.
  expect "$name: the binary is in the image" test -x "$d/rootfs/usr/local/bin/$name"
  expect "$name: CA bundle present" test -s "$d/rootfs/etc/ssl/certs/ca-certificates.crt"
  expect "$name: passwd names the nonroot user 65532" grep -q '^nonroot:x:65532:65532:' "$d/rootfs/etc/passwd"
  expect "$name: no shell" test ! -e "$d/rootfs/bin/sh" -a ! -e "$d/rootfs/usr/bin/sh"
  expect "$name: no setuid/setgid files" test -z "$(find "$d/rootfs" -perm /6000)"
  echo "     files: $(cd "$d/rootfs" && find . -type f | sed 's|^\.||' | sort | tr '\n' ' ')"

  # The Dockerfile for registry users describes the same image.
  df="${name#brotr-}/Dockerfile"
  expect "$df: build stage rust:1.95-bookworm, --profile dist --locked -p $name" \
    bash -c 'grep -q "^FROM rust:1.95-bookworm AS build" "$1" && grep -q "cargo build --profile dist --locked -p $2" "$1"' _ "$df" "$name"
  expect "$df: runtime gcr.io/distroless/cc-debian12:nonroot" \
    grep -q '^FROM gcr.io/distroless/cc-debian12:nonroot$' "$df"
  expect "$df: USER 65532:65532" grep -q '^USER 65532:65532$' "$df"
  expect "$df: same entrypoint" grep -qF "ENTRYPOINT [\"/usr/local/bin/$name\"]" "$df"
  expect "$df: same working dir ($(jq -r '.config.WorkingDir // "/"' "$cfg"))" \
    grep -qx "WORKDIR $(jq -r '.config.WorkingDir // "/"' "$cfg")" "$df"
  expect "$df: ARG VERSION defaults to Cargo's ($VERSION)" grep -qx "ARG VERSION=$VERSION" "$df"
  for l in "${LABELS[@]}"; do
    expect "$df: label org.opencontainers.image.$l" grep -q "org.opencontainers.image.$l=" "$df"
  done
  for l in title description source licenses; do
    v=$(jq -r --arg k "org.opencontainers.image.$l" '.config.Labels[$k]' "$cfg")
    expect "$df: label $l matches the built image" grep -qF "org.opencontainers.image.$l=\"$v\"" "$df"
  done

  # The binary itself, as uid 65532 on a read-only root.
  if run "$name" "$WORK/$name-version" "" --version; then
    expect "$name --version in the container says '$name $VERSION'" \
      test "$(cat "$WORK/$name-version.out")" = "$name $VERSION"
  else
    fail "$name --version in the container exited non-zero"; show "$WORK/$name-version.err"
  fi
done

echo "== brotr-operator crd in the container"
if run brotr-operator "$WORK/crd" "" crd; then
  expect "brotr-operator crd prints the BrotrDeployment and RelayMonitor CRDs" \
    test "$(grep -cE '^  name: (brotrdeployments|relaymonitors)\.brotr\.dev$' "$WORK/crd.out")" = 2
else
  fail "brotr-operator crd exited non-zero"; show "$WORK/crd.err"
fi

echo "== brotr-probe migrate: the root is read-only, the mounted data volume is not"
if run brotr-probe "$WORK/migrate-ro" "" migrate; then
  fail "brotr-probe migrate with nothing mounted succeeded (the root filesystem is not read-only?)"
else
  # The data dir belongs to 65532, so only the read-only root can refuse the file.
  expect "brotr-probe migrate with nothing mounted fails: $(grep -m1 -oiE 'read-only file system|unable to open database file' "$WORK/migrate-ro.err" || echo '?')" \
    grep -qiE 'read-only file system|unable to open database file' "$WORK/migrate-ro.err"
fi
DATA="$WORK/data"
install -d -m 0700 -o 65532 -g 65532 "$DATA"
WORKDIR=$(jq -r .config.WorkingDir "$WORK/brotr-probe/config.json")
if run brotr-probe "$WORK/migrate" "$DATA:$WORKDIR:rw" migrate; then
  expect "brotr-probe migrate writes ./brotr.db into the volume at $WORKDIR, owned by 65532" \
    test "$(stat -c %u:%g "$DATA/brotr.db" 2>/dev/null)" = "65532:65532"
else
  fail "brotr-probe migrate with $WORKDIR mounted exited non-zero"; show "$WORK/migrate.err"
fi

echo "== brotr-probe check against a real nostr-rs-relay on the host's loopback"
mkdir -p "$WORK/relay"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RELAY_NAME="brotr images-test relay"
cat >"$WORK/relay/config.toml" <<EOF
[info]
relay_url = "ws://127.0.0.1:$PORT/"
name = "$RELAY_NAME"
description = "started by e2e/images-test.sh"

[database]
engine = "sqlite"
data_directory = "$WORK/relay"

[network]
address = "127.0.0.1"
port = $PORT
EOF
(cd "$WORK/relay" && exec env RUST_LOG=warn "$BROTR_NOSTR_RS_RELAY" --config config.toml >relay.log 2>&1) &
RELAY_PID=$!
for _ in $(seq 100); do
  curl -sf -H 'Accept: application/nostr+json' "http://127.0.0.1:$PORT/" >/dev/null && break
  kill -0 "$RELAY_PID" 2>/dev/null || { show "$WORK/relay/relay.log"; echo "nostr-rs-relay exited" >&2; exit 1; }
  sleep 0.2
done
curl -sf -H 'Accept: application/nostr+json' "http://127.0.0.1:$PORT/" >/dev/null ||
  { show "$WORK/relay/relay.log"; echo "nostr-rs-relay did not answer on port $PORT" >&2; exit 1; }

# Mounted the way the operator's pods mount them: config file and GeoIP databases read-only.
GEOIP=/var/lib/brotr/geoip
cat >"$WORK/probe.yaml" <<EOF
monitor:
  geoip:
    cityDb: $GEOIP/GeoLite2-City.mmdb
    asnDb: $GEOIP/GeoLite2-ASN.mmdb
EOF
chmod 0644 "$WORK/probe.yaml"
MOUNTS="$WORK/probe.yaml:/etc/brotr/config/probe.yaml:ro"
MOUNTS+=" $BROTR_GEOIP_TEST_DIR/GeoLite2-City-Test.mmdb:$GEOIP/GeoLite2-City.mmdb:ro"
MOUNTS+=" $BROTR_GEOIP_TEST_DIR/GeoLite2-ASN-Test.mmdb:$GEOIP/GeoLite2-ASN.mmdb:ro"
rc=0
run brotr-probe "$WORK/check" "$MOUNTS" check "ws://127.0.0.1:$PORT" --allow-private \
  --config /etc/brotr/config/probe.yaml || rc=$?
show "$WORK/check.out"
expect "brotr-probe check exits 0 (relay reachable)" test "$rc" = 0
expect "the report says the relay is reachable" \
  grep -qx "ws://127.0.0.1:$PORT (clearnet) — reachable" "$WORK/check.out"
expect "NIP-11 document fetched from the relay" \
  bash -c 'grep -qE "^  nip11 +ok" "$1" && grep -qF "name: $2" "$1"' _ "$WORK/check.out" "$RELAY_NAME"
expect "round trip (open, read, write) ok" grep -qE '^  rtt +ok' "$WORK/check.out"
# The test databases hold no loopback record: a lookup miss, not "database unavailable", shows
# that the mounted files were opened.
expect "the mounted GeoIP databases were read (no 'database unavailable')" \
  bash -c '! grep -q "database unavailable" "$1" "$2" && grep -qE "^  geo .*no GeoIP record" "$1"' \
  _ "$WORK/check.out" "$WORK/check.err"
[ "$rc" = 0 ] || show "$WORK/check.err"

checks_summary

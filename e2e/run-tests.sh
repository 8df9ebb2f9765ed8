#!/usr/bin/env bash
# Runs every test: format and lint gates, `cargo test --workspace -- --include-ignored`, the
# Kubernetes control-plane smoke test and CRD validation on a real API server, the chart, alert,
# GitOps and container-image tests, the runc kubelet and the whole system with its failure
# drills (e2e/*-test.sh). cargo test runs the unit tests, and every test that needs a real server
# or tool (PostgreSQL, the control plane, the external relays and verifiers, MaxMind's test
# databases, the real-world relay list). Those are `#[ignore]`d by a plain `cargo test`; here they
# run, and a missing server or tool fails them.
#
# Installs what it needs on a fresh machine (Debian packages in one apt transaction, e2e/deps.sh;
# the control plane built from the Go module proxy; the external peers by e2e/tools.sh; all cached
# under $HOME/.cache/brotr). Two cores, so the order is planned (see README, "Running the tests"):
#   - the network-bound installs and the Go build run in the background while the workspace
#     compiles;
#   - the workspace is compiled once for lints and tests: the test build runs with clippy as the
#     workspace's compiler wrapper (what `cargo clippy` does, but emitting the binaries), so
#     clippy's lints fail the build as `cargo clippy -- -D warnings` would, and no separate check
#     build of every crate is needed;
#   - the images the e2e tests run are made from that same build's binaries (stripped; no dist
#     build here: `bash e2e/images.sh` makes the dist images that ship, and images-test.sh checks
#     either);
#   - the runc tests (images, kubelet, the whole system) run in the background beside cargo test,
#     and the light e2e tests (own control planes, mostly waiting) after cargo test.
# Ends with a table of every section's wall time.
set -euo pipefail
cd "$(dirname "$0")/.."

# One shared build cache outside the repo, so a fresh clone (CI) reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"
export CARGO_TERM_COLOR=never
bash e2e/prune-target.sh

source e2e/pg.sh
source e2e/sections.sh
K8S_DIR=""
kill_tree() { local c; for c in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$c"; done; kill "$1" 2>/dev/null || true; }
cleanup() {
  local rc=$? pid
  for pid in "${SECTIONS_PID[@]}"; do kill_tree "$pid"; done
  pg_stop
  if [ -n "$K8S_DIR" ]; then bash e2e/control-plane.sh stop "$K8S_DIR" >/dev/null 2>&1 || true; rm -rf "$K8S_DIR"; fi
  sections_table "$rc"
}
trap cleanup EXIT

# Every external peer and tool the tests use (e2e/tools.sh).
TEST_TOOLS=nostr-rs-relay,nostr-tools,go-nostr,go-client,neg-relay,geoip-test,py-relay,ts-relay,helm,openapi-check,web

# --- background: what waits on the network, and the Go build ---------------------------------
section_bg "Debian packages (one apt transaction) + external test peers" \
  env BROTR_TOOLS="$TEST_TOOLS" bash -c 'bash e2e/deps.sh && bash e2e/tools.sh >/dev/null'
section_bg "control plane: build (Go; cached after)" bash e2e/control-plane.sh build

section "PostgreSQL (start)" pg_start fsync=off
section "PgBouncer (start, transaction mode)" pgbouncer_start

# The real-world relay list is third-party data kept beside the project, never in it.
CORPUS="$(cd .. && pwd)/shared/data/seed_relays_bigbrotr.txt"
SKIP=()
if [ -f "$CORPUS" ]; then
  export BROTR_RELAY_CORPUS="$CORPUS"
else
  echo "!! relay corpus not found at ../shared/data: real_world_corpus is reported as ignored, NOT run"
  SKIP=(--skip real_world_corpus)
fi

# --- the workspace, compiled once ---------------------------------------------------------------
section "cargo fmt --check" cargo fmt --all -- --check
section "cargo fetch" cargo fetch --locked
# clippy-driver as the workspace's rustc wrapper, with `-D warnings`: the lints of
# `cargo clippy --workspace --all-targets -- -D warnings`, on the build the tests run.
CLIPPY_DRIVER=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver || true)
[ -x "$CLIPPY_DRIVER" ] || { echo "!! clippy-driver not found (rustup component add clippy)" >&2; exit 1; }
export RUSTC_WORKSPACE_WRAPPER="$CLIPPY_DRIVER" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# First the two binaries (and two test targets: `cargo test` resolves features as the whole test
# build does, so nothing compiles twice), so that the runc tests, which need only the binaries,
# can start while the other test targets compile.
section "cargo build: the binaries, with clippy's lints (-D warnings)" \
  cargo test --workspace --locked --no-run --test cli --test render
# The e2e scripts drive the binaries this build made (no second build with other features).
export BROTR_PROBE_BIN="$CARGO_TARGET_DIR/debug/brotr-probe"
export BROTR_OPERATOR_BIN="$CARGO_TARGET_DIR/debug/brotr-operator"

# The runc tests, one after another (they share the host's ports 9090 and 9050), in the
# background beside the rest of the build and cargo test: they mostly wait on pods, cycles and
# drills. They need the images, the control plane and the tools.
runc_e2e() {
  # A subshell: its table rows go back to the parent through $RUNC_ROWS, one per script.
  SECTIONS=()
  row() { local rc=0; section "$@" || rc=$?; printf '%s\n' "${SECTIONS[-1]}" >>"$RUNC_ROWS"; return "$rc"; }
  row "images: checks, run under runc" bash e2e/images-test.sh
  row "runc kubelet test" env BROTR_KUBELET_REUSE_IMAGES=1 bash e2e/kubelet-test.sh
  row "whole system + failure drills" env BROTR_SYSTEM_REUSE_IMAGES=1 bash e2e/system-test.sh
}
RUNC_ROWS=$(mktemp /tmp/brotr-runc-rows.XXXXXX)
RUNC_GROUP="runc tests: images, kubelet, whole system (in the background)"
DEPS="Debian packages (one apt transaction) + external test peers"
CP_BUILD="control plane: build (Go; cached after)"
RUNC_STARTED=""
start_runc() {
  section_wait "$DEPS"
  # Its exports (BROTR_NOSTR_RS_RELAY, …) for this shell: everything is installed, so this is quick.
  source e2e/tools.sh
  BROTR_TOOLS=$TEST_TOOLS section "external test peers (exports)" tools_install
  # The images from the binaries just built: buildah only, seconds; reused when they did not change.
  export BROTR_IMAGES_DIR="$HOME/.cache/brotr/test-images"
  section "images: the test build's binaries, stripped (buildah)" \
    env BROTR_IMAGE_PROFILE=debug bash e2e/images.sh
  section_wait "$CP_BUILD"
  section_bg "$RUNC_GROUP" runc_e2e
  RUNC_STARTED=1
}
# Warm, the installs and the control plane are done by now: start the runc tests at once. Cold,
# they are still running: the rest of the build goes first.
if section_done "$DEPS" && section_done "$CP_BUILD"; then start_runc; fi

section "cargo build: every other target, with clippy's lints (-D warnings)" \
  cargo test --workspace --all-targets --locked --no-run
[ -n "$RUNC_STARTED" ] || start_runc

section "control plane smoke test" bash e2e/k8s-smoke.sh
section "CRD validation on the API server" bash e2e/crd-validation.sh
K8S_DIR=$(mktemp -d /tmp/brotr-k8s-tests.XXXXXX)
section "control plane for the Rust tests" bash e2e/control-plane.sh start "$K8S_DIR" >/dev/null
# KUBECONFIG (admin) and BROTR_K8S_OPERATOR_KUBECONFIG (the operator's least-privilege user).
source "$K8S_DIR/env"

# Not --all-targets: the benches (harness = false) would run whole benchmarks. They were built and
# linted above; the targets run here are a subset of that build, so nothing compiles again.
section "cargo test (ignored included)" \
  cargo test --workspace --locked -- --include-ignored "${SKIP[@]}"
bash e2e/control-plane.sh stop "$K8S_DIR" >/dev/null 2>&1 || true
rm -rf "$K8S_DIR"
K8S_DIR=""
unset KUBECONFIG
# The archive benchmark at 100,000 events, as a smoke: it runs end to end and prints its
# figures (BENCHMARKS.md has the full runs); no time is asserted. Built above with the tests.
section "archive benchmark smoke (100,000 events; figures only)" \
  env -u BROTR_NOSTR_RS_RELAY BROTR_BENCH_PG_URL="$BROTR_TEST_PG_URL" BROTR_BENCH_EVENTS=100000 \
  BROTR_BENCH_SMOKE=1 cargo test --workspace --locked --bench archive

# --- the light e2e scripts, while the runc ones finish --------------------------------------------
# Each starts its own throwaway control plane; no runc, no fixed host ports.
light_rc=0
section "Prometheus Operator CRDs accept and reject" bash e2e/monitoring-crds.sh verify || light_rc=$?
section "fleet drill: 200 monitors, max_connections 50, with and without PgBouncer" bash e2e/fleet-pooler-test.sh || light_rc=$?
section "Helm chart (lint, schema, install/upgrade/uninstall)" bash e2e/chart-test.sh || light_rc=$?
section "alert rules, dashboard, metric names" bash e2e/alerts-test.sh || light_rc=$?
section "GitOps: examples, Argo CD health, kstatus" bash e2e/gitops-test.sh || light_rc=$?

runc_rc=0
section_wait "$RUNC_GROUP" || runc_rc=$?
# Each runc script's own time, in the table too.
while IFS= read -r row; do SECTIONS+=("  $row"); done <"$RUNC_ROWS"
rm -f "$RUNC_ROWS"
[ "$light_rc" = 0 ] || exit "$light_rc"
exit "$runc_rc"

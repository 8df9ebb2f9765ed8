#!/usr/bin/env bash
# Runs every test: the Kubernetes control-plane smoke test and CRD validation on a real API
# server, format and lint gates, unit tests, the store suite on SQLite and on a real throwaway
# PostgreSQL cluster, relay, transport, finder and CLI tests, and tests against external peers
# (nostr-rs-relay, nak, nostr-tools, go-nostr, neg-relay). Installs what it needs on a fresh
# machine (PostgreSQL via apt; the control plane built from the Go module proxy; the external
# peers by e2e/tools.sh; all cached under $HOME/.cache/brotr).
set -euo pipefail
cd "$(dirname "$0")/.."

# One shared build cache outside the repo, so a fresh clone (CI) reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"
export CARGO_TERM_COLOR=never

source e2e/pg.sh
K8S_DIR=""
cleanup() {
  pg_stop
  if [ -n "$K8S_DIR" ]; then bash e2e/control-plane.sh stop "$K8S_DIR" >/dev/null 2>&1 || true; rm -rf "$K8S_DIR"; fi
}
trap cleanup EXIT
pg_start fsync=off
export BROTR_REQUIRE_POSTGRES=1

echo "== Kubernetes control plane smoke test (builds it from the Go module proxy when not cached)"
bash e2e/k8s-smoke.sh
echo "== CRDs: generated YAML applied to the real API server; every example accepted or rejected as expected"
bash e2e/crd-validation.sh

echo "== external test peers (e2e/tools.sh; built once, then cached)"
# nak is tried but optional: the Go module proxy here refuses github.com/fiatjaf/nak (403), so
# its tests skip with a note (e2e/go-verify, on go-nostr, cross-checks events meanwhile, and
# e2e/neg-relay, on go-nostr's negentropy, is the independent NIP-77 peer). When it is served, drop it from BROTR_TOOLS_OPTIONAL and set
# BROTR_REQUIRE_TOOLS=1.
export BROTR_TOOLS_OPTIONAL=nak
source e2e/tools.sh
tools_install
export BROTR_REQUIRE_TOOLS=nostr-rs-relay,nostr-tools,go-nostr,neg-relay,geoip-test

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== Kubernetes control plane for the Rust tests (operator/tests/cluster.rs)"
K8S_DIR=$(mktemp -d /tmp/brotr-k8s-tests.XXXXXX)
bash e2e/control-plane.sh start "$K8S_DIR" >/dev/null
export KUBECONFIG="$K8S_DIR/kubeconfig" BROTR_REQUIRE_K8S=1

echo "== cargo test"
cargo test --workspace --locked

#!/usr/bin/env bash
# Regenerates every file generated from the Rust types: the CRDs (crds/ and the chart's copy),
# the least-privilege RBAC (deploy/rbac/) and the rule list the chart embeds. Tests fail when
# any of them is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"
cargo build --quiet --locked -p brotr-operator --bin brotr-operator
op="$CARGO_TARGET_DIR/debug/brotr-operator"
"$op" crd --out-dir crds
mkdir -p charts/brotr-operator/crds charts/brotr-operator/files
cp crds/brotr.dev_*.yaml charts/brotr-operator/crds/
"$op" rbac --out-dir deploy/rbac
"$op" rbac --chart-rules > charts/brotr-operator/files/rbac-rules.yaml
git status --short crds charts/brotr-operator/crds charts/brotr-operator/files/rbac-rules.yaml deploy/rbac

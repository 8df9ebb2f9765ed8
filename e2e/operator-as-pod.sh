#!/usr/bin/env bash
# Runs the brotr-operator binary the way the Helm release's pod would run it, for a control
# plane whose pods are simulated (kwok runs no containers): the args and POD_* environment of
# the release's Deployment, read from the API server, under a token of its ServiceAccount (so
# with exactly the chart's RBAC). Replaces itself with the operator (exec): stop it with SIGTERM.
#
#   bash e2e/operator-as-pod.sh NAMESPACE RELEASE
#
# KUBECONFIG: an admin kubeconfig (to read the Deployment and request the token).
# BROTR_OPERATOR_BIN: the binary (default: the debug build in the shared target dir).
set -euo pipefail
NS=${1:?usage: operator-as-pod.sh NAMESPACE RELEASE}
RELEASE=${2:?usage: operator-as-pod.sh NAMESPACE RELEASE}
BIN=${BROTR_OPERATOR_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}/debug/brotr-operator}
[ -x "$BIN" ] || { echo "operator-as-pod: no $BIN (cargo build -p brotr-operator)" >&2; exit 1; }
deploy=$(kubectl -n "$NS" get deployment -l app.kubernetes.io/instance="$RELEASE" -o name)
[ -n "$deploy" ] || { echo "operator-as-pod: no Deployment of release $RELEASE in $NS" >&2; exit 1; }
json=$(kubectl -n "$NS" get "$deploy" -o json)
sa=$(jq -r '.spec.template.spec.serviceAccountName' <<<"$json")
mapfile -t args < <(jq -r '.spec.template.spec.containers[0].args[]' <<<"$json")
kc=$(mktemp "${TMPDIR:-/tmp}/brotr-operator-$RELEASE.XXXXXX")
token=$(kubectl -n "$NS" create token "$sa" --duration=2h)
kubectl config view --raw --minify -o json |
  jq --arg t "$token" '.users = [{name: "sa", user: {token: $t}}] | .contexts[0].context.user = "sa"' >"$kc"
echo "operator-as-pod: $BIN ${args[*]} (as system:serviceaccount:$NS:$sa)" >&2
KUBECONFIG="$kc" POD_NAMESPACE="$NS" POD_NAME="${deploy#*/}-local" exec "$BIN" "${args[@]}"

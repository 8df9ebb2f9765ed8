#!/usr/bin/env bash
# The real Prometheus Operator CRDs (monitoring.coreos.com: ServiceMonitor, PodMonitor,
# PrometheusRule, ...) for tests, generated offline from the published Go types.
#
#   source e2e/monitoring-crds.sh; dir=$(monitoring_crds)   → builds (or reuses) the CRDs and
#                                                            prints their directory
#   bash e2e/monitoring-crds.sh                              → same
#   bash e2e/monitoring-crds.sh verify                       → same, then checks them on a throwaway
#                                                            control plane (last line "N passed,
#                                                            M failed"; non-zero exit on failure)
#
# The module proxy serves the API module github.com/prometheus-operator/prometheus-operator/
# pkg/apis/monitoring (not the operator's root module, so not its generated YAML). Upstream's
# `make generate-crds` runs controller-gen on those very types; this does the same:
#   controller-gen crd:crdVersions=v1 paths=./v1/. paths=./v1alpha1/. (upstream's default bundle:
#   descriptions kept, hence `kubectl apply --server-side`, the annotations would be too long for
#   client-side apply), then adds the `operator.prometheus.io/version` annotation after
#   controller-gen's own, as upstream's scripts/generate/append-operator-version.sh does.
# The directory holds monitoring.coreos.com_<plural>.yaml, one CRD per file (servicemonitors,
# podmonitors, prometheusrules, probes, prometheuses, alertmanagers, thanosrulers,
# alertmanagerconfigs, prometheusagents, scrapeconfigs) and a BUILD-INFO file.
#
# Environment:
#   BROTR_MONITORING_CRDS_CACHE    cache root      (default $HOME/.cache/brotr/monitoring-crds)
#   BROTR_GO_CACHE                 GOMODCACHE/GOCACHE (default $HOME/.cache/brotr/go, shared with
#                                  e2e/control-plane.sh)
#   BROTR_PROMETHEUS_OPERATOR_VERSION  API module version (default v0.95.2)
#   BROTR_CONTROLLER_GEN_VERSION   controller-tools version (default v0.23.0)
#   BROTR_KEEP=1                   verify: keep the cluster dir and logs even on success

MONITORING_CRDS_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

# monitoring_crds: prints the CRD directory. The body runs in a subshell so that sourcing this
# file changes neither the caller's shell options nor its environment.
monitoring_crds() (
  set -euo pipefail
  local mod=github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring
  local mv=${BROTR_PROMETHEUS_OPERATOR_VERSION:-v0.95.2}
  local cgv=${BROTR_CONTROLLER_GEN_VERSION:-v0.23.0}
  local root=${BROTR_MONITORING_CRDS_CACHE:-$HOME/.cache/brotr/monitoring-crds}
  local go_root=${BROTR_GO_CACHE:-$HOME/.cache/brotr/go}
  # Upstream's options and packages; their hash is part of the cache key, so editing them
  # regenerates instead of reusing an old directory.
  local opts="crd:crdVersions=v1" paths=(paths=./v1/. paths=./v1alpha1/.)
  local key out log
  key="$mv-controller-gen-$cgv-$(printf '%s ' "$opts" "${paths[@]}" | sha256sum | cut -c1-8)"
  out="$root/$key"
  log="$root/build-$key.log"

  say() { echo "monitoring-crds: $*" >&2; }
  die() {
    echo "monitoring-crds: ERROR: $*" >&2
    [ -s "$log" ] && { echo "--- last lines of $log:" >&2; tail -n 25 "$log" >&2; }
    exit 1
  }
  required=(servicemonitors podmonitors prometheusrules)
  complete() { # complete DIR: a finished build (stamp written last) with the files tests need
    local p
    [ -s "$1/BUILD-INFO" ] || return 1
    for p in "${required[@]}"; do [ -s "$1/monitoring.coreos.com_$p.yaml" ] || return 1; done
  }

  if complete "$out"; then echo "$out"; return 0; fi

  command -v go >/dev/null 2>&1 || die "no go toolchain on PATH (needed to build controller-gen)"
  command -v flock >/dev/null 2>&1 || die "flock not found (Debian package util-linux)"
  mkdir -p "$root/bin"
  # One builder at a time per key (other engineers and CI may run this concurrently).
  exec 9>"$root/.lock-$key"
  flock 9
  if complete "$out"; then echo "$out"; return 0; fi

  : >"$log"
  export GOMODCACHE="$go_root/mod" GOCACHE="$go_root/build"
  export GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0
  export GOFLAGS="-modcacherw -buildvcs=false"
  mkdir -p "$GOMODCACHE" "$GOCACHE"
  local t0=$SECONDS

  # 1. controller-gen, installed once per version into the cache's bin dir.
  local cg="$root/bin/controller-gen-$cgv"
  if [ ! -x "$cg" ]; then
    say "building controller-gen $cgv (log: $log)"
    rm -rf "$root/bin/.tmp" && mkdir -p "$root/bin/.tmp"
    (cd "$root/bin" && GOBIN="$root/bin/.tmp" go install -trimpath -ldflags "-s -w" \
      "sigs.k8s.io/controller-tools/cmd/controller-gen@$cgv") >>"$log" 2>&1 ||
      die "go install controller-gen@$cgv failed"
    mv -f "$root/bin/.tmp/controller-gen" "$cg" && rmdir "$root/bin/.tmp"
  fi
  "$cg" --version >>"$log" 2>&1 || die "$cg --version failed"

  # 2. The API module (pinned), copied out of the read-only module cache: controller-gen loads
  #    the packages with `go list` from inside the module, which must be writable.
  local json src
  # On failure `go mod download -json` puts its error in the JSON on stdout: log it too.
  json=$(cd "$root" && go mod download -json "$mod@$mv" 2>>"$log") ||
    { echo "$json" >>"$log"; die "go mod download $mod@$mv failed"; }
  src=$(echo "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [ -n "$src" ] && [ -f "$src/go.mod" ] || die "no module directory for $mod@$mv in: $json"
  local work="$root/src/$key"
  rm -rf "$work" && mkdir -p "$work" && cp -R "$src/." "$work/" && chmod -R u+w "$work" ||
    die "copying $src failed"
  # Its own go.sum pins every dependency; download them before controller-gen's package loader.
  (cd "$work" && go mod download) >>"$log" 2>&1 ||
    die "go mod download (dependencies of $mod@$mv) failed"

  # 3. Generate into a temp dir, renamed into place only when complete.
  local tmp="$root/.tmp-$key"
  rm -rf "$tmp" && mkdir -p "$tmp"
  say "generating CRDs from $mod@$mv with controller-gen $cgv"
  (cd "$work" && echo "+ controller-gen $opts ${paths[*]} output:crd:dir=$tmp" &&
    "$cg" "$opts" "${paths[@]}" "output:crd:dir=$tmp") >>"$log" 2>&1 ||
    die "controller-gen failed"
  # Upstream's annotation: the operator version without the leading v, after controller-gen's.
  local f n=0
  for f in "$tmp"/*.yaml; do
    [ -e "$f" ] || die "controller-gen wrote no YAML"
    sed -i "/^    controller-gen.kubebuilder.io\/version: .*/a\\    operator.prometheus.io/version: ${mv#v}" "$f"
    grep -q "^    operator.prometheus.io/version: ${mv#v}\$" "$f" ||
      die "could not add operator.prometheus.io/version to $(basename "$f")"
    n=$((n + 1))
  done
  local p
  for p in "${required[@]}"; do
    f="$tmp/monitoring.coreos.com_$p.yaml"
    [ -s "$f" ] || die "controller-gen did not write $(basename "$f") (got: $(ls "$tmp" | tr '\n' ' '))"
    grep -q '^kind: CustomResourceDefinition$' "$f" || die "$(basename "$f") is not a CRD"
  done
  {
    echo "module: $mod@$mv"
    echo "generator: sigs.k8s.io/controller-tools/cmd/controller-gen@$cgv"
    echo "command: controller-gen $opts ${paths[*]} output:crd:dir=."
    echo "go: $(go env GOVERSION)"
    echo "crds: $n"
  } >"$tmp/BUILD-INFO"
  rm -rf "$out" && mv "$tmp" "$out"
  rm -rf "$work"
  rmdir "$root/src" 2>/dev/null || true
  say "$n CRDs in $out ($((SECONDS - t0)) s)"
  echo "$out"
)

# monitoring_crds_verify: builds (or reuses) the CRDs, then on a throwaway control plane
# (e2e/control-plane.sh): server-side apply them all, wait for Established, and server-side
# dry-run each e2e/monitoring-crds/valid/*.yaml (must be accepted) and invalid/*.yaml (must be
# rejected with the text of its `# expect:` line in the error).
monitoring_crds_verify() (
  set -euo pipefail
  local cp="$MONITORING_CRDS_HERE/control-plane.sh" cases="$MONITORING_CRDS_HERE/monitoring-crds"
  local ns=brotr-monitoring-crds passed=0 failed=0 dir crds kubectl t0=$SECONDS
  say() { echo "monitoring-crds: $*" >&2; }
  pass() { passed=$((passed + 1)); echo "ok    $*"; }
  fail() { failed=$((failed + 1)); echo "FAIL  $*"; }

  crds=$(monitoring_crds) || { echo "monitoring-crds: ERROR: building the CRDs failed" >&2; exit 1; }
  pass "built $(grep '^crds:' "$crds/BUILD-INFO" | cut -d' ' -f2) CRDs in $crds"
  local f
  for f in servicemonitors podmonitors prometheusrules; do
    if grep -q '^    operator.prometheus.io/version: ' "$crds/monitoring.coreos.com_$f.yaml"; then
      pass "$f CRD has the operator.prometheus.io/version annotation"
    else
      fail "$f CRD lacks the operator.prometheus.io/version annotation"
    fi
  done

  bash "$cp" build >/dev/null
  kubectl=$(bash "$cp" kubectl)
  dir=$(mktemp -d /tmp/brotr-monitoring-crds.XXXXXX)
  # shellcheck disable=SC2317  # run by the EXIT trap
  cleanup() {
    local rc=$?
    bash "$cp" stop "$dir" >/dev/null 2>&1 || true
    if [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] && [ "${BROTR_KEEP:-0}" != 1 ]; then
      rm -rf "$dir"
    else
      say "cluster files and logs kept in $dir"
    fi
    exit "$rc"
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  bash "$cp" start "$dir" >/dev/null
  # shellcheck disable=SC1091
  source "$dir/env"
  k() { "$kubectl" "$@"; }

  local out name
  if out=$(k apply --server-side --field-manager=brotr-e2e -f "$crds/" 2>&1); then
    pass "server-side apply of $(echo "$out" | wc -l) CRDs"
  else
    fail "server-side apply of the CRDs: $out"
    echo "$passed passed, $failed failed"; exit 1
  fi
  for f in "$crds"/*.yaml; do
    name=$(sed -n 's/^  name: //p' "$f" | head -n1)
    if out=$(k wait --for=condition=Established "crd/$name" --timeout=60s 2>&1); then
      pass "established $name"
    else
      fail "established $name: $out"
    fi
  done
  k create namespace "$ns" >/dev/null

  local expect
  for f in "$cases"/valid/*.yaml; do
    if out=$(k apply --server-side --dry-run=server --field-manager=brotr-e2e -n "$ns" -f "$f" 2>&1); then
      pass "accepted valid/$(basename "$f"): $out"
    else
      fail "valid/$(basename "$f") was rejected: $out"
    fi
  done
  for f in "$cases"/invalid/*.yaml; do
    expect=$(sed -n 's/^# expect: *//p' "$f" | head -n1)
    [ -n "$expect" ] || { fail "invalid/$(basename "$f") has no '# expect:' line"; continue; }
    if out=$(k apply --server-side --dry-run=server --field-manager=brotr-e2e -n "$ns" -f "$f" 2>&1); then
      fail "invalid/$(basename "$f") was accepted: $out"
    elif grep -qF -- "$expect" <<<"$out"; then
      pass "rejected invalid/$(basename "$f"): $(grep -F -- "$expect" <<<"$out" | head -n1 | cut -c1-220)"
    else
      fail "invalid/$(basename "$f") rejected without '$expect': $out"
    fi
  done
  say "verify took $((SECONDS - t0)) s"
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
)

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    "") monitoring_crds ;;
    verify) monitoring_crds_verify ;;
    *) echo "usage: $0 [verify]" >&2; exit 2 ;;
  esac
fi

#!/usr/bin/env bash
# Installs, in one apt transaction, every Debian package the test command needs that is not
# installed yet (the scripts also install what they need one by one, so each still runs alone).
# One `apt-get update` instead of one per script, and it can run in the background while the
# workspace compiles. A refused or failed install stops here, naming the packages.
#
#   bash e2e/deps.sh            install what is missing
#   bash e2e/deps.sh --list     print the list
set -euo pipefail
PACKAGES=(
  postgresql postgresql-client pgbouncer   # e2e/pg.sh
  buildah runc util-linux ca-certificates   # e2e/images.sh, e2e/images-test.sh, kubelet, system
  protobuf-compiler pkg-config libssl-dev   # nostr-rs-relay's build (e2e/tools.sh)
  python3-pip python3-venv python3-yaml     # geoip-test, py-relay, the YAML-reading tests
  make g++                         # better-sqlite3 for ts-relay (e2e/tools.sh)
  prometheus                       # promtool (e2e/alerts-test.sh)
  lua5.1 lua5.4                    # Argo CD health scripts (e2e/gitops-test.sh)
  chromium                         # the web page's browser test (e2e/web, probe/tests/web.rs)
  jq curl
)
if [ "${1:-}" = --list ]; then printf '%s\n' "${PACKAGES[@]}"; exit 0; fi
source "$(dirname "$0")/tools.sh"
start=$(date +%s)
tools_apt "${PACKAGES[@]}" || { echo "deps: ERROR: installing Debian packages failed (see above)" >&2; exit 1; }
echo "deps: Debian packages ready in $(($(date +%s) - start)) s"

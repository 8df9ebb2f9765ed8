#!/usr/bin/env bash
# Keeps the shared build cache from filling the disk: every edit leaves a new test binary and
# incremental directory beside the old ones (tens of GB after a day of work). When less than
# BROTR_MIN_FREE_GB (default 20) is free, deletes all but the newest artifact of each workspace
# crate and target, and all but the newest incremental directory of each. Cargo rebuilds
# anything it still needs.
set -euo pipefail
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/brotr/target}"
MIN_FREE_GB=${BROTR_MIN_FREE_GB:-20}
[ -d "$TARGET" ] || exit 0
free_gb=$(df -P -BG "$TARGET" | awk 'NR == 2 {sub("G", "", $4); print $4}')
[ "$free_gb" -lt "$MIN_FREE_GB" ] || exit 0
echo "prune-target: ${free_gb} GB free (< ${MIN_FREE_GB}); pruning stale artifacts in $TARGET"
python3 - "$TARGET" <<'PY'
import collections, os, re, shutil, sys
freed = 0
for profile in ("debug", "release"):
    deps = os.path.join(sys.argv[1], profile, "deps")
    if os.path.isdir(deps):
        groups = collections.defaultdict(list)
        for f in os.listdir(deps):
            m = re.match(r"^(.*)-([0-9a-f]{16})(\..*)?$", f)
            if m:
                groups[(m.group(1), m.group(3) or "")].append(f)
        for (name, ext), files in groups.items():
            # Third-party libraries legitimately exist in several feature sets: keep them.
            if ext in (".rlib", ".rmeta", ".so", ".d") and not name.removeprefix("lib").startswith("brotr"):
                continue
            files.sort(key=lambda f: os.stat(os.path.join(deps, f)).st_mtime)
            for f in files[:-1]:
                p = os.path.join(deps, f)
                freed += os.stat(p).st_size
                os.remove(p)
    inc = os.path.join(sys.argv[1], profile, "incremental")
    if os.path.isdir(inc):
        groups = collections.defaultdict(list)
        for d in os.listdir(inc):
            groups[d.rsplit("-", 1)[0]].append(d)
        for dirs in groups.values():
            dirs.sort(key=lambda d: os.stat(os.path.join(inc, d)).st_mtime)
            for d in dirs[:-1]:
                shutil.rmtree(os.path.join(inc, d), ignore_errors=True)
print(f"prune-target: removed {freed / 1e9:.1f} GB of stale binaries (and old incremental state)")
PY

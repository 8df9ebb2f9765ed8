#!/usr/bin/env bash
# Re-captures the Argo CD health testdata (deploy/argocd/<group>/<Kind>/testdata/*.yaml and
# health_test.yaml) from live objects: e2e/gitops-test.sh drives them through each state with
# brotr-operator on the test control plane, and writes each state's object (kubectl get, with
# managedFields removed) and the health its script gives instead of comparing with the old
# capture. The expected kstatus and Argo CD status of each state are asserted as in a test run;
# review `git diff deploy/argocd` before committing. Then regenerates argocd-cm.yaml.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ARGO="$HERE/../deploy/argocd"
# A state that is no longer produced must not linger: start from empty testdata.
for d in "$ARGO"/*/*/; do
  [ -f "$d/health.lua" ] || continue
  rm -f "$d"/testdata/*.yaml "$d/health_test.yaml"
done
BROTR_GITOPS_CAPTURE=1 exec bash "$HERE/gitops-test.sh" "$@"

#!/usr/bin/env bash
# Offline checks of the deployment files. openshift/: yamllint, kubernetes-validate --strict,
# the Route CRD schema, the properties the deployment relies on, and for openshift/monitoring/
# promtool check rules, promtool test rules (rules.test.yaml) and the dashboard's queries
# (tests/manifests/check.py), then a self-test showing those property checks catch broken
# manifests. deploy/: systemd-analyze verify on the sidecar unit, docker-compose config on the
# compose file (tests/manifests/deploy.py).
#
#   tests/manifests/check.sh      (run by scripts/test.sh; SNIGATE_BIN overrides the binary)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cd "$REPO_ROOT"

PY="$REPO_ROOT/.venv-topology/bin/python"
[[ -x "$PY" ]] || "$REPO_ROOT/scripts/install-deps.sh"
BIN="${SNIGATE_BIN:-$REPO_ROOT/target/debug/snigate}"
if [[ -z "${SNIGATE_BIN:-}" ]]; then
    cargo build --quiet
fi

status=0
"$PY" tests/manifests/check.py "$BIN" || status=1
"$PY" tests/manifests/check.py --self-test "$BIN" || status=1
"$PY" tests/manifests/deploy.py "$BIN" || status=1
exit "$status"

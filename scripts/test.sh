#!/usr/bin/env bash
# Run the whole test suite (this is what CI runs, through .ci/run).
#
#   scripts/test.sh                 cargo test, a short fuzzing run, the manifest checks, the
#                                   short chaos run
#   scripts/test.sh [cargo args]    only cargo test with those arguments (e.g. a name filter)
#
# Installs the dependencies first (scripts/install-deps.sh: Redis, PostgreSQL, HAProxy, Python
# venvs); the integration tests start their own Redis and PostgreSQL servers on free ports and
# spawn the debug snigate binary. Then tests/manifests/check.sh checks openshift/ offline, and
# the chaos suite's short run (tests/chaos) restarts every piece of the path once under a
# Celery fleet in two network namespaces (needs root; ~2 min). Every part runs even when an
# earlier one fails; the exit status is non-zero when any failed.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

"$REPO_ROOT/scripts/install-deps.sh"

# What the tests use to find their tools.
export SNIGATE_PYTHON="$REPO_ROOT/.venv/bin/python"
SNIGATE_PG_BINDIR="$(pg_bindir)"
export SNIGATE_PG_BINDIR
export PATH="$SNIGATE_PG_BINDIR:$PATH" # initdb, postgres, pg_ctl

# --no-fail-fast: run every test target even when one fails, so one run shows every failure.
echo "==> cargo test --all-targets --no-fail-fast $*"
if [[ $# -gt 0 ]]; then
    exec cargo test --all-targets --no-fail-fast "$@"
fi
declare -A RESULT=()
cargo test --all-targets --no-fail-fast && RESULT[cargo test]=ok || RESULT[cargo test]=FAILED

echo "==> fuzzing, 15 s per target (scripts/fuzz.sh)"
scripts/fuzz.sh 15 && RESULT[fuzz]=ok || RESULT[fuzz]=FAILED

echo "==> manifest checks (tests/manifests/check.sh)"
tests/manifests/check.sh && RESULT[manifests]=ok || RESULT[manifests]=FAILED

echo "==> chaos: a Celery fleet through router -> two gateways while the path restarts (tests/chaos)"
as_root env ${SNIGATE_BIN:+SNIGATE_BIN="$SNIGATE_BIN"} "$REPO_ROOT/.venv-topology/bin/python" \
    tests/chaos/cli.py && RESULT[chaos]=ok || RESULT[chaos]=FAILED

echo
passed=0 failed=0
for part in "cargo test" fuzz manifests chaos; do
    echo "test.sh: $part ${RESULT[$part]}"
    if [[ "${RESULT[$part]}" == ok ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "test.sh: $passed passed, $failed failed"
[[ $failed -eq 0 ]]

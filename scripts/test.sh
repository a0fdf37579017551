#!/usr/bin/env bash
# Run the whole test suite (this is what CI runs, through .ci/run).
#
#   scripts/test.sh [extra cargo test arguments, e.g. a test name filter]
#
# Installs the dependencies first (scripts/install-deps.sh: Redis, PostgreSQL, a Python venv
# with psycopg/libpq 17 and redis-py); the integration tests start their own Redis and
# PostgreSQL servers on free ports and spawn the debug snigate binary.
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
exec cargo test --all-targets --no-fail-fast "$@"

#!/usr/bin/env bash
# Install what the demo and the test suite need, and nothing when it is all there.
#
#   Debian packages: redis-server redis-tools postgresql postgresql-client openssl, and for the
#     chaos suite (tests/chaos) haproxy nftables iproute2; prometheus (promtool, and the
#     Prometheus that tests/integration/prometheus.rs starts), systemd and procps
#     (systemd-analyze verify of deploy/systemd, which needs /bin/kill), docker-compose
#     (offline check of deploy/compose), stunnel4 (plays an older gateway without snigate/1
#     in tests/integration/warm.rs), squid (the egress proxy of tests/integration/proxy.rs
#     and tests/integration/proxy_wan.rs)
#   Python venv <repo>/.venv with psycopg[binary]>=3.2 (bundles libpq >= 17), redis>=5 and
#     sslyze>=6 (the TLS policy scan in tests/integration/tls_policy.rs)
#   cargo-fuzz (cargo install --locked) and g++ (libFuzzer is C++) for scripts/fuzz.sh
#   Python venv <repo>/.venv-topology for the manifest checks and the Celery fleet of the
#     chaos suite: celery[redis], SQLAlchemy, psycopg2-binary, psycopg[binary], yamllint,
#     kubernetes-validate, jsonschema (a venv of its own: Celery pins its redis-py range), and
#     matplotlib for the chaos suite's soak plot (tests/chaos)
#   Python venv <repo>/.venv-redis5 with redis-py 5 (RESP2 and a plain AUTH on connect), next
#     to the newer redis-py of .venv (HELLO 3 first): the login tests use both
#   Python venv <repo>/.venv-celery57 with celery[redis]==5.7.0 only: the chaos suite shows that
#     its consumer dies on a Redis restart where 5.6 recovers (why the fleet pins celery<5.7)
#
# Idempotent: prints nothing and exits 0 when everything is already installed.
# Runs as root, or through sudo when not root. Output of apt-get/pip goes to a log that is
# shown only when a step fails.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

APT_PACKAGES=(redis-server redis-tools postgresql postgresql-client openssl haproxy nftables iproute2 g++
    prometheus systemd procps docker-compose stunnel4 squid)
VENV="$REPO_ROOT/.venv"
PIP_REQUIREMENTS=("psycopg[binary]>=3.2" "redis>=5" "sslyze>=6")
TOPOLOGY_VENV="$REPO_ROOT/.venv-topology"
# Celery 5.6: the database result backend retries failed writes (result_backend_always_retry).
# Not 5.7.0: its consumer closes an already collected broker connection after a connection
# loss and dies with AttributeError ('NoneType' object has no attribute 'hostname') in
# kombu's restore_unacked, also against a bare Redis restart.
TOPOLOGY_REQUIREMENTS=("celery[redis]>=5.6,<5.7" "sqlalchemy>=2" "psycopg2-binary>=2.9"
    "psycopg[binary]>=3.2" "yamllint>=1.30" "kubernetes-validate>=1.30" "jsonschema>=4"
    "matplotlib>=3.7")
REDIS5_VENV="$REPO_ROOT/.venv-redis5"
REDIS5_REQUIREMENTS=("redis>=5,<6")
CELERY57_VENV="$REPO_ROOT/.venv-celery57"
CELERY57_REQUIREMENTS=("celery[redis]==5.7.0")
MIN_LIBPQ=170000 # libpq 17: sslnegotiation=direct (TLS first, ALPN postgresql)

LOG=""
cleanup() { [[ -z "$LOG" ]] || rm -f "$LOG"; }
trap cleanup EXIT

# Run a noisy command, its output kept in $LOG; on failure show the log and stop.
quietly() {
    [[ -n "$LOG" ]] || LOG="$(mktemp "${TMPDIR:-/tmp}/snigate-install-deps.XXXXXX")"
    if ! "$@" >>"$LOG" 2>&1; then
        echo "install-deps: failed: $*" >&2
        echo "---- last lines of its output ----" >&2
        tail -n 40 "$LOG" >&2
        exit 1
    fi
}

apt_missing() {
    local pkg status
    for pkg in "$@"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
        [[ "$status" == installed ]] || printf '%s\n' "$pkg"
    done
}

install_apt_packages() {
    local -a missing
    mapfile -t missing < <(apt_missing "${APT_PACKAGES[@]}")
    # A system python3 without ensurepip cannot create the venv (Debian splits it out).
    if { ! venv_runs || ! venv_runs "$TOPOLOGY_VENV" || ! venv_runs "$REDIS5_VENV" || ! venv_runs "$CELERY57_VENV"; } && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        mapfile -t -O "${#missing[@]}" missing < <(apt_missing python3-venv)
    fi
    [[ ${#missing[@]} -gt 0 ]] || return 0

    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-deps: missing ${missing[*]} and apt-get is not available; install them by hand" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]} (apt-get)"
    quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}"
    if [[ " ${missing[*]} " == *" prometheus "* ]]; then
        keep_service_off prometheus
    fi
    if [[ " ${missing[*]} " == *" squid "* ]]; then
        keep_service_off squid
    fi
}

# The prometheus package enables a system Prometheus on port 9090, which the demo's gateway
# admin uses, and squid a proxy on 3128; the tests start their own. Only where systemd runs
# (a container has no service to stop).
keep_service_off() {
    if [[ -d /run/systemd/system ]]; then
        echo "install-deps: disabling $1.service (the tests start their own)"
        quietly as_root systemctl disable --now "$1.service"
    fi
}

check_pg_server() {
    if ! pg_bindir >/dev/null; then
        echo "install-deps: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin" \
            "(initdb, postgres) although the postgresql package is installed" >&2
        exit 1
    fi
}

venv_runs() { "${1:-$VENV}/bin/python" -c '' >/dev/null 2>&1; }

# Exit 0 when the venv has psycopg >= 3.2 with its binary wheel, redis >= 5 and sslyze >= 6.
venv_satisfied() {
    [[ -x "$VENV/bin/python" ]] || return 1
    "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import re, sys
from importlib.metadata import version, PackageNotFoundError

def v(name):
    try:
        return tuple(int(x) for x in re.findall(r"\d+", version(name))[:2])
    except PackageNotFoundError:
        return None

ok = (v("psycopg") or (0,)) >= (3, 2) and v("psycopg-binary") and (v("redis") or (0,)) >= (5,)
ok = ok and (v("sslyze") or (0,)) >= (6,)
sys.exit(0 if ok else 1)
PY
}

# requirements_satisfied VENV REQUIREMENT...: exit 0 when VENV satisfies every requirement.
requirements_satisfied() {
    local venv="$1"
    shift
    [[ -x "$venv/bin/python" ]] || return 1
    "$venv/bin/python" - "$@" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
from pip._vendor.packaging.requirements import Requirement

for req in map(Requirement, sys.argv[1:]):
    if not req.specifier.contains(version(req.name), prereleases=True):
        sys.exit(1)
PY
}

# install_requirements VENV REQUIREMENT...: create VENV when it does not run, then pip install
# the requirements it does not satisfy yet.
install_requirements() {
    local venv="$1"
    shift
    if ! venv_runs "$venv"; then
        echo "install-deps: creating Python venv $venv"
        quietly python3 -m venv --clear "$venv"
    fi
    if ! requirements_satisfied "$venv" "$@"; then
        echo "install-deps: pip install $* into $venv"
        quietly "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
        requirements_satisfied "$venv" "$@" || {
            echo "install-deps: $venv still lacks one of $*" >&2
            exit 1
        }
    fi
}

install_venv() {
    if ! venv_runs; then
        # Missing, or broken (e.g. the Python it was made from is gone): (re)create it.
        echo "install-deps: creating Python venv $VENV"
        quietly python3 -m venv --clear "$VENV"
    fi
    if ! venv_satisfied; then
        echo "install-deps: pip install ${PIP_REQUIREMENTS[*]} into $VENV"
        quietly "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            "${PIP_REQUIREMENTS[@]}"
    fi
}

# The tests drive libpq's sslnegotiation=direct, which needs libpq >= 17: the psycopg binary
# wheel bundles its own libpq, so check the one psycopg actually loads.
check_libpq() {
    local venv="${1:-$VENV}" out impl ver
    if ! out="$(PSYCOPG_IMPL=binary "$venv/bin/python" -c \
        'import psycopg; print(psycopg.pq.__impl__, psycopg.pq.version())' 2>&1)"; then
        echo "install-deps: psycopg's binary implementation does not load in $venv:" >&2
        echo "$out" >&2
        echo "fix: rm -rf $venv and run scripts/install-deps.sh again" >&2
        exit 1
    fi
    read -r impl ver <<<"$out"
    if [[ "$impl" != binary || ! "$ver" =~ ^[0-9]+$ || "$ver" -lt $MIN_LIBPQ ]]; then
        echo "install-deps: psycopg in $venv uses libpq $ver ($impl); need >= $MIN_LIBPQ (libpq 17)" \
            "for sslnegotiation=direct" >&2
        echo "fix: $venv/bin/pip install --upgrade 'psycopg[binary]>=3.2'" \
            "(a psycopg-binary wheel that bundles libpq 17)" >&2
        exit 1
    fi
}

# cargo-fuzz for the fuzz targets in fuzz/ (stable toolchain, `-s none`).
install_cargo_fuzz() {
    cargo fuzz --version >/dev/null 2>&1 && return 0
    echo "install-deps: cargo install cargo-fuzz --locked"
    quietly cargo install cargo-fuzz --locked
}

install_apt_packages
check_pg_server
install_cargo_fuzz
install_venv
check_libpq
install_requirements "$TOPOLOGY_VENV" "${TOPOLOGY_REQUIREMENTS[@]}"
check_libpq "$TOPOLOGY_VENV"
install_requirements "$REDIS5_VENV" "${REDIS5_REQUIREMENTS[@]}"
install_requirements "$CELERY57_VENV" "${CELERY57_REQUIREMENTS[@]}"

# shellcheck shell=bash
# Helpers for bench/run.sh, bench/wan.sh and bench/profile.sh beyond the project's shared
# ones (messages, processes, servers: scripts/lib.sh): the steps every bench run takes
# (packages, the snigate binary, the work directory and its PKI, the versions it reports)
# and /proc readings of the processes under test.
# Source it; it defines functions only.

# shellcheck disable=SC2034  # read by scripts/lib.sh
SCRIPT_NAME=bench
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

# install_missing PACKAGE...: apt-get install those of the Debian packages not installed yet.
install_missing() {
    local pkg status log
    local -a missing=()
    for pkg in "$@"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
        [[ "$status" == installed ]] || missing+=("$pkg")
    done
    [[ ${#missing[@]} -gt 0 ]] || return 0
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install them by hand"
    say "installing ${missing[*]} (apt-get)"
    log="$(mktemp "${TMPDIR:-/tmp}/snigate-bench-apt.XXXXXX")"
    quietly "$log" as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    quietly "$log" as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}"
    rm -f "$log"
}

# build_snigate: SNIGATE_BIN as given, or else the release build of the repository.
build_snigate() {
    if [[ -n "${SNIGATE_BIN:-}" ]]; then
        [[ -x "$SNIGATE_BIN" ]] || die "SNIGATE_BIN=$SNIGATE_BIN is not executable"
        return 0
    fi
    say "cargo build --release (snigate)${CARGO_TARGET_DIR:+ (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)}"
    (cd "$REPO_ROOT" && nice cargo build --release --quiet) || die "cargo build --release failed"
    SNIGATE_BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/snigate"
}

# make_pki: a throwaway PKI in $W/pki (PKI) for every chain: the CA, a server certificate for
# both SNI names and the client's certificate.
make_pki() {
    PKI="$W/pki"
    quietly "$W/certs.log" "$SNIGATE_BIN" certs --out "$PKI" --server-name "$REDIS_SNI" \
        --server-name "$PG_SNI" --client-name "$CLIENT_NAME"
    chmod 644 "$PKI"/*.key # the peers may drop privileges before reading keys
}

# remove_workdir STATUS NAME: remove the work directory W unless KEEP is 1 or the run failed
# (STATUS not 0); then NAME says where it is.
remove_workdir() {
    local status="$1" name="$2"
    [[ -n "${W:-}" && -d "$W" ]] || return 0
    if [[ $KEEP -eq 1 || $status -ne 0 ]]; then
        echo "$name: work directory kept: $W" >&2
    else
        rm -rf "$W"
    fi
}

# versions_meta: key=value lines for the .meta file: the snigate revision (SNIGATE_REV, or
# HEAD, +dirty when src/ or the Cargo files differ from it) and the versions of the peers and
# servers.
versions_meta() {
    local rev="${SNIGATE_REV:-}"
    if [[ -z $rev ]]; then
        rev="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
        [[ -z "$(git -C "$REPO_ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]] || rev+=+dirty
    fi
    echo "snigate=$rev"
    echo "stunnel=$(stunnel -version 2>&1 | awk '/^stunnel/ { print $2; exit }')"
    echo "haproxy=$(haproxy -v | awk 'NR == 1 { print $3 }')"
    echo "nginx=$(nginx -v 2>&1 | sed 's|.*nginx/||')"
    echo "openssl=$(openssl version | awk '{ print $2 }')"
    echo "redis=$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
    echo "postgres=$("$(pg_bindir)/postgres" --version | awk '{ print $3 }')"
}

# host_meta: key=value lines for the .meta file: CPU model, cores, kernel.
host_meta() {
    echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "cores=$(nproc)"
    echo "kernel=$(uname -r)"
}

# cpu_ticks PID...: utime + stime (all threads) of the processes, in clock ticks. Fields are
# counted after the ')' that closes the command name, which may itself contain spaces.
cpu_ticks() {
    local pid line rest total=0
    local -a f
    for pid in "$@"; do
        line="$(cat "/proc/$pid/stat" 2>/dev/null)" || die "process $pid (${PID_NAME[$pid]:-?}) is gone"
        rest="${line##*) }"
        read -r -a f <<<"$rest"
        # rest starts at field 3 (state): utime is field 14 -> index 11, stime 15 -> index 12
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# status_field FIELD PID...: sum of a numeric /proc/PID/status field (VmRSS in kB, Threads).
status_field() {
    local field="$1" pid sum=0 v
    shift
    for pid in "$@"; do
        v="$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status")"
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# children PID: direct children of PID (the workers of an nginx master).
children() { pgrep -P "$1" || true; }
has_children() { [[ -n "$(children "$1")" ]]; }

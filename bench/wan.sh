#!/usr/bin/env bash
# Benchmark snigate against stunnel, HAProxy, nginx and the servers' own TLS across an
# emulated WAN link (bench/wanlink: RTT/2 per direction, TCP handshake charged).
#
#   bench/wan.sh            full run: 3 interleaved rounds (about 25 min on 2 cores)
#   bench/wan.sh --quick    smoke run: 1 round, small counts (about 4 min)
#
# Options:
#   --rtt D               round-trip time of the link (default 30ms; env BENCH_WAN_RTT)
#   --window SIZE         bytes in flight per direction and connection (default 6MiB, Linux's
#                         default tcp_rmem max; 0 = no cap; env BENCH_WAN_WINDOW)
#   --tcp-free            do not charge the TCP handshake (the link's --no-handshake)
#   --trace               the link logs every delivery to <work dir>/wanlink.trace (implies
#                         --keep): which round trips a client waited for
#   --rounds N            interleaved rounds (default 3; quick 1)
#   --chains a,b,...      subset of plain,snigate,snigate-warm,snigate-login,stunnel,haproxy,
#                         nginx,backend-tls (default: all)
#   --workloads a,b,...   subset of pg_scram,pg_trust,redis,celery,set64k (default: all)
#   --no-install          do not check/install packages and venvs
#   --keep                keep the work directory (configs, logs, raw outputs)
#   --out DIR             where results go (default bench/results)
# Environment:
#   CARGO_TARGET_DIR      where cargo builds snigate and the link (default: target/ of each)
#   SNIGATE_BIN           use this binary, do not build it (SNIGATE_REV: its name in the report)
#   BENCH_WAN_PORT_BASE   first port base tried (default 28000, below the ephemeral ports;
#                         the first free block of 90 ports, in steps of 100, is used)
#   BENCH_SNIGATE_WORKERS runtime.worker_threads of the snigate chains (default 1)
#   BENCH_SNIGATE_LOG     RUST_LOG for snigate (default warn)
#
# Writes bench/results/wan-latest.md, wan-<UTC time>.md, wan-latest.png and the raw numbers
# in bench/results/raw/wan-<UTC time>.tsv and .meta. Method: bench/README.md ("Across a WAN").
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=bench/lib/wan_setup.sh
source "$BENCH_DIR/lib/wan_setup.sh"

usage() { sed -n '2,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

RTT="${BENCH_WAN_RTT:-30ms}" WINDOW="${BENCH_WAN_WINDOW:-6MiB}"
QUICK=0 ROUNDS="" INSTALL=1 KEEP=0 OUT="$BENCH_DIR/results" HANDSHAKE=1 TRACE=0
CHAINS=("${WAN_CHAINS[@]}")
WORKLOADS=pg_scram,pg_trust,redis,celery,set64k
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rtt) RTT="${2:?--rtt needs a duration}"; shift ;;
        --window) WINDOW="${2:?--window needs a size}"; shift ;;
        --tcp-free) HANDSHAKE=0 ;;
        --trace) TRACE=1 KEEP=1 ;;
        --rounds) ROUNDS="${2:?--rounds needs a number}"; shift ;;
        --chains) IFS=, read -r -a CHAINS <<<"${2:?--chains needs a list}"; shift ;;
        --workloads) WORKLOADS="${2:?--workloads needs a list}"; shift ;;
        --no-install) INSTALL=0 ;;
        --keep) KEEP=1 ;;
        --out) OUT="${2:?--out needs a directory}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "wan: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for c in "${CHAINS[@]}"; do [[ -n "${WAN_CHAIN_NO[$c]:-}" ]] || die "unknown chain '$c'"; done
[[ $QUICK -eq 1 ]] && : "${ROUNDS:=1}"
: "${ROUNDS:=3}"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive number"
RTT_MS="$(awk -v d="$RTT" 'BEGIN { v = d + 0; if (d ~ /ms$/ || d ~ /^[0-9.]+$/) print v; else if (d ~ /s$/) print v * 1000 }')"
awk -v v="${RTT_MS:-0}" 'BEGIN { exit !(v > 0) }' || die "--rtt $RTT: expected a positive duration such as 30ms"

SNIGATE_LOG="${BENCH_SNIGATE_LOG:-warn}"
SNIGATE_WORKERS="${BENCH_SNIGATE_WORKERS:-1}"
READY_TIMEOUT=60
PG_DB=bench
PY=/usr/bin/python3 # Debian's, which has python3-matplotlib
VENV_PY="$REPO/.venv/bin/python"
CELERY_PY="$REPO/.venv-topology/bin/python"
NGINX_STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
# What scripts/install-deps.sh does not install: the peers, redis-benchmark, the chart.
BENCH_PACKAGES=(redis-tools stunnel4 haproxy nginx libnginx-mod-stream python3-matplotlib procps iproute2)

# ------------------------------------------------------------------------------- install
install_everything() {
    "$REPO/scripts/install-deps.sh" || die "scripts/install-deps.sh failed"
    install_missing "${BENCH_PACKAGES[@]}"
}

build() {
    local target
    build_snigate
    say "cargo build --release (bench/wanlink)"
    nice cargo build --release --quiet --manifest-path "$BENCH_DIR/wanlink/Cargo.toml" ||
        die "building bench/wanlink failed"
    target="${CARGO_TARGET_DIR:-$BENCH_DIR/wanlink/target}"
    LINK_BIN="$target/release/wanlink"
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    stop_started
    stop_wan_postgres
    remove_workdir "$status" wan
    exit "$status"
}

# ------------------------------------------------------------------------------- plan
# plan.json: what the Python side needs to reach every chain (see bench/lib/wan_plan.py).
chain_json() {
    local c="$1" tls=false workloads='["pg_scram","pg_trust","redis","celery","set64k"]' login=false
    [[ $c == backend-tls ]] && tls=true
    if [[ $c == snigate-login ]]; then
        login=true
        workloads='["pg_scram","celery"]' # the login route logs in as the SCRAM user
    fi
    printf '"%s": {"redis": {"port": %s, "tls": %s}, "pg": {"port": %s, "tls": %s}, "login": %s, "workloads": %s}' \
        "$c" "${PORT_REDIS[$c]}" "$tls" "${PORT_PG[$c]}" "$tls" "$login" "$workloads"
}

write_plan() {
    local c sep=""
    {
        printf '{"rtt_ms": %s, "db": "%s", "password_file": "%s",\n' "$RTT_MS" "$PG_DB" "$W/pg-password"
        printf ' "users": {"scram": "%s", "trust": "%s"},\n' "$PG_SCRAM_USER" "$PG_TRUST_USER"
        printf ' "pki": {"ca": "%s", "cert": "%s", "key": "%s"},\n' "$PKI/ca.crt" "$PKI/client.crt" "$W/client.key"
        printf ' "direct": {"redis_port": %s, "pg_port": %s},\n "chains": {' "$REDIS_PORT" "$PG_PORT"
        for c in "${RUN_CHAINS[@]}"; do
            printf '%s\n  ' "$sep"
            chain_json "$c"
            sep=,
        done
        printf '}}\n'
    } >"$W/plan.json"
}

versions() {
    versions_meta
    echo "clients=$("$VENV_PY" -c 'import redis, psycopg; print(f"redis-py {redis.__version__}, psycopg {psycopg.__version__} (libpq {psycopg.pq.version()})")')"
    echo "celery=$("$CELERY_PY" -c 'import celery, kombu, redis, sqlalchemy, psycopg2; print(f"celery {celery.__version__}, kombu {kombu.__version__}, redis-py {redis.__version__}, SQLAlchemy {sqlalchemy.__version__}, psycopg2 {psycopg2.__version__.split()[0]} (libpq {psycopg2.extensions.libpq_version()})")')"
    host_meta
    echo "rtt_ms=$RTT_MS"
    echo "window=$WINDOW"
    echo "tcp_handshake=$([[ $HANDSHAKE -eq 1 ]] && echo charged || echo free)"
    echo "rounds=$ROUNDS"
    echo "quick=$QUICK"
    echo "chains=$(IFS=,; echo "${CHAINS[*]}")"
    echo "snigate_workers=$SNIGATE_WORKERS"
}

# ------------------------------------------------------------------------------- main
[[ $INSTALL -eq 0 ]] || install_everything
for tool in redis-server redis-benchmark redis-cli psql stunnel haproxy nginx openssl ss "$PY" "$VENV_PY" "$CELERY_PY"; do
    command -v "$tool" >/dev/null || die "$tool not found (run without --no-install)"
done
build

PORT_BASE="$(pick_port_base "${BENCH_WAN_PORT_BASE:-28000}")" || die "no free block of ports found"
REDIS_PORT=$((PORT_BASE + 1)) PG_PORT=$((PORT_BASE + 2)) REDIS_TLS_PORT=$((PORT_BASE + 3))
W="$(mktemp -d "${TMPDIR:-/tmp}/snigate-wan.XXXXXX")"
chmod 755 "$W" # PostgreSQL runs as the postgres user and needs to reach its data dir
on_exit cleanup
make_pki
install -m 600 "$PKI/client.key" "$W/client.key" # libpq refuses a key others can read
(umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$W/pg-password")

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT/raw"
RAW="$OUT/raw/wan-$STAMP.tsv" META="$OUT/raw/wan-$STAMP.meta"
: >"$RAW"
META_LINES=()

say "work directory $W, ports $PORT_BASE+; starting Redis and PostgreSQL (with their own TLS)"
start_wan_redis
start_wan_postgres

RUN_CHAINS=()
SNIGATE_TUNNEL_YAML[snigate-warm]="    warm: 2"
# login as deployed: with warm connections, so the client's whole wait is startup + queries
SNIGATE_TUNNEL_YAML[snigate-login]="    warm: 2"
SNIGATE_PG_ROUTE_YAML[snigate-login]="    login: {user: $PG_SCRAM_USER, password_file: $W/pg-password}"
for c in "${CHAINS[@]}"; do
    set_chain_ports "$c"
    why=""
    case "$c" in
        snigate-warm) why="$(feature_missing sidecar)" ;;
        snigate-login) why="$(feature_missing gateway)" ;;
    esac
    if [[ -n "$why" ]]; then
        why="${why//"$W/"/}" # the report is committed: no paths of this machine in it
        note "$c: n/a: $why"
        META_LINES+=("na.$c=$why")
    else
        RUN_CHAINS+=("$c")
    fi
done
((${#RUN_CHAINS[@]} > 0)) || die "no chain to run"

say "starting the link: RTT $RTT, window $WINDOW"
start_link "${RUN_CHAINS[@]}"
say "checking the link's RTT (bench/lib/wan_rtt.py)"
if ! "$PY" "$BENCH_DIR/lib/wan_rtt.py" --link-port $((PORT_BASE + 8)) --echo-port $((PORT_BASE + 7)) \
    --rtt-ms "$RTT_MS" --handshake "$HANDSHAKE" >"$W/rtt.json" 2>"$W/rtt.err"; then
    die "the link does not add the RTT it claims: $(cat "$W/rtt.json")" "$W/rtt.err"
fi
note "$(cat "$W/rtt.json")"
META_LINES+=("rtt_check=$(cat "$W/rtt.json")")

write_plan
for c in "${RUN_CHAINS[@]}"; do
    say "starting chain $c"
    start_wan_chain "$c"
    quietly "$W/check.log" "$VENV_PY" "$BENCH_DIR/lib/wan_workloads.py" check --plan "$W/plan.json" --chain "$c"
done

START_TIME=$SECONDS
LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"
STATUS=0 QUICK_ARG=()
[[ $QUICK -eq 0 ]] || QUICK_ARG=(--quick)
# In the background, so that a signal runs our trap at once; cleanup stops it with SIGTERM,
# which it passes on to the running workload (and that to its Celery worker).
"$PY" "$BENCH_DIR/lib/wan_driver.py" --plan "$W/plan.json" --raw "$RAW" --rounds "$ROUNDS" \
    --chains "$(IFS=,; echo "${RUN_CHAINS[*]}")" --workloads "$WORKLOADS" --workdir "$W" \
    --python "$VENV_PY" --celery-python "$CELERY_PY" "${QUICK_ARG[@]}" &
STARTED_PIDS+=("$!")
PID_NAME[$!]="the workload driver"
wait "$!" || STATUS=$?
{
    versions
    echo "elapsed_s=$((SECONDS - START_TIME))"
    echo "loadavg_start=$LOADAVG_START"
    echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%s\n' "${META_LINES[@]}"
} >"$META"

say "writing the report"
"$PY" "$BENCH_DIR/lib/wan_report.py" --raw "$RAW" --meta "$META" --out "$OUT" --stamp "$STAMP"
[[ $STATUS -eq 0 ]] || die "some workloads failed: see $W/failed.*.log"
say "done in $((SECONDS / 60)) min $((SECONDS % 60)) s: $OUT/wan-latest.md, $OUT/wan-latest.png"

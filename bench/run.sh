#!/usr/bin/env bash
# Benchmark snigate (sidecar -> gateway) against stunnel, HAProxy and nginx on loopback.
#
#   bench/run.sh            full run (~15 min on 2 cores): 5 interleaved rounds
#   bench/run.sh --quick    smoke run (~3 min): 1 round, smaller counts
#
# Options:
#   --rounds N            rounds of every workload through every chain (default 5; quick 1)
#   --chains a,b,...      subset of direct,snigate,stunnel,haproxy,nginx; snigate-mt adds
#                         snigate with two worker threads per process (snigate: one)
#   --workloads a,b,...   subset of idle,p1,p32,big,pg,pgc,conn_full,conn_resumed
#   --no-install          do not check/install Debian packages
#   --keep                keep the work directory (configs, logs, raw outputs)
#   --out DIR             where results go (default bench/results)
# Environment:
#   CARGO_TARGET_DIR      where `cargo build --release` builds snigate (default target/)
#   SNIGATE_BIN           use this binary, do not build (SNIGATE_REV: what to call it in
#                         the report; default: the repository's HEAD)
#   BENCH_PORT_BASE       first of the loopback ports used (default 37000; uses base..base+55)
#   BENCH_SNIGATE_WORKERS runtime.worker_threads of the snigate chain's sidecar and gateway
#                         (default 1, like the peers; snigate-mt always has 2)
#   BENCH_SNIGATE_LOG     RUST_LOG for snigate (default warn: no per-connection lines, like
#                         the peers as configured here)
#
# Writes bench/results/latest.md, bench/results/<UTC time>.md, bench/results/latest.png and
# the raw numbers in bench/results/raw/<UTC time>.tsv. Method: bench/README.md.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench/lib/common.sh
source "$BENCH_DIR/lib/common.sh"
# shellcheck source=bench/lib/chains.sh
source "$BENCH_DIR/lib/chains.sh"
# shellcheck source=bench/lib/workloads.sh
source "$BENCH_DIR/lib/workloads.sh"

usage() { sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

PORT_BASE="${BENCH_PORT_BASE:-37000}"
QUICK=0 ROUNDS="" INSTALL=1 KEEP=0 OUT="$BENCH_DIR/results"
CHAINS=(direct snigate stunnel haproxy nginx)
WORKLOADS=(p1 p32 big pg pgc conn_full conn_resumed)
DO_IDLE=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS="${2:?--rounds needs a number}"; shift ;;
        --chains) IFS=, read -r -a CHAINS <<<"${2:?--chains needs a list}"; shift ;;
        --workloads)
            IFS=, read -r -a WORKLOADS <<<"${2:?--workloads needs a list}"
            shift
            DO_IDLE=0
            local_w=()
            for w in "${WORKLOADS[@]}"; do
                if [[ $w == idle ]]; then DO_IDLE=1; else local_w+=("$w"); fi
            done
            WORKLOADS=("${local_w[@]}")
            ;;
        --no-install) INSTALL=0 ;;
        --keep) KEEP=1 ;;
        --out) OUT="${2:?--out needs a directory}"; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
for c in "${CHAINS[@]}"; do chain_ports "$c"; done
for w in "${WORKLOADS[@]}"; do
    declare -F "wl_$w" >/dev/null || die "unknown workload '$w'"
done

if [[ $QUICK -eq 1 ]]; then
    : "${ROUNDS:=1}"
    N_P1=10000 N_P32=150000 N_BIG=3000 PG_SECS=2 PGC_SECS=2 N_CONN=1000 IDLE_CONNS=1000 PG_SCALE=2
else
    : "${ROUNDS:=5}"
    N_P1=25000 N_P32=400000 N_BIG=8000 PG_SECS=4 PGC_SECS=4 N_CONN=2500 IDLE_CONNS=5000 PG_SCALE=10
fi
REDIS_PORT=$((PORT_BASE + 1))
PG_PORT=$((PORT_BASE + 2))
PG_DB=bench
SNIGATE_LOG="${BENCH_SNIGATE_LOG:-warn}"
SNIGATE_WORKERS="${BENCH_SNIGATE_WORKERS:-1}"
[[ $SNIGATE_WORKERS =~ ^[1-9][0-9]*$ ]] || die "BENCH_SNIGATE_WORKERS must be a number of threads, 1 or more"
READY_TIMEOUT=60
CLK_TCK="$(getconf CLK_TCK)"
PY=/usr/bin/python3 # Debian's, which has python3-matplotlib
NGINX_STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
APT_PACKAGES=(redis-server redis-tools postgresql postgresql-contrib stunnel4 haproxy nginx
    libnginx-mod-stream python3 python3-matplotlib openssl procps util-linux)

# ------------------------------------------------------------------------------- backends
start_postgres_for_bench() {
    local log="$W/pg/setup.log"
    mkdir -p "$W/pg"
    start_postgres postgres "$W/pg/data" "$PG_PORT" "$W/pg/postgres.log" max_connections=200 \
        shared_buffers=256MB synchronous_commit=off full_page_writes=off
    quietly "$log" psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "create database $PG_DB"
    say "pgbench -i -s $PG_SCALE"
    quietly "$log" pgbench -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -q -s "$PG_SCALE" "$PG_DB"
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    stop_started
    remove_workdir "$status" bench
    exit "$status"
}

# ------------------------------------------------------------------------------- checks
check_chain() {
    local c="$1"
    wait_for "PONG through $c" 0 redis_ping "${PORT_REDIS[$c]}"
    wait_for "PONG through $c (no resumption)" 0 redis_ping "${PORT_REDIS_FULL[$c]}"
    wait_for "PostgreSQL through $c" 0 pg_ping "${PORT_PG[$c]}"
}
redis_ping() { [[ "$(redis-cli -p "$1" ping)" == PONG ]]; }
pg_ping() {
    [[ "$(PGSSLMODE=disable psql -h 127.0.0.1 -p "$1" -U postgres -d "$PG_DB" -Atc 'select 42')" == 42 ]]
}

# Negotiated protocol and cipher suite of a server side for an OpenSSL client with a client
# certificate that offers the TLS 1.3 suites in the order every chain's client side offers
# them ($TLS13_SUITES): what the chain's own two sides agree on.
probe_tls() {
    local port="$1"
    openssl s_client -connect "127.0.0.1:$port" -servername "$REDIS_SNI" -CAfile "$PKI/ca.crt" \
        -cert "$PKI/client.crt" -key "$PKI/client.key" -ciphersuites "$TLS13_SUITES" \
        -brief </dev/null 2>&1 |
        awk -F': ' '/^Protocol version/ { p = $2 } /^Ciphersuite/ { c = $2 } END { print p " " c }'
}

# ------------------------------------------------------------------------------- main
[[ $INSTALL -eq 0 ]] || install_missing "${APT_PACKAGES[@]}"
for tool in redis-server redis-benchmark pgbench psql stunnel haproxy nginx openssl "$PY"; do
    command -v "$tool" >/dev/null || die "$tool not found (run without --no-install)"
done
[[ -f $NGINX_STREAM_MODULE ]] || die "$NGINX_STREAM_MODULE missing: apt-get install libnginx-mod-stream"

build_snigate

# Descriptors: N idle connections are up to 2N sockets in one proxy process.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NEED_FDS=$((2 * IDLE_CONNS + 1000))
if [[ "$(ulimit -n)" != unlimited && "$(ulimit -n)" -lt $NEED_FDS ]]; then
    die "need $NEED_FDS open files per process for $IDLE_CONNS idle connections (ulimit -n is $(ulimit -n))"
fi

for port in "$REDIS_PORT" "$PG_PORT"; do
    ! port_open 127.0.0.1 "$port" || die "port $port is taken (set BENCH_PORT_BASE)"
done
for c in "${CHAINS[@]}"; do
    for port in "${PORT_REDIS[$c]}" "${PORT_PG[$c]}" "${PORT_REDIS_FULL[$c]}" ${PORT_SERVER[$c]:+"${PORT_SERVER[$c]}"}; do
        [[ $c == direct ]] && break
        ! port_open 127.0.0.1 "$port" || die "port $port is taken (set BENCH_PORT_BASE)"
    done
done

W="$(mktemp -d "${TMPDIR:-/tmp}/snigate-bench.XXXXXX")"
chmod 755 "$W" # PostgreSQL runs as the postgres user and needs to reach its data dir
on_exit cleanup
make_pki

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT/raw"
RAW="$OUT/raw/$STAMP.tsv"
: >"$RAW"

say "work directory $W; starting Redis and PostgreSQL"
start_redis redis "$REDIS_PORT" "$W/redis" "$W/redis.log" --protected-mode no --maxclients 15000
start_postgres_for_bench
META_LINES=()
for c in "${CHAINS[@]}"; do
    say "starting chain $c"
    start_chain "$c"
    check_chain "$c"
    if [[ $c != direct ]]; then
        # shellcheck disable=SC2086
        META_LINES+=("threads.$c=$(status_field Threads ${CLIENT_PIDS[$c]})+$(status_field Threads ${SERVER_PIDS[$c]})")
        META_LINES+=("processes.$c=$(wc -w <<<"${CLIENT_PIDS[$c]}")+$(wc -w <<<"${SERVER_PIDS[$c]}")")
        META_LINES+=("tls.$c=$(probe_tls "${PORT_SERVER[$c]}")")
    fi
done

START_TIME=$SECONDS
LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"
ROUND=1
if [[ $DO_IDLE -eq 1 ]]; then
    for c in "${CHAINS[@]}"; do
        [[ $c == direct ]] && continue
        say "round 1: idle x$IDLE_CONNS via $c"
        wl_idle "$c"
    done
fi
n=${#CHAINS[@]}
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    for w in "${WORKLOADS[@]}"; do
        for ((k = 0; k < n; k++)); do
            # rotate the order each round so no chain always runs first or right after another
            c="${CHAINS[$(((k + ROUND - 1) % n))]}"
            say "round $ROUND/$ROUNDS: $w via $c"
            "wl_$w" "$c"
        done
    done
done
ELAPSED=$((SECONDS - START_TIME))

versions() {
    versions_meta
    host_meta
    echo "rounds=$ROUNDS"
    echo "quick=$QUICK"
    echo "params=P1 -n $N_P1, P32 -n $N_P32, 64KiB -n $N_BIG, pgbench -T $PG_SECS/$PGC_SECS s (scale $PG_SCALE), new conns -n $N_CONN, idle $IDLE_CONNS"
    echo "snigate_workers=$SNIGATE_WORKERS"
    echo "snigate_full_handshake=yes"
    echo "tls_probe_suites=$TLS13_SUITES"
    echo "snigate_log=$SNIGATE_LOG"
    echo "elapsed_s=$ELAPSED"
    echo "loadavg_start=$LOADAVG_START"
    echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%s\n' "${META_LINES[@]}"
}
versions >"$OUT/raw/$STAMP.meta"

say "writing the report"
"$PY" "$BENCH_DIR/lib/report.py" --raw "$RAW" --meta "$OUT/raw/$STAMP.meta" --out "$OUT" --stamp "$STAMP"
say "done in $((SECONDS / 60)) min $((SECONDS % 60)) s: $OUT/latest.md, $OUT/latest.png"

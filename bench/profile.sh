#!/usr/bin/env bash
# Profile snigate's data path (sidecar + gateway) with perf on the Redis workloads of run.sh.
#
#   bench/profile.sh [--workloads p1,p32,big,conn] [--out DIR]
#
# Builds snigate with debug info and frame pointers into $PROFILE_TARGET_DIR (default
# target/profiling; the normal release build is untouched; SNIGATE_BIN: use that binary), starts its own redis-server and a
# sidecar -> gateway chain (TLS 1.3, mutual TLS, as in run.sh), and for each workload (p1,
# p32, big as in run.sh; conn = new connections, redis-benchmark -k 0):
#   - perf record -e cpu-clock -g on both snigate processes while redis-benchmark runs
#     (cpu-clock: a software timer, so it works in VMs without hardware counters);
#   - perf stat on both processes during a second identical run: syscalls and context
#     switches per operation.
# Writes DIR/<workload>.report.txt (perf report, flat and by caller), DIR/<workload>.stat.txt
# and DIR/summary.md (CPU by category). Default DIR: bench/results/profile.
# Needs: linux-perf (installed by apt when missing), redis-server, redis-tools.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
# shellcheck source=bench/lib/common.sh
source "$BENCH_DIR/lib/common.sh"
# shellcheck source=bench/lib/chains.sh
source "$BENCH_DIR/lib/chains.sh"

OUT="$BENCH_DIR/results/profile"
WORKLOADS=(p1 p32 big conn)
while [[ $# -gt 0 ]]; do
    case "$1" in
        --workloads) IFS=, read -r -a WORKLOADS <<<"${2:?}"; shift ;;
        --out) OUT="${2:?}"; shift ;;
        -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "profile: unknown argument '$1'" >&2; exit 2 ;;
    esac
    shift
done

PORT_BASE="${BENCH_PORT_BASE:-37000}"
REDIS_PORT=$((PORT_BASE + 1))
PG_PORT=$((PORT_BASE + 2)) # no PostgreSQL here: the postgres route just points at nothing
SNIGATE_LOG="${BENCH_SNIGATE_LOG:-warn}"
READY_TIMEOUT=60
PY=/usr/bin/python3

install_missing linux-perf redis-server redis-tools

if [[ -z "${SNIGATE_BIN:-}" ]]; then
    TARGET="${PROFILE_TARGET_DIR:-$REPO/target/profiling}"
    say "cargo build --release with debug info and frame pointers into $TARGET"
    (cd "$REPO" && CARGO_TARGET_DIR="$TARGET" CARGO_PROFILE_RELEASE_DEBUG=true \
        RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release --quiet)
    SNIGATE_BIN="$TARGET/release/snigate"
fi

W="$(mktemp -d "${TMPDIR:-/tmp}/snigate-profile.XXXXXX")"
cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    stop_started
    rm -rf "$W"
    exit "$status"
}
on_exit cleanup

make_pki
start_redis redis "$REDIS_PORT" "$W/redis" "$W/redis.log" --protected-mode no
start_chain snigate
wait_for "PONG through snigate" 0 bash -c "[[ \$(redis-cli -p ${PORT_REDIS[snigate]} ping) == PONG ]]"
PIDS="${SERVER_PIDS[snigate]},${CLIENT_PIDS[snigate]}"
mkdir -p "$OUT"

bench_args() {
    case "$1" in
        p1) echo "-t set,get -c 50 -P 1 -n 40000" ;;
        p32) echo "-t set,get -c 50 -P 32 -n 600000" ;;
        big) echo "-t set -d 65536 -c 50 -P 1 -n 12000" ;;
        conn) echo "-t ping_mbulk -k 0 -c 16 -n 4000" ;;
        *) die "unknown workload $1" ;;
    esac
}
ops() {
    case "$1" in p1) echo 80000 ;; p32) echo 1200000 ;; big) echo 12000 ;; conn) echo 4000 ;; esac
}

for w in "${WORKLOADS[@]}"; do
    read -r -a args <<<"$(bench_args "$w")"
    say "$w: perf record (redis-benchmark ${args[*]})"
    perf record -q -e cpu-clock -F 1999 -g -p "$PIDS" -o "$W/$w.data" -- \
        redis-benchmark -p "${PORT_REDIS[snigate]}" -q "${args[@]}" >"$W/$w.bench.txt" 2>&1
    {
        echo "# redis-benchmark ${args[*]} through snigate (sidecar + gateway), perf cpu-clock"
        sed 's/\r/\n/g' "$W/$w.bench.txt" | grep -E 'requests per second' || true
        echo
        echo "## flat: self time by process, library and symbol"
        perf report -i "$W/$w.data" --stdio --no-children --sort comm,dso,sym -g none \
            --percent-limit 0.3 2>/dev/null | grep -v '^$'
        echo
        echo "## inclusive: time including callees, by symbol"
        perf report -i "$W/$w.data" --stdio --children --sort sym -g none \
            --percent-limit 2 2>/dev/null | grep -v '^$'
    } >"$OUT/$w.report.txt"
    perf report -i "$W/$w.data" --stdio --no-children --sort comm,dso,sym -g none \
        --percent-limit 0 2>/dev/null >"$W/$w.flat.txt"
    for side in gateway sidecar; do
        pid="${SERVER_PIDS[snigate]}"
        [[ $side == gateway ]] || pid="${CLIENT_PIDS[snigate]}"
        perf report -i "$W/$w.data" --pid "$pid" --stdio --no-children --sort comm,dso,sym \
            -g none --percent-limit 0 2>/dev/null >"$W/$w.flat.$side.txt"
    done

    say "$w: perf stat (syscalls, context switches)"
    perf stat -x, -e cpu-clock,context-switches,raw_syscalls:sys_enter \
        -e syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev \
        -e syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait \
        -e syscalls:sys_enter_futex,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_setsockopt \
        -e syscalls:sys_enter_getrandom,syscalls:sys_enter_accept4,syscalls:sys_enter_connect \
        -e syscalls:sys_enter_close,syscalls:sys_enter_shutdown \
        -p "$PIDS" -o "$W/$w.stat.csv" -- \
        redis-benchmark -p "${PORT_REDIS[snigate]}" -q "${args[@]}" >"$W/$w.bench2.txt" 2>&1
    "$PY" - "$W/$w.stat.csv" "$(ops "$w")" >"$OUT/$w.stat.txt" <<'PY'
import sys
path, ops = sys.argv[1], int(sys.argv[2])
print(f"# perf stat on sidecar + gateway, per operation ({ops} operations)")
for line in open(path):
    f = line.strip().split(",")
    if len(f) < 3 or not f[0] or line.startswith("#"):
        continue
    try:
        v = float(f[0])
    except ValueError:
        continue
    name = f[2]
    if name == "cpu-clock":
        print(f"{name:38s} {v / ops * 1000:10.2f} us/op (total {v / 1000:.2f} s)")
    else:
        print(f"{name:38s} {v / ops:10.3f} /op (total {int(v)})")
PY
    {
        "$PY" "$BENCH_DIR/lib/perf_buckets.py" "$w: sidecar + gateway" "$W/$w.flat.txt"
        "$PY" "$BENCH_DIR/lib/perf_buckets.py" "$w: gateway only" "$W/$w.flat.gateway.txt" --short
        "$PY" "$BENCH_DIR/lib/perf_buckets.py" "$w: sidecar only" "$W/$w.flat.sidecar.txt" --short
        sed 's/^/    /' "$OUT/$w.stat.txt"
        echo
    } >>"$W/summary.md"
done
{
    echo "# CPU of snigate (sidecar + gateway) by category, perf cpu-clock samples"
    echo
    echo "Self time of each sampled function, grouped by what it does (bench/lib/perf_buckets.py)."
    echo
    cat "$W/summary.md"
} >"$OUT/summary.md"
say "done: $OUT"

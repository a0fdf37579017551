# shellcheck shell=bash
# The workloads. Each runs one load generator against one chain's client side, reads the CPU
# time of the chain's proxy processes (both sides) around it, and appends its numbers to $RAW
# as "round chain workload metric value" (tab-separated).
# Needs from run.sh: RAW, ROUND, PARAMS (N_P1 N_P32 N_BIG PG_SECS PGC_SECS N_CONN IDLE_CONNS),
# PG_DB, CLK_TCK, W.

rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" "$4" >>"$RAW"; }

# cpu_per_100k CHAIN WORKLOAD TICKS_BEFORE OPS: records CPU-seconds per 100k operations.
rec_cpu() {
    local chain="$1" workload="$2" t0="$3" ops="$4" pids t1
    pids="$(chain_pids "$chain")"
    [[ -n "${pids// /}" ]] || return 0
    # shellcheck disable=SC2086  # a list of pids
    t1="$(cpu_ticks $pids)"
    rec "$chain" "$workload" cpu_s_per_100k \
        "$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$ops" 'BEGIN { printf "%.4f", d / hz / n * 100000 }')"
}

chain_ticks() {
    local pids
    pids="$(chain_pids "$1")"
    if [[ -n "${pids// /}" ]]; then
        # shellcheck disable=SC2086
        cpu_ticks $pids
    else
        echo 0
    fi
}

# csv_field FILE TEST COLUMN: a column of redis-benchmark --csv output (1 = test name).
csv_field() {
    tr -d '"' <"$1" | awk -F, -v t="$2" -v c="$3" '$1 == t { print $c; exit }'
}

# redis_bench CHAIN WORKLOAD PORT OPS_TOTAL REDIS-BENCHMARK-ARGS...
redis_bench() {
    local chain="$1" workload="$2" port="$3" ops="$4" out t0
    shift 4
    out="$W/out.$chain.$workload.csv"
    t0="$(chain_ticks "$chain")"
    if ! redis-benchmark -h 127.0.0.1 -p "$port" --csv "$@" >"$out" 2>"$out.err"; then
        die "redis-benchmark $* via $chain" "$out.err"
    fi
    rec_cpu "$chain" "$workload" "$t0" "$ops"
    RB_OUT="$out"
}

wl_p1() {
    local c="$1"
    redis_bench "$c" p1 "${PORT_REDIS[$c]}" $((2 * N_P1)) -t set,get -c 50 -P 1 -n "$N_P1"
    rb_common "$c" p1
}

wl_p32() {
    local c="$1"
    redis_bench "$c" p32 "${PORT_REDIS[$c]}" $((2 * N_P32)) -t set,get -c 50 -P 32 -n "$N_P32"
    rb_common "$c" p32
}

rb_common() {
    local c="$1" w="$2" t
    for t in GET SET; do
        [[ -n "$(csv_field "$RB_OUT" "$t" 2)" ]] || die "no $t line from redis-benchmark via $c" "$RB_OUT"
        rec "$c" "$w" "${t,,}_ops_s" "$(csv_field "$RB_OUT" "$t" 2)"
        rec "$c" "$w" "${t,,}_p50_ms" "$(csv_field "$RB_OUT" "$t" 5)"
        rec "$c" "$w" "${t,,}_p99_ms" "$(csv_field "$RB_OUT" "$t" 7)"
    done
}

wl_big() {
    local c="$1" rps
    redis_bench "$c" big "${PORT_REDIS[$c]}" "$N_BIG" -t set -d 65536 -c 50 -P 1 -n "$N_BIG"
    rps="$(csv_field "$RB_OUT" SET 2)"
    [[ -n "$rps" ]] || die "no SET line from redis-benchmark via $c" "$RB_OUT"
    rec "$c" big mib_s "$(awk -v r="$rps" 'BEGIN { printf "%.1f", r * 65536 / 1048576 }')"
    rec "$c" big set_p99_ms "$(csv_field "$RB_OUT" SET 7)"
}

# New connections per second: redis-benchmark -k 0 reconnects for every request, so each
# PING is one new plaintext connection to the client side and one new TLS connection across.
wl_conn() {
    local c="$1" w="$2" port="$3" rps
    redis_bench "$c" "$w" "$port" "$N_CONN" -t ping_mbulk -k 0 -c 16 -n "$N_CONN"
    rps="$(csv_field "$RB_OUT" PING_MBULK 2)"
    [[ -n "$rps" ]] || die "no PING_MBULK line from redis-benchmark via $c" "$RB_OUT"
    rec "$c" "$w" conns_s "$rps"
}
wl_conn_resumed() { wl_conn "$1" conn_resumed "${PORT_REDIS[$1]}"; }
wl_conn_full() { wl_conn "$1" conn_full "${PORT_REDIS_FULL[$1]}"; }

# pgbench_run CHAIN WORKLOAD SECONDS PGBENCH-ARGS...
pgbench_run() {
    local c="$1" w="$2" secs="$3" out t0 tps n
    shift 3
    out="$W/out.$c.$w.txt"
    t0="$(chain_ticks "$c")"
    if ! PGSSLMODE=disable pgbench -h 127.0.0.1 -p "${PORT_PG[$c]}" -U postgres -n -S -j 2 \
        -T "$secs" "$@" "$PG_DB" >"$out" 2>&1; then
        die "pgbench $* via $c" "$out"
    fi
    n="$(awk -F': ' '/number of transactions actually processed/ { split($2, a, "/"); print a[1] }' "$out")"
    tps="$(awk '/^tps = / { print $3; exit }' "$out")"
    [[ -n "$n" && -n "$tps" ]] || die "cannot read pgbench output via $c" "$out"
    rec_cpu "$c" "$w" "$t0" "$n"
    rec "$c" "$w" tps "$tps"
    n="$(awk '/^latency average = / { print $4; exit }' "$out")"
    [[ -z "$n" ]] || rec "$c" "$w" latency_ms "$n"
}

wl_pg() { pgbench_run "$1" pg "$PG_SECS" -c 16; }
wl_pgc() { pgbench_run "$1" pgc "$PGC_SECS" -c 16 -C; }

# Idle connections: memory per connection on each side (see lib/idle.py).
wl_idle() {
    local c="$1" out t0 ops
    [[ $c != direct ]] || return 0
    out="$W/out.$c.idle.json"
    t0="$(chain_ticks "$c")"
    if ! "$PY" "$BENCH_DIR/lib/idle.py" --port "${PORT_REDIS[$c]}" --count "$IDLE_CONNS" \
        --client-pids "${CLIENT_PIDS[$c]}" --server-pids "${SERVER_PIDS[$c]}" >"$out" 2>"$out.err"; then
        die "idle connections via $c" "$out.err"
    fi
    ops="$(json_get "$out" count)"
    rec_cpu "$c" idle "$t0" "$ops"
    rec "$c" idle kib_client "$(json_get "$out" kib_per_conn_client)"
    rec "$c" idle kib_server "$(json_get "$out" kib_per_conn_server)"
    rec "$c" idle threads_client_open "$(json_get "$out" threads_after 0)"
    rec "$c" idle threads_server_open "$(json_get "$out" threads_after 1)"
}

# json_get FILE KEY [INDEX]
json_get() {
    "$PY" - "$@" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))[sys.argv[2]]
print(v[int(sys.argv[3])] if len(sys.argv) > 3 else v)
PY
}

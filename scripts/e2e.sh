#!/usr/bin/env bash
# End-to-end test of the production topology: a real Celery fleet through router -> gateway.
#
#   scripts/e2e.sh          (root or sudo; run by scripts/test.sh after cargo test)
#
# Two network namespaces stand for the two clusters, joined by a veth pair:
#
#   "private" 10.77.0.2                          "public" 10.77.0.1
#   celery worker                                HAProxy :443 (like the OpenShift router:
#    redis://localhost:6379/0 ─┐                  passthrough by SNI, inspect-delay 5s)
#    postgresql://localhost ──┐│                      │ 127.0.0.1:8443
#   snigate sidecar (lo) ◀────┘┘ ── TLS+SNI ──▶   snigate gateway ─┬▶ redis-server 127.0.0.1:6379
#   (nftables: only 10.77.0.1:443 out)                             └▶ PostgreSQL 127.0.0.1:5432
#                                                producer (fleet_ctl.py) → Redis, reads PostgreSQL
#
# Run "sidecar": the worker uses the sidecar (psycopg2, unchanged URLs); run "direct": rediss://
# with SNI and libpq 17 sslnegotiation=direct through the router, no sidecar. Each run sends
# $SNIGATE_E2E_TASKS tasks (500) in three waves; Redis is restarted after the first and the
# gateway (SIGTERM, drain) after the second, each while the worker is still executing the wave
# (once every sent message has reached it: kombu loses a BRPOP reply cut off in flight, with or
# without snigate); every result is then checked in PostgreSQL. Last, a PostgreSQL SSLRequest to
# the router must not be routed. Logs stay in the state directory named on failure.
#
# Environment: SNIGATE_BIN (default target/debug/snigate, built first), SNIGATE_E2E_TASKS (500),
# SNIGATE_E2E_TIMEOUT (seconds per wait, 60), SNIGATE_E2E_KEEP=1 (keep the state directory),
# SNIGATE_E2E_RUNS (default "sidecar direct"; "bare" is a baseline without snigate: the worker
# in public, straight to Redis and PostgreSQL, with the Redis restart only).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

TASKS="${SNIGATE_E2E_TASKS:-500}"
TIMEOUT="${SNIGATE_E2E_TIMEOUT:-60}"
BIN="${SNIGATE_BIN:-$REPO_ROOT/target/debug/snigate}"
PY="$REPO_ROOT/.venv-topology/bin/python"
E2E="$REPO_ROOT/tests/e2e"

PUB="snigate-e2e-public-$$"
PRIV="snigate-e2e-private-$$"
ROUTER_IP=10.77.0.1
PRIVATE_IP=10.77.0.2
REDIS_HOST=redis-e2e.apps.snigate.test
PG_HOST=postgres-e2e.apps.snigate.test
CLIENT_NAME=worker.e2e.snigate.test
GATEWAY_ADDR=127.0.0.1:8443
export RUST_LOG="${RUST_LOG:-info}"

say() { printf '==> %s\n' "$*"; }

if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "e2e: needs root (network namespaces)" >&2; exit 1; }
    exec sudo --preserve-env=SNIGATE_BIN,SNIGATE_E2E_RUNS,SNIGATE_E2E_TASKS,SNIGATE_E2E_TIMEOUT,SNIGATE_E2E_KEEP,RUST_LOG "$0" "$@"
fi

STATE="$(mktemp -d "${TMPDIR:-/tmp}/snigate-e2e.XXXXXX")"
chmod 755 "$STATE" # the postgres user runs PostgreSQL from here

# name -> pid / log of what we started; stopped in reverse order on exit.
declare -A PIDS=() LOGS=()
STARTED=()
NETNS_MADE=()
FAILED=0
RESULTS=()

alive() { kill -0 "$1" 2>/dev/null; }

show_log() {
    local log="$1"
    [[ -s "$log" ]] || { echo "   (${log#"$STATE"/} is empty)" >&2; return 0; }
    echo "---- last lines of ${log#"$STATE"/} ----" >&2
    tail -n 30 "$log" >&2
    echo "----" >&2
}

die() {
    echo "e2e: FAILED: $1" >&2
    shift
    local log
    for log in "$@"; do show_log "$log"; done
    exit 1
}

stop_pid() {
    local pid="$1" sig="$2" deadline=$((SECONDS + ${3:-15}))
    alive "$pid" || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    while alive "$pid"; do
        if ((SECONDS >= deadline)); then
            echo "e2e: pid $pid still running after SIG$sig; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    wait "$pid" 2>/dev/null || true
}

# stop NAME [SIGNAL [GRACE]]: stop a process started with `start` and forget it.
stop() {
    local name="$1" sig="${2:-TERM}" i
    [[ -n "${PIDS[$name]:-}" ]] || return 0
    stop_pid "${PIDS[$name]}" "$sig" "${3:-15}"
    unset "PIDS[$name]"
    for i in "${!STARTED[@]}"; do
        [[ "${STARTED[$i]}" != "$name" ]] || unset "STARTED[$i]"
    done
    STARTED=("${STARTED[@]}")
}

cleanup() {
    local status=$? i name ns pid
    trap - EXIT INT TERM HUP
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        name="${STARTED[$i]}"
        stop_pid "${PIDS[$name]}" TERM 10
    done
    # Anything left inside our own namespaces (e.g. Celery pool processes) is ours.
    for ns in "${NETNS_MADE[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns delete "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/$ns"
    done
    if [[ $status -ne 0 || $FAILED -ne 0 || "${SNIGATE_E2E_KEEP:-0}" == 1 ]]; then
        echo "e2e: logs and state kept in $STATE" >&2
    else
        rm -rf "$STATE"
    fi
    [[ $status -ne 0 ]] || status=$FAILED
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# start NAME NAMESPACE LOG COMMAND...: run COMMAND in NAMESPACE in the background, output to
# LOG. `ip netns exec` and setsid both exec, so $! is COMMAND's own pid.
start() {
    local name="$1" ns="$2" log="$3"
    shift 3
    ip netns exec "$ns" setsid "$@" >>"$log" 2>&1 </dev/null &
    PIDS[$name]=$!
    LOGS[$name]="$log"
    STARTED+=("$name")
}

# wait_until NAME DESCRIPTION COMMAND...: poll COMMAND until it succeeds; fail when NAME
# (a started process, or "-") dies or after $TIMEOUT seconds.
wait_until() {
    local name="$1" what="$2" deadline=$((SECONDS + TIMEOUT))
    shift 2
    until "$@" >/dev/null 2>&1; do
        if [[ "$name" != - ]] && ! alive "${PIDS[$name]}"; then
            die "$name exited before $what" "${LOGS[$name]}"
        fi
        ((SECONDS < deadline)) || die "no $what after ${TIMEOUT}s (SNIGATE_E2E_TIMEOUT raises it)" \
            ${LOGS[$name]:+"${LOGS[$name]}"}
        sleep 0.1
    done
}

in_pub() { ip netns exec "$PUB" "$@"; }
in_priv() { ip netns exec "$PRIV" "$@"; }

# ---------------------------------------------------------------- the two "clusters"

make_namespaces() {
    say "network namespaces: $PUB ($ROUTER_IP), $PRIV ($PRIVATE_IP)"
    local err
    if ! err="$(ip netns add "$PUB" 2>&1)"; then
        die "cannot create network namespaces ('ip netns add' said: $err). This test needs root" \
            "with CAP_SYS_ADMIN and CAP_NET_ADMIN (e.g. a privileged container); it does not run" \
            "without them"
    fi
    NETNS_MADE+=("$PUB")
    err="$(ip netns add "$PRIV" 2>&1)" || die "cannot create network namespace $PRIV: $err"
    NETNS_MADE+=("$PRIV")
    ip -n "$PUB" link set lo up
    ip -n "$PRIV" link set lo up
    ip link add e2e-pub netns "$PUB" type veth peer name e2e-priv netns "$PRIV" ||
        die "cannot create the veth pair between the namespaces"
    ip -n "$PUB" addr add "$ROUTER_IP/24" dev e2e-pub
    ip -n "$PRIV" addr add "$PRIVATE_IP/24" dev e2e-priv
    ip -n "$PUB" link set e2e-pub up
    ip -n "$PRIV" link set e2e-priv up

    # The private cloud accepts no connection and may only dial the router's :443.
    in_priv nft -f - <<EOF || die "nftables rules in $PRIV failed (is the nf_tables module available?)"
table inet snigate_e2e {
    chain output {
        type filter hook output priority 0; policy drop;
        oif "lo" accept
        ct state established,related accept
        ip daddr $ROUTER_IP tcp dport 443 accept
    }
    chain input {
        type filter hook input priority 0; policy drop;
        iif "lo" accept
        ct state established,related accept
    }
}
EOF
    # DNS of the private side: the Route hosts resolve to the router (ip netns exec mounts
    # /etc/netns/NAME/hosts over /etc/hosts).
    mkdir -p "/etc/netns/$PRIV"
    printf '127.0.0.1 localhost\n%s %s %s\n' "$ROUTER_IP" "$REDIS_HOST" "$PG_HOST" \
        >"/etc/netns/$PRIV/hosts"
}

make_certs() {
    say "PKI (snigate certs): gateway $REDIS_HOST $PG_HOST, client $CLIENT_NAME"
    "$BIN" certs --out "$STATE/certs" --server-name "$REDIS_HOST" --server-name "$PG_HOST" \
        --client-name "$CLIENT_NAME" >"$STATE/certs.log" 2>&1 || die "snigate certs" "$STATE/certs.log"
    # The router's own default certificate (what a client without a Route's SNI meets).
    "$BIN" certs --out "$STATE/router-pki" --server-name router-default.apps.snigate.test \
        >>"$STATE/certs.log" 2>&1 || die "snigate certs (router default)" "$STATE/certs.log"
    cat "$STATE/router-pki/server.crt" "$STATE/router-pki/server.key" >"$STATE/router-default.pem"
}

# ---------------------------------------------------------------- public side

REDIS_ARGS=()
REDIS_RUNS=1
start_redis() {
    local n="$1"
    say "redis-server $n on 127.0.0.1:6379 in public (AOF, fsync always: a restart keeps the queue)"
    mkdir -p "$STATE/redis"
    REDIS_ARGS=(redis-server --bind 127.0.0.1 --port 6379 --dir "$STATE/redis" --save ''
        --appendonly yes --appendfsync always --daemonize no --logfile '')
    start redis "$PUB" "$STATE/redis.log" "${REDIS_ARGS[@]}"
    wait_until redis "PONG from redis-server" in_pub redis-cli -h 127.0.0.1 -p 6379 ping
}

PG_BIN=""
start_postgres() {
    PG_BIN="$(pg_bindir)" || die "no PostgreSQL server binaries (run scripts/install-deps.sh)"
    say "PostgreSQL $(basename "$(dirname "$PG_BIN")") on 127.0.0.1:5432 in public"
    mkdir -p "$STATE/pg"
    chown postgres: "$STATE/pg"
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$PG_BIN/initdb" -D "$STATE/pg" \
        -U postgres --auth=trust -E UTF8 --no-locale >"$STATE/initdb.log" 2>&1 ||
        die "initdb" "$STATE/initdb.log"
    start postgres "$PUB" "$STATE/postgres.log" setpriv --reuid=postgres --regid=postgres \
        --init-groups -- "$PG_BIN/postgres" -D "$STATE/pg" -c listen_addresses=127.0.0.1 -p 5432 \
        -c unix_socket_directories="$STATE/pg" -c fsync=off -c max_connections=200
    wait_until postgres "PostgreSQL readiness (pg_isready)" \
        in_pub pg_isready -q -h 127.0.0.1 -p 5432 -U postgres
    local db
    for db in fleet_sidecar fleet_direct fleet_bare; do
        in_pub psql -h 127.0.0.1 -U postgres -d postgres -Xqc "create database $db" \
            >>"$STATE/postgres.log" 2>&1 || die "create database $db" "$STATE/postgres.log"
    done
}

GATEWAY_RUNS=0
start_gateway() {
    GATEWAY_RUNS=$((GATEWAY_RUNS + 1))
    local log="$STATE/gateway.$GATEWAY_RUNS.log"
    say "snigate gateway ($GATEWAY_RUNS) on $GATEWAY_ADDR in public"
    start gateway "$PUB" "$log" "$BIN" gateway --config "$STATE/gateway.yaml"
    wait_until gateway "'listening' line in ${log#"$STATE"/}" grep -q "listening.*addr=$GATEWAY_ADDR" "$log"
}

write_gateway_config() {
    cat >"$STATE/gateway.yaml" <<EOF
listen: $GATEWAY_ADDR
tls:
  cert: $STATE/certs/server.crt
  key: $STATE/certs/server.key
  client_ca: $STATE/certs/ca.crt
timeouts:
  drain: 2s        # SIGTERM: open connections get 2 s, then the gateway exits
routes:
  - name: redis
    server_names: [$REDIS_HOST]
    protocol: redis
    backend: 127.0.0.1:6379
    allow: [dns:$CLIENT_NAME]
  - name: postgres
    server_names: [$PG_HOST]
    protocol: postgres
    backend: 127.0.0.1:5432
    allow: [dns:$CLIENT_NAME]
EOF
    "$BIN" gateway --config "$STATE/gateway.yaml" --check >"$STATE/gateway-check.log" 2>&1 ||
        die "snigate gateway --check on the e2e config" "$STATE/gateway-check.log"
}

start_router() {
    say "router: HAProxy $(haproxy -v | awk 'NR==1 {print $3}') on $ROUTER_IP:443 (passthrough by SNI)"
    printf '^%s$ 1\n^%s$ 1\n' "${REDIS_HOST//./\\.}" "${PG_HOST//./\\.}" >"$STATE/os_sni_passthrough.map"
    printf '^%s$ be_tcp:e2e:snigate-redis\n^%s$ be_tcp:e2e:snigate-postgres\n' \
        "${REDIS_HOST//./\\.}" "${PG_HOST//./\\.}" >"$STATE/os_tcp_be.map"
    sed -e "s|@STATE@|$STATE|g" -e "s|@ROUTER_ADDR@|$ROUTER_IP|g" \
        -e "s|@GATEWAY_ADDR@|$GATEWAY_ADDR|g" "$E2E/router-haproxy.cfg" >"$STATE/haproxy.cfg"
    haproxy -c -q -f "$STATE/haproxy.cfg" >"$STATE/haproxy-check.log" 2>&1 ||
        die "haproxy -c on the router config" "$STATE/haproxy-check.log"
    start router "$PUB" "$STATE/haproxy.log" haproxy -db -f "$STATE/haproxy.cfg"
    wait_until router "HAProxy listening on $ROUTER_IP:443" \
        bash -c "[[ -n \"\$(ip netns exec '$PUB' ss -Hltn 'sport = :443')\" ]]"
}

# ---------------------------------------------------------------- private side

start_sidecar() {
    cat >"$STATE/sidecar.yaml" <<EOF
tls:
  ca: $STATE/certs/ca.crt
  cert: $STATE/certs/client.crt
  key: $STATE/certs/client.key
tunnels:
  - name: redis
    listen: 127.0.0.1:6379
    protocol: redis
    connect: $REDIS_HOST:443
  - name: postgres
    listen: 127.0.0.1:5432
    protocol: postgres
    connect: $PG_HOST:443
EOF
    say "snigate sidecar in private: 127.0.0.1:6379 -> $REDIS_HOST:443, 127.0.0.1:5432 -> $PG_HOST:443"
    start sidecar "$PRIV" "$STATE/sidecar.log" "$BIN" sidecar --config "$STATE/sidecar.yaml"
    wait_until sidecar "'listening' lines for both tunnels in sidecar.log" \
        bash -c "grep -q 'listening.*tunnel=redis' '$STATE/sidecar.log' && grep -q 'listening.*tunnel=postgres' '$STATE/sidecar.log'"
}

# ---------------------------------------------------------------- checks of the topology

check_isolation() {
    say "isolation: private reaches only $ROUTER_IP:443; public exposes only the router"
    local port out
    for port in 8443 6379 5432; do
        if in_priv timeout 5 bash -c "exec 3<>/dev/tcp/$ROUTER_IP/$port" 2>/dev/null; then
            die "the private namespace reached $ROUTER_IP:$port; only :443 may be reachable"
        fi
    done
    in_priv timeout 5 bash -c "exec 3<>/dev/tcp/$ROUTER_IP/443" ||
        die "the private namespace cannot reach the router at $ROUTER_IP:443"
    # Every listener in public other than the router binds loopback only.
    out="$(in_pub ss -Hltn | awk '{print $4}' | grep -Ev "^(127\.0\.0\.1|\[::1\]):|^$ROUTER_IP:443\$" || true)"
    [[ -z "$out" ]] || die "listeners in public outside loopback besides the router: $out"
}

smoke() {
    say "round trip through sidecar -> router -> gateway"
    local got
    got="$(in_priv redis-cli -h 127.0.0.1 -p 6379 ping 2>&1)" || true
    [[ "$got" == PONG ]] || die "redis-cli PING through the sidecar answered: $got" \
        "$STATE/sidecar.log" "$STATE/haproxy.log" "$STATE/gateway.$GATEWAY_RUNS.log"
    got="$(in_priv env PGCONNECT_TIMEOUT=10 psql "postgresql://postgres@127.0.0.1:5432/fleet_sidecar" \
        -XAtc 'select 40 + 2' 2>&1)" || true
    [[ "$got" == 42 ]] || die "psql through the sidecar answered: $got" \
        "$STATE/sidecar.log" "$STATE/haproxy.log" "$STATE/gateway.$GATEWAY_RUNS.log"
}

# ---------------------------------------------------------------- a Celery run

done_count() {
    in_pub psql -h 127.0.0.1 -U postgres -d "$1" -XAtqc \
        "select count(*) from celery_taskmeta where status = 'SUCCESS'" 2>/dev/null || echo 0
}

# wait_done DB N: until N results are stored, the worker alive, within $TIMEOUT seconds.
wait_done() {
    local db="$1" want="$2" deadline=$((SECONDS + TIMEOUT)) n
    while :; do
        n="$(done_count "$db")"
        ((n >= want)) && return 0
        alive "${PIDS[worker]}" || die "the Celery worker exited ($n of $want results stored): $(worker_death)" "${LOGS[worker]}"
        ((SECONDS < deadline)) || die "only $n of $want results stored after ${TIMEOUT}s ($(broker_state))" \
            "${LOGS[worker]}" "$STATE/sidecar.log" "$STATE/gateway.$GATEWAY_RUNS.log"
        sleep 0.2
    done
}

# Where the remaining messages are: the queue, and kombu's unacked hash (prefetched, not acked).
broker_state() {
    local queued unacked
    queued="$(in_pub redis-cli -h 127.0.0.1 -p 6379 llen fleet 2>&1)"
    unacked="$(in_pub redis-cli -h 127.0.0.1 -p 6379 hlen unacked 2>&1)"
    printf 'broker: %s queued, %s unacked' "$queued" "$unacked"
}

# Why the Celery worker stopped: its "Unrecoverable error" line and the exception behind it.
worker_death() {
    local log="${LOGS[worker]}"
    grep -m1 -oE 'Unrecoverable error: .*' "$log" | tr '\n' ' ' || true
    # The traceback's last exception line (before the next log line) is what killed it.
    sed -n '/Unrecoverable error/,/^\[20/p' "$log" | grep -E '^[a-z_.]+\.[A-Za-z]*(Error|Exception)[A-Za-z]*: ' |
        tail -n 1 || true
}

count_lines() { grep -cE "$2" "$1" 2>/dev/null || true; }

# outage LABEL WHAT LOG PATTERN COUNT: WHAT is down; wait until the worker has noticed (it logs
# the lost connection) and has tried again and been refused at least once (a line matching
# PATTERN beyond the first COUNT in LOG: the gateway's, the sidecar's or the router's).
outage() {
    local label="$1" what="$2" log="$3" pattern="$4" before="$5" lost="$6"
    local deadline=$((SECONDS + TIMEOUT))
    until (($(count_lines "${LOGS[worker]}" 'Connection to broker lost') > lost)); do
        alive "${PIDS[worker]}" || die "[$label] the Celery worker exited after $what went down: $(worker_death)" "${LOGS[worker]}"
        ((SECONDS < deadline)) || die "[$label] the worker never noticed that $what went down" "${LOGS[worker]}"
        sleep 0.05
    done
    until (($(count_lines "$log" "$pattern") > before)); do
        alive "${PIDS[worker]}" || die "[$label] the Celery worker exited after $what went down: $(worker_death)" "${LOGS[worker]}"
        ((SECONDS < deadline)) || die "[$label] the worker did not try to reconnect while $what was down" \
            "${LOGS[worker]}" "$log"
        sleep 0.05
    done
}

# What the worker's broker client reported (redis-py exceptions and Celery's reconnect
# messages), one entry per kind with a count.
worker_saw() {
    {
        grep -oE '^redis\.exceptions\.[A-Za-z]+: .*' "$1" | sed -E 's/^redis\.exceptions\.//'
        grep -oE 'Cannot connect to [^ ]+: .*' "$1" | sed -E 's/^Cannot connect to [^ ]+: /reconnect: /'
        grep -oE 'Unrecoverable error: .*' "$1"
    } | sed -E 's/[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+:[0-9]+/ADDR/g; s/\.+$//' | sort | uniq -c | sort -rn |
        awk '{ n = $1; $1 = ""; printf "%s%dx%s", sep, n, $0; sep = "; " }' || true
}

# send_wave LABEL DB START COUNT: the producer (public, straight to Redis) sends
# fleet.add(i, i) for i in START..START+COUNT-1.
send_wave() {
    local label="$1" db="$2" start="$3" count="$4"
    in_pub env PYTHONPATH="$E2E" FLEET_BROKER_URL=redis://127.0.0.1:6379/0 \
        FLEET_RESULT_BACKEND="db+postgresql://postgres@127.0.0.1:5432/$db" \
        "$PY" "$E2E/fleet_ctl.py" send "$start" "$count" "$STATE/ids-$label.txt" \
        >>"$STATE/producer-$label.log" 2>&1 || die "[$label] producer" "$STATE/producer-$label.log"
}

received_count() {
    grep -oE 'Task fleet\.add\[[0-9a-f-]+\] received' "$1" 2>/dev/null | sort -u | wc -l
}

# wait_drained LABEL N: the queue is empty and the worker has received all N tasks sent so
# far, i.e. no message is on the wire between Redis and the worker; it is still executing the
# last ones it prefetched. (kombu's Redis transport pops a message with BRPOP: a reply cut off
# in flight by a lost connection is gone, with or without snigate, so disruptions wait for this.)
wait_drained() {
    local label="$1" want="$2" log="${LOGS[worker]}" deadline=$((SECONDS + TIMEOUT)) got queued
    while :; do
        got="$(received_count "$log")"
        queued="$(in_pub redis-cli -h 127.0.0.1 -p 6379 llen fleet 2>/dev/null || echo '?')"
        ((got >= want)) && [[ "$queued" == 0 ]] && return 0
        alive "${PIDS[worker]}" || die "[$label] the Celery worker exited ($got of $want received): $(worker_death)" "$log"
        ((SECONDS < deadline)) || die "[$label] the worker received $got of $want tasks in ${TIMEOUT}s ($(broker_state))" "$log"
        sleep 0.02
    done
}

# celery_run LABEL BROKER_URL RESULT_BACKEND DB: a worker, three waves of tasks with a Redis
# restart and a gateway restart between them (each while the worker is still executing the
# previous wave), then every result checked.
celery_run() {
    local label="$1" broker="$2" backend="$3" db="$4"
    local log="$STATE/worker-$label.log" ids="$STATE/ids-$label.txt"
    local -a env=(env PYTHONPATH="$E2E" FLEET_BROKER_URL="$broker" FLEET_RESULT_BACKEND="$backend"
        FLEET_TLS_DIR="$STATE/certs" FLEET_TASK_DELAY=0.05 FLEET_VISIBILITY_TIMEOUT=15)
    local ns="$PRIV" where=private
    [[ "$label" != bare ]] || ns="$PUB" where=public
    say "[$label] Celery worker in $where: broker ${broker%%@*}…, result backend ${backend%%\?*}"
    start worker "$ns" "$log" "${env[@]}" "$PY" -m celery -A fleet worker --loglevel INFO \
        --concurrency 4 --pool prefork --prefetch-multiplier 8 -n "$label@e2e" -Q fleet \
        --without-gossip --without-mingle --without-heartbeat
    wait_until worker "Celery worker ready (worker-$label.log)" grep -q "$label@e2e ready" "$log"

    local t0 w1=$((TASKS * 3 / 10)) w2=$((TASKS * 3 / 10)) lost refused refusals pattern
    local w3=$((TASKS - w1 - w2))
    t0="$(date +%s.%N)"
    : >"$ids"
    say "[$label] producer in public: $TASKS x fleet.add(i, i) in three waves ($w1, $w2, $w3)"
    send_wave "$label" "$db" 0 "$w1"
    wait_drained "$label" "$w1"

    say "[$label] wave 1 in the worker ($(done_count "$db") done): restarting Redis"
    lost="$(count_lines "$log" 'Connection to broker lost')"
    refusals="$STATE/gateway.$GATEWAY_RUNS.log" pattern='route="?redis.*reason=backend_unreachable'
    [[ "$label" != bare ]] || refusals="$log" pattern='Cannot connect to|Connection refused'
    refused="$(count_lines "$refusals" "$pattern")"
    stop redis TERM
    outage "$label" Redis "$refusals" "$pattern" "$refused" "$lost"
    start_redis $((++REDIS_RUNS))
    send_wave "$label" "$db" "$w1" "$w2"
    wait_drained "$label" $((w1 + w2))

    if [[ "$label" != bare ]]; then
        say "[$label] wave 2 in the worker ($(done_count "$db") done): restarting the gateway (SIGTERM, drain)"
        lost="$(count_lines "$log" 'Connection to broker lost')"
        if [[ "$label" == sidecar ]]; then
            refusals="$STATE/sidecar.log" pattern='tunnel=redis.*reason=gateway_'
        else
            refusals="$STATE/haproxy.log" pattern='be_tcp:e2e:snigate-redis/gateway .* SC'
        fi
        refused="$(count_lines "$refusals" "$pattern")"
        stop gateway TERM
        outage "$label" "the gateway" "$refusals" "$pattern" "$refused" "$lost"
        start_gateway
    fi
    send_wave "$label" "$db" $((w1 + w2)) "$w3"
    finish_run "$label" "$db" "$log" "$ids" "$t0"
}

# finish_run LABEL DB WORKER_LOG IDS T0: wait for every result, stop the worker, check.
finish_run() {
    local label="$1" db="$2" log="$3" ids="$4" t0="$5" t1
    wait_done "$db" "$TASKS"
    t1="$(date +%s.%N)"

    stop worker TERM 30
    local elapsed
    elapsed="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    local line
    if line="$(in_pub env PYTHONPATH="$E2E" FLEET_BROKER_URL=redis://127.0.0.1:6379/0 \
        FLEET_RESULT_BACKEND="db+postgresql://postgres@127.0.0.1:5432/$db" \
        "$PY" "$E2E/fleet_ctl.py" check "$ids" "$log" "$label" "$elapsed" 2>"$STATE/check-$label.log")"; then
        RESULTS+=("$line")
    else
        RESULTS+=("${line:-e2e[$label]: check failed}")
        FAILED=1
        echo "$line" >&2
        show_log "$STATE/check-$label.log"
    fi
    echo "$line"
    RESULTS+=("e2e[$label]: the worker's broker connection: $(worker_saw "$log")")
}

# ---------------------------------------------------------------- PostgreSQL without SNI

check_sslrequest_not_routed() {
    say "a PostgreSQL SSLRequest (libpq < 17, psql's default) sent to the router"
    local got t0 t1 secs psql_out
    got="$(in_pub "$PY" "$E2E/sslrequest_probe.py" 127.0.0.1 8443 10)" ||
        die "SSLRequest probe to the gateway failed"
    [[ "$got" == "answer: S" ]] || die "the gateway answered an SSLRequest with '$got', expected S"
    t0="$(date +%s.%N)"
    got="$(in_priv "$PY" "$E2E/sslrequest_probe.py" "$PG_HOST" 443 20)" ||
        die "SSLRequest probe to the router failed"
    t1="$(date +%s.%N)"
    secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    case "$got" in
        "answer: S") die "the router forwarded a PostgreSQL SSLRequest to the gateway (answer S)" ;;
        "answer: timeout") die "the router neither answered nor closed an SSLRequest in 20 s" ;;
    esac
    grep -q 'public_ssl be_no_sni/fe_no_sni' "$STATE/haproxy.log" ||
        die "HAProxy's log does not show the SSLRequest going to be_no_sni" "$STATE/haproxy.log"
    psql_out="$(in_priv env PGCONNECT_TIMEOUT=20 psql \
        "host=$PG_HOST port=443 sslmode=require user=postgres dbname=fleet_direct" -XAtc 'select 1' 2>&1)" &&
        die "psql (libpq $(psql --version | awk '{print $3}'), SSLRequest first) got through the router: $psql_out"
    psql_out="$(tr -s '[:space:]' ' ' <<<"$psql_out" | sed -E 's/ $//')"
    RESULTS+=("e2e[router]: PostgreSQL SSLRequest to the router is not routed: $got after $secs s (HAProxy: be_no_sni); the gateway itself answers S; psql $(psql --version | awk '{print $3}') sslmode=require: ${psql_out:0:160}")
}

# ---------------------------------------------------------------- main

"$REPO_ROOT/scripts/install-deps.sh"
if [[ -z "${SNIGATE_BIN:-}" ]]; then
    cargo build --quiet 2>"$STATE/build.log" || die "cargo build" "$STATE/build.log"
fi
[[ -x "$BIN" ]] || die "no snigate binary at $BIN"
for tool in haproxy nft ip setpriv; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/install-deps.sh installs it)"
done

START=$SECONDS
make_namespaces
make_certs
write_gateway_config
start_redis 1
start_postgres
start_gateway
start_router
start_sidecar
check_isolation
smoke

# SQLAlchemy >= 2.1 maps postgresql:// to psycopg 3; +psycopg2 keeps the classic driver (and
# its older bundled libpq) that unmodified workers use, which only works through the sidecar.
C="$STATE/certs"
for run in ${SNIGATE_E2E_RUNS:-sidecar direct}; do
    case "$run" in
        sidecar)
            celery_run sidecar redis://localhost:6379/0 \
                "db+postgresql+psycopg2://postgres@localhost:5432/fleet_sidecar" fleet_sidecar ;;
        direct)
            stop sidecar TERM # the direct worker must not lean on it
            celery_run direct "rediss://$REDIS_HOST:443/0" \
                "db+postgresql+psycopg://postgres@$PG_HOST:443/fleet_direct?sslmode=verify-full&sslnegotiation=direct&sslrootcert=$C/ca.crt&sslcert=$C/client.crt&sslkey=$C/client.key&connect_timeout=10" \
                fleet_direct ;;
        bare)
            # Baseline without snigate: the worker in public, straight to Redis/PostgreSQL.
            celery_run bare redis://127.0.0.1:6379/0 \
                "db+postgresql+psycopg2://postgres@127.0.0.1:5432/fleet_bare" fleet_bare ;;
        *) die "unknown run '$run' in SNIGATE_E2E_RUNS (sidecar, direct, bare)" ;;
    esac
done

check_sslrequest_not_routed

echo
say "summary ($((SECONDS - START)) s in all)"
printf '%s\n' "${RESULTS[@]}"
if [[ $FAILED -ne 0 ]]; then
    echo "e2e: FAILED (see above)" >&2
    exit 1
fi
echo "e2e: 3 passed, 0 failed"

#!/usr/bin/env bash
# Run snigate locally: Redis and PostgreSQL behind a gateway, reached through a sidecar.
#
#   scripts/demo.sh          start everything, do a round trip, stop everything
#   scripts/demo.sh --keep   same, then keep it all running until Ctrl-C
#
#   redis-server  127.0.0.1:16379   \                      / sidecar 127.0.0.1:6379 (redis)
#   postgres      127.0.0.1:15432    > gateway 127.0.0.1:8443 <
#                                   /   (TLS, SNI, mTLS)   \ sidecar 127.0.0.1:5432 (postgres)
#
# State and logs live in .demo/ (git-ignored); dev certificates in certs/dev/ (git-ignored).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

KEEP=0
for arg in "$@"; do
    case "$arg" in
        --keep) KEEP=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "demo: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
    esac
done

STATE="$REPO_ROOT/.demo"
CERTS=certs/dev
BIN=target/release/snigate
READY_TIMEOUT="${SNIGATE_DEMO_TIMEOUT:-30}" # seconds to wait for each service to be ready
REDIS_PORT=16379
PG_PORT=15432
GATEWAY_ADDR=127.0.0.1:8443
SIDECAR_REDIS_PORT=6379
SIDECAR_PG_PORT=5432
GATEWAY_ADMIN_PORT=9090 # config/gateway.yaml admin:
SIDECAR_ADMIN_PORT=9091 # config/sidecar.yaml admin:
PID_DIR="$STATE"        # NAME.pid of what runs, so a later run can name leftovers
export RUST_LOG="${RUST_LOG:-info}"

# Stops everything (sidecar first); a process that does not exit 0 fails the demo.
cleanup() {
    local status=$? pid
    trap - EXIT INT TERM HUP
    stop_started
    for pid in "${STOPPED_BADLY[@]}"; do
        echo "demo: ${PID_NAME[$pid]} exited with status ${EXIT_STATUS[$pid]} after" \
            "SIG${STOP_SIGNAL[$pid]:-TERM} (expected 0)" >&2
        show_log "${PID_LOG[$pid]}"
        status=1
    done
    exit "$status"
}
on_exit cleanup

# log_has LOG PATTERN...: every extended regexp matches some line of LOG.
log_has() {
    local log="$1" pattern
    shift
    for pattern in "$@"; do
        grep -Eq -- "$pattern" "$log" || return 1
    done
}

check_ports() {
    local addr port who taken=0 system=0 pidfile
    for addr in "127.0.0.1:$REDIS_PORT redis-server" "127.0.0.1:$PG_PORT postgres" \
        "$GATEWAY_ADDR snigate-gateway" "127.0.0.1:$SIDECAR_REDIS_PORT snigate-sidecar(redis)" \
        "127.0.0.1:$SIDECAR_PG_PORT snigate-sidecar(postgres)" \
        "127.0.0.1:$GATEWAY_ADMIN_PORT snigate-gateway(admin)" \
        "127.0.0.1:$SIDECAR_ADMIN_PORT snigate-sidecar(admin)"; do
        port="${addr%% *}"
        port="${port##*:}"
        who="$(port_listener "$port")"
        [[ -n "$who" ]] || continue
        taken=1
        [[ $port != "$SIDECAR_REDIS_PORT" && $port != "$SIDECAR_PG_PORT" ]] || system=1
        echo "demo: port $port is needed for ${addr#* } but is taken: $who" >&2
    done
    [[ $taken -eq 0 ]] && return 0
    for pidfile in "$STATE"/*.pid; do
        [[ -e "$pidfile" ]] || continue
        if alive "$(cat "$pidfile")"; then
            echo "demo: $(basename "$pidfile" .pid) (pid $(cat "$pidfile")) is left over from an" \
                "earlier demo run; stop it with: kill $(cat "$pidfile")" >&2
        fi
    done
    if [[ $system -eq 1 ]]; then
        echo "demo: hint: a system Redis or PostgreSQL service may hold $SIDECAR_REDIS_PORT/$SIDECAR_PG_PORT" \
            "(stop it, e.g. 'service redis-server stop' or 'service postgresql stop')" >&2
    fi
    exit 1
}

build() {
    say "building snigate (cargo build --release; the first build takes a few minutes)"
    cargo build --release --quiet >"$STATE/build.log" 2>&1 || die "cargo build --release" "$STATE/build.log"
}

make_certs() {
    local f
    for f in ca.crt ca.key server.crt server.key client.crt client.key; do
        [[ -s "$CERTS/$f" ]] && continue
        say "generating the dev PKI in $CERTS (snigate certs)"
        "$BIN" certs --out "$CERTS" --server-name redis.snigate.test \
            --server-name postgres.snigate.test --client-name worker.snigate.test \
            >"$STATE/certs.log" 2>&1 || die "snigate certs" "$STATE/certs.log"
        return 0
    done
}

start_demo_redis() {
    say "starting redis-server on 127.0.0.1:$REDIS_PORT (no persistence)"
    start_redis redis "$REDIS_PORT" "$STATE/redis" "$STATE/redis.log" --logfile ''
}

start_demo_postgres() {
    local pgdata="$STATE/pg"
    if [[ $EUID -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' system user (apt-get install postgresql)"
        if ! "${AS_PG[@]}" test -x "$STATE"; then
            # e.g. a checkout under /root: the postgres user cannot reach .demo/, use /tmp.
            pgdata="${TMPDIR:-/tmp}/snigate-demo-pg"
        fi
    fi
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    start_postgres postgres "$pgdata" "$PG_PORT" "$STATE/postgres.log"
    if [[ "$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -XAtqc \
        "select 1 from pg_database where datname = 'demo'")" != 1 ]]; then
        psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Xqc 'create database demo' \
            >>"$STATE/postgres.log" 2>&1 || die "create database demo" "$STATE/postgres.log"
    fi
}

# start_snigate ROLE PATTERN...: start `snigate ROLE --config config/ROLE.yaml` and wait until
# its log has a `listening` line matching each PATTERN.
start_snigate() {
    local role="$1" pattern
    shift
    local -a patterns=()
    for pattern in "$@"; do patterns+=("listening.*$pattern"); done
    say "starting snigate $role (config/$role.yaml)"
    start_bg "$role" "$STATE/$role.log" "$BIN" "$role" --config "config/$role.yaml"
    wait_for "'listening' log lines ($*) in .demo/$role.log" "$START_PID" \
        log_has "$STATE/$role.log" "${patterns[@]}"
}

# Round trips through the sidecar (plain clients) and straight to the gateway (TLS clients).
round_trip() {
    local value got out
    value="hello through snigate $(date +%s)"
    echo
    say "round trip through the sidecar"
    echo "\$ redis-cli -p $SIDECAR_REDIS_PORT SET snigate:demo \"$value\""
    out="$(redis-cli -h 127.0.0.1 -p "$SIDECAR_REDIS_PORT" SET snigate:demo "$value" 2>&1)" ||
        die "redis-cli SET through the sidecar: $out" "$STATE/sidecar.log"
    echo "$out"
    [[ "$out" == OK ]] || die "redis-cli SET through the sidecar answered: $out" "$STATE/gateway.log"
    echo "\$ redis-cli -p $SIDECAR_REDIS_PORT GET snigate:demo"
    got="$(redis-cli -h 127.0.0.1 -p "$SIDECAR_REDIS_PORT" GET snigate:demo 2>&1)" ||
        die "redis-cli GET through the sidecar: $got" "$STATE/sidecar.log"
    echo "$got"
    [[ "$got" == "$value" ]] || die "GET through the sidecar returned '$got', expected '$value'" "$STATE/gateway.log"

    local sql="select current_database() as db, current_user as usr, split_part(version(), ' ', 2) as server_version"
    echo "\$ psql \"postgresql://postgres@127.0.0.1:$SIDECAR_PG_PORT/demo\" -c \"$sql\""
    PGCONNECT_TIMEOUT=10 psql "postgresql://postgres@127.0.0.1:$SIDECAR_PG_PORT/demo" -X -c "$sql" ||
        die "psql through the sidecar" "$STATE/gateway.log"

    echo
    say "round trip straight to the gateway (TLS with SNI and a client certificate)"
    echo "\$ redis-cli --tls --sni redis.snigate.test --cacert $CERTS/ca.crt --cert $CERTS/client.crt --key $CERTS/client.key -p 8443 GET snigate:demo"
    got="$(redis-cli -h 127.0.0.1 -p 8443 --tls --sni redis.snigate.test --cacert "$CERTS/ca.crt" \
        --cert "$CERTS/client.crt" --key "$CERTS/client.key" GET snigate:demo 2>&1)" ||
        die "redis-cli --tls to the gateway: $got" "$STATE/gateway.log"
    echo "$got"
    [[ "$got" == "$value" ]] || die "GET via the gateway returned '$got', expected '$value'" "$STATE/gateway.log"

    sql="select 'via the gateway' as path, current_database() as db, current_user as usr"
    echo "\$ psql \"$(psql_direct)\" -c \"$sql\""
    PGCONNECT_TIMEOUT=10 psql "$(psql_direct)" -X -c "$sql" ||
        die "psql with sslmode=verify-full to the gateway" "$STATE/gateway.log"

    local py="$REPO_ROOT/.venv/bin/python"
    echo "\$ psycopg (libpq $("$py" -c 'import psycopg; print(psycopg.pq.version())' 2>/dev/null)) with sslnegotiation=direct"
    "$py" - "$(psql_direct) sslnegotiation=direct" <<'PY' || die "psycopg sslnegotiation=direct to the gateway" "$STATE/gateway.log"
import sys, psycopg
with psycopg.connect(sys.argv[1], connect_timeout=10) as conn:
    print("connected with", "direct TLS" if conn.pgconn.ssl_in_use else "no TLS?",
          "->", conn.execute("select current_database()").fetchone()[0])
PY
}

psql_direct() {
    printf 'host=postgres.snigate.test hostaddr=127.0.0.1 port=8443 sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s user=postgres dbname=demo' \
        "$CERTS/ca.crt" "$CERTS/client.crt" "$CERTS/client.key"
}

print_howto() {
    cat <<EOF

==> point clients at it
  through the sidecar (what unmodified workers use):
    redis://localhost:$SIDECAR_REDIS_PORT/0
    postgresql://postgres@localhost:$SIDECAR_PG_PORT/demo
  straight to the gateway (the client does TLS with SNI itself):
    redis-cli --tls --sni redis.snigate.test --cacert $CERTS/ca.crt --cert $CERTS/client.crt --key $CERTS/client.key -p 8443
    psql "$(psql_direct)"
    (libpq checks the certificate against host=, so use the route's name there and hostaddr= for the IP;
     libpq 17 clients may add sslnegotiation=direct)
  logs: .demo/{redis,postgres,gateway,sidecar}.log
EOF
}

mkdir -p "$STATE"
"$REPO_ROOT/scripts/install-deps.sh"
check_ports
build
make_certs
start_demo_redis
start_demo_postgres
start_snigate gateway "addr=$GATEWAY_ADDR"
start_snigate sidecar "tunnel=redis.*addr=127.0.0.1:$SIDECAR_REDIS_PORT|addr=127.0.0.1:$SIDECAR_REDIS_PORT.*tunnel=redis" \
    "tunnel=postgres.*addr=127.0.0.1:$SIDECAR_PG_PORT|addr=127.0.0.1:$SIDECAR_PG_PORT.*tunnel=postgres"
round_trip
print_howto

if [[ $KEEP -eq 0 ]]; then
    echo
    say "demo passed; stopping (run scripts/demo.sh --keep to leave it running)"
    exit 0
fi

echo
say "everything is running; press Ctrl-C to stop"
# Wait for Ctrl-C (the INT trap exits, cleanup stops the rest) or for one process to die.
set +e
wait -n "${STARTED_PIDS[@]}"
set -e
for pid in "${STARTED_PIDS[@]}"; do
    alive "$pid" || die "${PID_NAME[$pid]} stopped unexpectedly" "${PID_LOG[$pid]}"
done

# shellcheck shell=bash
# Start/stop pieces of bench/wan.sh: ports, backends with their own TLS, the emulated link,
# the chains with the link between their two sides, and probes for snigate's optional keys.
# Needs from wan.sh: W, PKI, PORT_BASE, SNIGATE_BIN, LINK_BIN, RTT, WINDOW, HANDSHAKE, TRACE,
# READY_TIMEOUT,
# REDIS_PORT, REDIS_TLS_PORT, PG_PORT, PG_DB.

# shellcheck source=bench/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=bench/lib/chains.sh
source "$(dirname "${BASH_SOURCE[0]}")/chains.sh"

# Chains in report order; the number gives their ports (B = PORT_BASE): B+10i+1 Redis and
# B+10i+2 PostgreSQL (client side), B+10i+3 Redis without resumption, B+10i+5 the server
# side, B+10i+6 the link to it. plain and backend-tls have no proxies: their client-side
# ports are the link's, to Redis/PostgreSQL (plain) or to their TLS ports (backend-tls).
WAN_CHAINS=(plain snigate snigate-warm snigate-login stunnel haproxy nginx backend-tls)
declare -A WAN_CHAIN_NO=([plain]=1 [snigate]=2 [snigate-warm]=3 [snigate-login]=4 [stunnel]=5
    [haproxy]=6 [nginx]=7 [backend-tls]=8)
# Backends: B+1 Redis, B+2 PostgreSQL (TLS by SSLRequest), B+3 Redis's TLS port;
# the link's check route: B+8 -> B+7 (an echo server of bench/lib/wan_rtt.py).
PG_SCRAM_USER=bench_scram
PG_TRUST_USER=bench_trust

wan_ports() {
    local base="$1" c i
    echo $((base + 1)) $((base + 2)) $((base + 3)) $((base + 7)) $((base + 8))
    for c in "${WAN_CHAINS[@]}"; do
        i=${WAN_CHAIN_NO[$c]}
        echo $((base + 10 * i + 1)) $((base + 10 * i + 2)) $((base + 10 * i + 3)) \
            $((base + 10 * i + 5)) $((base + 10 * i + 6))
    done
}

# pick_port_base FIRST: the first base (FIRST, FIRST+100, ...) whose ports no socket uses
# (listening or connected; a connection's local port blocks a listener too). Keep FIRST
# below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768+ by default), where
# a client's connect could take one of our ports at any moment.
pick_port_base() {
    local base="$1" taken p free
    taken=" $(ss -Htan | awk '$1 != "TIME-WAIT" { n = split($4, a, ":"); printf "%s ", a[n] }')"
    for ((; base < 65000; base += 100)); do
        free=1
        for p in $(wan_ports "$base"); do
            [[ $taken == *" $p "* ]] && free=0 && break
        done
        [[ $free -eq 0 ]] || { echo "$base"; return 0; }
    done
    return 1
}

set_chain_ports() {
    local c="$1" i=${WAN_CHAIN_NO[$1]}
    PORT_REDIS[$c]=$((PORT_BASE + 10 * i + 1))
    PORT_PG[$c]=$((PORT_BASE + 10 * i + 2))
    PORT_REDIS_FULL[$c]=$((PORT_BASE + 10 * i + 3))
    case "$c" in
        plain | backend-tls) ;;
        *)
            PORT_SERVER[$c]=$((PORT_BASE + 10 * i + 5))
            PORT_UPSTREAM[$c]=$((PORT_BASE + 10 * i + 6))
            ;;
    esac
}

# link_routes CHAIN: the link's --route arguments for one chain.
link_routes() {
    local c="$1"
    case "$c" in
        plain)
            echo "--route 127.0.0.1:${PORT_REDIS[$c]}=127.0.0.1:$REDIS_PORT"
            echo "--route 127.0.0.1:${PORT_PG[$c]}=127.0.0.1:$PG_PORT"
            ;;
        backend-tls)
            echo "--route 127.0.0.1:${PORT_REDIS[$c]}=127.0.0.1:$REDIS_TLS_PORT"
            echo "--route 127.0.0.1:${PORT_PG[$c]}=127.0.0.1:$PG_PORT"
            ;;
        *) echo "--route 127.0.0.1:${PORT_UPSTREAM[$c]}=127.0.0.1:${PORT_SERVER[$c]}" ;;
    esac
}

start_link() {
    local c
    local -a routes=(--route "127.0.0.1:$((PORT_BASE + 8))=127.0.0.1:$((PORT_BASE + 7))")
    for c in "$@"; do
        # shellcheck disable=SC2207  # words without spaces
        routes+=($(link_routes "$c"))
    done
    [[ $HANDSHAKE -eq 1 ]] || routes+=(--no-handshake)
    [[ $TRACE -eq 0 ]] || routes+=(--trace "$W/wanlink.trace")
    # shellcheck disable=SC2153  # LINK_BIN: set by wan.sh
    start_bg wanlink "$W/wanlink.log" "$LINK_BIN" --rtt "$RTT" --window "$WINDOW" "${routes[@]}"
    LINK_PID=$START_PID
    wait_for "link ready" "$LINK_PID" grep -q '^wanlink: ready' "$W/wanlink.log"
}

# ------------------------------------------------------------------------------- backends
as_postgres() {
    if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_wan_redis() {
    start_bg redis "$W/redis.log" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
        --tls-port "$REDIS_TLS_PORT" --tls-cert-file "$PKI/server.crt" \
        --tls-key-file "$PKI/server.key" --tls-ca-cert-file "$PKI/ca.crt" \
        --tls-auth-clients yes --tls-protocols TLSv1.3 --tls-ciphersuites "$TLS13_SUITES" \
        --save '' --appendonly no --protected-mode no --daemonize no
    wait_for "redis-server answering" "$START_PID" redis-cli -p "$REDIS_PORT" ping
}

# PostgreSQL with TLS (client certificates required on TLS connections), a SCRAM-SHA-256
# user and a trust user, on TCP with and without TLS.
start_wan_postgres() {
    local bindir log="$W/pg/setup.log" tls="$W/pg/tls"
    bindir="$(pg_bindir)" || die "no PostgreSQL server under /usr/lib/postgresql/*/bin"
    mkdir -p "$tls"
    cp "$PKI/server.crt" "$PKI/server.key" "$PKI/ca.crt" "$tls/"
    chmod 600 "$tls/server.key"
    [[ $EUID -ne 0 ]] || chown -R postgres: "$W/pg"
    quietly "$log" as_postgres "$bindir/initdb" -D "$W/pg/data" -U postgres -A trust --no-sync
    cat >>"$W/pg/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$W/pg'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = '$tls/server.crt'
ssl_key_file = '$tls/server.key'
ssl_ca_file = '$tls/ca.crt'
ssl_min_protocol_version = 'TLSv1.3'
CONF
    cat >"$W/pg/data/pg_hba.conf" <<HBA
local all postgres trust
host all postgres 127.0.0.1/32 trust
hostssl all $PG_TRUST_USER 127.0.0.1/32 trust clientcert=verify-ca
hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-ca
hostnossl all $PG_TRUST_USER 127.0.0.1/32 trust
hostnossl all all 127.0.0.1/32 scram-sha-256
HBA
    quietly "$log" as_postgres "$bindir/pg_ctl" -D "$W/pg/data" -l "$W/pg/postgres.log" -w -t 60 start
    PG_CTL="$bindir/pg_ctl"
    # the password goes on stdin, never on a command line
    quietly "$log" psql -h "$W/pg" -p "$PG_PORT" -U postgres -q -v ON_ERROR_STOP=1 -f - <<SQL
create role $PG_SCRAM_USER login password '$(cat "$W/pg-password")';
create role $PG_TRUST_USER login;
create database $PG_DB owner $PG_SCRAM_USER;
SQL
}

stop_wan_postgres() {
    [[ -n "${PG_CTL:-}" ]] || return 0
    as_postgres "$PG_CTL" -D "$W/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    PG_CTL=""
}

# ------------------------------------------------------------------------------- snigate keys
# feature_missing ROLE: writes a minimal config using the key the chain variant needs and
# prints why the binary refuses it (nothing when `snigate ROLE --config F --check` passes).
feature_missing() {
    local role="$1" file="$W/probe-$1.yaml" err
    if [[ $role == sidecar ]]; then
        cat >"$file" <<YAML
tls: {ca: $PKI/ca.crt, cert: $PKI/client.crt, key: $PKI/client.key}
tunnels:
  - {name: probe, listen: "127.0.0.1:1", protocol: redis, connect: "127.0.0.1:2", server_name: $REDIS_SNI, warm: 2}
YAML
    else
        cat >"$file" <<YAML
listen: 127.0.0.1:1
tls: {cert: $PKI/server.crt, key: $PKI/server.key, client_ca: $PKI/ca.crt}
routes:
  - name: postgres
    server_names: [$PG_SNI]
    protocol: postgres
    backend: 127.0.0.1:$PG_PORT
    login: {user: $PG_SCRAM_USER, password_file: $W/pg-password}
YAML
    fi
    if ! err="$("$SNIGATE_BIN" "$role" --config "$file" --check 2>&1 >/dev/null)"; then
        echo "${err%%$'\n'*}"
    fi
}

# start_wan_chain CHAIN: the chain's processes (none for plain and backend-tls).
start_wan_chain() {
    local c="$1"
    mkdir -p "$W/$c"
    case "$c" in
        plain | backend-tls) ;;
        snigate | snigate-warm | snigate-login) start_snigate "$c" "${SNIGATE_WORKERS:-1}" ;;
        stunnel) start_stunnel ;;
        haproxy) start_haproxy ;;
        nginx) start_nginx ;;
        *) die "unknown chain '$c'" ;;
    esac
}

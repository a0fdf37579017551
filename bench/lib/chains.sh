# shellcheck shell=bash
# The chains under test. Each is a client side (plaintext listeners for the load generators)
# and a server side (one TLS port, routing by SNI to Redis or PostgreSQL); `direct` has none.
#
# Every chain: TLS 1.3, mutual TLS (the client side presents client.crt, the server side
# requires a certificate from ca.crt, the client side verifies the server against ca.crt and
# the SNI name), the same ECDSA P-256 certificates from `snigate certs`, the same TLS 1.3
# cipher suite order on both sides ($TLS13_SUITES), one worker process or thread per side
# where the program lets us choose, per-connection logging off.
#
# Ports, from $PORT_BASE (B): Redis B+1, PostgreSQL B+2; chain number i (1..5; 5 is
# snigate-mt, only run when asked for with --chains):
#   B+10i+1 redis (client side), B+10i+2 postgres (client side),
#   B+10i+3 redis with TLS session resumption turned off (client side), B+10i+5 server side.
# Needs from run.sh: W (work dir), PKI, SNIGATE_BIN, PORT_BASE, SNIGATE_LOG; optional
# SNIGATE_WORKERS (runtime.worker_threads of the `snigate` chain, default 1).

REDIS_SNI=redis.bench.test
PG_SNI=postgres.bench.test
# shellcheck disable=SC2034  # used by run.sh
CLIENT_NAME=worker.bench.test
# TLS 1.3 cipher suites, most preferred first, for every peer's client side and server side:
# snigate's sidecar offers this order and its gateway follows the client's, so the peers get
# the same (OpenSSL's default puts AES-256 first).
TLS13_SUITES=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256

declare -A CLIENT_PIDS=() SERVER_PIDS=() PORT_REDIS=() PORT_PG=() PORT_REDIS_FULL=() PORT_SERVER=()
# Optional, per chain: the port its client side connects to instead of its server side's
# (bench/wan.sh puts an emulated WAN link there); YAML lines added to every snigate tunnel
# and to the snigate postgres route (features a chain variant switches on).
declare -A PORT_UPSTREAM=() SNIGATE_TUNNEL_YAML=() SNIGATE_PG_ROUTE_YAML=()

# upstream_port CHAIN: where the chain's client side connects.
upstream_port() { echo "${PORT_UPSTREAM[$1]:-${PORT_SERVER[$1]}}"; }

chain_ports() {
    local chain="$1" i
    case "$chain" in
        direct)
            PORT_REDIS[$chain]=$((PORT_BASE + 1))
            PORT_PG[$chain]=$((PORT_BASE + 2))
            PORT_REDIS_FULL[$chain]=$((PORT_BASE + 1))
            return
            ;;
        snigate) i=1 ;;
        snigate-mt) i=5 ;;
        stunnel) i=2 ;;
        haproxy) i=3 ;;
        nginx) i=4 ;;
        *) die "unknown chain '$chain'" ;;
    esac
    PORT_REDIS[$chain]=$((PORT_BASE + 10 * i + 1))
    PORT_PG[$chain]=$((PORT_BASE + 10 * i + 2))
    PORT_REDIS_FULL[$chain]=$((PORT_BASE + 10 * i + 3))
    PORT_SERVER[$chain]=$((PORT_BASE + 10 * i + 5))
}

# All proxy processes of a chain (both sides), for CPU accounting.
chain_pids() { echo "${CLIENT_PIDS[$1]:-} ${SERVER_PIDS[$1]:-}"; }

start_chain() {
    local chain="$1"
    chain_ports "$chain"
    mkdir -p "$W/$chain"
    case "$chain" in
        direct) ;;
        snigate) start_snigate snigate "${SNIGATE_WORKERS:-1}" ;;
        snigate-mt) start_snigate snigate-mt 2 ;;
        stunnel) start_stunnel ;;
        haproxy) start_haproxy ;;
        nginx) start_nginx ;;
    esac
}

# ---------------------------------------------------------------------------------- snigate
# start_snigate CHAIN THREADS: runtime.worker_threads THREADS in both processes. `snigate`
# has one per side, as every peer here (nginx worker_processes 1, HAProxy nbthread 1);
# `snigate-mt` is the same with two, to compare runtime layouts in one run.
start_snigate() {
    local chain="$1" threads="$2"
    local d="$W/$chain" s="${PORT_SERVER[$chain]}" up
    local tunnel_extra="${SNIGATE_TUNNEL_YAML[$chain]:-}" pg_extra="${SNIGATE_PG_ROUTE_YAML[$chain]:-}"
    up="$(upstream_port "$chain")"
    cat >"$d/gateway.yaml" <<YAML
listen: 127.0.0.1:$s
runtime:
  worker_threads: $threads
tls:
  cert: $PKI/server.crt
  key: $PKI/server.key
  client_ca: $PKI/ca.crt
routes:
  - name: redis
    server_names: [$REDIS_SNI]
    protocol: redis
    backend: 127.0.0.1:$REDIS_PORT
  - name: postgres
    server_names: [$PG_SNI]
    protocol: postgres
    backend: 127.0.0.1:$PG_PORT
$pg_extra
YAML
    cat >"$d/sidecar.yaml" <<YAML
runtime:
  worker_threads: $threads
tls:
  ca: $PKI/ca.crt
  cert: $PKI/client.crt
  key: $PKI/client.key
tunnels:
  - name: redis
    listen: 127.0.0.1:${PORT_REDIS[$chain]}
    protocol: redis
    connect: 127.0.0.1:$up
    server_name: $REDIS_SNI
$tunnel_extra
  - name: postgres
    listen: 127.0.0.1:${PORT_PG[$chain]}
    protocol: postgres
    connect: 127.0.0.1:$up
    server_name: $PG_SNI
$tunnel_extra
  # the full-handshake workload: every connection of this tunnel does a full handshake
  - name: redis-full
    listen: 127.0.0.1:${PORT_REDIS_FULL[$chain]}
    protocol: redis
    connect: 127.0.0.1:$up
    server_name: $REDIS_SNI
    session_resumption: false
$tunnel_extra
YAML
    start_bg "$chain-gateway" "$d/gateway.log" env RUST_LOG="$SNIGATE_LOG" \
        "$SNIGATE_BIN" gateway --config "$d/gateway.yaml"
    SERVER_PIDS[$chain]=$START_PID
    wait_for "$chain gateway listening" "$START_PID" port_open 127.0.0.1 "$s"
    start_bg "$chain-sidecar" "$d/sidecar.log" env RUST_LOG="$SNIGATE_LOG" \
        "$SNIGATE_BIN" sidecar --config "$d/sidecar.yaml"
    CLIENT_PIDS[$chain]=$START_PID
    wait_for "$chain sidecar listening" "$START_PID" port_open 127.0.0.1 "${PORT_REDIS_FULL[$chain]}"
}

# ---------------------------------------------------------------------------------- stunnel
# stunnel 5 (pthread build) runs one thread per connection; it has no worker setting.
stunnel_client_service() {
    local name="$1" port="$2" sni="$3" resume="$4"
    cat <<CONF
[$name]
client = yes
accept = 127.0.0.1:$port
connect = 127.0.0.1:$(upstream_port stunnel)
sni = $sni
checkHost = $sni
verifyChain = yes
CAfile = $PKI/ca.crt
cert = $PKI/client.crt
key = $PKI/client.key
sslVersionMin = TLSv1.3
ciphersuites = $TLS13_SUITES
sessionResume = $resume
CONF
}

start_stunnel() {
    local d="$W/stunnel" s="${PORT_SERVER[stunnel]}"
    {
        printf 'foreground = yes\npid =\ndebug = 3\n\n'
        cat <<CONF
cert = $PKI/server.crt
key = $PKI/server.key
CAfile = $PKI/ca.crt
verifyChain = yes
sslVersionMin = TLSv1.3
ciphersuites = $TLS13_SUITES

[tls]
accept = 127.0.0.1:$s
; no SNI or an unknown one: a closed port
connect = 127.0.0.1:1

[redis]
sni = tls:$REDIS_SNI
connect = 127.0.0.1:$REDIS_PORT

[postgres]
sni = tls:$PG_SNI
connect = 127.0.0.1:$PG_PORT
CONF
    } >"$d/server.conf"
    {
        printf 'foreground = yes\npid =\ndebug = 3\n\n'
        stunnel_client_service redis "${PORT_REDIS[stunnel]}" "$REDIS_SNI" yes
        stunnel_client_service postgres "${PORT_PG[stunnel]}" "$PG_SNI" yes
        stunnel_client_service redis-full "${PORT_REDIS_FULL[stunnel]}" "$REDIS_SNI" no
    } >"$d/client.conf"
    start_bg stunnel-server "$d/server.log" stunnel "$d/server.conf"
    SERVER_PIDS[stunnel]=$START_PID
    wait_for "stunnel server side listening" "$START_PID" port_open 127.0.0.1 "$s"
    start_bg stunnel-client "$d/client.log" stunnel "$d/client.conf"
    CLIENT_PIDS[stunnel]=$START_PID
    wait_for "stunnel client side listening" "$START_PID" port_open 127.0.0.1 "${PORT_REDIS_FULL[stunnel]}"
}

# ---------------------------------------------------------------------------------- haproxy
haproxy_global() {
    cat <<CONF
global
    nbthread 1
    maxconn 9000
    ssl-default-bind-options ssl-min-ver TLSv1.3
    ssl-default-server-options ssl-min-ver TLSv1.3
    ssl-default-bind-ciphersuites $TLS13_SUITES
    ssl-default-server-ciphersuites $TLS13_SUITES

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
CONF
}

haproxy_client_pair() {
    local name="$1" port="$2" sni="$3" extra="$4"
    cat <<CONF

frontend fe_$name
    bind 127.0.0.1:$port
    default_backend be_$name

backend be_$name
    server gw 127.0.0.1:$(upstream_port haproxy) ssl verify required ca-file $PKI/ca.crt crt $W/haproxy/client.pem sni str($sni) verifyhost $sni$extra
CONF
}

start_haproxy() {
    local d="$W/haproxy" s="${PORT_SERVER[haproxy]}"
    cat "$PKI/server.crt" "$PKI/server.key" >"$d/server.pem"
    cat "$PKI/client.crt" "$PKI/client.key" >"$d/client.pem"
    {
        haproxy_global
        cat <<CONF

frontend fe_tls
    bind 127.0.0.1:$s ssl crt $d/server.pem ca-file $PKI/ca.crt verify required
    use_backend be_redis if { ssl_fc_sni -i $REDIS_SNI }
    use_backend be_postgres if { ssl_fc_sni -i $PG_SNI }

backend be_redis
    server redis 127.0.0.1:$REDIS_PORT

backend be_postgres
    server postgres 127.0.0.1:$PG_PORT
CONF
    } >"$d/server.cfg"
    {
        haproxy_global
        haproxy_client_pair redis "${PORT_REDIS[haproxy]}" "$REDIS_SNI" ""
        haproxy_client_pair postgres "${PORT_PG[haproxy]}" "$PG_SNI" ""
        haproxy_client_pair redis_full "${PORT_REDIS_FULL[haproxy]}" "$REDIS_SNI" " no-ssl-reuse"
    } >"$d/client.cfg"
    quietly "$d/check.log" haproxy -c -q -f "$d/server.cfg"
    quietly "$d/check.log" haproxy -c -q -f "$d/client.cfg"
    start_bg haproxy-server "$d/server.log" haproxy -db -f "$d/server.cfg"
    SERVER_PIDS[haproxy]=$START_PID
    wait_for "haproxy server side listening" "$START_PID" port_open 127.0.0.1 "$s"
    start_bg haproxy-client "$d/client.log" haproxy -db -f "$d/client.cfg"
    CLIENT_PIDS[haproxy]=$START_PID
    wait_for "haproxy client side listening" "$START_PID" port_open 127.0.0.1 "${PORT_REDIS_FULL[haproxy]}"
}

# ------------------------------------------------------------------------------------ nginx
nginx_head() {
    local d="$1" side="$2"
    cat <<CONF
load_module $NGINX_STREAM_MODULE;
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $d/$side.pid;
error_log $d/$side.error.log warn;
events { worker_connections 15000; }
CONF
}

nginx_client_server() {
    local name="$1" port="$2" sni="$3" reuse="$4"
    cat <<CONF
    # its own upstream block, so its TLS sessions are never offered under another name
    upstream up_$name { server 127.0.0.1:$(upstream_port nginx); }
    server {
        listen 127.0.0.1:$port;
        proxy_pass up_$name;
        proxy_ssl on;
        proxy_ssl_protocols TLSv1.3;
        proxy_ssl_conf_command Ciphersuites $TLS13_SUITES;
        proxy_ssl_server_name on;
        proxy_ssl_name $sni;
        proxy_ssl_verify on;
        proxy_ssl_trusted_certificate $PKI/ca.crt;
        proxy_ssl_certificate $PKI/client.crt;
        proxy_ssl_certificate_key $PKI/client.key;
        proxy_ssl_session_reuse $reuse;
    }
CONF
}

start_nginx() {
    local d="$W/nginx" s="${PORT_SERVER[nginx]}"
    {
        nginx_head "$d" server
        cat <<CONF
stream {
    map \$ssl_server_name \$backend {
        $REDIS_SNI 127.0.0.1:$REDIS_PORT;
        $PG_SNI 127.0.0.1:$PG_PORT;
        default 127.0.0.1:1;
    }
    server {
        listen 127.0.0.1:$s ssl;
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites $TLS13_SUITES;
        ssl_certificate $PKI/server.crt;
        ssl_certificate_key $PKI/server.key;
        ssl_client_certificate $PKI/ca.crt;
        ssl_verify_client on;
        proxy_pass \$backend;
    }
}
CONF
    } >"$d/server.conf"
    {
        nginx_head "$d" client
        echo "stream {"
        nginx_client_server redis "${PORT_REDIS[nginx]}" "$REDIS_SNI" on
        nginx_client_server postgres "${PORT_PG[nginx]}" "$PG_SNI" on
        nginx_client_server redis_full "${PORT_REDIS_FULL[nginx]}" "$REDIS_SNI" off
        echo "}"
    } >"$d/client.conf"
    local side pid
    for side in server client; do
        quietly "$d/check.log" nginx -t -q -e "$d/$side.error.log" -p "$d" -c "$d/$side.conf"
        start_bg "nginx-$side" "$d/$side.log" nginx -e "$d/$side.error.log" -p "$d" -c "$d/$side.conf"
        pid=$START_PID
        if [[ $side == server ]]; then
            wait_for "nginx server side listening" "$pid" port_open 127.0.0.1 "$s"
        else
            wait_for "nginx client side listening" "$pid" port_open 127.0.0.1 "${PORT_REDIS_FULL[nginx]}"
        fi
        wait_for "nginx $side worker" "$pid" has_children "$pid"
        local pids
        pids="$pid $(children "$pid" | tr '\n' ' ')"
        if [[ $side == server ]]; then SERVER_PIDS[nginx]="$pids"; else CLIENT_PIDS[nginx]="$pids"; fi
    done
}

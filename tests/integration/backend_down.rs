//! When the far side is down or untrusted, real clients get a native error naming what
//! happened (never a bare close). The harness's configs make one attempt (`timeouts.retry`
//! 0), so the error comes at once; backend_restart.rs covers the retry.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;

use crate::support::clients::postgres::{local, psql};
use crate::support::clients::tls::exchange;
use crate::support::clients::tools::{redis_cli, RedisRecover};
use crate::support::sockets::DeadPort;
use crate::support::*;

/// Gateway (mTLS, allow worker) with redis and postgres routes to `backend`, and a sidecar
/// with a tunnel to each.
fn chain_to(pki: &Pki, backend: SocketAddr) -> (Gateway, Sidecar) {
    let routes = vec![
        worker_route("redis", REDIS_SNI, Protocol::Redis, backend),
        worker_route("postgres", PG_SNI, Protocol::Postgres, backend),
    ];
    let gw = Gateway::start(&gateway(pki, routes));
    let sc = Sidecar::start(&sidecar(pki, tunnels(gw.addr)));
    (gw, sc)
}

fn tunnels(gateway: SocketAddr) -> Vec<snigate::config::TunnelConfig> {
    vec![
        tunnel("redis", Protocol::Redis, gateway, REDIS_SNI),
        tunnel("postgres", Protocol::Postgres, gateway, PG_SNI),
    ]
}

/// psql's stderr for a `select 1` through `port`; it must fail.
fn psql_error(port: u16) -> String {
    let out = psql(&local(port), "select 1");
    assert!(!out.status.success(), "{:?}", texts(&out));
    texts(&out).1
}

/// `text` has exactly one line, and it starts with `prefix` followed by a non-empty detail.
/// Trailing newlines are ignored (redis-cli 7 prints an error reply as "ERR ...\n\n").
fn assert_one_line_starting(text: &str, prefix: &str) {
    let text = text.trim_end_matches(['\r', '\n']);
    assert_eq!(text.lines().count(), 1, "{text:?}");
    let detail = text
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{text:?} !~ {prefix:?}"));
    assert!(!detail.trim().is_empty(), "no detail after {prefix:?}");
}

#[tokio::test]
async fn redis_client_gets_err_reply_when_backend_is_down() {
    let pki = Pki::new();
    let nothing = DeadPort::new();
    let dead = nothing.addr;
    let (_gw, sc) = chain_to(&pki, dead);
    let prefix = format!("LOADING snigate: redis: backend {dead} unreachable: ");
    assert_one_line_starting(&redis_cli(sc.port("redis"), &["PING"]), &prefix);
    // On the wire: one error reply to the first command, then the connection closes.
    let mut tcp = TcpStream::connect(sc.addr("redis")).await.unwrap();
    let (bytes, err) = exchange(&mut tcp, b"*1\r\n$4\r\nPING\r\n").await;
    assert!(err.is_none(), "expected a clean close, got {err:?}");
    let reply = String::from_utf8(bytes).unwrap();
    assert!(reply.ends_with("\r\n"), "{reply:?}");
    assert_one_line_starting(&reply, &format!("-{prefix}"));
}

#[tokio::test]
async fn postgres_client_gets_fatal_08006_when_backend_is_down() {
    let pki = Pki::new();
    let nothing = DeadPort::new();
    let dead = nothing.addr;
    let (_gw, sc) = chain_to(&pki, dead);
    let e = psql_error(sc.port("postgres"));
    let want = format!("FATAL:  snigate: postgres: backend {dead} unreachable: ");
    assert!(e.contains(&want), "{e}");

    let conninfo = local(sc.port("postgres"));
    let err = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .err()
        .expect("connect must fail");
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("no ErrorResponse: {err}"));
    assert_eq!(db.code(), &SqlState::CONNECTION_FAILURE);
    assert_eq!(db.severity(), "FATAL");
    let want = format!("snigate: postgres: backend {dead} unreachable: ");
    assert!(db.message().starts_with(&want), "{}", db.message());
}

#[test]
fn sidecar_reports_unreachable_gateway() {
    let pki = Pki::new();
    let nothing = DeadPort::new();
    let dead = nothing.addr;
    let sc = Sidecar::start(&sidecar(&pki, tunnels(dead)));
    let prefix = format!("LOADING snigate: redis: gateway {dead} unreachable: ");
    assert_one_line_starting(&redis_cli(sc.port("redis"), &["PING"]), &prefix);
    let e = psql_error(sc.port("postgres"));
    let want = format!("FATAL:  snigate: postgres: gateway {dead} unreachable: ");
    assert!(e.contains(&want), "{e}");
}

#[test]
fn sidecar_trusting_another_ca_reports_tls_failure_and_opens_no_backend() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let (gw, _sc) = chain_to(&pki, redis.addr());
    let before = redis.total_connections();
    let other = Pki::new();
    let mut config = sidecar(&pki, tunnels(gw.addr));
    config.tls.ca = other.ca();
    let sc = Sidecar::start(&config);
    let failed = format!("TLS handshake with gateway {} failed: ", gw.addr);
    let prefix = format!("ERR snigate: redis: {failed}");
    assert_one_line_starting(&redis_cli(sc.port("redis"), &["PING"]), &prefix);
    let e = psql_error(sc.port("postgres"));
    assert!(
        e.contains(&format!("FATAL:  snigate: postgres: {failed}")),
        "{e}"
    );
    assert_eq!(
        redis.total_connections(),
        before,
        "backend connection opened"
    );
}

#[tokio::test]
async fn tcp_route_just_closes_when_backend_is_down() {
    let pki = Pki::new();
    let nothing = DeadPort::new();
    let dead = nothing.addr;
    let plain = worker_route("plain", TCP_SNI, Protocol::Tcp, dead);
    let gw = Gateway::start(&gateway(&pki, vec![plain]));
    let sc = Sidecar::start(&sidecar(
        &pki,
        vec![tunnel("plain", Protocol::Tcp, gw.addr, TCP_SNI)],
    ));
    let mut tcp = TcpStream::connect(sc.addr("plain")).await.unwrap();
    let (bytes, _) = exchange(&mut tcp, b"HELLO\r\n").await;
    assert_eq!(bytes, b"", "a tcp route has no native error to send");
    let refused = gw.wait_line("the refused line", |l| l.is("refused"));
    let names_backend = refused
        .field("error")
        .is_some_and(|e| e.contains(&dead.to_string()));
    assert!(names_backend, "{}", refused.raw);
}

#[test]
fn redis_py_client_recovers_when_backend_comes_back() {
    let pki = Pki::new();
    let nothing = DeadPort::new();
    let (_gw, sc) = chain_to(&pki, nothing.addr);
    let client = RedisRecover::start(sc.port("redis"));
    let dead = nothing.addr;
    let want = format!("down: ConnectionError snigate: redis: backend {dead} unreachable: ");
    assert!(client.down.starts_with(&want), "{}", client.down);
    let redis = RedisServer::start_on(nothing.release().port());
    let rest = client.finish();
    assert_eq!(rest, "up: ping True\nup: set True yes\n");
    // Our admin connection plus exactly one reconnect by the client.
    assert_eq!(redis.total_connections(), 2);
}

//! When the far side is down or untrusted, real clients get a native error naming what
//! happened (never a bare close).

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Output, Stdio};

use support::pki::{CLIENT_NAME, PG_SNI, REDIS_SNI, TCP_SNI};
use support::snigate::sidecar_yaml;
use support::tls::exchange;
use support::*;
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;

/// A loopback port on which nothing listens.
fn dead_port() -> u16 {
    free_port()
}

/// Sidecars for `tunnels`, one process each (ports stay independent of one another).
struct Sidecars(Vec<Sidecar>);

impl Sidecars {
    fn start(ca: &Pki, client: &Pki, tunnels: Vec<Tunnel>) -> Sidecars {
        let one = |t: Tunnel| Sidecar::from_yaml(&sidecar_yaml(&ca.ca(), Some(client), &[t]), 1);
        Sidecars(tunnels.into_iter().map(one).collect())
    }

    fn port(&self, name: &str) -> u16 {
        let sc = self
            .0
            .iter()
            .find(|s| s.addrs.contains_key(name))
            .expect("tunnel");
        sc.port(name)
    }
}

/// Gateway (mTLS, allow worker) with redis and postgres routes to `backend`, plus sidecars.
fn chain_to(pki: &Pki, backend: &str) -> (Gateway, Sidecars) {
    let ok = format!("dns:{CLIENT_NAME}");
    let gw = Gateway::start(
        pki,
        &[
            Route::new("redis", REDIS_SNI, "redis", backend).allow(&[&ok]),
            Route::new("postgres", PG_SNI, "postgres", backend).allow(&[&ok]),
        ],
    );
    let sc = Sidecars::start(pki, pki, tunnels(gw.addr));
    (gw, sc)
}

fn tunnels(gateway: impl std::fmt::Display + Copy) -> Vec<Tunnel> {
    vec![
        Tunnel::new("redis", "redis", gateway, REDIS_SNI),
        Tunnel::new("postgres", "postgres", gateway, PG_SNI),
    ]
}

fn redis_cli(port: u16) -> String {
    let out = run(
        Command::new("redis-cli").args(["-p", &port.to_string(), "PING"]),
        CMD,
    );
    let (o, e) = texts(&out);
    o + &e
}

fn psql(port: u16) -> Output {
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let mut cmd = Command::new("psql");
    cmd.arg(conninfo)
        .args(["-XAtc", "select 1"])
        .env_remove("PGSSLMODE");
    run(&mut cmd, CMD)
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
    let dead = dead_port();
    let (_gw, sc) = chain_to(&pki, &format!("127.0.0.1:{dead}"));
    let prefix = format!("LOADING snigate: redis: backend 127.0.0.1:{dead} unreachable: ");
    assert_one_line_starting(&redis_cli(sc.port("redis")), &prefix);
    // On the wire: one error reply to the first command, then the connection closes.
    let mut tcp = TcpStream::connect(("127.0.0.1", sc.port("redis")))
        .await
        .unwrap();
    let (bytes, err) = exchange(&mut tcp, b"*1\r\n$4\r\nPING\r\n").await;
    assert!(err.is_none(), "expected a clean close, got {err:?}");
    let reply = String::from_utf8(bytes).unwrap();
    assert!(reply.ends_with("\r\n"), "{reply:?}");
    assert_one_line_starting(&reply, &format!("-{prefix}"));
}

#[tokio::test]
async fn postgres_client_gets_fatal_08006_when_backend_is_down() {
    let pki = Pki::new();
    let dead = dead_port();
    let (_gw, sc) = chain_to(&pki, &format!("127.0.0.1:{dead}"));
    let out = psql(sc.port("postgres"));
    let (_, e) = texts(&out);
    assert!(!out.status.success());
    let want = format!("FATAL:  snigate: postgres: backend 127.0.0.1:{dead} unreachable: ");
    assert!(e.contains(&want), "{e}");

    let conninfo = format!("host=127.0.0.1 port={} user=postgres", sc.port("postgres"));
    let err = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .err()
        .expect("connect must fail");
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("no ErrorResponse: {err}"));
    assert_eq!(db.code(), &SqlState::CONNECTION_FAILURE);
    assert_eq!(db.severity(), "FATAL");
    let want = format!("snigate: postgres: backend 127.0.0.1:{dead} unreachable: ");
    assert!(db.message().starts_with(&want), "{}", db.message());
}

#[test]
fn sidecar_reports_unreachable_gateway() {
    let pki = Pki::new();
    let dead = dead_port();
    let sc = Sidecars::start(&pki, &pki, tunnels(format!("127.0.0.1:{dead}").as_str()));
    let prefix = format!("LOADING snigate: redis: gateway 127.0.0.1:{dead} unreachable: ");
    assert_one_line_starting(&redis_cli(sc.port("redis")), &prefix);
    let out = psql(sc.port("postgres"));
    let (_, e) = texts(&out);
    let want = format!("FATAL:  snigate: postgres: gateway 127.0.0.1:{dead} unreachable: ");
    assert!(e.contains(&want), "{e}");
}

#[test]
fn sidecar_trusting_another_ca_reports_tls_failure_and_opens_no_backend() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let (gw, _sc) = chain_to(&pki, &redis.addr().to_string());
    let before = redis.total_connections();
    let other = Pki::new();
    let sc = Sidecars::start(&other, &pki, tunnels(gw.addr));
    let prefix = format!(
        "ERR snigate: redis: TLS handshake with gateway {} failed: ",
        gw.addr
    );
    assert_one_line_starting(&redis_cli(sc.port("redis")), &prefix);
    let out = psql(sc.port("postgres"));
    let (_, e) = texts(&out);
    let want = format!(
        "FATAL:  snigate: postgres: TLS handshake with gateway {} failed: ",
        gw.addr
    );
    assert!(e.contains(&want), "{e}");
    assert_eq!(
        redis.total_connections(),
        before,
        "backend connection opened"
    );
}

#[tokio::test]
async fn tcp_route_just_closes_when_backend_is_down() {
    let pki = Pki::new();
    let dead = dead_port();
    let ok = format!("dns:{CLIENT_NAME}");
    let route = Route::new("plain", TCP_SNI, "tcp", format!("127.0.0.1:{dead}"));
    let gw = Gateway::start(&pki, &[route.allow(&[&ok])]);
    let sc = Sidecars::start(
        &pki,
        &pki,
        vec![Tunnel::new("plain", "tcp", gw.addr, TCP_SNI)],
    );
    let mut tcp = TcpStream::connect(("127.0.0.1", sc.port("plain")))
        .await
        .unwrap();
    let (bytes, _) = exchange(&mut tcp, b"HELLO\r\n").await;
    assert_eq!(bytes, b"", "a tcp route has no native error to send");
    gw.proc
        .wait_lines(&["refused", &format!("127.0.0.1:{dead}")], 1);
}

#[test]
fn redis_py_client_recovers_when_backend_comes_back() {
    let py = python();
    assert!(
        py.is_file(),
        "{} missing: run scripts/install-deps.sh",
        py.display()
    );
    let pki = Pki::new();
    let port = dead_port();
    let (_gw, sc) = chain_to(&pki, &format!("127.0.0.1:{port}"));
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("backend-up");
    let child = Command::new(&py)
        .arg(repo_root().join("tests/support/redis_recover.py"))
        .arg(sc.port("redis").to_string())
        .arg(&flag)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut py = ChildGuard::new(child, libc::SIGKILL);
    let mut stdout = BufReader::new(py.child.stdout.take().unwrap());
    let mut lines = Vec::new();
    while lines.last().map(String::as_str) != Some("waiting\n") {
        let mut line = String::new();
        assert_ne!(
            stdout.read_line(&mut line).unwrap(),
            0,
            "script ended: {lines:?}"
        );
        lines.push(line);
    }
    let redis = RedisServer::start_on(port);
    std::fs::write(&flag, "").unwrap();
    let status = py.stop_with(0, CMD); // signal 0: just wait
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    py.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{lines:?} {rest} {err}");
    let want =
        format!("down: ConnectionError snigate: redis: backend 127.0.0.1:{port} unreachable: ");
    assert!(lines[0].starts_with(&want), "{lines:?}");
    assert_eq!(rest, "up: ping True\nup: set True yes\n");
    // Our admin connection plus exactly one reconnect by the client.
    assert_eq!(redis.total_connections(), 2);
}

//! `snigate/1` on the wire, seen by a raw TLS client of the gateway: START / STARTED /
//! GOAWAY, what is logged for connections that never start, clients that do not offer it
//! served as before, and a sidecar in front of an older gateway (stunnel, which selects no
//! ALPN and dials its backend at once, as gateways before `snigate/1` do).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::clients::resp::Resp;
use crate::support::clients::tls::ClientOpts;
use crate::support::clients::tools::redis_cli;
use crate::support::logs::Line;
use crate::support::process::ChildGuard;
use crate::support::running::Process;
use crate::support::servers::Speaker;
use crate::support::*;

const SNIGATE_1: &[u8] = b"snigate/1";

/// Waits for a `refused` line of `proc` with `reason`.
fn wait_refused(proc: &Process, reason: &str) -> Line {
    proc.wait_line(&format!("refused reason={reason}"), |l| {
        l.is("refused") && l.has("reason", reason)
    })
}

/// A client that offers what a sidecar offers.
fn sidecar_like(pki: &Pki) -> ClientOpts<'_> {
    ClientOpts {
        alpn: vec![SNIGATE_1.to_vec(), b"postgresql".to_vec()],
        ..ClientOpts::new(pki)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_then_started_then_the_backend_and_nothing_before_start() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let gw = Gateway::start(&redis_gateway(&pki, redis.addr()));
    let before = redis.total_connections();

    // START and a PING in one write: STARTED, then Redis' answer.
    let mut tls = sidecar_like(&pki)
        .connect(gw.addr, REDIS_SNI)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(SNIGATE_1));
    tls.write_all(b"\x01*1\r\n$4\r\nPING\r\n").await.unwrap();
    let mut answer = [0u8; 8];
    tls.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"\x01+PONG\r\n");
    drop(tls);
    assert_eq!(redis.total_connections(), before + 1);

    // Closed before START (a probe): no backend connection, nothing at info.
    let mut tls = sidecar_like(&pki)
        .connect(gw.addr, REDIS_SNI)
        .await
        .unwrap();
    tls.shutdown().await.unwrap();
    // Anything but START first: refused, and never relayed.
    let mut tls = sidecar_like(&pki)
        .connect(gw.addr, REDIS_SNI)
        .await
        .unwrap();
    tls.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest).await;
    assert_eq!(rest, b"");
    let line = wait_refused(&gw, "bad_start");
    assert!(line.raw.contains("0x2a"), "{}", line.raw);
    let m = gw.metrics();
    assert_eq!(
        m.get("snigate_connections_total", &[("route", "redis")]),
        3.0
    );
    assert_eq!(m.get("snigate_warm_waiting", &[("route", "redis")]), 0.0);
    assert_eq!(redis.total_connections(), before + 1);
    let info: Vec<String> = gw
        .log()
        .into_iter()
        .filter(|l| l.conn_id().is_some())
        .map(|l| l.raw)
        .collect();
    assert_eq!(info.len(), 2, "one closed, one refused: {info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_gateway_sends_goaway_before_start_and_does_not_wait_for_it() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let mut config = redis_gateway(&pki, redis.addr());
    // Longer than any test runs: exiting proves it was not waited for.
    config.timeouts.drain = Duration::from_secs(3600);
    let mut gw = Gateway::start(&config);
    let only_snigate_1 = ClientOpts {
        alpn: vec![SNIGATE_1.to_vec()],
        ..ClientOpts::new(&pki)
    };
    let mut warm = only_snigate_1.connect(gw.addr, REDIS_SNI).await.unwrap();
    gw.wait_metrics("the connection waiting for START", |m| {
        m.count("snigate_warm_waiting", &[("route", "redis")]) == 1.0
    });
    gw.signal(libc::SIGTERM);
    let mut goodbye = Vec::new();
    warm.read_to_end(&mut goodbye).await.unwrap();
    assert_eq!(goodbye, b"\x00", "GOAWAY, then close_notify");
    drop(warm);
    // Nothing else was open: the drain period is not waited for.
    assert_eq!(gw.wait_exit().code(), Some(0));
    assert!(gw.lines("drain period over; closing the rest").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_snigate_1_are_served_as_before_and_silent_ones_leave_a_line() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let gw = Gateway::start(&redis_gateway(&pki, redis.addr()));
    // Some other ALPN offer on a Redis route: no protocol selected, served as always.
    let other = ClientOpts {
        alpn: vec![b"h2".to_vec()],
        ..ClientOpts::new(&pki)
    };
    let tls = other.connect(gw.addr, REDIS_SNI).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    let mut c = Resp::new(tls);
    c.ping().await;
    c.close().await.unwrap();
    // A direct client that finishes its handshake and leaves without a word.
    let mut tls = ClientOpts::new(&pki)
        .connect(gw.addr, REDIS_SNI)
        .await
        .unwrap();
    tls.shutdown().await.unwrap();
    wait_refused(&gw, "silent").assert_field("route", "redis");

    // The same through a sidecar: refused there as silent, and the gateway never hears of it.
    let sc = Sidecar::start(&redis_sidecar(&pki, gw.addr));
    drop(std::net::TcpStream::connect(sc.addr("redis")).unwrap());
    wait_refused(&sc, "silent").assert_field("side", "client");
    let m = gw.metrics();
    assert_eq!(
        m.get("snigate_connections_total", &[("route", "redis")]),
        2.0
    );
}

/// stunnel as a gateway that predates `snigate/1`: TLS on a free port, then to `backend`.
fn old_gateway(pki: &Pki, dir: &Path, backend: SocketAddr) -> (ChildGuard, u16) {
    for _attempt in 0..5 {
        let port = free_port();
        let conf = dir.join(format!("stunnel-{port}.conf"));
        let text = format!(
            "foreground = yes\npid =\n[old]\naccept = 127.0.0.1:{port}\nconnect = {backend}\n\
             cert = {}\nkey = {}\n",
            pki.server_cert().display(),
            pki.server_key().display()
        );
        std::fs::write(&conf, text).unwrap();
        let mut cmd = Command::new("stunnel");
        let child = cmd
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = child.expect("spawn stunnel (scripts/install-deps.sh installs it)");
        let mut guard = ChildGuard::new(child, libc::SIGKILL);
        let up = wait_for("stunnel listening", || {
            if guard.exited().is_some() {
                return Some(false);
            }
            std::net::TcpStream::connect(loopback(port))
                .ok()
                .map(|_| true)
        });
        if up {
            return (guard, port);
        }
    }
    panic!("stunnel did not start on any of 5 free ports");
}

#[test]
fn a_sidecar_keeps_working_with_a_gateway_that_predates_snigate_1() {
    let (pki, redis, dir) = (
        Pki::new(),
        RedisServer::start(),
        tempfile::tempdir().unwrap(),
    );
    let server = Speaker::start();
    let (_redis_gw, redis_port) = old_gateway(&pki, dir.path(), redis.addr());
    let (_tcp_gw, tcp_port) = old_gateway(&pki, dir.path(), server.addr);
    let mut tunnels = vec![
        tunnel("redis", Protocol::Redis, loopback(redis_port), REDIS_SNI),
        tunnel("plain", Protocol::Tcp, loopback(tcp_port), TCP_SNI),
    ];
    tunnels.iter_mut().for_each(|t| t.warm = 2);
    let sc = Sidecar::start(&sidecar(&pki, tunnels));
    // Redis: warm connections still help (no START framing; the first bytes go at once).
    sc.wait_metrics("warm redis connections", |m| {
        m.count("snigate_warm_ready", &[("route", "redis")]) == 2.0
    });
    assert_eq!(redis_cli(sc.port("redis"), &["PING"]), "PONG\n");
    let m = sc.metrics();
    assert_eq!(m.get("snigate_warm_hits_total", &[("route", "redis")]), 1.0);
    // tcp: one connection found the gateway without snigate/1 and none are kept, since
    // each would make it dial the backend; clients are served by new connections.
    sc.wait_line("the older gateway found", |l| {
        l.message().contains("does not speak snigate/1")
    });
    assert_eq!(m.count("snigate_warm_ready", &[("route", "plain")]), 0.0);
    // stunnel dials its backend after the handshake; count once that connection is in.
    wait_for("stunnel's backend connection", || {
        (server.accepted() >= 1).then_some(())
    });
    assert_eq!(server.accepted(), 1, "backend connections for warmth");
    Speaker::greeted_through(sc.addr("plain"));
    assert_eq!(server.accepted(), 2);
}

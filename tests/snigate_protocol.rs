//! `snigate/1` on the wire, seen by a raw TLS client of the gateway: START / STARTED /
//! GOAWAY, what is logged for connections that never start, clients that do not offer it
//! served as before, and a sidecar in front of an older gateway (stunnel, which selects no
//! ALPN and dials its backend at once, as gateways before `snigate/1` do).

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::pki::{p, REDIS_SNI, TCP_SNI};
use support::resp::{Reply, Resp};
use support::snigate::{field, message, Proc};
use support::speaker::Speaker;
use support::tls::ClientOpts;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SNIGATE_1: &[u8] = b"snigate/1";

/// `refused` lines of `proc` with `reason`.
fn refused(proc: &Proc, reason: &str) -> Vec<String> {
    let log = proc.log();
    let lines = log.lines().filter(|l| {
        message(l).as_deref() == Some("refused") && field(l, "reason").as_deref() == Some(reason)
    });
    lines.map(String::from).collect()
}

fn wait_refused(proc: &Proc, reason: &str) -> String {
    wait_for(&format!("refused reason={reason}"), READY, || {
        refused(proc, reason).pop()
    })
}

fn redis_gateway(pki: &Pki, redis: &RedisServer) -> Gateway {
    let routes = [Route::new("redis", REDIS_SNI, "redis", redis.addr())];
    Gateway::start_with(pki, &routes, &Opts::new().admin())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_then_started_then_the_backend_and_nothing_before_start() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let gw = redis_gateway(&pki, &redis);
    let before = redis.total_connections();
    let sidecar_like = ClientOpts {
        alpn: vec![SNIGATE_1.to_vec(), b"postgresql".to_vec()],
        ..ClientOpts::new(&pki)
    };

    // START and a PING in one write: STARTED, then Redis' answer.
    let mut tls = sidecar_like.connect(gw.addr, REDIS_SNI).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(SNIGATE_1));
    tls.write_all(b"\x01*1\r\n$4\r\nPING\r\n").await.unwrap();
    let mut answer = [0u8; 8];
    tls.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"\x01+PONG\r\n");
    drop(tls);
    assert_eq!(redis.total_connections(), before + 1);

    // Closed before START (a probe): no backend connection, nothing at info.
    let mut tls = sidecar_like.connect(gw.addr, REDIS_SNI).await.unwrap();
    tls.shutdown().await.unwrap();
    // Anything but START first: refused, and never relayed.
    let mut tls = sidecar_like.connect(gw.addr, REDIS_SNI).await.unwrap();
    tls.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest).await;
    assert_eq!(rest, b"");
    let line = wait_refused(&gw.proc, "bad_start");
    assert!(line.contains("0x2a"), "{line}");
    let m = gw.proc.metrics();
    assert_eq!(
        m.get("snigate_connections_total", &[("route", "redis")]),
        3.0
    );
    assert_eq!(m.get("snigate_warm_waiting", &[("route", "redis")]), 0.0);
    assert_eq!(redis.total_connections(), before + 1);
    let info = gw.proc.lines_with(&["conn{"]);
    assert_eq!(info.len(), 2, "one closed, one refused: {info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_gateway_sends_goaway_before_start_and_does_not_wait_for_it() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let opts = Opts::new().admin().timeout("drain", "30s");
    let routes = [Route::new("redis", REDIS_SNI, "redis", redis.addr())];
    let mut gw = Gateway::start_with(&pki, &routes, &opts);
    let sidecar_like = ClientOpts {
        alpn: vec![SNIGATE_1.to_vec()],
        ..ClientOpts::new(&pki)
    };
    let mut warm = sidecar_like.connect(gw.addr, REDIS_SNI).await.unwrap();
    wait_for("the connection waiting for START", READY, || {
        let m = gw.proc.metrics();
        (m.count("snigate_warm_waiting", &[("route", "redis")]) == 1.0).then_some(())
    });
    gw.proc.signal(libc::SIGTERM);
    let mut goodbye = Vec::new();
    warm.read_to_end(&mut goodbye).await.unwrap();
    assert_eq!(goodbye, b"\x00", "GOAWAY, then close_notify");
    drop(warm);
    // Nothing else was open: the 30 s drain period is not waited for.
    assert_eq!(gw.proc.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_snigate_1_are_served_as_before_and_silent_ones_leave_a_line() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let gw = redis_gateway(&pki, &redis);
    // Some other ALPN offer on a Redis route: no protocol selected, served as always.
    let other = ClientOpts {
        alpn: vec![b"h2".to_vec()],
        ..ClientOpts::new(&pki)
    };
    let tls = other.connect(gw.addr, REDIS_SNI).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    let mut c = Resp::new(tls);
    assert_eq!(
        c.cmd(&[b"PING"]).await.unwrap(),
        Reply::Status("PONG".into())
    );
    c.close().await.unwrap();
    // A direct client that finishes its handshake and leaves without a word.
    let mut tls = ClientOpts::new(&pki)
        .connect(gw.addr, REDIS_SNI)
        .await
        .unwrap();
    tls.shutdown().await.unwrap();
    let line = wait_refused(&gw.proc, "silent");
    assert_eq!(field(&line, "route").as_deref(), Some("redis"), "{line}");

    // The same through a sidecar: refused there as silent, and the gateway never hears of it.
    let tunnels = [Tunnel::new("redis", "redis", gw.addr, REDIS_SNI)];
    let sc_opts = Opts::new().timeout("probe_interval", "0s");
    let sc = Sidecar::start_with(&pki, &tunnels, &sc_opts);
    drop(std::net::TcpStream::connect(loopback(sc.port("redis"))).unwrap());
    let line = wait_refused(&sc.proc, "silent");
    assert_eq!(field(&line, "side").as_deref(), Some("client"), "{line}");
    let m = gw.proc.metrics();
    assert_eq!(
        m.get("snigate_connections_total", &[("route", "redis")]),
        2.0
    );
}

/// stunnel as a gateway that predates `snigate/1`: TLS on `port`, then to `backend`.
fn old_gateway(pki: &Pki, dir: &std::path::Path, backend: SocketAddr) -> (ChildGuard, u16) {
    for _attempt in 0..5 {
        let port = free_port();
        let conf = dir.join(format!("stunnel-{port}.conf"));
        let text = format!(
            "foreground = yes\npid =\n[old]\naccept = 127.0.0.1:{port}\nconnect = {backend}\n\
             cert = {}\nkey = {}\n",
            p(&pki.server_cert()),
            p(&pki.server_key())
        );
        std::fs::write(&conf, text).unwrap();
        let child = Command::new("stunnel")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn stunnel (scripts/install-deps.sh installs it)");
        let mut guard = ChildGuard::new(child, libc::SIGKILL);
        let up = poll(READY, || {
            if guard.exited().is_some() {
                return Some(false);
            }
            std::net::TcpStream::connect(loopback(port))
                .ok()
                .map(|_| true)
        });
        if up == Some(true) {
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
    let tunnels = [
        Tunnel::new(
            "redis",
            "redis",
            format!("127.0.0.1:{redis_port}"),
            REDIS_SNI,
        )
        .warm(2),
        Tunnel::new("plain", "tcp", format!("127.0.0.1:{tcp_port}"), TCP_SNI).warm(2),
    ];
    let sc_opts = Opts::new().admin().timeout("probe_interval", "0s");
    let sc = Sidecar::start_with(&pki, &tunnels, &sc_opts);
    // Redis: warm connections still help (no START framing; the first bytes go at once).
    wait_for("warm redis connections", READY, || {
        let m = sc.proc.metrics();
        (m.count("snigate_warm_ready", &[("route", "redis")]) == 2.0).then_some(())
    });
    let out = run(
        Command::new("redis-cli").args(["-p", &sc.port("redis").to_string(), "PING"]),
        CMD,
    );
    assert_eq!(texts(&out).0, "PONG\n");
    let m = sc.proc.metrics();
    assert_eq!(m.get("snigate_warm_hits_total", &[("route", "redis")]), 1.0);
    // tcp: one connection found the gateway without snigate/1 and none are kept, since
    // each would make it dial the backend; clients are served by new connections.
    sc.proc.wait_lines(&["does not speak snigate/1"], 1);
    assert_eq!(m.count("snigate_warm_ready", &[("route", "plain")]), 0.0);
    // stunnel dials its backend after the handshake; count once that connection is in.
    wait_for("stunnel's backend connection", READY, || {
        (server.accepted() >= 1).then_some(())
    });
    assert_eq!(server.accepted(), 1, "backend connections for warmth");
    Speaker::greeted_through(loopback(sc.port("plain")));
    assert_eq!(server.accepted(), 2);
}

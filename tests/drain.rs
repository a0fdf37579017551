//! Graceful stop: SIGTERM turns readiness off, keeps accepting during `shutdown_delay`, stops
//! accepting, lets open connections finish within `drain` (byte-exact), closes the rest
//! when the grace period ends, and exits 0.

mod support;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::pki::REDIS_SNI;
use support::resp::{encode, payload, Reply, Resp};
use support::snigate::{field, message, Proc};
use support::stop::{assert_refused, chain, ping};
use support::tls::ClientOpts;
use support::*;
use tokio::net::TcpStream;

/// Bound for a stop that must not wait for the (long) drain period.
const PROMPT: Duration = Duration::from_secs(8);

/// A new direct TLS client of the gateway gets PONG.
async fn direct_ping(
    pki: &Pki,
    gw: SocketAddr,
) -> Resp<tokio_rustls::client::TlsStream<TcpStream>> {
    let tls = ClientOpts::new(pki).connect(gw, REDIS_SNI).await.unwrap();
    let mut c = Resp::new(tls);
    ping(&mut c).await;
    c
}

/// The single `closed` line of `proc`'s log (waits for it).
fn closed_line(proc: &Proc) -> String {
    let closed = || -> Vec<String> {
        let log = proc.log();
        let lines = log
            .lines()
            .filter(|l| message(l).as_deref() == Some("closed"));
        lines.map(String::from).collect()
    };
    wait_for("a closed line", READY, || {
        (!closed().is_empty()).then_some(())
    });
    let lines = closed();
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_transfer_finish_byte_exact() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let gw_opts = Opts::new().admin().timeout("drain", "10s");
    // A new client meets the stopped gateway at once, not after a retry budget.
    let sc_opts = Opts::new().timeout("retry", "0s");
    let (mut gw, sc) = chain(&pki, &redis, &gw_opts, &sc_opts);
    let tunnel = loopback(sc.port("redis"));
    let value = payload(7, 8 << 20);
    let set = encode(&[b"SET", b"big", &value]);
    let mut c = Resp::connect(tunnel).await.unwrap();
    let half = set.len() / 2;
    c.write(&set[..half]).await.unwrap();

    let stopped = Instant::now();
    gw.proc.signal(libc::SIGTERM);
    gw.proc.wait_lines(&["no longer accepting"], 1);
    let ready = gw.proc.get("/readyz");
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(ready.body.contains("draining: true"), "{ready:?}");
    assert_refused(gw.addr).await;
    // A new client through the sidecar gets the native error, not a hang.
    let mut late = Resp::connect(tunnel).await.unwrap();
    match late.cmd(&[b"PING"]).await.unwrap() {
        Reply::Error(e) => assert!(e.contains("gateway") && e.contains("unreachable"), "{e}"),
        other => panic!("expected the gateway-unreachable error, got {other:?}"),
    }

    // The transfer in flight completes, and every byte arrived.
    c.write(&set[half..]).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap(), Reply::Status("OK".into()));
    match c.cmd(&[b"GET", b"big"]).await.unwrap() {
        Reply::Bulk(Some(got)) => {
            assert_eq!(got.len(), value.len());
            assert_eq!(Sha256::digest(&got), Sha256::digest(&value));
        }
        other => panic!("GET: {other:?}"),
    }
    let (sent, received) = (c.sent, c.received);
    c.close().await.unwrap();

    let status = gw.proc.wait_exit(PROMPT);
    assert_eq!(status.code(), Some(0), "{}", gw.proc.log());
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "exited only after the drain period: it must exit once the last connection ends"
    );
    let line = closed_line(&gw.proc);
    assert_eq!(
        field(&line, "bytes_from_client"),
        Some(sent.to_string()),
        "{line}"
    );
    assert_eq!(
        field(&line, "bytes_from_backend"),
        Some(received.to_string()),
        "{line}"
    );
    assert_eq!(
        field(&line, "closed_by").as_deref(),
        Some("client"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delay_keeps_accepting_while_readiness_is_off() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let delay = Duration::from_secs(2);
    let gw_opts = Opts::new()
        .admin()
        .timeout("drain", "10s")
        .timeout("shutdown_delay", "2s");
    let mut gw = chain(&pki, &redis, &gw_opts, &Opts::new()).0;
    assert_eq!(gw.proc.get("/readyz").status, 200);

    let stopped = Instant::now();
    gw.proc.signal(libc::SIGTERM);
    wait_for("readiness off", PROMPT, || {
        (gw.proc.get("/readyz").status == 503).then_some(())
    });
    // Within the delay: still accepting and serving new connections.
    let mut during = direct_ping(&pki, gw.addr).await;
    assert!(
        stopped.elapsed() < delay,
        "the check above came too late to prove anything"
    );
    assert_eq!(gw.proc.count_lines(&["no longer accepting"]), 0);

    gw.proc.wait_lines(&["no longer accepting"], 1);
    assert!(
        stopped.elapsed() >= delay,
        "stopped accepting after {:?}, before shutdown_delay {delay:?}",
        stopped.elapsed()
    );
    assert_refused(gw.addr).await;
    // The connection accepted during the delay is drained like any other.
    ping(&mut during).await;
    during.close().await.unwrap();
    assert_eq!(gw.proc.wait_exit(PROMPT).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_period_over_closes_idle_gateway_connections_and_exits_zero() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let gw_opts = Opts::new().timeout("drain", "1s");
    let (mut gw, sc) = chain(&pki, &redis, &gw_opts, &Opts::new());
    let mut idle = Resp::connect(loopback(sc.port("redis"))).await.unwrap();
    ping(&mut idle).await;

    let stopped = Instant::now();
    gw.proc.signal(libc::SIGTERM);
    assert_eq!(
        gw.proc.wait_exit(PROMPT).code(),
        Some(0),
        "{}",
        gw.proc.log()
    );
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "exited after {took:?}, before the drain period"
    );
    // The idle client's connection was closed, not left hanging.
    let end = idle.read_reply().await.unwrap_err();
    assert_eq!(end.kind(), ErrorKind::UnexpectedEof, "{end}");
    let line = closed_line(&gw.proc);
    assert_eq!(
        field(&line, "closed_by").as_deref(),
        Some("local"),
        "{line}"
    );
    assert!(line.contains("drain"), "why names the drain: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_period_over_closes_idle_sidecar_connections_and_exits_zero() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let sc_opts = Opts::new().timeout("drain", "1s");
    let (gw, mut sc) = chain(&pki, &redis, &Opts::new(), &sc_opts);
    let tunnel = loopback(sc.port("redis"));
    let mut idle = Resp::connect(tunnel).await.unwrap();
    ping(&mut idle).await;

    let stopped = Instant::now();
    sc.proc.signal(libc::SIGTERM);
    assert_eq!(
        sc.proc.wait_exit(PROMPT).code(),
        Some(0),
        "{}",
        sc.proc.log()
    );
    assert!(stopped.elapsed() >= Duration::from_secs(1));
    let end = idle.read_reply().await.unwrap_err();
    assert_eq!(end.kind(), ErrorKind::UnexpectedEof, "{end}");
    assert_refused(tunnel).await;
    let line = closed_line(&sc.proc);
    assert_eq!(
        field(&line, "closed_by").as_deref(),
        Some("local"),
        "{line}"
    );
    // The gateway saw its client (the sidecar) close the connection.
    let line = closed_line(&gw.proc);
    assert_eq!(
        field(&line, "closed_by").as_deref(),
        Some("client"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_period_over_also_ends_connections_that_never_sent_a_byte() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let gw_opts = Opts::new().admin().timeout("drain", "1s");
    let sc_opts = Opts::new().timeout("probe_interval", "0s");
    let (mut gw, sc) = chain(&pki, &redis, &gw_opts, &sc_opts);
    // A worker connection opened through the sidecar but not used yet (the sidecar takes
    // no gateway connection before its first bytes), and a direct TLS client that finished
    // its handshake and is silent.
    let unused = Resp::connect(loopback(sc.port("redis"))).await.unwrap();
    let silent = ClientOpts::new(&pki)
        .connect(gw.addr, REDIS_SNI)
        .await
        .unwrap();
    wait_for("the direct connection open on the route", READY, || {
        let m = gw.proc.metrics();
        (m.count("snigate_connections_open", &[("route", "redis")]) == 1.0).then_some(())
    });

    let stopped = Instant::now();
    gw.proc.signal(libc::SIGTERM);
    assert_eq!(
        gw.proc.wait_exit(PROMPT).code(),
        Some(0),
        "{}",
        gw.proc.log()
    );
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "drain is 1s but the gateway took {took:?} to exit: connections still waiting for \
         their first bytes were not closed when the drain period ended\n{}",
        gw.proc.log()
    );
    drop((unused, silent));
}

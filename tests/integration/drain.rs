//! Graceful stop: SIGTERM turns readiness off, keeps accepting during `shutdown_delay`, stops
//! accepting, closes each connection once its request in flight is answered (byte-exact) and
//! idle ones at once, cuts what is still busy when the `drain` budget ends, and exits 0.
//! drain_safe_points.rs covers each protocol's safe points.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use crate::support::clients::resp::{encode, payload, Reply, Resp};
use crate::support::clients::tls::ClientOpts;
use crate::support::fixtures::{assert_not_listening, assert_shutdown_delay, redis_chain};
use crate::support::logs::Line;
use crate::support::running::Process;
use crate::support::*;

/// Longer than any test runs: a process that waited for it would never exit in time.
const FOREVER: Duration = Duration::from_secs(3600);
/// A grace period that runs out while the test waits.
const SHORT: Duration = Duration::from_millis(300);
/// What the process logs when the drain budget ends with connections still open.
const BUDGET_OVER: &str = "drain period over; cutting the connections still busy";
/// The start of a command: the connection is busy until the drain budget cuts it.
const PARTIAL: &[u8] = b"*1\r\n$4\r\nPI";

/// The single `closed` line of `proc`'s log.
fn closed_line(proc: &Process) -> Line {
    let lines = proc.wait_lines("closed", 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines[0].clone()
}

/// A client through `tunnel` in the middle of a command: PARTIAL has reached Redis, so
/// every hop before it has seen the command begin.
async fn busy_client(tunnel: SocketAddr, redis: &RedisServer) -> Resp<TcpStream> {
    let mut busy = Resp::connect(tunnel).await.unwrap();
    busy.ping().await;
    busy.write(PARTIAL).await.unwrap();
    wait_for("the partial command in redis", || {
        (redis.partial_commands() == 1).then_some(())
    });
    busy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_transfer_finish_byte_exact() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let (mut gw, sc) = redis_chain(&pki, &redis, |g| g.timeouts.drain = FOREVER, |_| {});
    let tunnel = sc.addr("redis");
    let value = payload(7, 8 << 20);
    let set = encode(&[b"SET", b"big", &value]);
    let before = redis.total_connections();
    let mut c = Resp::connect(tunnel).await.unwrap();
    let half = set.len() / 2;
    c.write(&set[..half]).await.unwrap();
    // In flight for real: the chain reaches Redis before the stop.
    wait_for("the transfer's backend connection", || {
        (redis.total_connections() == before + 1).then_some(())
    });

    gw.signal(libc::SIGTERM);
    gw.wait_lines("no longer accepting; draining", 1);
    let ready = gw.get("/readyz");
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(ready.body.contains("draining: true"), "{ready:?}");
    assert_not_listening(gw.addr).await;
    // A new client through the sidecar gets the native error, not a hang.
    let mut late = Resp::connect(tunnel).await.unwrap();
    match late.cmd(&[b"PING"]).await.unwrap() {
        Reply::Error(e) => assert!(e.contains("gateway") && e.contains("unreachable"), "{e}"),
        other => panic!("expected the gateway-unreachable error, got {other:?}"),
    }

    // The transfer in flight completes, every byte arrived, and then the connection closes.
    c.write(&set[half..]).await.unwrap();
    assert_eq!(c.read_reply().await.unwrap(), Reply::Status("OK".into()));
    let (sent, received) = (c.sent, c.received);
    let end = c.read_reply().await.unwrap_err();
    assert_eq!(end.kind(), ErrorKind::UnexpectedEof, "{end}");
    let stored: Vec<u8> = redis::cmd("GET")
        .arg("big")
        .query(&mut redis.direct())
        .unwrap();
    assert_eq!(stored.len(), value.len());
    assert_eq!(Sha256::digest(&stored), Sha256::digest(&value));

    // It exits once the last connection has ended, long before the drain period would.
    assert_eq!(gw.wait_exit().code(), Some(0), "{}", gw.log_text());
    assert!(gw.lines(BUDGET_OVER).is_empty());
    let line = closed_line(&gw);
    line.assert_field("bytes_from_client", &sent.to_string());
    line.assert_field("bytes_from_backend", &received.to_string());
    line.assert_field("closed_by", "local");
    line.assert_field("why", "drained at rest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delay_keeps_accepting_while_readiness_is_off() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let delay = Duration::from_secs(2);
    let (mut gw, _sc) = redis_chain(
        &pki,
        &redis,
        |g| {
            g.timeouts.drain = FOREVER;
            g.timeouts.shutdown_delay = delay;
        },
        |_| {},
    );
    assert_eq!(gw.get("/readyz").status, 200);
    let addr = gw.addr;
    let during = async {
        Resp::new(
            ClientOpts::new(&pki)
                .connect(addr, REDIS_SNI)
                .await
                .unwrap(),
        )
    };
    assert_shutdown_delay(&mut gw, addr, delay, during).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_period_over_cuts_busy_gateway_connections_and_exits_zero() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let (mut gw, sc) = redis_chain(&pki, &redis, |g| g.timeouts.drain = SHORT, |_| {});
    let mut busy = busy_client(sc.addr("redis"), &redis).await;

    let stopped = Instant::now();
    assert_eq!(gw.stop(libc::SIGTERM).code(), Some(0), "{}", gw.log_text());
    let took = stopped.elapsed();
    assert!(
        took >= SHORT,
        "exited after {took:?}, before the drain period"
    );
    let over = gw.lines(BUDGET_OVER);
    assert_eq!(over.len(), 1, "{}", gw.log_text());
    over[0].assert_field("open", "1");
    // The busy client's connection was closed, not left hanging.
    let end = busy.read_reply().await.unwrap_err();
    assert_eq!(end.kind(), ErrorKind::UnexpectedEof, "{end}");
    let line = closed_line(&gw);
    line.assert_field("closed_by", "local");
    line.assert_field(
        "why",
        "drain budget over; cut while busy: a partial command",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_period_over_cuts_busy_sidecar_connections_and_exits_zero() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let (gw, mut sc) = redis_chain(&pki, &redis, |_| {}, |s| s.timeouts.drain = SHORT);
    let tunnel = sc.addr("redis");
    let mut busy = busy_client(tunnel, &redis).await;

    let stopped = Instant::now();
    assert_eq!(sc.stop(libc::SIGTERM).code(), Some(0), "{}", sc.log_text());
    assert!(stopped.elapsed() >= SHORT);
    let end = busy.read_reply().await.unwrap_err();
    assert_eq!(end.kind(), ErrorKind::UnexpectedEof, "{end}");
    assert_not_listening(tunnel).await;
    let line = closed_line(&sc);
    line.assert_field("closed_by", "local");
    line.assert_field(
        "why",
        "drain budget over; cut while busy: a partial command",
    );
    // The gateway saw its client (the sidecar) close the connection.
    let line = closed_line(&gw);
    line.assert_field("closed_by", "client");
}

/// Connections still waiting for their first bytes are closed as soon as the drain starts,
/// not when its budget ends: each leaves its `refused` line (reason `drained`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_closes_connections_that_never_sent_a_byte_at_once() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let (mut gw, sc) = redis_chain(&pki, &redis, |g| g.timeouts.drain = FOREVER, |_| {});
    // A worker connection opened through the sidecar but not used yet (the sidecar takes
    // no gateway connection before its first bytes), and a direct TLS client that finished
    // its handshake and is silent.
    let unused = Resp::connect(sc.addr("redis")).await.unwrap();
    let silent = ClientOpts::new(&pki)
        .connect(gw.addr, REDIS_SNI)
        .await
        .unwrap();
    gw.wait_metrics("the direct connection open on the route", |m| {
        m.count("snigate_connections_open", &[("route", "redis")]) == 1.0
    });

    // An exit at all proves it: the budget would outlast the wait.
    assert_eq!(gw.stop(libc::SIGTERM).code(), Some(0), "{}", gw.log_text());
    assert!(gw.lines(BUDGET_OVER).is_empty(), "{}", gw.log_text());
    let refused = gw.lines("refused");
    assert_eq!(refused.len(), 1, "{}", gw.log_text());
    refused[0].assert_field("reason", "drained");
    refused[0].assert_field("side", "local");
    drop((unused, silent));
}

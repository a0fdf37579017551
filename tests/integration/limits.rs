//! Limits of a running gateway: 1,000 slowloris connections do not stop real clients, a
//! route at its `max_connections` answers in its protocol, the global cap holds new clients
//! in the backlog, and running out of file descriptors pauses the accept loop with a
//! growing backoff instead of spinning.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::clients::hello::{client_hello, TLS12, TLS13};
use crate::support::clients::tls::{resp_line, ClientOpts};
use crate::support::fixtures::{expect_refusal, Guarded};
use crate::support::logs::assert_sanitised;
use crate::support::process::raise_nofile;
use crate::support::sockets::accept_queue;
use crate::support::*;

const SLOWLORIS: usize = 1000;

/// `n` connections that each send the first `cut` bytes of a ClientHello and then hang.
async fn hang(addr: std::net::SocketAddr, n: usize, cut: usize) -> Vec<TcpStream> {
    let partial = client_hello(Some(REDIS_SNI.as_bytes()), TLS12, &[TLS13, TLS12]);
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&partial[..cut]).await.unwrap();
        held.push(tcp);
    }
    held
}

/// Each slowloris connection holds only its deadline, never a handshake slot (there are
/// 256): real clients keep being served while all 1,000 hang, and each one leaves one
/// `refused` line when it finally goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slowloris_connections_do_not_stop_real_clients() {
    raise_nofile();
    let mut g = Guarded::start(true, |c| c.timeouts.handshake = Duration::from_secs(60));
    let held = hang(g.gw.addr, SLOWLORIS, 100).await;
    // Every one is connected, and none waits in the kernel's queue: the gateway has them all.
    wait_for("the gateway to accept every slowloris connection", || {
        (accept_queue(g.gw.addr) == 0).then_some(())
    });
    for _ in 0..10 {
        g.good_clients_work().await;
    }
    // Several at once, too.
    let (addr, pki) = (g.gw.addr, &g.pki);
    let clients = (0..8).map(|_| async move {
        let mut tls = ClientOpts::new(pki).connect(addr, REDIS_SNI).await.unwrap();
        resp_line(&mut tls, &["PING"]).await
    });
    for reply in futures_util::future::join_all(clients).await {
        assert_eq!(reply, "+PONG\r\n");
    }
    g.redis_conns += 8;
    assert_eq!(g.redis.total_connections(), g.redis_conns);
    assert_eq!(g.refused(), 0, "a slowloris connection was dropped early");
    drop(held);
    g.gw.wait_metrics("1,000 refusals", |m| {
        m.sum("snigate_handshake_failures_total") >= SLOWLORIS as f64
    });
    let lines = g.gw.lines("refused");
    assert_eq!(lines.len(), SLOWLORIS);
    for line in &lines {
        line.assert_field("reason", "handshake_failed");
    }
    assert_sanitised(&g.gw.log());
    g.assert_no_backend_connection();
    g.good_clients_work().await;
}

/// `routes[].max_connections`: past it the client completes TLS and gets Redis' native
/// error; no backend connection; a place frees when a connection closes.
#[tokio::test]
async fn a_route_at_its_limit_answers_with_a_native_error() {
    let mut g = Guarded::start(false, |c| c.routes[0].max_connections = Some(1));
    let mut first = ClientOpts::new(&g.pki)
        .connect(g.gw.addr, REDIS_SNI)
        .await
        .unwrap();
    assert_eq!(resp_line(&mut first, &["PING"]).await, "+PONG\r\n");
    g.redis_conns += 1;

    let before = g.refused();
    let mut second = ClientOpts::new(&g.pki)
        .connect(g.gw.addr, REDIS_SNI)
        .await
        .unwrap();
    assert_eq!(
        resp_line(&mut second, &["PING"]).await,
        "-LOADING snigate: redis: route at its limit of 1 connections\r\n"
    );
    expect_refusal(&g.gw, before, "route_full");
    g.assert_no_backend_connection();
    drop(first);
    g.gw.wait_idle();
    g.good_clients_work().await;
}

/// `limits.max_connections`: at the cap the gateway stops accepting, so a new client waits
/// in the listen backlog (the kernel holds it; its handshake does not progress) and is
/// served once a place frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_cap_holds_new_clients_in_the_backlog() {
    let g = Guarded::start(false, |c| c.limits.max_connections = 2);
    let opts = ClientOpts::new(&g.pki);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tls = opts.connect(g.gw.addr, REDIS_SNI).await.unwrap();
        assert_eq!(resp_line(&mut tls, &["PING"]).await, "+PONG\r\n");
        held.push(tls);
    }
    let (addr, config) = (g.gw.addr, opts.config());
    let third = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(REDIS_SNI).unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        resp_line(&mut tls, &["PING"]).await
    });
    wait_for("the third connection in the accept queue", || {
        (accept_queue(addr) == 1).then_some(())
    });
    assert!(
        !third.is_finished(),
        "a third connection was served past the cap of 2"
    );
    held.pop();
    let reply = tokio::time::timeout(IO, third)
        .await
        .expect("third client never served");
    assert_eq!(reply.unwrap(), "+PONG\r\n");
    assert_eq!(g.refused(), 0, "{}", g.gw.log_text());
    assert_eq!(g.redis.total_connections(), g.redis_conns + 3);
}

/// With 48 file descriptors the gateway soon cannot accept (EMFILE). After each failure it
/// pauses twice as long as after the one before (5 ms up to 1 s) instead of spinning, and
/// serves again once descriptors are free. (How little CPU that costs is the benchmark's
/// business.) The admin endpoint is left alone meanwhile: it needs descriptors too.
#[tokio::test]
async fn running_out_of_file_descriptors_pauses_accepting_with_a_growing_backoff() {
    let redis = RedisServer::start();
    let pki = Pki::new();
    let redis_route = worker_route("redis", REDIS_SNI, Protocol::Redis, redis.addr());
    let mut config = gateway(&pki, vec![redis_route]);
    config.timeouts.handshake = Duration::from_secs(60);
    let gw = Launch::default().nofile(48).gateway(&config);
    let held = hang(gw.addr, 100, 50).await;
    let backoff = [
        "5ms", "10ms", "20ms", "40ms", "80ms", "160ms", "320ms", "640ms", "1s", "1s",
    ];
    let warnings = gw.wait_lines("accept failed; pausing", backoff.len());
    let pauses: Vec<String> = warnings.iter().filter_map(|l| l.field("pause")).collect();
    assert_eq!(pauses[..backoff.len()], backoff, "{}", gw.log_text());
    for w in &warnings {
        let error = w.field("error").unwrap_or_default();
        assert!(error.contains("Too many open files"), "{}", w.raw);
    }
    drop(held);
    let mut tls = ClientOpts::new(&pki)
        .connect(gw.addr, REDIS_SNI)
        .await
        .expect("served again");
    assert_eq!(resp_line(&mut tls, &["PING"]).await, "+PONG\r\n");
}

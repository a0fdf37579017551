//! Limits of a running gateway: 1,000 slowloris connections do not stop real clients, a
//! route at its `max_connections` answers in its protocol, the global cap holds new clients
//! in the backlog, and running out of file descriptors pauses the accept loop without
//! spinning.

mod support;

use std::time::{Duration, Instant};

use support::pki::{CLIENT_NAME, REDIS_SNI};
use support::security::*;
use support::tls::{resp_line, ClientOpts};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SLOWLORIS: usize = 1000;

/// Open descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

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
    let mut g = Guarded::start(true, |c| c.handshake = Some("60s".into()));
    let pid = g.gw.proc.pid();
    let base = fds(pid);
    let held = hang(g.gw.addr, SLOWLORIS, 100).await;
    support::wait_for(
        "the gateway to accept every slowloris connection",
        support::READY,
        || (fds(pid) >= base + SLOWLORIS).then_some(()),
    );
    for _ in 0..10 {
        g.good_clients_work().await;
    }
    // Several at once, too.
    let addr = g.gw.addr;
    let pki = &g.pki;
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
    support::wait_for("1,000 refused lines", support::READY, || {
        (g.refused() >= SLOWLORIS).then_some(())
    });
    let lines = refused_lines(&g.gw.proc);
    assert_eq!(lines.len(), SLOWLORIS);
    for line in &lines {
        assert_eq!(
            support::snigate::field(line, "reason").as_deref(),
            Some("handshake_failed"),
            "{line}"
        );
    }
    assert_sanitised(&g.gw.proc.log());
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
    expect_refusal(&g.gw.proc, before, "route_full");
    g.assert_no_backend_connection();
    drop(first);
    support::wait_for("the first connection to close", support::READY, || {
        support::snigate::message(g.gw.proc.log().lines().last()?).filter(|m| m == "closed")
    });
    g.good_clients_work().await;
}

/// `limits.max_connections`: at the cap the gateway stops accepting, so a new client waits
/// in the listen backlog (its handshake does not progress) and is served once a place frees.
#[tokio::test]
async fn the_global_cap_holds_new_clients_in_the_backlog() {
    let g = Guarded::start(false, |c| {
        c.limits.push(("max_connections".into(), "2".into()))
    });
    let opts = ClientOpts::new(&g.pki);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tls = opts.connect(g.gw.addr, REDIS_SNI).await.unwrap();
        assert_eq!(resp_line(&mut tls, &["PING"]).await, "+PONG\r\n");
        held.push(tls);
    }
    let third = async {
        let mut tls = opts.connect(g.gw.addr, REDIS_SNI).await.unwrap();
        resp_line(&mut tls, &["PING"]).await
    };
    tokio::pin!(third);
    let early = tokio::time::timeout(Duration::from_secs(1), &mut third).await;
    assert!(
        early.is_err(),
        "a third connection was served past the cap of 2"
    );
    held.pop();
    let reply = tokio::time::timeout(IO, third)
        .await
        .expect("third client never served");
    assert_eq!(reply, "+PONG\r\n");
    assert_eq!(g.refused(), 0, "{}", g.gw.proc.log());
    assert_eq!(g.redis.total_connections(), g.redis_conns + 3);
}

/// With 48 file descriptors the gateway soon cannot accept (EMFILE). It pauses with a
/// growing backoff (a few warnings, little CPU) instead of spinning, and serves again once
/// descriptors are free.
#[tokio::test]
async fn running_out_of_file_descriptors_pauses_accepting_without_spinning() {
    let redis = support::RedisServer::start();
    let pki = support::Pki::new();
    let ok = format!("dns:{CLIENT_NAME}");
    let mut conf = GwConf::new(
        &pki,
        vec![RouteConf::new("redis", REDIS_SNI, "redis", redis.addr()).allow(&[&ok])],
    );
    conf.handshake = Some("60s".into());
    let gw = Launched::start("gateway", &conf.yaml(), 1, "info", Some(48));
    let addr = gw.addr("");
    let held = hang(addr, 100, 50).await;
    let cpu_before = gw.cpu_time();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu = gw.cpu_time() - cpu_before;
    let warnings = gw
        .log()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(warnings >= 1, "never ran out of descriptors:\n{}", gw.log());
    assert!(
        warnings <= 40,
        "{warnings} accept warnings in {:?}: spinning",
        started.elapsed()
    );
    assert!(
        cpu < Duration::from_millis(1500),
        "{cpu:?} CPU in 3 s while out of descriptors"
    );
    assert!(gw.log().contains("Too many open files"), "{}", gw.log());
    drop(held);
    let mut tls = ClientOpts::new(&pki)
        .connect(addr, REDIS_SNI)
        .await
        .expect("served again");
    assert_eq!(resp_line(&mut tls, &["PING"]).await, "+PONG\r\n");
    println!("out of descriptors: {warnings} warnings, {cpu:?} CPU in 3 s");
}

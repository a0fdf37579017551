//! `routes[].max_connections` of a running gateway: config reloads keep counting the
//! connections already open while the newest limit decides for new ones, and
//! `connections_open`, the count the limit applies to, never counts a connection the route
//! did not admit (refused as full or not allowed, or a `snigate/1` one waiting for START).

use snigate::config::GatewayConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::support::clients::tls::{resp_line, ClientOpts};
use crate::support::fixtures::{expect_refusal, route_like, Guarded};
use crate::support::*;

const OPEN: &str = "snigate_connections_open";
const REDIS: &[(&str, &str)] = &[("route", "redis")];
const LOCKED: &[(&str, &str)] = &[("route", "locked")];

/// The standard routes with `redis` limited to `max`; also returns the config, for reloads.
fn limited(max: usize, tweak: impl FnOnce(&mut GatewayConfig)) -> (Guarded, GatewayConfig) {
    let mut config = None;
    let g = Guarded::start(false, |c| {
        c.routes[0].max_connections = Some(max);
        tweak(c);
        config = Some(c.clone());
    });
    (g, config.unwrap())
}

/// A new client of route `redis`, served (its PING answered): it holds a place until dropped.
async fn served(g: &mut Guarded) -> TlsStream<TcpStream> {
    let opts = ClientOpts::new(&g.pki);
    let mut tls = opts.connect(g.gw.addr, REDIS_SNI).await.unwrap();
    assert_eq!(resp_line(&mut tls, &["PING"]).await, "+PONG\r\n");
    g.redis_conns += 1;
    tls
}

/// A new client of route `redis` is refused as full: Redis' native error naming the limit
/// `max`, one `refused` line with reason `route_full`, no backend connection.
async fn refused_as_full(g: &Guarded, max: usize) {
    let before = g.refused();
    let opts = ClientOpts::new(&g.pki);
    let mut tls = opts.connect(g.gw.addr, REDIS_SNI).await.unwrap();
    let full = format!("-LOADING snigate: redis: route at its limit of {max} connections\r\n");
    assert_eq!(resp_line(&mut tls, &["PING"]).await, full);
    expect_refusal(&g.gw, before, "route_full");
    g.assert_no_backend_connection();
}

/// Waits until `connections_open` of route `redis` is `n` (a closed client's place frees
/// once the gateway has seen it close).
fn wait_open(g: &Guarded, n: f64) {
    let what = format!("{n} connections open on redis");
    g.gw.wait_metrics(&what, |m| m.get(OPEN, REDIS) == n);
}

/// Writes `config` and reloads it with SIGHUP; it is the `n`-th successful config reload.
fn reload(g: &Guarded, config: &GatewayConfig, n: f64) {
    g.gw.write_config(config);
    g.gw.signal(libc::SIGHUP);
    g.gw.wait_reloads("config", "success", n);
}

/// A reload builds a new route table; the connections the old one admitted still count
/// against the limit, whether it stays, goes down or goes up.
#[tokio::test]
async fn a_reload_keeps_counting_the_connections_already_open() {
    let (mut g, mut config) = limited(2, |_| {});
    let mut held = vec![served(&mut g).await, served(&mut g).await];
    refused_as_full(&g, 2).await;

    reload(&g, &config, 1.0);
    refused_as_full(&g, 2).await;
    assert_eq!(g.gw.metrics().get(OPEN, REDIS), 2.0);
    held.pop();
    wait_open(&g, 1.0);
    held.push(served(&mut g).await);
    refused_as_full(&g, 2).await;

    // Lowered below what is open: those stay, and new clients wait until fewer than 1 are.
    config.routes[0].max_connections = Some(1);
    reload(&g, &config, 2.0);
    refused_as_full(&g, 1).await;
    held.pop();
    wait_open(&g, 1.0);
    refused_as_full(&g, 1).await;

    config.routes[0].max_connections = Some(3);
    reload(&g, &config, 3.0);
    held.push(served(&mut g).await);
    held.push(served(&mut g).await);
    refused_as_full(&g, 3).await;
    assert_eq!(g.gw.metrics().get(OPEN, REDIS), 3.0);
    drop(held);
    g.gw.wait_idle();
    g.good_clients_work().await;
}

/// Three connections the gateway is busy with but has not admitted: one refused as full and
/// one not allowed, both waiting for the first command to answer it with the refusal, and a
/// `snigate/1` one waiting for START. `connections_open` shows none of them, before or after
/// their refusals.
#[tokio::test]
async fn connections_open_counts_only_admitted_connections() {
    let (mut g, _) = limited(1, |c| {
        route_like(
            c,
            0,
            "locked",
            LOCKED_SNI,
            &["dns:someone-else.snigate.test"],
        )
    });
    let held = served(&mut g).await;
    let opts = ClientOpts::new(&g.pki);
    let mut full = opts.connect(g.gw.addr, REDIS_SNI).await.unwrap();
    let mut locked = opts.connect(g.gw.addr, LOCKED_SNI).await.unwrap();
    let warm_opts = ClientOpts {
        alpn: vec![b"snigate/1".to_vec()],
        ..ClientOpts::new(&g.pki)
    };
    let warm = warm_opts.connect(g.gw.addr, REDIS_SNI).await.unwrap();
    let busy = g.gw.wait_metrics("four connections on their routes", |m| {
        m.count("snigate_connections_total", REDIS) == 3.0
            && m.count("snigate_connections_total", LOCKED) == 1.0
            && m.count("snigate_warm_waiting", REDIS) == 1.0
    });
    assert_eq!(busy.get(OPEN, REDIS), 1.0);
    assert_eq!(busy.get(OPEN, LOCKED), 0.0);

    let reply = resp_line(&mut full, &["PING"]).await;
    assert_eq!(
        reply,
        "-LOADING snigate: redis: route at its limit of 1 connections\r\n"
    );
    let reply = resp_line(&mut locked, &["PING"]).await;
    assert_eq!(
        reply,
        "-ERR snigate: locked: client identity not allowed\r\n"
    );
    let refused = g.gw.wait_metrics("both refusals counted", |m| {
        m.sum("snigate_refusals_total") == 2.0
    });
    let reason = |route, reason| [("route", route), ("reason", reason)];
    let refusals = "snigate_refusals_total";
    assert_eq!(refused.get(refusals, &reason("redis", "route_full")), 1.0);
    let not_allowed = reason("locked", "identity_not_allowed");
    assert_eq!(refused.get(refusals, &not_allowed), 1.0);
    assert_eq!(refused.get(OPEN, REDIS), 1.0);
    assert_eq!(refused.get(OPEN, LOCKED), 0.0);
    g.assert_no_backend_connection();

    drop((held, warm));
    g.gw.wait_idle();
    g.good_clients_work().await;
}

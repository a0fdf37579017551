//! The admin endpoint of both roles: `/readyz` details (non-gating backend probes on the
//! gateway, gating tunnel probes on the sidecar), `/livez`, `/startup`, and probes that
//! cost the backend nothing.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::clients::resp::Resp;
use crate::support::clients::tls::ClientOpts;
use crate::support::config::ms;
use crate::support::sockets::DeadPort;
use crate::support::*;

/// A fake Redis that answers every connection `-NOAUTH …`, like one with `requirepass`.
async fn noauth_redis() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"-NOAUTH Authentication required.\r\n").await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_readyz_details_backend_probes_without_gating() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let pg = Postgres::start();
    let noauth = noauth_redis().await;
    let dead = DeadPort::new();
    let mut config = gateway(
        &pki,
        vec![
            route("redis", REDIS_SNI, Protocol::Redis, redis.addr()),
            route("pg", PG_SNI, Protocol::Postgres, pg.addr()),
            route("noauth", LOCKED_SNI, Protocol::Redis, noauth),
            route("dead", TCP_SNI, Protocol::Redis, dead.addr),
            // A Redis PING to PostgreSQL: it hangs up instead of answering +PONG.
            route("wrong", LOCKED_PG_SNI, Protocol::Redis, pg.addr()),
        ],
    );
    config.timeouts.probe_interval = ms(200);
    let gw = Gateway::start(&config);
    let body = gw.wait_readyz(
        200,
        &[
            "backend:redis: ok",
            "backend:pg: ok",
            "backend:noauth: ok",
            "backend:dead: failing ",
            "backend:wrong: failing ",
        ],
    );
    assert!(body.contains("started: true"), "{body}");
    assert!(body.contains("draining: false"), "{body}");
    let dead_line = body
        .lines()
        .find(|l| l.starts_with("backend:dead:"))
        .unwrap();
    let names_error = dead_line.to_lowercase().contains("refused");
    assert!(names_error, "detail names the error: {dead_line:?}");
    let m = gw.metrics();
    let up = [
        ("redis", 1.0),
        ("pg", 1.0),
        ("noauth", 1.0),
        ("dead", 0.0),
        ("wrong", 0.0),
    ];
    for (route, up) in up {
        assert_eq!(
            m.get("snigate_far_side_up", &[("route", route)]),
            up,
            "{route}"
        );
    }
    let live = gw.get("/livez");
    assert_eq!((live.status, live.body.as_str()), (200, "ok\n"));
    let startup = gw.get("/startup");
    assert_eq!(startup.status, 200, "{startup:?}");
    assert_eq!(gw.get("/nope").status, 404);
    // Probes go on: the dead backend coming up turns its check ok.
    let _back = RedisServer::start_on(dead.release().port());
    gw.wait_readyz(200, &["backend:dead: ok"]);
}

#[test]
fn sidecar_readiness_follows_its_gateway() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let gateway_port = DeadPort::new();
    let mut config = sidecar(
        &pki,
        vec![tunnel(
            "redis",
            Protocol::Redis,
            gateway_port.addr,
            REDIS_SNI,
        )],
    );
    config.timeouts.probe_interval = ms(200);
    let sc = Sidecar::start(&config);
    let body = sc.wait_readyz(503, &["tunnel:redis: failing ", "unreachable"]);
    assert!(body.contains("started: true"), "{body}");
    assert_eq!(sc.get("/livez").status, 200);
    assert_eq!(sc.get("/startup").status, 200);
    let up = sc
        .metrics()
        .get("snigate_far_side_up", &[("route", "redis")]);
    assert_eq!(up, 0.0);

    let mut config = redis_gateway(&pki, redis.addr());
    config.listen = gateway_port.release();
    let gw = Gateway::start(&config);
    sc.wait_readyz(200, &["tunnel:redis: ok"]);
    sc.wait_metrics("far_side_up 1", |s| {
        s.value("snigate_far_side_up", &[("route", "redis")]) == Some(1.0)
    });

    drop(gw);
    sc.wait_readyz(503, &["tunnel:redis: failing "]);
}

#[test]
fn sidecar_without_probes_is_ready_once_listening() {
    let pki = Pki::new();
    let dead = DeadPort::new();
    let sc = Sidecar::start(&redis_sidecar(&pki, dead.addr));
    // `probe_interval: 0s` turns probing off; readiness then cannot wait for a probe.
    sc.wait_readyz(200, &["started: true"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_silent_clients_open_no_backend_connection() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let gw = Gateway::start(&redis_gateway(&pki, redis.addr()));
    let before = redis.total_connections();
    // A TLS client that completes the handshake and leaves without a word.
    let mut tls = ClientOpts::new(&pki)
        .connect(gw.addr, REDIS_SNI)
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::shutdown(&mut tls).await.unwrap();
    // A sidecar probing the gateway every 200 ms: full handshakes, no traffic.
    let mut config = redis_sidecar(&pki, gw.addr);
    config.timeouts.probe_interval = ms(200);
    let sc = Sidecar::start(&config);
    sc.wait_readyz(200, &["tunnel:redis: ok"]);
    gw.wait_metrics("5 handshakes on the route", |s| {
        s.count("snigate_connections_total", &[("route", "redis")]) >= 5.0
    });
    let after = redis.total_connections();
    assert_eq!(
        after, before,
        "the gateway dialled the backend for a connection that sent nothing"
    );
    // The first bytes do open one.
    let mut c = Resp::connect(sc.addr("redis")).await.unwrap();
    c.ping().await;
    c.close().await.unwrap();
    assert_eq!(redis.total_connections(), before + 1);
}

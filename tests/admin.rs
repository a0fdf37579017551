//! The admin endpoint of both roles against real traffic: exact `/metrics` counters,
//! `/readyz` details (non-gating backend probes on the gateway, gating tunnel probes on the
//! sidecar), `/livez`, `/startup`, and `--log-format json` connection-close lines.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::admin::Scrape;
use support::pki::{CLIENT_NAME, LOCKED_PG_SNI, LOCKED_SNI, PG_SNI, REDIS_SNI, TCP_SNI};
use support::resp::{encode, payload, Reply, Resp};
use support::snigate::{field, message, Proc};
use support::tls::{alert, ClientOpts};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Wait for a probe result or a counter; far shorter than READY, so a missing one fails fast.
const SOON: Duration = Duration::from_secs(10);

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Poll `/metrics` until `cond` holds; returns that scrape.
fn scrape_until(proc: &Proc, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = None;
    let found = poll(SOON, || {
        let s = proc.metrics();
        let ok = cond(&s);
        last = Some(s.clone());
        ok.then_some(s)
    });
    found.unwrap_or_else(|| {
        let text = last.map(|s| s.text).unwrap_or_default();
        panic!("timed out waiting for {what}; last /metrics:\n{text}")
    })
}

/// Poll `/readyz` until its status is `status` and its body has every one of `parts`.
fn readyz_until(proc: &Proc, status: u16, parts: &[&str]) -> String {
    let mut last = None;
    let found = poll(SOON, || {
        let r = proc.get("/readyz");
        let ok = r.status == status && parts.iter().all(|p| r.body.contains(p));
        last = Some(r.clone());
        ok.then_some(r.body)
    });
    found.unwrap_or_else(|| panic!("/readyz never became {status} with {parts:?}; last: {last:?}"))
}

/// One SET of `len` bytes through `addr`, then a clean close; returns (sent, received).
async fn set_through(addr: SocketAddr, key: &str, len: usize) -> (u64, u64) {
    let mut c = Resp::connect(addr).await.unwrap();
    let value = payload(len as u64, len);
    let reply = c.cmd(&[b"SET", key.as_bytes(), &value]).await.unwrap();
    assert_eq!(reply, Reply::Status("OK".into()));
    let want = encode(&[b"SET", key.as_bytes(), &value]).len() as u64;
    assert_eq!((c.sent, c.received), (want, 5));
    let counts = (c.sent, c.received);
    c.close().await.unwrap();
    counts
}

fn assert_expiry_about_a_year(s: &Scrape, file: &std::path::Path) {
    let file = file.to_str().unwrap();
    let t = s.get(
        "snigate_certificate_expiry_timestamp_seconds",
        &[("file", file)],
    );
    let (year, n) = (365.0 * 86400.0, now());
    assert!(
        t > n + year - 2.0 * 86400.0 && t < n + year + 2.0 * 86400.0,
        "expiry of {file} = {t}, now = {n}: the dev certificates last one year"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_real_traffic_exactly() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let dead = free_port();
    let gw = Gateway::start_with(
        &pki,
        &[
            Route::new("redis", REDIS_SNI, "redis", redis.addr()),
            Route::new("dead", TCP_SNI, "redis", format!("127.0.0.1:{dead}")),
        ],
        &Opts::new().admin().timeout("probe_interval", "200ms"),
    );
    // No sidecar probes: each one would be a connection on the gateway's route.
    let sc = Sidecar::start_with(
        &pki,
        &[Tunnel::new("redis", "redis", gw.addr, REDIS_SNI)],
        &Opts::new().admin().timeout("probe_interval", "0s"),
    );
    let tunnel = loopback(sc.port("redis"));

    // Three relayed connections with known payloads; the third stays open for the gauge.
    let (mut sent, mut received) = (0, 0);
    for (i, len) in [100_000, 250_001].into_iter().enumerate() {
        let (s, r) = set_through(tunnel, &format!("k{i}"), len).await;
        sent += s;
        received += r;
    }
    let mut held = Resp::connect(tunnel).await.unwrap();
    assert_eq!(
        held.cmd(&[b"PING"]).await.unwrap(),
        Reply::Status("PONG".into())
    );
    for proc in [&gw.proc, &sc.proc] {
        scrape_until(proc, "connections_open 1 with 3 total", |s| {
            s.count("snigate_connections_open", &[("route", "redis")]) == 1.0
                && s.count("snigate_connections_total", &[("route", "redis")]) == 3.0
        });
    }
    sent += held.sent;
    received += held.received;
    held.close().await.unwrap();

    // Refused before a route: no SNI, unknown SNI. Refused on a route: backend down.
    let opts = ClientOpts {
        sni: false,
        ..ClientOpts::new(&pki)
    };
    let err = opts.connect(gw.addr, REDIS_SNI).await.unwrap_err();
    assert_eq!(
        alert(&err),
        Some(rustls::AlertDescription::UnrecognisedName)
    );
    let err = ClientOpts::new(&pki)
        .connect(gw.addr, "nope.snigate.test")
        .await
        .unwrap_err();
    assert_eq!(
        alert(&err),
        Some(rustls::AlertDescription::UnrecognisedName)
    );
    let tls = ClientOpts::new(&pki)
        .connect(gw.addr, TCP_SNI)
        .await
        .unwrap();
    let mut c = Resp::new(tls);
    match c.cmd(&[b"PING"]).await.unwrap() {
        Reply::Error(e) => assert!(e.starts_with("LOADING snigate: dead: backend"), "{e}"),
        other => panic!("expected the native error, got {other:?}"),
    }

    let g = scrape_until(&gw.proc, "every counter of the gateway", |s| {
        s.count(
            "snigate_connection_duration_seconds_count",
            &[("route", "redis")],
        ) == 3.0
            && s.count("snigate_refusals_total", &[("route", "dead")]) == 1.0
            && s.count(
                "snigate_handshake_failures_total",
                &[("reason", "unknown_sni")],
            ) == 1.0
            && s.value("snigate_far_side_up", &[("route", "dead")])
                .is_some()
            && s.value("snigate_far_side_up", &[("route", "redis")])
                .is_some()
    });
    let redis_l = [("route", "redis")];
    assert_eq!(g.get("snigate_connections_total", &redis_l), 3.0);
    assert_eq!(g.get("snigate_connections_open", &redis_l), 0.0);
    let from_client = [("route", "redis"), ("direction", "from_client")];
    let to_client = [("route", "redis"), ("direction", "to_client")];
    assert_eq!(g.get("snigate_bytes_total", &from_client), sent as f64);
    assert_eq!(g.get("snigate_bytes_total", &to_client), received as f64);
    assert_eq!(g.get("snigate_connect_seconds_count", &redis_l), 3.0);
    assert_eq!(
        g.count("snigate_connect_seconds_count", &[("route", "dead")]),
        0.0
    );
    let no_route = |reason| [("route", ""), ("reason", reason)];
    assert_eq!(
        g.get("snigate_handshake_failures_total", &no_route("no_sni")),
        1.0
    );
    assert_eq!(
        g.get("snigate_handshake_failures_total", &no_route("unknown_sni")),
        1.0
    );
    assert_eq!(g.samples("snigate_handshake_failures_total", &[]).len(), 2);
    let dead_l = [("route", "dead"), ("reason", "backend_unreachable")];
    assert_eq!(g.get("snigate_refusals_total", &dead_l), 1.0);
    assert_eq!(g.samples("snigate_refusals_total", &[]).len(), 1);
    assert_eq!(
        g.get("snigate_connections_total", &[("route", "dead")]),
        1.0
    );
    assert_eq!(g.get("snigate_far_side_up", &redis_l), 1.0);
    assert_eq!(g.get("snigate_far_side_up", &[("route", "dead")]), 0.0);
    assert_expiry_about_a_year(&g, &pki.server_cert());
    assert!(g
        .value(
            "snigate_certificate_expiry_timestamp_seconds",
            &[("file", pki.ca().to_str().unwrap())]
        )
        .is_some());
    assert!(g
        .samples("snigate_reloads_total", &[])
        .iter()
        .all(|(_, v)| *v == 0.0));
    assert!(
        g.text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );

    let s = scrape_until(&sc.proc, "every counter of the sidecar", |s| {
        s.count(
            "snigate_connection_duration_seconds_count",
            &[("route", "redis")],
        ) == 3.0
    });
    assert_eq!(s.get("snigate_connections_total", &redis_l), 3.0);
    assert_eq!(s.get("snigate_connections_open", &redis_l), 0.0);
    assert_eq!(s.get("snigate_bytes_total", &from_client), sent as f64);
    assert_eq!(s.get("snigate_bytes_total", &to_client), received as f64);
    assert_eq!(s.get("snigate_connect_seconds_count", &redis_l), 3.0);
    assert!(s.samples("snigate_refusals_total", &[]).is_empty());
    assert_expiry_about_a_year(&s, &pki.client_cert());
    assert!(s
        .value(
            "snigate_certificate_expiry_timestamp_seconds",
            &[("file", pki.ca().to_str().unwrap())]
        )
        .is_some());

    let reply = gw.proc.get("/metrics");
    assert!(
        reply
            .content_type
            .starts_with("application/openmetrics-text"),
        "{reply:?}"
    );
    println!(
        "--- gateway /metrics after 3 relayed connections, 2 handshake failures, 1 refusal ---"
    );
    println!("{}", g.text);
    println!("--- sidecar /metrics after the same 3 connections ---");
    println!("{}", s.text);
}

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
    let dead = free_port();
    let gw = Gateway::start_with(
        &pki,
        &[
            Route::new("redis", REDIS_SNI, "redis", redis.addr()),
            Route::new("pg", PG_SNI, "postgres", loopback(pg.port)),
            Route::new("noauth", LOCKED_SNI, "redis", noauth),
            Route::new("dead", TCP_SNI, "redis", format!("127.0.0.1:{dead}")),
            // A Redis PING to PostgreSQL: it hangs up instead of answering +PONG.
            Route::new("wrong", LOCKED_PG_SNI, "redis", loopback(pg.port)),
        ],
        &Opts::new().admin().timeout("probe_interval", "200ms"),
    );
    let body = readyz_until(
        &gw.proc,
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
    assert!(
        dead_line.to_lowercase().contains("refused"),
        "detail names the error: {dead_line:?}"
    );
    let m = gw.proc.metrics();
    for (route, up) in [
        ("redis", 1.0),
        ("pg", 1.0),
        ("noauth", 1.0),
        ("dead", 0.0),
        ("wrong", 0.0),
    ] {
        assert_eq!(
            m.get("snigate_far_side_up", &[("route", route)]),
            up,
            "{route}"
        );
    }
    let live = gw.proc.get("/livez");
    assert_eq!((live.status, live.body.as_str()), (200, "ok\n"));
    let startup = gw.proc.get("/startup");
    assert_eq!(startup.status, 200, "{startup:?}");
    assert_eq!(gw.proc.get("/nope").status, 404);
    // Probes go on: the dead backend coming up turns its check ok.
    let _back = RedisServer::start_on(dead);
    readyz_until(&gw.proc, 200, &["backend:dead: ok"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_readiness_follows_its_gateway() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let port = free_port();
    let sc = Sidecar::start_with(
        &pki,
        &[Tunnel::new("redis", "redis", loopback(port), REDIS_SNI)],
        &Opts::new().admin().timeout("probe_interval", "200ms"),
    );
    let body = readyz_until(&sc.proc, 503, &["tunnel:redis: failing ", "unreachable"]);
    assert!(body.contains("started: true"), "{body}");
    assert_eq!(sc.proc.get("/livez").status, 200);
    assert_eq!(sc.proc.get("/startup").status, 200);
    assert_eq!(
        sc.proc
            .metrics()
            .get("snigate_far_side_up", &[("route", "redis")]),
        0.0
    );

    let routes = [Route::new("redis", REDIS_SNI, "redis", redis.addr())];
    let yaml = support::snigate::gateway_yaml(&format!("127.0.0.1:{port}"), &pki, true, &routes);
    let gw = Gateway::from_yaml(&yaml);
    readyz_until(&sc.proc, 200, &["tunnel:redis: ok"]);
    scrape_until(&sc.proc, "far_side_up 1", |s| {
        s.value("snigate_far_side_up", &[("route", "redis")]) == Some(1.0)
    });

    drop(gw);
    readyz_until(&sc.proc, 503, &["tunnel:redis: failing "]);
}

#[test]
fn sidecar_without_probes_is_ready_once_listening() {
    let pki = Pki::new();
    let sc = Sidecar::start_with(
        &pki,
        &[Tunnel::new(
            "redis",
            "redis",
            loopback(free_port()),
            REDIS_SNI,
        )],
        &Opts::new().admin().timeout("probe_interval", "0s"),
    );
    // `probe_interval: 0s` turns probing off; readiness then cannot wait for a probe.
    readyz_until(&sc.proc, 200, &["started: true"]);
}

/// Every line of `log` is one JSON object with a timestamp, a level and a message.
fn assert_all_json(who: &str, log: &str) -> Vec<serde_json::Value> {
    assert!(!log.is_empty(), "{who} logged nothing");
    log.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{who} log line is not JSON ({e}): {l}"));
            assert!(v["timestamp"].is_string(), "{who}: {l}");
            assert!(v["level"].is_string(), "{who}: {l}");
            assert!(v["fields"]["message"].is_string(), "{who}: {l}");
            v
        })
        .collect()
}

fn closed_line(proc: &Proc) -> serde_json::Value {
    wait_for("a closed line", SOON, || {
        proc.log()
            .lines()
            .find(|l| message(l).as_deref() == Some("closed"))
            .map(|l| serde_json::from_str(l).unwrap())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_one_object_per_line_with_the_close_fields() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let gw = Gateway::start_with(
        &pki,
        &[Route::new("redis", REDIS_SNI, "redis", redis.addr())],
        &Opts::new().json_before(),
    );
    let sc = Sidecar::start_with(
        &pki,
        &[Tunnel::new("redis", "redis", gw.addr, REDIS_SNI)],
        &Opts::new().json_after().timeout("probe_interval", "0s"),
    );
    let (sent, received) = set_through(loopback(sc.port("redis")), "json", 12_345).await;
    let opts = ClientOpts {
        sni: false,
        ..ClientOpts::new(&pki)
    };
    opts.connect(gw.addr, REDIS_SNI).await.unwrap_err();

    for (who, proc) in [("gateway", &gw.proc), ("sidecar", &sc.proc)] {
        let closed = closed_line(proc);
        let f = &closed["fields"];
        assert_eq!(f["bytes_from_client"], sent, "{who}: {closed}");
        assert_eq!(f["bytes_from_backend"], received, "{who}: {closed}");
        assert!(f["duration_ms"].is_u64(), "{who}: {closed}");
        assert_eq!(f["closed_by"], "client", "{who}: {closed}");
        assert!(f["why"].is_string(), "{who}: {closed}");
        let span = &closed["span"];
        let peer: Result<SocketAddr, _> = span["peer"].as_str().unwrap_or("").parse();
        assert!(peer.is_ok(), "{who}: peer in {closed}");
        assert!(span["id"].is_u64(), "{who}: id in {closed}");
        let route_key = if who == "gateway" { "route" } else { "tunnel" };
        assert_eq!(span[route_key], "redis", "{who}: {closed}");
        if who == "gateway" {
            assert_eq!(span["client"], format!("dns:{CLIENT_NAME}"), "{closed}");
        }
    }
    wait_for("the refused line", SOON, || {
        gw.proc.log().lines().find_map(|l| {
            (message(l).as_deref() == Some("refused")).then(|| {
                assert_eq!(field(l, "reason").as_deref(), Some("no_sni"), "{l}");
                assert_eq!(field(l, "side").as_deref(), Some("client"), "{l}");
                assert!(field(l, "error").is_some(), "{l}");
                assert!(field(l, "peer").is_some(), "{l}");
            })
        })
    });
    // Stop both, so every line they will ever write is checked.
    for proc in [&gw.proc, &sc.proc] {
        proc.signal(libc::SIGTERM);
    }
    let (mut gw, mut sc) = (gw, sc);
    for (who, proc) in [("gateway", &mut gw.proc), ("sidecar", &mut sc.proc)] {
        assert_eq!(proc.wait_exit(SOON).code(), Some(0), "{who}");
        let lines = assert_all_json(who, &proc.log());
        assert!(
            lines.iter().any(|v| v["fields"]["message"] == "listening"),
            "{who}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_silent_clients_open_no_backend_connection() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let gw = Gateway::start_with(
        &pki,
        &[Route::new("redis", REDIS_SNI, "redis", redis.addr())],
        &Opts::new().admin(),
    );
    let before = redis.total_connections();
    // A TLS client that completes the handshake and leaves without a word.
    let mut tls = ClientOpts::new(&pki)
        .connect(gw.addr, REDIS_SNI)
        .await
        .unwrap();
    tls.shutdown().await.unwrap();
    // A sidecar probing the gateway every 200 ms: full handshakes, no traffic.
    let sc = Sidecar::start_with(
        &pki,
        &[Tunnel::new("redis", "redis", gw.addr, REDIS_SNI)],
        &Opts::new().admin().timeout("probe_interval", "200ms"),
    );
    readyz_until(&sc.proc, 200, &["tunnel:redis: ok"]);
    scrape_until(&gw.proc, "5 handshakes on the route", |s| {
        s.count("snigate_connections_total", &[("route", "redis")]) >= 5.0
    });
    assert_eq!(
        redis.total_connections(),
        before,
        "the gateway dialled the backend for a connection that sent nothing"
    );
    // The first bytes do open one.
    let mut c = Resp::connect(loopback(sc.port("redis"))).await.unwrap();
    assert_eq!(
        c.cmd(&[b"PING"]).await.unwrap(),
        Reply::Status("PONG".into())
    );
    c.close().await.unwrap();
    assert_eq!(redis.total_connections(), before + 1);
}

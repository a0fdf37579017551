//! `/metrics` of both roles against real traffic: every counter exact.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::AlertDescription::UnrecognisedName;

use crate::support::admin::Scrape;
use crate::support::clients::resp::{encode, payload, Reply, Resp};
use crate::support::clients::tls::{alert, ClientOpts};
use crate::support::config::ms;
use crate::support::sockets::DeadPort;
use crate::support::*;

/// One SET of `len` bytes through `addr`, then a clean close; returns (sent, received).
pub async fn set_through(addr: SocketAddr, key: &str, len: usize) -> (u64, u64) {
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

fn assert_expiry_about_a_year(s: &Scrape, file: &Path) {
    let file = file.to_str().unwrap();
    let expiry = [("file", file)];
    let t = s.get("snigate_certificate_expiry_timestamp_seconds", &expiry);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let (year, day, n) = (365.0 * 86400.0, 86400.0, now.as_secs_f64());
    assert!(
        t > n + year - 2.0 * day && t < n + year + 2.0 * day,
        "expiry of {file} = {t}, now = {n}: the dev certificates last one year"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_real_traffic_exactly() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let nothing = DeadPort::new();
    let mut config = gateway(
        &pki,
        vec![
            route("redis", REDIS_SNI, Protocol::Redis, redis.addr()),
            route("dead", TCP_SNI, Protocol::Redis, nothing.addr),
        ],
    );
    config.timeouts.probe_interval = ms(200);
    let gw = Gateway::start(&config);
    // No sidecar probes: each one would be a connection on the gateway's route.
    let sc = Sidecar::start(&redis_sidecar(&pki, gw.addr));
    let tunnel = sc.addr("redis");

    // Three relayed connections with known payloads; the third stays open for the gauge.
    let (mut sent, mut received) = (0, 0);
    for (i, len) in [100_000, 250_001].into_iter().enumerate() {
        let (s, r) = set_through(tunnel, &format!("k{i}"), len).await;
        sent += s;
        received += r;
    }
    let mut held = Resp::connect(tunnel).await.unwrap();
    held.ping().await;
    for proc in [&gw.proc, &sc.proc] {
        proc.wait_metrics("connections_open 1 with 3 total", |s| {
            s.count("snigate_connections_open", &[("route", "redis")]) == 1.0
                && s.count("snigate_connections_total", &[("route", "redis")]) == 3.0
        });
    }
    sent += held.sent;
    received += held.received;
    held.close().await.unwrap();

    // Refused before a route: no SNI, unknown SNI. Refused on a route: backend down.
    let no_sni = ClientOpts {
        sni: false,
        ..ClientOpts::new(&pki)
    };
    let err = no_sni.connect(gw.addr, REDIS_SNI).await.unwrap_err();
    assert_eq!(alert(&err), Some(UnrecognisedName));
    let opts = ClientOpts::new(&pki);
    let unknown = opts
        .connect(gw.addr, "nope.snigate.test")
        .await
        .unwrap_err();
    assert_eq!(alert(&unknown), Some(UnrecognisedName));
    let tls = ClientOpts::new(&pki)
        .connect(gw.addr, TCP_SNI)
        .await
        .unwrap();
    match Resp::new(tls).cmd(&[b"PING"]).await.unwrap() {
        Reply::Error(e) => assert!(e.starts_with("LOADING snigate: dead: backend"), "{e}"),
        other => panic!("expected the native error, got {other:?}"),
    }

    let redis_l = [("route", "redis")];
    let g = gw.wait_metrics("every counter of the gateway", |s| {
        s.count("snigate_connection_duration_seconds_count", &redis_l) == 3.0
            && s.count("snigate_refusals_total", &[("route", "dead")]) == 1.0
            && s.count(
                "snigate_handshake_failures_total",
                &[("reason", "unknown_sni")],
            ) == 1.0
            && s.value("snigate_far_side_up", &[("route", "dead")])
                .is_some()
            && s.value("snigate_far_side_up", &redis_l).is_some()
    });
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
    let failures = "snigate_handshake_failures_total";
    assert_eq!(g.get(failures, &no_route("no_sni")), 1.0);
    assert_eq!(g.get(failures, &no_route("unknown_sni")), 1.0);
    assert_eq!(g.samples(failures, &[]).len(), 2);
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
    let ca = pki.ca();
    let ca_expiry = [("file", ca.to_str().unwrap())];
    let expiry = "snigate_certificate_expiry_timestamp_seconds";
    assert!(g.value(expiry, &ca_expiry).is_some());
    let reloads = g.samples("snigate_reloads_total", &[]);
    assert!(reloads.iter().all(|(_, v)| *v == 0.0));
    assert!(
        g.text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );

    let s = sc.wait_metrics("every counter of the sidecar", |s| {
        s.count("snigate_connection_duration_seconds_count", &redis_l) == 3.0
    });
    assert_eq!(s.get("snigate_connections_total", &redis_l), 3.0);
    assert_eq!(s.get("snigate_connections_open", &redis_l), 0.0);
    assert_eq!(s.get("snigate_bytes_total", &from_client), sent as f64);
    assert_eq!(s.get("snigate_bytes_total", &to_client), received as f64);
    assert_eq!(s.get("snigate_connect_seconds_count", &redis_l), 3.0);
    assert!(s.samples("snigate_refusals_total", &[]).is_empty());
    assert_expiry_about_a_year(&s, &pki.client_cert());
    assert!(s.value(expiry, &ca_expiry).is_some());

    let reply = gw.get("/metrics");
    let openmetrics = reply
        .content_type
        .starts_with("application/openmetrics-text");
    assert!(openmetrics, "{reply:?}");
    println!(
        "--- gateway /metrics after 3 relayed connections, 2 handshake failures, 1 refusal ---"
    );
    println!("{}", g.text);
    println!("--- sidecar /metrics after the same 3 connections ---");
    println!("{}", s.text);
}

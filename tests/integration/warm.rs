//! Warm connections (`tunnels[].warm`) against real servers: established before any client
//! and costing the backends nothing, carrying redis-cli and psql without a new handshake on
//! the gateway, no backend connection for probes or for a warm `tcp` tunnel, and gateway
//! restarts (drain and SIGKILL) that lose and double nothing.

use std::thread;
use std::time::Duration;

use crate::support::clients::postgres::{local, psql};
use crate::support::clients::tools::redis_cli;
use crate::support::config::ms;
use crate::support::running::Process;
use crate::support::servers::Speaker;
use crate::support::sockets::DeadPort;
use crate::support::*;

fn on(name: &str) -> [(&str, &str); 1] {
    [("route", name)]
}

/// Waits until `name` has two warm connections ready on the sidecar and waiting on the
/// gateway; returns the gateway's connections on the route so far.
fn two_warm(sc: &Process, gw: &Process, name: &str) -> f64 {
    sc.wait_metrics("warm connections ready", |s| {
        s.count("snigate_warm_ready", &on(name)) == 2.0
    });
    let g = gw.wait_metrics("warm connections waiting", |s| {
        s.count("snigate_warm_waiting", &on(name)) == 2.0
    });
    g.get("snigate_connections_total", &on(name))
}

/// Tunnels `redis` and `postgres` (and more) to the gateway at `gw`, each with `warm: 2`.
fn warm_tunnels(
    gw: std::net::SocketAddr,
    more: &[(&str, Protocol, &str)],
) -> Vec<snigate::config::TunnelConfig> {
    let named = [
        ("redis", Protocol::Redis, REDIS_SNI),
        ("postgres", Protocol::Postgres, PG_SNI),
    ];
    let all = named.iter().chain(more).map(|&(name, protocol, sni)| {
        let mut t = tunnel(name, protocol, gw, sni);
        t.warm = 2;
        t
    });
    all.collect()
}

#[test]
fn warm_connections_wait_before_any_client_and_carry_redis_cli_and_psql() {
    let (pki, redis, pg) = (Pki::new(), RedisServer::start(), Postgres::start());
    let routes = vec![
        route("redis", REDIS_SNI, Protocol::Redis, redis.addr()),
        route("postgres", PG_SNI, Protocol::Postgres, pg.addr()),
    ];
    let gw = Gateway::start(&gateway(&pki, routes));
    let (redis_before, pg_before) = (redis.total_connections(), pg.connections_received());
    let sc = Sidecar::start(&sidecar(&pki, warm_tunnels(gw.addr, &[])));

    // Before any client: two connections per route wait on the gateway, none on a backend.
    for name in ["redis", "postgres"] {
        assert_eq!(two_warm(&sc, &gw, name), 2.0, "{name}");
    }
    assert_eq!(redis.total_connections(), redis_before);
    assert_eq!(pg.connections_received(), pg_before);

    assert_eq!(redis_cli(sc.port("redis"), &["PING"]), "PONG\n");
    let out = psql(&local(sc.port("postgres")), "select 1");
    assert_eq!(texts(&out).0, "1\n", "{:?}", texts(&out));

    let s = sc.metrics();
    for name in ["redis", "postgres"] {
        assert_eq!(s.count("snigate_warm_hits_total", &on(name)), 1.0, "{name}");
        assert_eq!(
            s.count("snigate_warm_misses_total", &on(name)),
            0.0,
            "{name}"
        );
        // The client rode one of the four connections made before it (ids 1 to 4): no TCP
        // or TLS handshake of its own.
        let closed = gw.wait_line("its closed line", |l| {
            l.is("closed") && l.has("route", name)
        });
        let id = closed.conn_id().unwrap_or(u64::MAX);
        assert!(id <= 4, "{name}: {}", closed.raw);
        assert_eq!(
            gw.lines("closed")
                .iter()
                .filter(|l| l.has("route", name))
                .count(),
            1
        );
    }
    // Each used connection was replaced, and only that one.
    for name in ["redis", "postgres"] {
        assert_eq!(two_warm(&sc, &gw, name), 3.0, "{name}");
    }
    assert_eq!(redis.total_connections(), redis_before + 1);
    assert_eq!(pg.connections_received(), pg_before + 1);
}

#[test]
fn probes_and_warm_connections_open_no_backend_connection_on_any_protocol() {
    let (pki, redis, pg) = (Pki::new(), RedisServer::start(), Postgres::start());
    let speaker = Speaker::start();
    let routes = vec![
        route("redis", REDIS_SNI, Protocol::Redis, redis.addr()),
        route("postgres", PG_SNI, Protocol::Postgres, pg.addr()),
        route("plain", TCP_SNI, Protocol::Tcp, speaker.addr),
    ];
    let gw = Gateway::start(&gateway(&pki, routes));
    let (redis_before, pg_before) = (redis.total_connections(), pg.connections_received());
    let more = [("plain", Protocol::Tcp, TCP_SNI)];
    let mut config = sidecar(&pki, warm_tunnels(gw.addr, &more));
    config.timeouts.probe_interval = ms(100);
    let sc = Sidecar::start(&config);
    // Two warm connections and at least five probes per route.
    for name in ["redis", "postgres", "plain"] {
        gw.wait_metrics("warm connections and probes", |s| {
            s.count("snigate_connections_total", &on(name)) >= 7.0
        });
        sc.wait_metrics("warm connections ready", |s| {
            s.count("snigate_warm_ready", &on(name)) == 2.0
        });
    }
    let dialled = speaker.accepted();
    assert_eq!(
        dialled, 0,
        "a warm or probing sidecar dialled the tcp backend"
    );
    assert_eq!(redis.total_connections(), redis_before);
    assert_eq!(pg.connections_received(), pg_before);
    // Probes and unused warm connections are no client's connection: no line at info.
    let lines: Vec<String> = gw
        .log()
        .into_iter()
        .filter(|l| l.conn_id().is_some())
        .map(|l| l.raw)
        .collect();
    assert!(lines.is_empty(), "{lines:?}");

    // The first client does reach the server, which speaks first.
    Speaker::greeted_through(sc.addr("plain"));
    assert_eq!(speaker.accepted(), 1);
}

/// `n` sequential short-lived clients, each one INCR then close; every reply must be the next
/// integer after `start`: nothing lost (a gap) and nothing done twice (a jump).
fn incr_clients(port: u16, start: i64, n: i64) {
    for expected in start + 1..=start + n {
        let reply = redis_cli(port, &["INCR", "restarts"]);
        assert_eq!(reply, format!("{expected}\n"), "client {expected}");
    }
}

#[test]
fn gateway_restarts_while_warm_lose_and_double_nothing() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let mut config = redis_gateway(&pki, redis.addr());
    let mut gw = Gateway::start(&config);
    config.listen = gw.addr;
    let mut tunnel = tunnel("redis", Protocol::Redis, gw.addr, REDIS_SNI);
    tunnel.warm = 2;
    let mut sc_config = sidecar(&pki, vec![tunnel]);
    // Clients that come while no gateway listens wait for the next one.
    sc_config.timeouts.retry = Duration::from_secs(10);
    let sc = Sidecar::start(&sc_config);
    let port = sc.port("redis");
    let discarded = |why| [("route", "redis"), ("reason", why)];
    sc.wait_metrics("warm connections ready", |s| {
        s.count("snigate_warm_ready", &on("redis")) == 2.0
    });
    incr_clients(port, 0, 50);

    // A rolling update: SIGTERM drains (GOAWAY to the idle warm connections at once), a new
    // gateway takes the address; clients keep coming throughout.
    let clients = thread::spawn(move || incr_clients(port, 50, 50));
    gw.stop(libc::SIGTERM);
    sc.wait_metrics("warm connections sent away", |s| {
        s.count("snigate_warm_discarded_total", &discarded("goaway")) >= 1.0
    });
    let mut gw = Gateway::start(&config);
    clients.join().unwrap();

    // A crash while warm connections are idle: found closed, discarded, replaced. A client
    // that comes while the gateway is down waits for the new one.
    sc.wait_metrics("warm connections ready again", |s| {
        s.count("snigate_warm_ready", &on("redis")) == 2.0
    });
    gw.stop(libc::SIGKILL);
    sc.wait_metrics("dead warm connections discarded", |s| {
        s.count("snigate_warm_discarded_total", &discarded("closed")) >= 2.0
    });
    let clients = thread::spawn(move || incr_clients(port, 100, 100));
    sc.wait_metrics("a client waiting for the gateway", |s| {
        s.count("snigate_connections_open", &on("redis")) == 1.0
    });
    let _gw = Gateway::start(&config);
    clients.join().unwrap();

    let total: String = redis::cmd("GET")
        .arg("restarts")
        .query(&mut redis.direct())
        .unwrap();
    assert_eq!(total, "200");
    let s = sc.metrics();
    assert!(
        s.samples("snigate_refusals_total", &[]).is_empty(),
        "{}",
        s.text
    );
}

/// The sidecar retries a gateway that is away with growing pauses for `timeouts.retry`, then
/// gives the client its native error. Its own log shows the pauses: together most of the
/// budget, and never past it.
#[test]
fn a_gateway_away_longer_than_the_retry_budget_gets_the_native_error() {
    let pki = Pki::new();
    let dead = DeadPort::new();
    let budget = Duration::from_secs(2);
    let mut tunnel = tunnel("redis", Protocol::Redis, dead.addr, REDIS_SNI);
    tunnel.warm = 2;
    let mut config = sidecar(&pki, vec![tunnel]);
    config.timeouts.retry = budget;
    let sc = Launch::default()
        .rust_log("info,snigate=debug")
        .sidecar(&config);
    let reply = redis_cli(sc.port("redis"), &["PING"]);
    let want = format!(
        "LOADING snigate: redis: gateway {} unreachable: ",
        dead.addr
    );
    assert!(reply.starts_with(&want), "{reply:?}");
    let refused = sc.wait_line("the refusal", |l| l.is("refused"));
    let log = sc.log();
    let retries = log
        .iter()
        .filter(|l| l.is("far side unavailable; retrying") && l.conn_id() == refused.conn_id());
    let paused: u64 = retries.filter_map(|l| l.get("pause_ms")?.as_u64()).sum();
    // Retried for most of the budget; a single refused dial takes a millisecond.
    assert!(paused >= 700, "paused {paused} ms:\n{}", sc.log_text());
    assert!(paused < budget.as_millis() as u64, "paused {paused} ms");
}

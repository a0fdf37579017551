//! Warm connections (`tunnels[].warm`) against real servers: established before any client
//! and costing the backends nothing, carrying redis-cli and psql without a new handshake on
//! the gateway, no backend connection for probes or for a warm `tcp` tunnel, and gateway
//! restarts (drain and SIGKILL) that lose and double nothing.

mod support;

use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use support::admin::Scrape;
use support::pki::{PG_SNI, REDIS_SNI, TCP_SNI};
use support::snigate::{field, gateway_yaml, message, Proc};
use support::speaker::Speaker;
use support::*;

/// Wait for a counter; far shorter than READY, so a missing one fails fast.
const SOON: Duration = Duration::from_secs(15);

/// Poll `/metrics` until `cond` holds; returns that scrape.
fn scrape_until(proc: &Proc, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = String::new();
    let found = poll(SOON, || {
        let s = proc.metrics();
        last = s.text.clone();
        cond(&s).then_some(s)
    });
    found.unwrap_or_else(|| panic!("timed out waiting for {what}; last /metrics:\n{last}"))
}

fn route(name: &str) -> [(&str, &str); 1] {
    [("route", name)]
}

/// Waits until `name` has two warm connections ready on the sidecar and waiting on the
/// gateway; returns the gateway's connections on the route so far.
fn two_warm(sc: &Proc, gw: &Proc, name: &str) -> f64 {
    scrape_until(sc, "warm connections ready", |s| {
        s.count("snigate_warm_ready", &route(name)) == 2.0
    });
    let g = scrape_until(gw, "warm connections waiting", |s| {
        s.count("snigate_warm_waiting", &route(name)) == 2.0
    });
    g.get("snigate_connections_total", &route(name))
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = run(
        Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args),
        CMD,
    );
    let (o, e) = texts(&out);
    o + &e
}

fn psql(port: u16, sql: &str) -> Output {
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let mut cmd = Command::new("psql");
    cmd.arg(conninfo)
        .args(["-XAtc", sql])
        .env_remove("PGSSLMODE");
    run(&mut cmd, CMD)
}

/// The connection ids (JSON log, span field `id`) of the gateway's `closed` lines on `route`.
fn closed_ids(gw: &Proc, route: &str) -> Vec<u64> {
    let log = gw.log();
    let closed = log.lines().filter(|l| {
        message(l).as_deref() == Some("closed") && field(l, "route").as_deref() == Some(route)
    });
    closed
        .map(|l| field(l, "id").and_then(|id| id.parse().ok()).unwrap())
        .collect()
}

#[test]
fn warm_connections_wait_before_any_client_and_carry_redis_cli_and_psql() {
    let (pki, redis, pg) = (Pki::new(), RedisServer::start(), Postgres::start());
    let pg_addr = format!("127.0.0.1:{}", pg.port);
    let routes = [
        Route::new("redis", REDIS_SNI, "redis", redis.addr()),
        Route::new("postgres", PG_SNI, "postgres", &pg_addr),
    ];
    let gw = Gateway::start_with(&pki, &routes, &Opts::new().admin().json_before());
    let (redis_before, pg_before) = (redis.total_connections(), pg.connections_received());
    let tunnels = [
        Tunnel::new("redis", "redis", gw.addr, REDIS_SNI).warm(2),
        Tunnel::new("postgres", "postgres", gw.addr, PG_SNI).warm(2),
    ];
    let sc_opts = Opts::new().admin().timeout("probe_interval", "0s");
    let sc = Sidecar::start_with(&pki, &tunnels, &sc_opts);

    // Before any client: two connections per route wait on the gateway, none on a backend.
    for name in ["redis", "postgres"] {
        assert_eq!(two_warm(&sc.proc, &gw.proc, name), 2.0, "{name}");
    }
    assert_eq!(redis.total_connections(), redis_before);
    assert_eq!(pg.connections_received(), pg_before);

    assert_eq!(redis_cli(sc.port("redis"), &["PING"]), "PONG\n");
    let out = psql(sc.port("postgres"), "select 1");
    assert_eq!(texts(&out).0, "1\n", "{:?}", texts(&out));

    let s = sc.proc.metrics();
    for name in ["redis", "postgres"] {
        assert_eq!(
            s.count("snigate_warm_hits_total", &route(name)),
            1.0,
            "{name}"
        );
        assert_eq!(
            s.count("snigate_warm_misses_total", &route(name)),
            0.0,
            "{name}"
        );
        // The client rode one of the four connections made before it (ids 1 to 4): no TCP
        // or TLS handshake of its own.
        gw.proc.wait_lines(&["\"closed\"", name], 1);
        let ids = closed_ids(&gw.proc, name);
        assert!(ids.len() == 1 && ids[0] <= 4, "{name}: {ids:?}");
    }
    // Each used connection was replaced, and only that one.
    for name in ["redis", "postgres"] {
        assert_eq!(two_warm(&sc.proc, &gw.proc, name), 3.0, "{name}");
    }
    assert_eq!(redis.total_connections(), redis_before + 1);
    assert_eq!(pg.connections_received(), pg_before + 1);
}

#[test]
fn probes_and_warm_connections_open_no_backend_connection_on_any_protocol() {
    let (pki, redis, pg, speaker) = (
        Pki::new(),
        RedisServer::start(),
        Postgres::start(),
        Speaker::start(),
    );
    let routes = [
        Route::new("redis", REDIS_SNI, "redis", redis.addr()),
        Route::new(
            "postgres",
            PG_SNI,
            "postgres",
            format!("127.0.0.1:{}", pg.port),
        ),
        Route::new("plain", TCP_SNI, "tcp", speaker.addr),
    ];
    let gw = Gateway::start_with(&pki, &routes, &Opts::new().admin());
    let (redis_before, pg_before) = (redis.total_connections(), pg.connections_received());
    let tunnels = [
        Tunnel::new("redis", "redis", gw.addr, REDIS_SNI).warm(2),
        Tunnel::new("postgres", "postgres", gw.addr, PG_SNI).warm(2),
        Tunnel::new("plain", "tcp", gw.addr, TCP_SNI).warm(2),
    ];
    let sc_opts = Opts::new().admin().timeout("probe_interval", "100ms");
    let sc = Sidecar::start_with(&pki, &tunnels, &sc_opts);
    // Two warm connections and at least five probes per route.
    for name in ["redis", "postgres", "plain"] {
        scrape_until(&gw.proc, "warm connections and probes", |s| {
            s.count("snigate_connections_total", &route(name)) >= 7.0
        });
        scrape_until(&sc.proc, "warm connections ready", |s| {
            s.count("snigate_warm_ready", &route(name)) == 2.0
        });
    }
    assert_eq!(
        speaker.accepted(),
        0,
        "a warm or probing sidecar dialled the tcp backend"
    );
    assert_eq!(redis.total_connections(), redis_before);
    assert_eq!(pg.connections_received(), pg_before);
    // Probes and unused warm connections are no client's connection: no line at info.
    let lines = gw.proc.lines_with(&["conn{"]);
    assert!(lines.is_empty(), "{lines:?}");

    // The first client does reach the server, which speaks first.
    Speaker::greeted_through(loopback(sc.port("plain")));
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
    let routes = [Route::new("redis", REDIS_SNI, "redis", redis.addr())];
    let gw_yaml = |addr: &str| gateway_yaml(addr, &pki, true, &routes);
    let mut gw = Gateway::from_yaml(&gw_yaml("127.0.0.1:0"));
    let gw_addr = gw.addr.to_string();
    let tunnels = [Tunnel::new("redis", "redis", gw.addr, REDIS_SNI).warm(2)];
    let sc_opts = Opts::new().admin().timeout("probe_interval", "0s");
    let sc = Sidecar::start_with(&pki, &tunnels, &sc_opts);
    let port = sc.port("redis");
    let discarded = |why| [("route", "redis"), ("reason", why)];
    scrape_until(&sc.proc, "warm connections ready", |s| {
        s.count("snigate_warm_ready", &route("redis")) == 2.0
    });
    incr_clients(port, 0, 50);

    // A rolling update: SIGTERM drains (GOAWAY to the idle warm connections at once), a new
    // gateway takes the address; clients keep coming throughout.
    let clients = thread::spawn(move || incr_clients(port, 50, 50));
    gw.proc.signal(libc::SIGTERM);
    gw.proc.wait_exit(READY);
    scrape_until(&sc.proc, "warm connections sent away", |s| {
        s.count("snigate_warm_discarded_total", &discarded("goaway")) >= 1.0
    });
    let gw = Gateway::from_yaml(&gw_yaml(&gw_addr));
    clients.join().unwrap();

    // A crash while warm connections are idle: found closed, discarded, replaced. A client
    // that comes while the gateway is down waits for the new one.
    scrape_until(&sc.proc, "warm connections ready again", |s| {
        s.count("snigate_warm_ready", &route("redis")) == 2.0
    });
    let mut gw = gw;
    gw.proc.signal(libc::SIGKILL);
    gw.proc.wait_exit(READY);
    scrape_until(&sc.proc, "dead warm connections discarded", |s| {
        s.count("snigate_warm_discarded_total", &discarded("closed")) >= 2.0
    });
    let clients = thread::spawn(move || incr_clients(port, 100, 100));
    scrape_until(&sc.proc, "a client waiting for the gateway", |s| {
        s.count("snigate_connections_open", &route("redis")) == 1.0
    });
    let _gw = Gateway::from_yaml(&gw_yaml(&gw_addr));
    clients.join().unwrap();

    let total: i64 = redis::cmd("GET")
        .arg("restarts")
        .query::<String>(&mut redis.direct())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(total, 200);
    let s = sc.proc.metrics();
    assert!(
        s.samples("snigate_refusals_total", &[]).is_empty(),
        "{}",
        s.text
    );
}

#[test]
fn a_gateway_away_longer_than_the_retry_budget_gets_the_native_error() {
    let pki = Pki::new();
    let dead = free_port();
    let tunnels = [Tunnel::new("redis", "redis", format!("127.0.0.1:{dead}"), REDIS_SNI).warm(2)];
    let sc_opts = Opts::new()
        .timeout("probe_interval", "0s")
        .timeout("retry", "2s");
    let sc = Sidecar::start_with(&pki, &tunnels, &sc_opts);
    let started = std::time::Instant::now();
    let reply = redis_cli(sc.port("redis"), &["PING"]);
    let waited = started.elapsed();
    let want = format!("LOADING snigate: redis: gateway 127.0.0.1:{dead} unreachable: ");
    assert!(reply.starts_with(&want), "{reply:?}");
    // Retried with backoff for most of the budget; a single refused dial takes a millisecond.
    assert!(waited >= Duration::from_millis(700), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

//! Ready-made topologies. `Guarded`: a gateway in front of real backends whose connection
//! counters every refusal must leave unchanged, and good clients that must still get through
//! afterwards. `chain`: sidecar → gateway → one backend (`redis_chain`, `postgres_chain`).
//! And what every stop test checks.

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use snigate::config::{GatewayConfig, RouteConfig, SidecarConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::clients::postgres::{psql, verify_full};
use super::clients::resp::Resp;
use super::clients::tls::{resp_line, ClientOpts};
use super::config::{allow, gateway, route, sidecar, tunnel, worker_route};
use super::launch::{Gateway, Sidecar};
use super::logs::{assert_one_line_per_connection, assert_sanitised, with_message, Line};
use super::process::texts;
use super::running::Process;
use super::servers::{Postgres, RedisServer};
use super::{wait_for, Pki, Protocol, PG_SNI, REDIS_SNI};

/// Redis (and optionally PostgreSQL) behind a gateway with mutual TLS; the counters are what
/// the backends have seen so far, updated only by the good clients.
pub struct Guarded {
    pub redis: RedisServer,
    pub pg: Option<Postgres>,
    pub pki: Pki,
    pub gw: Gateway,
    pub redis_conns: u64,
    pub pg_conns: usize,
}

/// Routes `redis` and `postgres` to the servers given, both allowing the default client
/// identity.
pub fn standard_routes(redis: Option<&RedisServer>, pg: Option<&Postgres>) -> Vec<RouteConfig> {
    let redis = redis.map(|r| worker_route("redis", REDIS_SNI, Protocol::Redis, r.addr()));
    let pg = pg.map(|pg| worker_route("postgres", PG_SNI, Protocol::Postgres, pg.addr()));
    redis.into_iter().chain(pg).collect()
}

/// Adds route `name` for `sni` to the backend of `config.routes[from]`, allowing only `ids`.
pub fn route_like(config: &mut GatewayConfig, from: usize, name: &str, sni: &str, ids: &[&str]) {
    let mut r = config.routes[from].clone();
    r.name = name.into();
    r.server_names = vec![sni.into()];
    r.allow = allow(ids);
    config.routes.push(r);
}

impl Guarded {
    /// Standard routes; `tweak` may change the config before the start.
    pub fn start(with_pg: bool, tweak: impl FnOnce(&mut GatewayConfig)) -> Guarded {
        Self::with_pki(Pki::new(), with_pg, tweak)
    }

    /// Like `start`, with a Pki made beforehand (e.g. to write a CRL from its CA first).
    pub fn with_pki(pki: Pki, with_pg: bool, tweak: impl FnOnce(&mut GatewayConfig)) -> Guarded {
        let redis = RedisServer::start();
        let pg = with_pg.then(Postgres::start);
        let mut config = gateway(&pki, standard_routes(Some(&redis), pg.as_ref()));
        tweak(&mut config);
        let gw = Gateway::start(&config);
        let redis_conns = redis.total_connections();
        let pg_conns = pg.as_ref().map_or(0, |pg| pg.connections_received());
        Guarded {
            redis,
            pg,
            pki,
            gw,
            redis_conns,
            pg_conns,
        }
    }

    /// How many `refused` lines the gateway has logged so far.
    pub fn refused(&self) -> usize {
        self.gw.lines("refused").len()
    }

    /// One new `refused` line with `reason` (returned), no backend connection, and good
    /// clients still served.
    pub async fn assert_refused(&mut self, before: usize, reason: &str) -> Line {
        let line = expect_refusal(&self.gw, before, reason);
        self.assert_no_backend_connection();
        self.good_clients_work().await;
        line
    }

    pub fn assert_no_backend_connection(&self) {
        let redis = self.redis.total_connections();
        assert_eq!(
            redis, self.redis_conns,
            "a redis backend connection was opened"
        );
        if let Some(pg) = &self.pg {
            let log = pg.log();
            assert_eq!(
                pg.connections_received(),
                self.pg_conns,
                "PostgreSQL:\n{log}"
            );
        }
    }

    /// A good Redis client (and psql, with PostgreSQL) gets through, opening exactly one
    /// backend connection each, and is not refused.
    pub async fn good_clients_work(&mut self) {
        let refused = self.refused();
        let mut good = ClientOpts::new(&self.pki)
            .connect(self.gw.addr, REDIS_SNI)
            .await
            .expect("good client's handshake");
        assert_eq!(resp_line(&mut good, &["PING"]).await, "+PONG\r\n");
        drop(good);
        self.redis_conns += 1;
        assert_eq!(self.redis.total_connections(), self.redis_conns);
        if let Some(pg) = &self.pg {
            let out = self.psql(PG_SNI, &self.pki);
            assert_eq!(texts(&out).0, "1\n", "{:?}", texts(&out));
            self.pg_conns += 1;
            assert_eq!(pg.connections_received(), self.pg_conns);
        }
        assert_eq!(self.refused(), refused, "{}", self.gw.log_text());
    }

    /// psql straight to the gateway: verify-full for `sni`, `client`'s certificate, `select 1`.
    pub fn psql(&self, sni: &str, client: &Pki) -> Output {
        psql(&verify_full(sni, self.gw.port(), client), "select 1")
    }
}

/// Waits for the `before + 1`-th `refused` line and for its count in the metrics (the last
/// thing a refused connection does, so nothing more of it can follow); asserts it is the
/// only new one, has `reason`, and that the whole log is sanitised. Returns the line.
pub fn expect_refusal(proc: &Process, before: usize, reason: &str) -> Line {
    wait_for(&format!("refused reason={reason}"), || {
        (proc.refusals() > before as f64).then_some(())
    });
    let log = proc.log();
    let new = with_message(&log, "refused").split_off(before);
    assert_eq!(
        new.len(),
        1,
        "expected one new refused line:\n{}",
        proc.log_text()
    );
    let line = new[0].clone();
    line.assert_field("reason", reason);
    assert_sanitised(&log);
    assert_one_line_per_connection(&log, &line);
    line
}

/// Sidecar tunnel `redis` → gateway route `redis` → `redis`; the tweaks change the configs
/// before each start.
pub fn redis_chain(
    pki: &Pki,
    redis: &RedisServer,
    gw: impl FnOnce(&mut GatewayConfig),
    sc: impl FnOnce(&mut SidecarConfig),
) -> (Gateway, Sidecar) {
    let redis = route("redis", REDIS_SNI, Protocol::Redis, redis.addr());
    chain(pki, redis, gw, sc)
}

/// Sidecar tunnel `postgres` → gateway route `postgres` → `pg`, like `redis_chain`.
pub fn postgres_chain(
    pki: &Pki,
    pg: &Postgres,
    gw: impl FnOnce(&mut GatewayConfig),
    sc: impl FnOnce(&mut SidecarConfig),
) -> (Gateway, Sidecar) {
    let postgres = route("postgres", PG_SNI, Protocol::Postgres, pg.addr());
    chain(pki, postgres, gw, sc)
}

/// Sidecar tunnel → gateway with the one route `route` (the tunnel has its name, protocol
/// and first server name); the tweaks change the configs before each start.
pub fn chain(
    pki: &Pki,
    route: RouteConfig,
    gw: impl FnOnce(&mut GatewayConfig),
    sc: impl FnOnce(&mut SidecarConfig),
) -> (Gateway, Sidecar) {
    let (name, protocol, sni) = (
        route.name.clone(),
        route.protocol,
        route.server_names[0].clone(),
    );
    let mut config = gateway(pki, vec![route]);
    gw(&mut config);
    let gw = Gateway::start(&config);
    let mut config = sidecar(pki, vec![tunnel(&name, protocol, gw.addr, &sni)]);
    sc(&mut config);
    (gw, Sidecar::start(&config))
}

/// After SIGTERM to a process with `timeouts.shutdown_delay` = `delay`: readiness turns off
/// at once, a connection made then (by `connect`) is still served, listening on `addr` stops
/// only once the delay is over, and the drain then closes that connection, idle, at once
/// (well before any drain budget) before a clean exit.
pub async fn assert_shutdown_delay<S, F>(
    proc: &mut Process,
    addr: SocketAddr,
    delay: Duration,
    connect: F,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = Resp<S>>,
{
    let stopped = Instant::now();
    proc.signal(libc::SIGTERM);
    proc.wait_readyz(503, &["draining: true"]);
    let mut during = connect.await;
    during.ping().await;
    let accepting = proc.lines("no longer accepting; draining").is_empty();
    assert!(
        accepting,
        "the delay ended before the check: it proves nothing"
    );
    proc.wait_lines("no longer accepting; draining", 1);
    let waited = stopped.elapsed();
    assert!(
        waited >= delay,
        "stopped accepting after {waited:?}, before {delay:?}"
    );
    assert_not_listening(addr).await;
    let end = during.read_reply().await.unwrap_err();
    assert_eq!(end.kind(), ErrorKind::UnexpectedEof, "{end}");
    assert_eq!(proc.wait_exit().code(), Some(0), "{}", proc.log_text());
}

/// A new TCP connection to `addr` is refused: nothing listens there any more.
pub async fn assert_not_listening(addr: SocketAddr) {
    let err = TcpStream::connect(addr).await.expect_err("still accepting");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

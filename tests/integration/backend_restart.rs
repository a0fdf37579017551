//! The gateway retries its backend within `timeouts.retry` while the backend restarts: a
//! client that connects during a PostgreSQL restart (refused connections, then FATAL 57P03
//! "starting up" or "shutting down") or before Redis listens waits and is served; a backend
//! down for longer than the budget gets the native error after about that long.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use snigate::config::Timeouts;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use crate::support::clients::postgres::{connect_local, local};
use crate::support::clients::resp::{encode, Reply, Resp};
use crate::support::fixtures::{chain, postgres_chain};
use crate::support::logs::Line;
use crate::support::sockets::DeadPort;
use crate::support::*;

/// What the gateway logs once for each client it keeps waiting.
const WAITED: &str = "backend unavailable; retrying";

/// sidecar → gateway → `pg`, the gateway retrying for the product's default budget.
fn retrying_chain(pki: &Pki, pg: &Postgres) -> (Gateway, Sidecar) {
    postgres_chain(pki, pg, |g| g.timeouts.retry = default_retry(), |_| {})
}

fn default_retry() -> Duration {
    Timeouts::default().retry
}

/// A `WAITED` line whose error mentions `error`.
fn waited_for(error: &'static str) -> impl Fn(&Line) -> bool {
    move |l| l.is(WAITED) && l.field("error").is_some_and(|e| e.contains(error))
}

/// A client through the sidecar: connects, asks, returns the answer. A session that was up
/// when the fast shutdown began is ended by PostgreSQL itself (57P01): no proxy can save it.
async fn served(port: u16) -> Result<String, String> {
    let (client, conn) = tokio_postgres::connect(&local(port), NoTls)
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    tokio::spawn(conn);
    match client.query_one("SELECT 'served'", &[]).await {
        Ok(row) => Ok(row.get(0)),
        Err(e) if e.is_closed() || e.code() == Some(&SqlState::ADMIN_SHUTDOWN) => {
            Ok("ended by the shutdown".into())
        }
        Err(e) => Err(format!("query: {e:?}")),
    }
}

/// Connections the gateway opened to `route`'s backend that took longer than `le` seconds.
fn connects_slower_than(gw: &Gateway, route: &str, le: &str) -> f64 {
    let m = gw.metrics();
    let all = m.get("snigate_connect_seconds_count", &[("route", route)]);
    all - m.get(
        "snigate_connect_seconds_bucket",
        &[("route", route), ("le", le)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_connecting_through_a_postgres_fast_restart_wait_and_are_served() {
    let (pki, pg) = (Pki::new(), Postgres::start());
    let (gw, sc) = retrying_chain(&pki, &pg);
    let port = sc.port("postgres");
    let stop = Arc::new(AtomicBool::new(false));
    // Clients keep connecting, one after another on two connections, through the restarts.
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut served_count, mut failures) = (0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match served(port).await {
                        Ok(answer) => served_count += usize::from(answer == "served"),
                        Err(failure) => failures.push(failure),
                    }
                }
                (served_count, failures)
            })
        })
        .collect();
    let log = pg.dir.path().join("restarted.log");
    let log = log.to_str().unwrap();
    // A restart of an idle cluster is quick: restart until a client has met the gap.
    for _ in 0..10 {
        let restart = || pg.pg_ctl(&["restart", "-m", "fast", "-w", "-l", log]);
        let restarted = tokio::task::block_in_place(restart);
        assert!(restarted.status.success(), "{:?}", texts(&restarted));
        if !gw.lines(WAITED).is_empty() {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let (served_count, failures) = client.await.unwrap();
        assert_eq!(failures, Vec::<String>::new());
        assert!(served_count > 0);
    }
    let waited = gw.lines(WAITED);
    let why = "no client met a restart: the test proved nothing";
    assert!(!waited.is_empty(), "{why}\n{}", gw.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_refused_while_postgres_shuts_down_is_retried_until_it_is_back() {
    let (pki, pg) = (Pki::new(), Postgres::start());
    let (gw, sc) = retrying_chain(&pki, &pg);
    // A smart shutdown waits for this session, refusing new ones with 57P03 meanwhile.
    let session = connect_local(pg.port).await;
    let stopping = pg.pg_ctl(&["stop", "-m", "smart", "-W"]);
    assert!(stopping.status.success(), "{:?}", texts(&stopping));
    let client = tokio::spawn(served(sc.port("postgres")));
    gw.wait_line("the client kept waiting on 57P03", waited_for("57P03"));
    assert!(!client.is_finished(), "the client did not wait");

    drop(session);
    let log = pg.dir.path().join("restarted.log");
    let started = pg.pg_ctl(&["restart", "-w", "-l", log.to_str().unwrap()]);
    assert!(started.status.success(), "{:?}", texts(&started));
    assert_eq!(client.await.unwrap().unwrap(), "served");
    assert_eq!(connects_slower_than(&gw, "postgres", "0.064"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_client_waits_for_a_backend_that_starts_listening() {
    let pki = Pki::new();
    let nothing = DeadPort::new();
    let redis = route("redis", REDIS_SNI, Protocol::Redis, nothing.addr);
    let (gw, sc) = chain(&pki, redis, |g| g.timeouts.retry = default_retry(), |_| {});
    let mut client = Resp::connect(sc.addr("redis")).await.unwrap();
    client.write(&encode(&[b"PING"])).await.unwrap();
    gw.wait_line("the client kept waiting", waited_for("refused"));
    let _redis = RedisServer::start_on(nothing.release().port());
    let pong = client.read_reply().await.unwrap();
    assert_eq!(pong, Reply::Status("PONG".into()));
    assert_eq!(connects_slower_than(&gw, "redis", "0.008"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_longer_than_the_retry_budget_gets_the_native_error_after_it() {
    let pki = Pki::new();
    let nothing = DeadPort::new();
    let dead = nothing.addr;
    let budget = Duration::from_secs(3);
    let redis = route("redis", REDIS_SNI, Protocol::Redis, dead);
    let (_gw, sc) = chain(&pki, redis, |g| g.timeouts.retry = budget, |_| {});
    let mut client = Resp::connect(sc.addr("redis")).await.unwrap();
    let asked = Instant::now();
    let reply = client.cmd(&[b"PING"]).await.unwrap();
    let waited = asked.elapsed();
    let Reply::Error(error) = reply else {
        panic!("expected the native error, got {reply:?}");
    };
    let prefix = format!("LOADING snigate: redis: backend {dead} unreachable: ");
    assert!(error.starts_with(&prefix), "{error}");
    let tried = error.contains(" (tried for 2.") || error.contains(" (tried for 3.");
    assert!(tried, "{error}");
    // Pauses up to 1 s: the last attempt comes within a second of the budget's end.
    let about_the_budget = budget - Duration::from_secs(1)..budget + Duration::from_secs(5);
    assert!(
        about_the_budget.contains(&waited),
        "answered after {waited:?}"
    );
}

//! The gateway retries its backend within `timeouts.retry` while the backend restarts: a
//! client that connects during a PostgreSQL restart (refused connections, then FATAL 57P03
//! "starting up" or "shutting down") or before Redis listens waits and is served; a backend
//! down for longer than the budget gets the native error after about that long.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::pki::{PG_SNI, REDIS_SNI};
use support::resp::{Reply, Resp};
use support::*;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// Stops, when dropped, a postmaster that pg_ctl started (not the test's child).
struct StopsPostgres<'a>(&'a Postgres);

impl Drop for StopsPostgres<'_> {
    fn drop(&mut self) {
        self.0.pg_ctl(&["stop", "-m", "immediate"]);
    }
}

fn postgres_chain(pki: &Pki, pg: &Postgres, opts: &Opts) -> (Gateway, Sidecar) {
    let backend = format!("127.0.0.1:{}", pg.port);
    let gw = Gateway::start_with(
        pki,
        &[Route::new("postgres", PG_SNI, "postgres", backend)],
        opts,
    );
    let tunnel = Tunnel::new("postgres", "postgres", gw.addr, PG_SNI);
    let sc = Sidecar::start(pki, &[tunnel]);
    (gw, sc)
}

/// A client through the sidecar: connects, asks, returns the answer. A session that was up
/// when the fast shutdown began is ended by PostgreSQL itself (57P01): no proxy can save it.
async fn served(port: u16) -> Result<String, String> {
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let (client, conn) = tokio_postgres::connect(&conninfo, NoTls)
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
    let m = gw.proc.metrics();
    let all = m.get("snigate_connect_seconds_count", &[("route", route)]);
    all - m.get(
        "snigate_connect_seconds_bucket",
        &[("route", route), ("le", le)],
    )
}

const WAITED: &str = "backend unavailable; retrying";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_connecting_through_a_postgres_fast_restart_wait_and_are_served() {
    let (pki, pg) = (Pki::new(), Postgres::start());
    let (gw, sc) = postgres_chain(&pki, &pg, &Opts::new().admin());
    let _stop = StopsPostgres(&pg);
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
        let restarted =
            tokio::task::block_in_place(|| pg.pg_ctl(&["restart", "-m", "fast", "-w", "-l", log]));
        assert!(restarted.status.success(), "{:?}", texts(&restarted));
        if gw.proc.count_lines(&[WAITED]) > 0 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let (served_count, failures) = client.await.unwrap();
        assert_eq!(failures, Vec::<String>::new());
        assert!(served_count > 0);
    }
    assert!(
        gw.proc.count_lines(&[WAITED]) > 0,
        "no client met a restart: the test proved nothing\n{}",
        gw.proc.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_refused_while_postgres_shuts_down_is_retried_until_it_is_back() {
    let (pki, pg) = (Pki::new(), Postgres::start());
    let (gw, sc) = postgres_chain(&pki, &pg, &Opts::new().admin());
    let _stop = StopsPostgres(&pg);
    // A smart shutdown waits for this session, refusing new ones with 57P03 meanwhile.
    let session = pg.client().await;
    let stopping = pg.pg_ctl(&["stop", "-m", "smart", "-W"]);
    assert!(stopping.status.success(), "{:?}", texts(&stopping));
    let port = sc.port("postgres");
    let client = tokio::spawn(served(port));
    gw.proc.wait_lines(&[WAITED, "57P03"], 1);
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
    let (pki, port) = (Pki::new(), free_port());
    let route = Route::new("redis", REDIS_SNI, "redis", loopback(port));
    let gw = Gateway::start_with(&pki, &[route], &Opts::new().admin());
    let sc = Sidecar::start(&pki, &[Tunnel::new("redis", "redis", gw.addr, REDIS_SNI)]);
    let mut client = Resp::connect(loopback(sc.port("redis"))).await.unwrap();
    client
        .write(&support::resp::encode(&[b"PING"]))
        .await
        .unwrap();
    gw.proc.wait_lines(&[WAITED, "refused"], 1);
    let redis = tokio::task::spawn_blocking(move || RedisServer::start_on(port));
    assert_eq!(
        client.read_reply().await.unwrap(),
        Reply::Status("PONG".into())
    );
    drop(redis.await.unwrap());
    assert_eq!(connects_slower_than(&gw, "redis", "0.008"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_longer_than_the_retry_budget_gets_the_native_error_after_it() {
    let (pki, dead) = (Pki::new(), free_port());
    let budget = Duration::from_secs(3);
    let opts = Opts::new().timeout("retry", "3s");
    let route = Route::new("redis", REDIS_SNI, "redis", loopback(dead));
    let gw = Gateway::start_with(&pki, &[route], &opts);
    let sc = Sidecar::start(&pki, &[Tunnel::new("redis", "redis", gw.addr, REDIS_SNI)]);
    let mut client = Resp::connect(loopback(sc.port("redis"))).await.unwrap();
    let asked = Instant::now();
    let reply = client.cmd(&[b"PING"]).await.unwrap();
    let waited = asked.elapsed();
    let Reply::Error(error) = reply else {
        panic!("expected the native error, got {reply:?}");
    };
    let prefix = format!("LOADING snigate: redis: backend 127.0.0.1:{dead} unreachable: ");
    assert!(error.starts_with(&prefix), "{error}");
    assert!(
        error.contains(" (tried for 2.") || error.contains(" (tried for 3."),
        "{error}"
    );
    // Pauses up to 1 s: the last attempt comes within a second of the budget's end.
    assert!(
        waited >= budget - Duration::from_secs(1),
        "answered after {waited:?}"
    );
    assert!(
        waited < budget + Duration::from_secs(5),
        "answered after {waited:?}"
    );
}

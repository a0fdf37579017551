//! The drain closes each connection at a safe point, on both roles: an idle one or one
//! blocked in BRPOP at once, a busy one as soon as its reply has reached the client, and only what is still in the middle
//! of something when the `drain` budget ends is cut (and logged as such). The sidecar keeps
//! serving new clients until the connections open when the drain started are done.
//!
//! Each case starts sidecar → gateway → a real server, opens real client connections in
//! different states, stops one role (SIGTERM, or `/quitquitquit` on the sidecar) and checks
//! the exact bytes each client gets before its connection ends.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::clients::postgres::connect_local;
use crate::support::clients::resp::encode;
use crate::support::clients::tls::{exchange, resp_line};
use crate::support::fixtures::{postgres_chain, redis_chain};
use crate::support::running::Process;
use crate::support::*;

/// A drain budget no test waits for: what closes before it was closed at a safe point.
const FOREVER: Duration = Duration::from_secs(3600);
/// The budget of the cases that wait for it to cut an open transaction.
const SHORT_DRAIN: Duration = Duration::from_secs(6);

/// How a case stops the process under test. Both roles get the case's drain budget: only
/// the stopped one uses it.
#[derive(Clone, Copy, Debug)]
enum Stop {
    GatewaySigterm,
    SidecarSigterm,
    SidecarQuit,
}

/// Stops the role and returns its process, once it says its drain has started.
fn stop<'a>(how: Stop, gw: &'a mut Gateway, sc: &'a mut Sidecar) -> &'a mut Process {
    let proc = match how {
        Stop::GatewaySigterm => &mut gw.proc,
        Stop::SidecarSigterm | Stop::SidecarQuit => &mut sc.proc,
    };
    match how {
        Stop::SidecarQuit => assert_eq!(proc.post("/quitquitquit").status, 200),
        Stop::GatewaySigterm | Stop::SidecarSigterm => proc.signal(libc::SIGTERM),
    }
    let started = match how {
        Stop::GatewaySigterm => "no longer accepting; draining",
        Stop::SidecarSigterm | Stop::SidecarQuit => {
            "draining; still accepting until these are done"
        }
    };
    proc.wait_lines(started, 1);
    proc
}

/// Everything the peer sends until it closes (cleanly: no error).
async fn until_eof(stream: &mut TcpStream) -> Vec<u8> {
    let (bytes, err) = exchange(stream, b"").await;
    assert!(err.is_none(), "{err:?} after {bytes:?}");
    bytes
}

async fn redis_client(port: u16) -> TcpStream {
    let mut client = TcpStream::connect(loopback(port)).await.unwrap();
    assert_eq!(resp_line(&mut client, &["PING"]).await, "+PONG\r\n");
    client
}

/// The `why` of each `closed` line of `proc` (the stopped role), sorted.
fn closed_whys(proc: &Process) -> Vec<String> {
    let closed = proc.lines("closed");
    let mut whys: Vec<String> = closed.iter().filter_map(|l| l.field("why")).collect();
    whys.sort();
    whys
}

async fn redis_case(how: Stop) {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let (mut gw, mut sc) = redis_chain(
        &pki,
        &redis,
        |g| g.timeouts.drain = FOREVER,
        |s| s.timeouts.drain = FOREVER,
    );
    let mut idle = redis_client(sc.port("redis")).await;
    let mut waiting = redis_client(sc.port("redis")).await;
    waiting
        .write_all(&encode(&[b"BRPOP", b"jobs", b"0"]))
        .await
        .unwrap();
    wait_for("the BRPOP blocked in redis", || {
        (redis.blocked_clients() == 1).then_some(())
    });

    let port = sc.port("redis");
    let proc = stop(how, &mut gw, &mut sc);
    assert_eq!(until_eof(&mut idle).await, b"", "idle: closed at once");
    // The sidecar, the pod's only way out, still serves a new client (e.g. kombu recording
    // the message the BRPOP is about to pop); the gateway has stopped accepting.
    let mut late = match how {
        Stop::GatewaySigterm => None,
        Stop::SidecarSigterm | Stop::SidecarQuit => Some(redis_client(port).await),
    };
    // A BRPOP still blocked is at rest: closed at once, and Redis, which takes nothing from
    // the list until it answers, unblocks it; a job pushed now stays for the next consumer.
    assert_eq!(until_eof(&mut waiting).await, b"", "{how:?}: blocked BRPOP");
    wait_for("Redis unblocked the BRPOP", || {
        (redis.blocked_clients() == 0).then_some(())
    });
    let mut direct = redis.direct();
    redis::cmd("LPUSH")
        .arg("jobs")
        .arg("task")
        .query::<i64>(&mut direct)
        .unwrap();
    let left: i64 = redis::cmd("LLEN").arg("jobs").query(&mut direct).unwrap();
    assert_eq!(
        left, 1,
        "{how:?}: the job was popped by a closed connection"
    );
    if let Some(late) = late.as_mut() {
        assert_eq!(
            until_eof(late).await,
            b"",
            "late: closed once the listener closes"
        );
    }

    // An exit at all shows that nothing waited for the budget.
    assert_eq!(proc.wait_exit().code(), Some(0), "{}", proc.log_text());
    let at_rest = vec!["drained at rest"; 2 + late.iter().count()];
    assert_eq!(closed_whys(proc), at_rest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sigterm_closes_idle_and_blocked_redis_at_once_and_redis_pops_nothing() {
    redis_case(Stop::GatewaySigterm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_sigterm_closes_idle_and_blocked_redis_at_once_and_serves_new_clients_meanwhile() {
    redis_case(Stop::SidecarSigterm).await;
}

/// Waits until `client`'s connection has ended.
fn wait_closed(what: &str, client: &tokio_postgres::Client) {
    wait_for(&format!("{what}: connection closed"), || {
        client.is_closed().then_some(())
    });
}

async fn postgres_case(how: Stop) {
    let (pki, pg) = (Pki::new(), Postgres::start());
    let (mut gw, mut sc) = postgres_chain(
        &pki,
        &pg,
        |g| g.timeouts.drain = SHORT_DRAIN,
        |s| s.timeouts.drain = SHORT_DRAIN,
    );
    let port = sc.port("postgres");
    let idle = connect_local(port).await;
    idle.simple_query("SELECT 1").await.unwrap();
    let open = connect_local(port).await;
    open.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let sleeper = connect_local(port).await;
    let sleeping = tokio::spawn(async move {
        let row = sleeper.query_one("SELECT 42 FROM pg_sleep(2)", &[]).await;
        (row.map(|r| r.get::<_, i32>(0)), sleeper)
    });
    pg.wait_running("SELECT 42 FROM pg_sleep", 1);

    let stopped = Instant::now();
    let proc = stop(how, &mut gw, &mut sc);
    wait_closed("idle", &idle);
    assert!(idle.simple_query("SELECT 1").await.is_err());
    // The query in flight finishes and its result arrives before its connection closes.
    let (answer, sleeper) = sleeping.await.unwrap();
    assert_eq!(answer.unwrap(), 42);
    wait_closed("after the query", &sleeper);
    assert!(
        !open.is_closed(),
        "a transaction open was cut before the budget ran out"
    );

    wait_closed("in a transaction", &open);
    let cut_after = stopped.elapsed();
    assert!(cut_after >= SHORT_DRAIN, "cut after {cut_after:?}");
    assert_eq!(proc.wait_exit().code(), Some(0), "{}", proc.log_text());
    let cut = "drain budget over; cut while busy: a transaction open";
    let at_rest = "drained at rest";
    assert_eq!(closed_whys(proc), [cut, at_rest, at_rest]);
    let line = proc.wait_line("the cut", |l| l.has("why", cut));
    line.assert_field("closed_by", "local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sigterm_closes_idle_postgres_at_once_lets_a_query_finish_and_cuts_a_transaction_at_the_budget(
) {
    postgres_case(Stop::GatewaySigterm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_quitquitquit_closes_idle_postgres_at_once_lets_a_query_finish_and_cuts_a_transaction_at_the_budget(
) {
    postgres_case(Stop::SidecarQuit).await;
}

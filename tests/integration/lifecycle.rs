//! Lifecycle in Kubernetes: `POST /quitquitquit`, the sidecar's shutdown delay, a gateway
//! restart under a running sidecar (no stale state; redis-py recovers on its own), and TCP
//! keepalive on every leg of an idle connection.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use crate::support::clients::resp::{Reply, Resp};
use crate::support::clients::tools::RedisRecover;
use crate::support::config::ms;
use crate::support::fixtures::{assert_not_listening, assert_shutdown_delay, redis_chain};
use crate::support::sockets::{established, Socket};
use crate::support::*;

/// A drain budget no stop waits for: a stop that returns closed its idle connections at once.
const FOREVER: Duration = Duration::from_secs(3600);

async fn ping_through(addr: SocketAddr) -> Resp<tokio::net::TcpStream> {
    let mut c = Resp::connect(addr).await.unwrap();
    c.ping().await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitquitquit_stops_either_role_with_exit_zero() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let (mut gw, mut sc) = redis_chain(&pki, &redis, |_| {}, |_| {});
    let tunnel = sc.addr("redis");
    ping_through(tunnel).await.close().await.unwrap();
    let gw_addr = gw.addr;
    for (who, proc, addr) in [
        ("sidecar", &mut sc.proc, tunnel),
        ("gateway", &mut gw.proc, gw_addr),
    ] {
        let wrong = proc.get("/quitquitquit");
        assert_ne!(wrong.status, 200, "{who}: GET must not stop it: {wrong:?}");
        assert!(proc.exited().is_none(), "{who} stopped on a GET");
        let reply = proc.post("/quitquitquit");
        assert_eq!(reply.status, 200, "{who}: {reply:?}");
        let status = proc.wait_exit();
        assert_eq!(status.code(), Some(0), "{who}: {}", proc.log_text());
        assert_not_listening(addr).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_shutdown_delay_keeps_serving_the_finishing_worker() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let delay = Duration::from_secs(2);
    let (_gw, mut sc) = redis_chain(
        &pki,
        &redis,
        |_| {},
        |s| {
            s.timeouts.probe_interval = ms(200);
            s.timeouts.shutdown_delay = delay;
            s.timeouts.drain = FOREVER;
        },
    );
    let tunnel = sc.addr("redis");
    sc.wait_readyz(200, &[]);
    // The worker is still finishing: its new connections are served during the delay.
    let during = async { Resp::connect(tunnel).await.unwrap() };
    assert_shutdown_delay(&mut sc, tunnel, delay, during).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_recovers_as_soon_as_a_restarted_gateway_is_back() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let (mut gw, sc) = redis_chain(&pki, &redis, |g| g.timeouts.drain = FOREVER, |_| {});
    let (gw_addr, tunnel) = (gw.addr, sc.addr("redis"));
    let mut long_lived = ping_through(tunnel).await;

    assert_eq!(gw.stop(libc::SIGTERM).code(), Some(0));
    // The long-lived connection is closed (idle: at once), not left hanging.
    let end = long_lived.read_reply().await.unwrap_err();
    assert_eq!(end.kind(), ErrorKind::UnexpectedEof, "{end}");
    let mut down = Resp::connect(tunnel).await.unwrap();
    let prefix = format!("LOADING snigate: redis: gateway {gw_addr} unreachable: ");
    match down.cmd(&[b"PING"]).await.unwrap() {
        Reply::Error(e) => assert!(e.starts_with(&prefix), "{e:?} !~ {prefix:?}"),
        other => panic!("expected {prefix:?}, got {other:?}"),
    }

    // redis-py (what Celery uses) meets the gateway down, then must recover by itself.
    let client = RedisRecover::start(tunnel.port());
    let want = format!("down: ConnectionError snigate: redis: gateway {gw_addr} unreachable: ");
    assert!(client.down.starts_with(&want), "{}", client.down);
    let mut config = redis_gateway(&pki, redis.addr());
    config.listen = gw_addr;
    let _gw2 = Gateway::start(&config);
    // The very next connection through the same sidecar works: nothing stale to expire.
    ping_through(tunnel).await.close().await.unwrap();
    assert_eq!(client.finish(), "up: ping True\nup: set True yes\n");
    // One for our client; redis-py retries a LOADING reply (a ConnectionError) by its own
    // retry policy, so it may be refused more than once before the gateway is back.
    let refused = sc.lines("refused");
    let unreachable = refused
        .iter()
        .filter(|l| l.has("reason", "gateway_unreachable"));
    let n = unreachable.count();
    assert!(n >= 2, "{n} refusals:\n{}", sc.log_text());
}

/// One leg of a relayed connection: the process and its socket's local or peer address.
struct Leg {
    what: &'static str,
    pid: u32,
    local: Option<SocketAddr>,
    peer: Option<SocketAddr>,
}

impl Leg {
    /// The keepalive timer of the leg's socket, in seconds; `None` while another timer (a
    /// retransmit of data not yet acknowledged) is the one `ss` shows.
    fn keepalive_secs(&self, all: &[Socket]) -> Option<u64> {
        let owner = format!("pid={},", self.pid);
        let mine = |s: &&Socket| {
            s.record.contains(&owner)
                && self.local.is_none_or(|a| s.local == a)
                && self.peer.is_none_or(|a| s.peer == a)
        };
        let found: Vec<&str> = all.iter().filter(mine).map(|s| s.record.as_str()).collect();
        assert_eq!(found.len(), 1, "{}: sockets {found:#?}", self.what);
        let timer = found[0].split("timer:(keepalive,").nth(1)?;
        let secs: String = timer.chars().take_while(char::is_ascii_digit).collect();
        let unit: String = timer[secs.len()..]
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect();
        let n: u64 = secs
            .parse()
            .unwrap_or_else(|_| panic!("{}: timer {timer}", self.what));
        match unit.as_str() {
            "sec" => Some(n),
            "min" => Some(n * 60),
            "ms" => Some(0),
            other => panic!("{}: unexpected timer unit {other:?} in {timer}", self.what),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_runs_on_every_leg_of_an_idle_connection() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let (gw, sc) = redis_chain(&pki, &redis, |_| {}, |_| {});
    let tunnel = sc.addr("redis");
    let held = ping_through(tunnel).await;
    let leg = |what, pid, local, peer| Leg {
        what,
        pid,
        local,
        peer,
    };
    let legs = [
        leg("sidecar, from the worker", sc.pid(), Some(tunnel), None),
        leg("sidecar, to the gateway", sc.pid(), None, Some(gw.addr)),
        leg("gateway, from the sidecar", gw.pid(), Some(gw.addr), None),
        leg("gateway, to redis", gw.pid(), None, Some(redis.addr())),
    ];
    let timers = wait_for("a keepalive timer on every leg", || {
        let all = established();
        let each = legs.iter().map(|l| Some((l.what, l.keepalive_secs(&all)?)));
        each.collect::<Option<HashMap<&str, u64>>>()
    });
    println!("keepalive timers: {timers:?}");
    for (leg, secs) in &timers {
        // Idle time 60 s (not the kernel's 2 h default), so the timer is at most 60 s.
        assert!(*secs <= 60, "{leg}: keepalive timer {secs}s");
    }
    held.close().await.unwrap();
}

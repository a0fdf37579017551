//! Lifecycle in Kubernetes: `POST /quitquitquit`, the sidecar's shutdown delay, a gateway
//! restart under a running sidecar (no stale state; redis-py recovers on its own), and TCP
//! keepalive on every leg of an idle connection.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::pki::REDIS_SNI;
use support::resp::{Reply, Resp};
use support::snigate::gateway_yaml;
use support::stop::{assert_refused, chain, ping};
use support::*;
use tokio::net::TcpStream;

/// Bound for a stop that must not wait for the (long) drain period.
const PROMPT: Duration = Duration::from_secs(8);

async fn ping_through(addr: SocketAddr) -> Resp<TcpStream> {
    let mut c = Resp::connect(addr).await.unwrap();
    ping(&mut c).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitquitquit_stops_either_role_with_exit_zero() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let opts = Opts::new().admin().timeout("probe_interval", "0s");
    let (mut gw, mut sc) = chain(&pki, &redis, &opts, &opts);
    let tunnel = loopback(sc.port("redis"));
    ping_through(tunnel).await.close().await.unwrap();
    for (who, proc, port) in [
        ("sidecar", &mut sc.proc, tunnel),
        ("gateway", &mut gw.proc, gw.addr),
    ] {
        let wrong = proc.get("/quitquitquit");
        assert_ne!(wrong.status, 200, "{who}: GET must not stop it: {wrong:?}");
        assert!(proc.guard().exited().is_none(), "{who} stopped on a GET");
        let reply = proc.post("/quitquitquit");
        assert_eq!(reply.status, 200, "{who}: {reply:?}");
        let status = proc.wait_exit(PROMPT);
        assert_eq!(status.code(), Some(0), "{who}: {}", proc.log());
        assert_refused(port).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_shutdown_delay_keeps_serving_the_finishing_worker() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let delay = Duration::from_secs(2);
    let sc_opts = Opts::new()
        .admin()
        .timeout("probe_interval", "200ms")
        .timeout("shutdown_delay", "2s")
        .timeout("drain", "10s");
    let (_gw, mut sc) = chain(&pki, &redis, &Opts::new(), &sc_opts);
    let tunnel = loopback(sc.port("redis"));
    wait_for("sidecar ready", PROMPT, || {
        (sc.proc.get("/readyz").status == 200).then_some(())
    });

    let stopped = Instant::now();
    sc.proc.signal(libc::SIGTERM);
    wait_for("readiness off", PROMPT, || {
        (sc.proc.get("/readyz").status == 503).then_some(())
    });
    // The worker is still finishing: its new connections are served during the delay.
    let mut during = ping_through(tunnel).await;
    assert!(
        stopped.elapsed() < delay,
        "the check above came too late to prove anything"
    );
    assert!(sc.proc.guard().exited().is_none());

    sc.proc.wait_lines(&["no longer accepting"], 1);
    assert!(
        stopped.elapsed() >= delay,
        "stopped accepting after {:?}, before shutdown_delay {delay:?}",
        stopped.elapsed()
    );
    assert_refused(tunnel).await;
    ping(&mut during).await;
    during.close().await.unwrap();
    assert_eq!(
        sc.proc.wait_exit(PROMPT).code(),
        Some(0),
        "{}",
        sc.proc.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_recovers_as_soon_as_a_restarted_gateway_is_back() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let gw_opts = Opts::new().timeout("drain", "1s");
    // Away longer than the sidecar waits: clients get the native error meanwhile.
    let sc_opts = Opts::new().timeout("retry", "0s");
    let (mut gw, sc) = chain(&pki, &redis, &gw_opts, &sc_opts);
    let (gw_addr, tunnel) = (gw.addr, loopback(sc.port("redis")));
    let mut long_lived = ping_through(tunnel).await;

    gw.proc.signal(libc::SIGTERM);
    assert_eq!(gw.proc.wait_exit(PROMPT).code(), Some(0));
    // The long-lived connection is closed (drain over), not left hanging.
    let end = long_lived.read_reply().await.unwrap_err();
    assert_eq!(end.kind(), ErrorKind::UnexpectedEof, "{end}");
    let mut down = Resp::connect(tunnel).await.unwrap();
    let prefix = format!("LOADING snigate: redis: gateway {gw_addr} unreachable: ");
    match down.cmd(&[b"PING"]).await.unwrap() {
        Reply::Error(e) => assert!(e.starts_with(&prefix), "{e:?} !~ {prefix:?}"),
        other => panic!("expected {prefix:?}, got {other:?}"),
    }

    // redis-py (what Celery uses) meets the gateway down, then must recover by itself.
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("gateway-up");
    let child = Command::new(python())
        .arg(repo_root().join("tests/support/redis_recover.py"))
        .arg(tunnel.port().to_string())
        .arg(&flag)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python (run scripts/install-deps.sh)");
    let mut py = ChildGuard::new(child, libc::SIGKILL);
    let mut stdout = BufReader::new(py.child.stdout.take().unwrap());
    let mut lines = Vec::new();
    while lines.last().map(String::as_str) != Some("waiting\n") {
        let mut line = String::new();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "{lines:?}");
        lines.push(line);
    }

    let routes = [Route::new("redis", REDIS_SNI, "redis", redis.addr())];
    let _gw2 = Gateway::from_yaml(&gateway_yaml(&gw_addr.to_string(), &pki, true, &routes));
    // The very next connection through the same sidecar works: nothing stale to expire.
    ping_through(tunnel).await.close().await.unwrap();

    std::fs::write(&flag, "").unwrap();
    let status = py.stop_with(0, CMD); // signal 0: just wait
    let (mut rest, mut err) = (String::new(), String::new());
    stdout.read_to_string(&mut rest).unwrap();
    let mut stderr = py.child.stderr.take().unwrap();
    stderr.read_to_string(&mut err).unwrap();
    assert!(status.success(), "{lines:?} {rest} {err}");
    let want = format!("down: ConnectionError snigate: redis: gateway {gw_addr} unreachable: ");
    assert!(lines[0].starts_with(&want), "{lines:?}");
    assert_eq!(rest, "up: ping True\nup: set True yes\n");
    // One for our client; redis-py retries a LOADING reply (a ConnectionError) by its own
    // retry policy, so it may be refused more than once before the gateway is back.
    let refusals = sc
        .proc
        .count_lines(&["refused", "reason=gateway_unreachable"]);
    assert!(refusals >= 2, "{refusals} refusals:\n{}", sc.proc.log());
}

/// Established TCP sockets of every process, from `ss -tnieop`: one record per socket
/// (continuation lines joined), with its local and peer address.
fn sockets() -> Vec<(SocketAddr, SocketAddr, String)> {
    let out = run(
        Command::new("ss").args(["-tnieopH", "state", "established"]),
        CMD,
    );
    assert!(out.status.success(), "ss: {:?}", texts(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut records: Vec<String> = Vec::new();
    for line in text.lines() {
        match records.last_mut() {
            Some(last) if line.starts_with(char::is_whitespace) => last.push_str(line),
            _ => records.push(line.to_owned()),
        }
    }
    records
        .into_iter()
        .filter_map(|r| {
            let words: Vec<&str> = r.split_whitespace().collect();
            let local = words.get(2)?.parse().ok()?;
            let peer = words.get(3)?.parse().ok()?;
            Some((local, peer, r))
        })
        .collect()
}

/// The keepalive timer of the one socket of `pid` matching `pick`, in seconds; `None` while
/// another timer (a retransmit of data not yet acknowledged) is the one `ss` shows.
fn keepalive_secs(
    all: &[(SocketAddr, SocketAddr, String)],
    pid: u32,
    what: &str,
    pick: impl Fn(&SocketAddr, &SocketAddr) -> bool,
) -> Option<u64> {
    let owner = format!("pid={pid},");
    let found: Vec<&String> = all
        .iter()
        .filter(|(l, p, r)| r.contains(&owner) && pick(l, p))
        .map(|(_, _, r)| r)
        .collect();
    assert_eq!(found.len(), 1, "{what}: sockets {found:#?}");
    let timer = found[0].split("timer:(keepalive,").nth(1)?;
    let secs: String = timer.chars().take_while(char::is_ascii_digit).collect();
    let unit: String = timer[secs.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let n: u64 = secs
        .parse()
        .unwrap_or_else(|_| panic!("{what}: timer {timer}"));
    match unit.as_str() {
        "sec" => Some(n),
        "min" => Some(n * 60),
        "ms" => Some(0),
        other => panic!("{what}: unexpected timer unit {other:?} in {timer}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_runs_on_every_leg_of_an_idle_connection() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let sc_opts = Opts::new().timeout("probe_interval", "0s");
    let (gw, sc) = chain(&pki, &redis, &Opts::new(), &sc_opts);
    let tunnel = loopback(sc.port("redis"));
    let held = ping_through(tunnel).await;
    let (gw_pid, sc_pid) = (gw.proc.pid(), sc.proc.pid());
    let legs = wait_for("a keepalive timer on every leg", PROMPT, || {
        let all = sockets();
        let legs: Option<HashMap<&str, u64>> = [
            (
                "sidecar, from the worker",
                keepalive_secs(&all, sc_pid, "sidecar local leg", |l, _| *l == tunnel),
            ),
            (
                "sidecar, to the gateway",
                keepalive_secs(&all, sc_pid, "sidecar gateway leg", |_, p| *p == gw.addr),
            ),
            (
                "gateway, from the sidecar",
                keepalive_secs(&all, gw_pid, "gateway client leg", |l, _| *l == gw.addr),
            ),
            (
                "gateway, to redis",
                keepalive_secs(&all, gw_pid, "gateway backend leg", |_, p| {
                    *p == redis.addr()
                }),
            ),
        ]
        .into_iter()
        .map(|(leg, secs)| Some((leg, secs?)))
        .collect();
        legs
    });
    println!("keepalive timers: {legs:?}");
    for (leg, secs) in &legs {
        // Idle time 60 s (not the kernel's 2 h default), so the timer is at most 60 s.
        assert!(*secs <= 60, "{leg}: keepalive timer {secs}s");
    }
    held.close().await.unwrap();
}

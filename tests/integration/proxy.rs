//! Egress through a real HTTP proxy (squid): the sidecar reaches the gateway with CONNECT,
//! from the `proxy` keys or HTTPS_PROXY/NO_PROXY, with and without basic auth; refusals
//! reach redis-cli and psql as their own errors. Squid's access log is what the proxy saw:
//! CONNECT to the gateway's host:port and nothing else. (Across the emulated WAN link:
//! proxy_wan.rs.)

use std::thread;
use std::time::Duration;

use snigate::config::{SidecarConfig, TunnelConfig};

use crate::support::clients::postgres::{local, psql};
use crate::support::clients::tools::redis_cli;
use crate::support::fixtures::standard_routes;
use crate::support::running::Process;
use crate::support::servers::{Access, Squid, SquidOpts};
use crate::support::sockets::DeadPort;
use crate::support::*;

const USER: &str = "worker";
const PASSWORD: &str = "Proxy-Pw-5c1e9a2f";
const WRONG: &str = "Wrong-Proxy-Pw-77d0";

fn squid_with_auth() -> Squid {
    Squid::start(&SquidOpts {
        auth: Some((USER.into(), PASSWORD.into())),
        ..SquidOpts::default()
    })
}

/// A gateway (mTLS, only the worker's identity) with Redis and, when given, PostgreSQL.
fn gateway_to(pki: &Pki, redis: &RedisServer, pg: Option<&Postgres>) -> Gateway {
    Gateway::start(&gateway(pki, standard_routes(Some(redis), pg)))
}

fn redis_tunnel(gateway: impl std::fmt::Display) -> TunnelConfig {
    tunnel("redis", Protocol::Redis, gateway, REDIS_SNI)
}

fn pg_tunnel(gateway: impl std::fmt::Display) -> TunnelConfig {
    tunnel("postgres", Protocol::Postgres, gateway, PG_SNI)
}

/// `tunnel` with its own `proxy:` key (a URL or `none`).
fn via(mut tunnel: TunnelConfig, proxy: &str) -> TunnelConfig {
    tunnel.proxy = Some(proxy.into());
    tunnel
}

/// The sidecar with `tunnels`, its `timeouts.retry` set to `retry`.
fn retrying(pki: &Pki, tunnels: Vec<TunnelConfig>, retry: Duration) -> SidecarConfig {
    let mut config = sidecar(pki, tunnels);
    config.timeouts.retry = retry;
    config
}

/// The `route` field of the sidecar's first `tunnel route` line.
fn tunnel_route(sc: &Sidecar) -> String {
    let lines = sc.lines("tunnel route");
    let line = lines.first().expect("a tunnel route line");
    line.field("route").expect("route field")
}

/// Every line is a CONNECT to `gateway` with `result`, as `user`; there are `n` or more.
fn only_connects(squid: &Squid, n: usize, gateway: &str, result: &str, user: &str) {
    let want = Access {
        result: result.into(),
        method: "CONNECT".into(),
        target: gateway.into(),
        user: user.into(),
    };
    let seen = squid.wait_access(n);
    assert!(
        seen.iter().all(|a| *a == want),
        "want {want:?}, saw {seen:#?}"
    );
}

/// Waits for `n` `refused` lines with `reason`.
fn wait_refused(proc: &Process, reason: &str, n: usize) {
    wait_for(&format!("{n} refused lines with reason {reason}"), || {
        let lines = proc.lines("refused");
        let with_reason = lines.iter().filter(|l| l.has("reason", reason)).count();
        (with_reason >= n).then_some(())
    });
}

#[test]
fn tunnels_reach_the_gateway_through_squid_with_and_without_basic_auth() {
    let (pki, redis, pg) = (Pki::new(), RedisServer::start(), Postgres::start());
    let gw = gateway_to(&pki, &redis, Some(&pg));
    let target = gw.addr.to_string();

    // Basic auth, from the top-level key.
    let squid = squid_with_auth();
    let mut config = sidecar(&pki, vec![redis_tunnel(gw.addr), pg_tunnel(gw.addr)]);
    config.proxy = Some(squid.url(Some((USER, PASSWORD))).as_str().into());
    let sc = Sidecar::start(&config);
    let port = sc.port("redis");
    assert_eq!(redis_cli(port, &["SET", "k", "through the proxy"]), "OK\n");
    assert_eq!(redis_cli(port, &["GET", "k"]), "through the proxy\n");
    let out = psql(&local(sc.port("postgres")), "select 1");
    assert_eq!(texts(&out).0, "1\n", "{:?}", texts(&out));
    let via_auth = format!("through proxy http://{USER}:***@{} (proxy)", squid.addr());
    assert_eq!(tunnel_route(&sc), via_auth);
    drop(sc);
    only_connects(&squid, 3, &target, "TCP_TUNNEL/200", USER);
    assert_eq!(
        squid.access().len(),
        3,
        "one CONNECT per client, no retries"
    );
    // The client certificate and SNI went through: the gateway served the allowed identity.
    let worker = format!("dns:{CLIENT_NAME}");
    let served = gw.wait_lines("closed", 3);
    assert_eq!(served.len(), 3, "{}", gw.log_text());
    assert!(
        served.iter().all(|l| l.has("client", &worker)),
        "{served:#?}"
    );

    // No auth, from HTTPS_PROXY; a warm connection goes through the proxy too.
    let open = Squid::start(&SquidOpts::default());
    let mut warm = redis_tunnel(gw.addr);
    warm.warm = 1;
    let sc = Launch::default()
        .env("HTTPS_PROXY", open.url(None))
        .sidecar(&sidecar(&pki, vec![warm]));
    assert_eq!(redis_cli(sc.port("redis"), &["PING"]), "PONG\n");
    let via_env = format!("through proxy http://{} (HTTPS_PROXY)", open.addr());
    assert_eq!(tunnel_route(&sc), via_env);
    drop(sc);
    only_connects(&open, 2, &target, "TCP_TUNNEL/200", "-");
}

#[test]
fn wrong_credentials_give_the_proxys_407_in_each_clients_protocol() {
    let pki = Pki::new();
    let squid = squid_with_auth();
    // Nothing needs to listen at the gateway's address: the proxy refuses first.
    let dead = DeadPort::new();
    let gateway = dead.addr.to_string();
    let url = squid.url(Some((USER, WRONG)));
    let tunnels = vec![
        via(redis_tunnel(&gateway), &url),
        via(pg_tunnel(&gateway), &url),
    ];
    let sc = Sidecar::start(&sidecar(&pki, tunnels));
    let refused = format!(
        "snigate: {{}}: proxy {} refused CONNECT {gateway}: 407 Proxy Authentication Required",
        squid.addr()
    );
    let said = redis_cli(sc.port("redis"), &["PING"]);
    assert_eq!(said, format!("ERR {}\n", refused.replace("{}", "redis")));
    let out = psql(&local(sc.port("postgres")), "select 1");
    let fatal = format!("FATAL:  {}\n", refused.replace("{}", "postgres"));
    assert!(texts(&out).1.ends_with(&fatal), "{:?}", texts(&out));
    // A refusal that lasts is not retried: one CONNECT per client.
    only_connects(&squid, 2, &gateway, "TCP_DENIED/407", USER);
    assert_eq!(squid.access().len(), 2);
    wait_refused(&sc, "proxy_auth_required", 2);
    let counted = sc.metrics().value(
        "snigate_refusals_total",
        &[("route", "redis"), ("reason", "proxy_auth_required")],
    );
    assert_eq!(counted, Some(1.0));
    assert!(
        !sc.log_text().contains(WRONG),
        "the sidecar logged the proxy password"
    );
}

#[test]
fn a_proxy_that_allows_only_port_443_refuses_the_gateway_with_403() {
    let pki = Pki::new();
    let only_443 = SquidOpts {
        only_443: true,
        ..SquidOpts::default()
    };
    let squid = Squid::start(&only_443);
    let dead = DeadPort::new();
    let gateway = dead.addr.to_string();
    let tunnel = via(redis_tunnel(&gateway), &squid.url(None));
    let sc = Sidecar::start(&sidecar(&pki, vec![tunnel]));
    let said = redis_cli(sc.port("redis"), &["PING"]);
    let want = format!(
        "ERR snigate: redis: proxy {} refused CONNECT {gateway}: 403 Forbidden\n",
        squid.addr()
    );
    assert_eq!(said, want);
    only_connects(&squid, 1, &gateway, "TCP_DENIED/403", "-");
    wait_refused(&sc, "proxy_refused", 1);
}

#[test]
fn a_proxy_that_is_down_is_retried_then_reported_as_loading() {
    let pki = Pki::new();
    let (proxy, gateway) = (DeadPort::new(), DeadPort::new());
    let url = format!("http://{}", proxy.addr);
    let tunnels = vec![
        via(redis_tunnel(gateway.addr), &url),
        via(pg_tunnel(gateway.addr), &url),
    ];
    let sc = Sidecar::start(&retrying(&pki, tunnels, Duration::from_secs(1)));
    let detail = format!(
        "proxy {} unreachable: Connection refused (os error 111)",
        proxy.addr
    );
    let said = redis_cli(sc.port("redis"), &["PING"]);
    assert_eq!(said, format!("LOADING snigate: redis: {detail}\n"));
    let out = psql(&local(sc.port("postgres")), "select 1");
    let fatal = format!("FATAL:  snigate: postgres: {detail}\n");
    assert!(texts(&out).1.ends_with(&fatal), "{:?}", texts(&out));
    wait_refused(&sc, "proxy_unreachable", 2);
    let retries = sc.lines("far side unavailable; retrying");
    assert!(retries.is_empty(), "retries are logged at debug only");
}

#[test]
fn a_gateway_restarting_behind_the_proxy_is_waited_for() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let squid = Squid::start(&SquidOpts::default());
    let dead = DeadPort::new();
    let tunnel = via(redis_tunnel(dead.addr), &squid.url(None));
    let sc = Sidecar::start(&retrying(&pki, vec![tunnel], Duration::from_secs(20)));
    let local = sc.port("redis");
    let client = thread::spawn(move || redis_cli(local, &["PING"]));
    // The proxy answers 503 while nothing listens at the gateway's address...
    wait_for("a 503 from squid", || {
        let seen = squid.access();
        seen.iter()
            .any(|a| a.result == "NONE_NONE/503")
            .then_some(())
    });
    // ...and the client, still waiting, is served once the gateway is back.
    let mut config = gateway(&pki, standard_routes(Some(&redis), None));
    config.listen = dead.release();
    let _gw = Gateway::start(&config);
    assert_eq!(client.join().unwrap(), "PONG\n");
    assert!(sc.lines("refused").is_empty(), "{}", sc.log_text());
}

#[test]
fn no_proxy_and_proxy_none_go_straight_to_the_gateway() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let gw = gateway_to(&pki, &redis, None);
    let squid = Squid::start(&SquidOpts::default());
    let exempt = Launch::default()
        .env("https_proxy", squid.url(None))
        .env("NO_PROXY", "*")
        .env("no_proxy", "example.com, 127.0.0.0/8");
    let sc = exempt.sidecar(&sidecar(&pki, vec![redis_tunnel(gw.addr)]));
    assert_eq!(redis_cli(sc.port("redis"), &["PING"]), "PONG\n");
    let direct = format!("direct ({} matches NO_PROXY)", gw.addr);
    assert_eq!(tunnel_route(&sc), direct);
    drop(sc);

    let dead = DeadPort::new();
    let overridden = Launch::default().env("HTTPS_PROXY", format!("http://{}", dead.addr));
    let tunnel = via(redis_tunnel(gw.addr), "none");
    let sc = overridden.sidecar(&sidecar(&pki, vec![tunnel]));
    assert_eq!(redis_cli(sc.port("redis"), &["PING"]), "PONG\n");
    drop(sc);

    // Squid logs a tunnel when it closes; a request made now is logged after any earlier one.
    let sentinel = DeadPort::new();
    let target = sentinel.addr.to_string();
    let tunnel = via(redis_tunnel(&target), &squid.url(None));
    let sc = Sidecar::start(&sidecar(&pki, vec![tunnel]));
    redis_cli(sc.port("redis"), &["PING"]);
    let seen = squid.wait_access(1);
    assert!(seen.iter().all(|a| a.target == target), "{seen:#?}");
}

//! Egress through a real HTTP proxy (squid): the sidecar reaches the gateway with CONNECT,
//! from the `proxy` keys or HTTPS_PROXY/NO_PROXY, with and without basic auth, and across the
//! emulated WAN link; refusals reach redis-cli and psql as their own errors. Squid's access
//! log is what the proxy saw: CONNECT to the gateway's host:port and nothing else.

mod support;

use std::process::{Command, Output};
use std::thread;

use support::pki::{CLIENT_NAME, PG_SNI, REDIS_SNI};
use support::redis_server::redis_cli;
use support::snigate::Opts;
use support::squid::{Access, Squid, SquidOpts};
use support::*;

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
fn gateway(pki: &Pki, redis: &RedisServer, pg: Option<&Postgres>) -> Gateway {
    let ok = format!("dns:{CLIENT_NAME}");
    let mut routes = vec![Route::new("redis", REDIS_SNI, "redis", redis.addr()).allow(&[&ok])];
    if let Some(pg) = pg {
        let backend = format!("127.0.0.1:{}", pg.port);
        routes.push(Route::new("postgres", PG_SNI, "postgres", backend).allow(&[&ok]));
    }
    Gateway::start(pki, &routes)
}

fn redis_tunnel(gateway: impl std::fmt::Display) -> Tunnel {
    Tunnel::new("redis", "redis", gateway, REDIS_SNI)
}

fn pg_tunnel(gateway: impl std::fmt::Display) -> Tunnel {
    Tunnel::new("postgres", "postgres", gateway, PG_SNI)
}

/// No background probes: every CONNECT the proxy logs is a client's (or a warm one).
fn quiet() -> Opts {
    Opts::new().timeout("probe_interval", "0s")
}

fn psql(port: u16) -> Output {
    let conninfo = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    run(
        Command::new("psql")
            .arg(conninfo)
            .args(["-XAtc", "select 1"])
            .env_remove("PGSSLMODE"),
        CMD,
    )
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

#[test]
fn tunnels_reach_the_gateway_through_squid_with_and_without_basic_auth() {
    let (pki, redis, pg) = (Pki::new(), RedisServer::start(), Postgres::start());
    let gw = gateway(&pki, &redis, Some(&pg));
    let target = gw.addr.to_string();

    // Basic auth, from the top-level key.
    let squid = squid_with_auth();
    let tunnels = [redis_tunnel(gw.addr), pg_tunnel(gw.addr)];
    let yaml = snigate_yaml(&pki, &tunnels, &quiet());
    let top = format!("proxy: \"{}\"\n{yaml}", squid.url(Some((USER, PASSWORD))));
    let sc = Sidecar::from_yaml(&top, 2);
    let port = sc.port("redis");
    assert_eq!(redis_cli(port, &["SET", "k", "through the proxy"]), "OK\n");
    assert_eq!(redis_cli(port, &["GET", "k"]), "through the proxy\n");
    let out = psql(sc.port("postgres"));
    assert_eq!(texts(&out).0, "1\n", "{:?}", texts(&out));
    let route = sc.proc.lines_with(&["tunnel route", "tunnel=redis"]);
    let via = format!("through proxy http://{USER}:***@{} (proxy)", squid.addr());
    assert_eq!(last_field(&route[0], "route"), via);
    drop(sc);
    only_connects(&squid, 3, &target, "TCP_TUNNEL/200", USER);
    assert_eq!(
        squid.access().len(),
        3,
        "one CONNECT per client, no retries"
    );
    // The client certificate and SNI went through: the gateway served the allowed identity.
    let served = gw
        .proc
        .lines_with(&["closed", &format!("client=dns:{CLIENT_NAME}")]);
    assert_eq!(served.len(), 3, "{}", gw.proc.log());

    // No auth, from HTTPS_PROXY; a warm connection goes through the proxy too.
    let open = Squid::start(&SquidOpts::default());
    let opts = quiet().env("HTTPS_PROXY", &open.url(None));
    let sc = Sidecar::start_with(&pki, &[redis_tunnel(gw.addr).warm(1)], &opts);
    assert_eq!(redis_cli(sc.port("redis"), &["PING"]), "PONG\n");
    let route = sc.proc.lines_with(&["tunnel route"]);
    let via = format!("through proxy http://{} (HTTPS_PROXY)", open.addr());
    assert_eq!(last_field(&route[0], "route"), via);
    drop(sc);
    only_connects(&open, 2, &target, "TCP_TUNNEL/200", "-");
}

#[test]
fn wrong_credentials_give_the_proxys_407_in_each_clients_protocol() {
    let pki = Pki::new();
    let squid = squid_with_auth();
    // Nothing needs to listen at the gateway's address: the proxy refuses first.
    let gateway = loopback(free_port()).to_string();
    let url = squid.url(Some((USER, WRONG)));
    let tunnels = [
        redis_tunnel(&gateway).proxy(&url),
        pg_tunnel(&gateway).proxy(&url),
    ];
    let sc = Sidecar::start_with(&pki, &tunnels, &quiet().admin());
    let refused = format!(
        "snigate: {{}}: proxy {} refused CONNECT {gateway}: 407 Proxy Authentication Required",
        squid.addr()
    );
    let said = redis_cli(sc.port("redis"), &["PING"]);
    assert_eq!(said, format!("ERR {}\n", refused.replace("{}", "redis")));
    let out = psql(sc.port("postgres"));
    let fatal = format!("FATAL:  {}\n", refused.replace("{}", "postgres"));
    assert!(texts(&out).1.ends_with(&fatal), "{:?}", texts(&out));
    // A refusal that lasts is not retried: one CONNECT per client.
    only_connects(&squid, 2, &gateway, "TCP_DENIED/407", USER);
    assert_eq!(squid.access().len(), 2);
    sc.proc
        .wait_lines(&["refused", "reason=proxy_auth_required"], 2);
    let metrics = sc.proc.metrics();
    let counted = metrics.value(
        "snigate_refusals_total",
        &[("route", "redis"), ("reason", "proxy_auth_required")],
    );
    assert_eq!(counted, Some(1.0));
    let log = sc.proc.log();
    assert!(
        !log.contains(WRONG),
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
    let gateway = loopback(free_port()).to_string();
    let tunnel = redis_tunnel(&gateway).proxy(&squid.url(None));
    let sc = Sidecar::start_with(&pki, &[tunnel], &quiet());
    let said = redis_cli(sc.port("redis"), &["PING"]);
    let want = format!(
        "ERR snigate: redis: proxy {} refused CONNECT {gateway}: 403 Forbidden\n",
        squid.addr()
    );
    assert_eq!(said, want);
    only_connects(&squid, 1, &gateway, "TCP_DENIED/403", "-");
    sc.proc.wait_lines(&["refused", "reason=proxy_refused"], 1);
}

#[test]
fn a_proxy_that_is_down_is_retried_then_reported_as_loading() {
    let pki = Pki::new();
    let proxy = loopback(free_port());
    let gateway = loopback(free_port());
    let url = format!("http://{proxy}");
    let tunnels = [
        redis_tunnel(gateway).proxy(&url),
        pg_tunnel(gateway).proxy(&url),
    ];
    let opts = quiet().timeout("retry", "1s").admin();
    let sc = Sidecar::start_with(&pki, &tunnels, &opts);
    let detail = format!("proxy {proxy} unreachable: Connection refused (os error 111)");
    let said = redis_cli(sc.port("redis"), &["PING"]);
    assert_eq!(said, format!("LOADING snigate: redis: {detail}\n"));
    let out = psql(sc.port("postgres"));
    let fatal = format!("FATAL:  snigate: postgres: {detail}\n");
    assert!(texts(&out).1.ends_with(&fatal), "{:?}", texts(&out));
    sc.proc
        .wait_lines(&["refused", "reason=proxy_unreachable"], 2);
    let retries = sc.proc.count_lines(&["far side unavailable; retrying"]);
    assert_eq!(retries, 0, "retries are logged at debug only");
}

#[test]
fn a_gateway_restarting_behind_the_proxy_is_waited_for() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let squid = Squid::start(&SquidOpts::default());
    let port = free_port();
    let tunnel = redis_tunnel(loopback(port)).proxy(&squid.url(None));
    let sc = Sidecar::start_with(&pki, &[tunnel], &quiet().timeout("retry", "20s"));
    let local = sc.port("redis");
    let client = thread::spawn(move || redis_cli(local, &["PING"]));
    // The proxy answers 503 while nothing listens at the gateway's address...
    wait_for("a 503 from squid", READY, || {
        let seen = squid.access();
        seen.iter()
            .any(|a| a.result == "NONE_NONE/503")
            .then_some(())
    });
    // ...and the client, still waiting, is served once the gateway is back.
    let ok = format!("dns:{CLIENT_NAME}");
    let routes = [Route::new("redis", REDIS_SNI, "redis", redis.addr()).allow(&[&ok])];
    let yaml = support::snigate::gateway_yaml(&format!("127.0.0.1:{port}"), &pki, true, &routes);
    let _gw = Gateway::from_yaml(&yaml);
    assert_eq!(client.join().unwrap(), "PONG\n");
    assert_eq!(sc.proc.count_lines(&["refused"]), 0, "{}", sc.proc.log());
}

#[test]
fn no_proxy_and_proxy_none_go_straight_to_the_gateway() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let gw = gateway(&pki, &redis, None);
    let squid = Squid::start(&SquidOpts::default());
    let exempt = quiet()
        .env("https_proxy", &squid.url(None))
        .env("NO_PROXY", "*")
        .env("no_proxy", "example.com, 127.0.0.0/8");
    let sc = Sidecar::start_with(&pki, &[redis_tunnel(gw.addr)], &exempt);
    assert_eq!(redis_cli(sc.port("redis"), &["PING"]), "PONG\n");
    let route = sc.proc.lines_with(&["tunnel route"]);
    let direct = format!("direct ({} matches NO_PROXY)", gw.addr);
    assert_eq!(last_field(&route[0], "route"), direct);
    drop(sc);

    let dead = format!("http://{}", loopback(free_port()));
    let overridden = quiet().env("HTTPS_PROXY", &dead);
    let tunnel = redis_tunnel(gw.addr).proxy("none");
    let sc = Sidecar::start_with(&pki, &[tunnel], &overridden);
    assert_eq!(redis_cli(sc.port("redis"), &["PING"]), "PONG\n");
    drop(sc);

    // Squid logs a tunnel when it closes; a request made now is logged after any earlier one.
    let sentinel = loopback(free_port()).to_string();
    let tunnel = redis_tunnel(&sentinel).proxy(&squid.url(None));
    let sc = Sidecar::start_with(&pki, &[tunnel], &quiet().timeout("retry", "0s"));
    redis_cli(sc.port("redis"), &["PING"]);
    let seen = squid.wait_access(1);
    assert!(seen.iter().all(|a| a.target == sentinel), "{seen:#?}");
}

/// Sidecar YAML for `tunnels` trusting and presenting `pki`'s certificates.
fn snigate_yaml(pki: &Pki, tunnels: &[Tunnel], opts: &Opts) -> String {
    support::snigate::sidecar_yaml_with(&pki.ca(), Some(pki), tunnels, opts)
}

/// The last field of a text log line, `key=value with spaces`.
fn last_field(line: &str, key: &str) -> String {
    let (_, value) = line
        .split_once(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"));
    value.to_owned()
}

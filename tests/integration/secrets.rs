//! No secret in any log line, even at `RUST_LOG=trace`: a full session through sidecar and
//! gateway with PostgreSQL password users (SCRAM-SHA-256 and MD5) and Redis `requirepass`,
//! right and wrong passwords, clients through the sidecar (which reaches the gateway through
//! squid with basic auth) and straight to the gateway; then both logs are searched for the
//! passwords, the proxy's `Proxy-Authorization`, any PEM block and the base64 of every
//! certificate and key file.

use std::fs;

use crate::support::clients::postgres::psql_command;
use crate::support::clients::tls::{resp_line, ClientOpts};
use crate::support::clients::tools::redis_cli;
use crate::support::servers::{Squid, SquidOpts};
use crate::support::*;

const SCRAM_PASSWORD: &str = "Scram-Pw-9f2c41d7";
const MD5_PASSWORD: &str = "Md5-Pw-7be3a5c0";
const REDIS_PASSWORD: &str = "Redis-Pw-4d81e6b9";
const WRONG_PASSWORD: &str = "Wrong-Pw-0a6f3c2e";
const PROXY_USER: &str = "worker";
const PROXY_PASSWORD: &str = "Proxy-Pw-3e8a61c4";
/// base64("worker:Proxy-Pw-3e8a61c4"): the credentials as sent to the proxy.
const PROXY_AUTHORIZATION: &str = "d29ya2VyOlByb3h5LVB3LTNlOGE2MWM0";

/// PostgreSQL with a SCRAM and an MD5 password user; `postgres` itself stays trusted for
/// the harness.
fn pg_with_passwords() -> Postgres {
    let pg = Postgres::start();
    pg.psql(&format!(
        "CREATE ROLE scram_user LOGIN PASSWORD '{SCRAM_PASSWORD}'; \
         SET password_encryption = 'md5'; \
         CREATE ROLE md5_user LOGIN PASSWORD '{MD5_PASSWORD}';"
    ));
    let hba = pg.dir.path().join("data/pg_hba.conf");
    fs::write(
        &hba,
        "local all all trust\n\
         host all postgres 127.0.0.1/32 trust\n\
         host all md5_user 127.0.0.1/32 md5\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    assert_eq!(pg.psql("select pg_reload_conf()"), "t");
    pg
}

/// psql as `user` with `password` to `conninfo`; (success, stdout, stderr).
fn psql(conninfo: &str, user: &str, password: &str) -> (bool, String, String) {
    let conninfo = format!("{conninfo} user={user} dbname=postgres connect_timeout=20");
    let mut cmd = psql_command(&conninfo, "select current_user");
    let out = run(cmd.env("PGPASSWORD", password), CMD);
    let (o, e) = texts(&out);
    (out.status.success(), o, e)
}

fn redis_cli_as(port: u16, password: &str, args: &[&str]) -> String {
    let mut all = vec!["--no-auth-warning", "-a", password];
    all.extend(args);
    redis_cli(port, &all)
}

/// 40 characters from the middle of each PEM file's base64 body.
fn pem_fragments(pki: &Pki) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ] {
        let pem = fs::read_to_string(pki.path().join(f)).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        out.push((
            f.to_owned(),
            body[body.len() / 2..body.len() / 2 + 40].to_owned(),
        ));
    }
    out
}

#[tokio::test]
async fn no_password_key_or_certificate_in_trace_logs() {
    let pg = pg_with_passwords();
    let redis = RedisServer::start();
    let mut admin = redis.direct();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(REDIS_PASSWORD)
        .query(&mut admin)
        .unwrap();
    let pki = Pki::new();
    let routes = vec![
        worker_route("redis", REDIS_SNI, Protocol::Redis, redis.addr()),
        worker_route("postgres", PG_SNI, Protocol::Postgres, pg.addr()),
    ];
    let trace = Launch::default().rust_log("trace");
    let gw = trace.gateway(&gateway(&pki, routes));
    let squid = Squid::start(&SquidOpts {
        auth: Some((PROXY_USER.into(), PROXY_PASSWORD.into())),
        ..SquidOpts::default()
    });
    let mut config = sidecar(
        &pki,
        vec![
            tunnel("redis", Protocol::Redis, gw.addr, REDIS_SNI),
            tunnel("postgres", Protocol::Postgres, gw.addr, PG_SNI),
        ],
    );
    let proxy_url = squid.url(Some((PROXY_USER, PROXY_PASSWORD)));
    config.proxy = Some(proxy_url.as_str().into());
    let sc = trace.sidecar(&config);
    let (gw_addr, redis_port, pg_port) = (gw.addr, sc.port("redis"), sc.port("postgres"));

    // Redis through the sidecar: AUTH right and wrong, a value that looks like a secret.
    assert_eq!(
        redis_cli_as(redis_port, REDIS_PASSWORD, &["SET", "k", REDIS_PASSWORD]),
        "OK\n"
    );
    assert_eq!(
        redis_cli_as(redis_port, REDIS_PASSWORD, &["GET", "k"]),
        format!("{REDIS_PASSWORD}\n")
    );
    let wrong = redis_cli_as(redis_port, WRONG_PASSWORD, &["PING"]);
    assert!(
        wrong.contains("WRONGPASS") || wrong.contains("NOAUTH"),
        "{wrong}"
    );
    // Redis straight to the gateway, AUTH as the first command (the bytes the gateway reads
    // itself before it dials the backend).
    let mut tls = ClientOpts::new(&pki)
        .connect(gw_addr, REDIS_SNI)
        .await
        .unwrap();
    assert_eq!(
        resp_line(&mut tls, &["AUTH", REDIS_PASSWORD]).await,
        "+OK\r\n"
    );
    assert_eq!(resp_line(&mut tls, &["PING"]).await, "+PONG\r\n");
    drop(tls);

    // PostgreSQL through the sidecar (SCRAM, MD5, a wrong password) and straight to the
    // gateway with verify-full.
    let local = format!("host=127.0.0.1 port={pg_port}");
    for (user, password) in [("scram_user", SCRAM_PASSWORD), ("md5_user", MD5_PASSWORD)] {
        let (ok, out, err) = psql(&local, user, password);
        assert!(ok && out == format!("{user}\n"), "{user}: {out}{err}");
    }
    let (ok, _, err) = psql(&local, "scram_user", WRONG_PASSWORD);
    assert!(
        !ok && err.contains("password authentication failed"),
        "{err}"
    );
    let direct = format!(
        "host={PG_SNI} hostaddr=127.0.0.1 port={} sslmode=verify-full sslrootcert={} \
         sslcert={} sslkey={}",
        gw_addr.port(),
        pki.ca().display(),
        pki.client_cert().display(),
        pki.client_key().display()
    );
    let (ok, out, err) = psql(&direct, "scram_user", SCRAM_PASSWORD);
    assert!(ok && out == "scram_user\n", "{out}{err}");

    // Every connection has ended, so every line it will write is there; then search.
    for proc in [&gw.proc, &sc.proc] {
        proc.wait_idle();
        let environ = fs::read(format!("/proc/{}/environ", proc.pid())).unwrap();
        let trace = environ.split(|&b| b == 0).any(|v| v == b"RUST_LOG=trace");
        assert!(trace, "not running at RUST_LOG=trace");
    }
    let through_proxy = squid.wait_access(1);
    assert!(
        through_proxy.iter().all(|a| a.user == PROXY_USER),
        "{through_proxy:?}"
    );
    let secrets = [
        SCRAM_PASSWORD,
        MD5_PASSWORD,
        REDIS_PASSWORD,
        WRONG_PASSWORD,
        PROXY_PASSWORD,
        PROXY_AUTHORIZATION,
    ];
    for (role, log) in [("gateway", gw.log_text()), ("sidecar", sc.log_text())] {
        let lines = log.lines().count();
        assert!(log.contains("closed"), "{role}: no connection was logged");
        for line in log.lines() {
            for s in secrets {
                assert!(!line.contains(s), "{role} logged a password: {line}");
            }
            for marker in ["-----BEGIN", "PRIVATE KEY", "CERTIFICATE-----"] {
                assert!(!line.contains(marker), "{role} logged PEM: {line}");
            }
            for (file, fragment) in pem_fragments(&pki) {
                assert!(!line.contains(&fragment), "{role} logged {file}: {line}");
            }
        }
        let verbose = log
            .lines()
            .filter(|l| l.contains(r#""level":"DEBUG""#) || l.contains(r#""level":"TRACE""#))
            .count();
        println!("{role}: {lines} log lines ({verbose} debug/trace), no secret in any");
    }
}

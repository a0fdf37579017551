//! Operating a login route: config errors, the password file re-read while clients keep
//! coming (rotation loses nothing; a broken file keeps the last good password), the login
//! probe in `/readyz` and metrics, and no password in trace logs.

mod login_common;
mod support;

use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use login_common::*;
use support::pki::{p, CLIENT_NAME, PG_SNI, REDIS_SNI};
use support::security::Launched;
use support::snigate::{check, gateway_yaml};
use support::*;

fn check_error(yaml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    fs::write(&file, yaml).unwrap();
    let out = check("gateway", &file);
    assert_eq!(out.status.code(), Some(2), "{:?}", texts(&out));
    texts(&out).1
}

#[test]
fn config_errors_name_the_key() {
    let pki = Pki::new();
    let secret = Secret::new(PASSWORD);
    let route = |user: Option<&str>, file: &std::path::Path| {
        Route::new("postgres", PG_SNI, "postgres", "127.0.0.1:5432").login(user, file)
    };
    let no_ca = gateway_yaml(
        "127.0.0.1:0",
        &pki,
        false,
        &[route(Some(USER), &secret.path())],
    );
    let err = check_error(&no_ca);
    assert!(
        err.contains("routes[0].login: ") && err.contains("tls.client_ca"),
        "{err}"
    );
    let err = check_error(&gateway_yaml(
        "127.0.0.1:0",
        &pki,
        true,
        &[route(None, &secret.path())],
    ));
    assert!(
        err.contains("routes[0].login.user: PostgreSQL needs the role"),
        "{err}"
    );
    let missing = secret.path().with_file_name("missing");
    let err = check_error(&gateway_yaml(
        "127.0.0.1:0",
        &pki,
        true,
        &[route(Some(USER), &missing)],
    ));
    assert!(
        err.contains("routes[0].login.password_file: cannot read"),
        "{err}"
    );
    secret.set("");
    let err = check_error(&gateway_yaml(
        "127.0.0.1:0",
        &pki,
        true,
        &[route(Some(USER), &secret.path())],
    ));
    assert!(
        err.contains("routes[0].login.password_file: ") && err.contains("is empty"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD));
    let tcp = Route::new("tcp", PG_SNI, "tcp", "127.0.0.1:5432").login(None, &missing);
    let err = check_error(&gateway_yaml("127.0.0.1:0", &pki, true, &[tcp]));
    assert!(err.contains("routes[0].login: a tcp route"), "{err}");
}

fn reloads(c: &Chain, result: &str) -> f64 {
    let labels = [("what", "login"), ("result", result)];
    c.gw.proc.metrics().count("snigate_reloads_total", &labels)
}

/// New connections, one after another, each a SELECT 1, until `stop`; counts them.
fn traffic(
    conninfo: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    tokio::spawn(conn);
                    if let Err(e) = client.simple_query("select 1").await {
                        failures.push(e.to_string());
                    }
                }
                Err(e) => failures.push(e.to_string()),
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
        failures
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_rotation_under_traffic_loses_no_connection() {
    let pg = postgres("scram-sha-256");
    let c = Chain::start(
        Some(&pg),
        None,
        &Opts::new().admin().timeout("watch_interval", "1s"),
    );
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let clients = traffic(c.pg_conninfo(USER), stop.clone(), done.clone());
    let progress = |n| {
        wait_for("client progress", READY, || {
            (done.load(Ordering::Relaxed) >= n).then_some(())
        })
    };
    progress(20);
    // The role first, then the Secret (which the kubelet delivers up to a minute later).
    // Connections in between wait (timeouts.retry) for the gateway to read the new Secret.
    admin_sql(&pg, &format!("ALTER ROLE {USER} PASSWORD 'Rotated-Pw-1'"));
    c.secret.set("Rotated-Pw-1");
    wait_for("login reload", READY, || {
        (reloads(&c, "success") >= 1.0).then_some(())
    });
    // And the other order: the Secret first, then the role.
    c.secret.set("Rotated-Pw-2");
    wait_for("second login reload", READY, || {
        (reloads(&c, "success") >= 2.0).then_some(())
    });
    progress(done.load(Ordering::Relaxed) + 5);
    admin_sql(&pg, &format!("ALTER ROLE {USER} PASSWORD 'Rotated-Pw-2'"));
    progress(done.load(Ordering::Relaxed) + 20);
    stop.store(true, Ordering::Relaxed);
    let failures = clients.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} failed: {failures:?}",
        failures.len(),
        done.load(Ordering::Relaxed)
    );
    let log = c.gw.proc.log();
    assert!(!log.contains("Rotated-Pw"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_password_file_keeps_the_last_good_password_and_is_counted() {
    let pg = postgres("scram-sha-256");
    let c = Chain::start(
        Some(&pg),
        None,
        &Opts::new().admin().timeout("watch_interval", "1s"),
    );
    c.secret.set("");
    wait_for("failed login reload", READY, || {
        (reloads(&c, "failure") >= 1.0).then_some(())
    });
    let (ok, out, err) = psql(&c.pg_conninfo(USER), "select current_user");
    assert!(ok, "{err}");
    assert_eq!(out, "celery\n");
    fs::remove_file(c.secret.path()).unwrap();
    wait_for("second failure", READY, || {
        (reloads(&c, "failure") >= 2.0).then_some(())
    });
    assert!(psql(&c.pg_conninfo(USER), "select 1").0);
    assert_eq!(
        reloads(&c, "failure"),
        2.0,
        "each broken version counted once"
    );
    assert_eq!(reloads(&c, "success"), 0.0);
    c.gw.proc
        .wait_lines(&["reload refused", "routes[0].login.password_file"], 2);
}

#[test]
fn readyz_and_login_up_say_whether_the_gateways_login_works() {
    let pg = postgres("scram-sha-256");
    let redis = redis();
    let opts = Opts::new()
        .admin()
        .timeout("probe_interval", "1s")
        .timeout("watch_interval", "1s");
    let c = Chain::start(Some(&pg), Some(&redis), &opts);
    let up = |route: &str| {
        c.gw.proc
            .metrics()
            .value("snigate_login_up", &[("route", route)])
    };
    wait_for("login probes", READY, || {
        (up("postgres") == Some(1.0) && up("redis") == Some(1.0)).then_some(())
    });
    let ready = c.gw.proc.get("/readyz");
    assert!(
        ready.body.contains("login:postgres") && ready.body.contains("login:redis"),
        "{}",
        ready.body
    );
    // A new password nobody has: the previous one still works, so logins do; then the
    // role's password changes to something else too.
    c.secret.set("Nobody-Knows-This");
    admin_sql(&pg, &format!("ALTER ROLE {USER} PASSWORD 'Something-Else'"));
    wait_for("postgres login down", READY, || {
        (up("postgres") == Some(0.0)).then_some(())
    });
    let ready = c.gw.proc.get("/readyz");
    assert!(
        ready.body.contains("password authentication failed"),
        "{}",
        ready.body
    );
    assert!(!ready.body.contains("Nobody-Knows-This"));
}

#[test]
fn trace_logs_hold_no_password() {
    let pg = postgres("scram-sha-256");
    let redis = redis();
    let pki = Pki::new();
    let secret = Secret::new(PASSWORD);
    let allow = format!("dns:{CLIENT_NAME}");
    let routes = [
        Route::new(
            "postgres",
            PG_SNI,
            "postgres",
            format!("127.0.0.1:{}", pg.port),
        )
        .allow(&[&allow])
        .login(Some(USER), &secret.path()),
        Route::new("redis", REDIS_SNI, "redis", redis.addr())
            .allow(&[&allow])
            .login(Some(USER), &secret.path()),
    ];
    let gw = Launched::start(
        "gateway",
        &gateway_yaml("127.0.0.1:0", &pki, true, &routes),
        1,
        "trace",
        None,
    );
    let gw_addr = gw.addr("");
    let sidecar = format!(
        "tls:\n  ca: {}\n  cert: {}\n  key: {}\ntunnels:\n\
         \x20 - {{name: redis, listen: 127.0.0.1:0, protocol: redis, connect: {gw_addr}, server_name: {REDIS_SNI}}}\n\
         \x20 - {{name: postgres, listen: 127.0.0.1:0, protocol: postgres, connect: {gw_addr}, server_name: {PG_SNI}}}\n",
        p(&pki.ca()),
        p(&pki.client_cert()),
        p(&pki.client_key())
    );
    let sc = Launched::start("sidecar", &sidecar, 2, "trace", None);
    let conninfo = format!(
        "host=127.0.0.1 port={} user=whoever dbname={USER}",
        sc.addr("postgres").port()
    );
    assert!(psql(&conninfo, "select 1").0);
    let mut cli = Command::new("redis-cli");
    cli.args([
        "-p",
        &sc.addr("redis").port().to_string(),
        "--no-auth-warning",
        "-a",
        "Client-Pw-0d1e",
    ]);
    let out = run(cli.args(["SET", "k", "v"]), CMD);
    assert_eq!(texts(&out).0, "OK\n");
    assert!(
        gw.log().contains("the gateway logged in to the backend"),
        "not a debug log"
    );
    for log in [gw.log(), sc.log()] {
        for secret in [PASSWORD, "Client-Pw-0d1e", "a-client-password"] {
            assert!(!log.contains(secret), "{secret} in a log");
        }
    }
}

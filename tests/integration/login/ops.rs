//! Operating a login route: a password file `--check` cannot use, the password file re-read
//! while clients keep coming (rotation loses nothing; a broken file keeps the last good
//! password), the login probe in `/readyz` and metrics, and no password in trace logs. (The
//! config errors the parser finds alone are fixtures in src/config.)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::support::certs::write;
use crate::support::clients::tools::redis_cli;
use crate::support::config::{ms, yaml};
use crate::support::launch::check;
use crate::support::running::Process;

/// `--check` of a gateway whose postgres route logs in with `password_file`: it exits 2;
/// stderr.
fn check_error(pki: &Pki, password_file: std::path::PathBuf) -> String {
    let mut route = worker_route("postgres", PG_SNI, Protocol::Postgres, "127.0.0.1:5432");
    let user = Some(USER.into());
    route.login = Some(LoginConfig {
        user,
        password_file,
    });
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "gateway.yaml",
        &yaml(&gateway(pki, vec![route])),
    );
    let out = check("gateway", &file);
    assert_eq!(out.status.code(), Some(2), "{:?}", texts(&out));
    texts(&out).1
}

#[test]
fn a_missing_or_empty_password_file_is_a_config_error() {
    let pki = Pki::new();
    let secret = Secret::new(&password(PASSWORD));
    let err = check_error(&pki, secret.path("missing"));
    assert!(
        err.contains("routes[0].login.password_file: cannot read"),
        "{err}"
    );
    let mut empty = secret;
    empty.update(&password(""));
    let err = check_error(&pki, empty.path("password"));
    assert!(
        err.contains("routes[0].login.password_file: ") && err.contains("is empty"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD));
}

fn reloads(gw: &Process, result: &str) -> f64 {
    gw.reloads("login", result)
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
    // Connections between the role's change and the Secret's wait (timeouts.retry) for the
    // gateway to read the new Secret.
    let mut c = Chain::with(Some(&pg), None, PASSWORD, |g| {
        g.timeouts.retry = Duration::from_secs(10)
    });
    let (stop, done) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let clients = traffic(c.pg_conninfo(USER), stop.clone(), done.clone());
    let progress = |n| {
        wait_for("client progress", || {
            (done.load(Ordering::Relaxed) >= n).then_some(())
        })
    };
    progress(20);
    // The role first, then the Secret (which the kubelet delivers up to a minute later).
    pg.psql(&format!("ALTER ROLE {USER} PASSWORD 'Rotated-Pw-1'"));
    c.secret.update(&password("Rotated-Pw-1"));
    c.gw.wait_reloads("login", "success", 1.0);
    // And the other order: the Secret first, then the role.
    c.secret.update(&password("Rotated-Pw-2"));
    c.gw.wait_reloads("login", "success", 2.0);
    progress(done.load(Ordering::Relaxed) + 5);
    pg.psql(&format!("ALTER ROLE {USER} PASSWORD 'Rotated-Pw-2'"));
    progress(done.load(Ordering::Relaxed) + 20);
    stop.store(true, Ordering::Relaxed);
    let failures = clients.await.unwrap();
    let total = done.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {total} failed: {failures:?}",
        failures.len()
    );
    assert!(
        !c.gw.log_text().contains("Rotated-Pw"),
        "{}",
        c.gw.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_password_file_keeps_the_last_good_password_and_is_counted() {
    let pg = postgres("scram-sha-256");
    let mut c = Chain::start(Some(&pg), None);
    c.secret.update(&password(""));
    c.gw.wait_reloads("login", "failure", 1.0);
    let (ok, out, err) = psql_without_password(&c.pg_conninfo(USER), "select current_user");
    assert!(ok, "{err}");
    assert_eq!(out, "celery\n");
    // The file gone from the Secret.
    c.secret.update(&Vec::new());
    c.gw.wait_reloads("login", "failure", 2.0);
    assert!(psql_without_password(&c.pg_conninfo(USER), "select 1").0);
    assert_eq!(
        reloads(&c.gw, "failure"),
        2.0,
        "each broken version counted once"
    );
    assert_eq!(reloads(&c.gw, "success"), 0.0);
    let refused = c.gw.lines("reload refused; the running version stays");
    let on_the_file = refused
        .iter()
        .filter(|l| l.raw.contains("routes[0].login.password_file"));
    assert_eq!(on_the_file.count(), 2, "{}", c.gw.log_text());
}

#[test]
fn readyz_and_login_up_say_whether_the_gateways_login_works() {
    let (pg, redis) = (postgres("scram-sha-256"), redis_with_users());
    let mut c = Chain::with(Some(&pg), Some(&redis), PASSWORD, |g| {
        g.timeouts.probe_interval = ms(200)
    });
    let up =
        |gw: &Gateway, route: &str| gw.metrics().value("snigate_login_up", &[("route", route)]);
    let both = |gw: &Gateway| up(gw, "postgres") == Some(1.0) && up(gw, "redis") == Some(1.0);
    wait_for("login probes", || both(&c.gw).then_some(()));
    let ready = c.gw.get("/readyz");
    let listed = ready.body.contains("login:postgres") && ready.body.contains("login:redis");
    assert!(listed, "{}", ready.body);
    // A new password nobody has: the previous one still works, so logins do; then the
    // role's password changes to something else too.
    c.secret.update(&password("Nobody-Knows-This"));
    pg.psql(&format!("ALTER ROLE {USER} PASSWORD 'Something-Else'"));
    wait_for("postgres login down", || {
        (up(&c.gw, "postgres") == Some(0.0)).then_some(())
    });
    let ready = c.gw.get("/readyz");
    assert!(
        ready.body.contains("password authentication failed"),
        "{}",
        ready.body
    );
    assert!(!ready.body.contains("Nobody-Knows-This"));
}

#[test]
fn trace_logs_hold_no_password() {
    let (pg, redis) = (postgres("scram-sha-256"), redis_with_users());
    let trace = Launch::default().rust_log("trace");
    let c = Chain::launched(&trace, Some(&pg), Some(&redis), PASSWORD, |_| {});
    let (ok, _, err) = psql_without_password(&c.pg_conninfo(USER), "select 1");
    assert!(ok, "{err}");
    let args = ["--no-auth-warning", "-a", "Client-Pw-0d1e", "SET", "k", "v"];
    assert_eq!(redis_cli(c.sc.port("redis"), &args), "OK\n");
    c.gw.wait_line("a debug line of the login", |l| {
        l.message()
            .starts_with("the gateway logged in to the backend")
    });
    for log in [c.gw.log_text(), c.sc.log_text()] {
        for secret in [PASSWORD, "Client-Pw-0d1e", "a-client-password"] {
            assert!(!log.contains(secret), "{secret} in a log");
        }
    }
}

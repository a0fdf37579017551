//! The gateway logs in to PostgreSQL for its clients: real clients without a password,
//! through the sidecar and straight to the gateway, against a server that accepts only
//! SCRAM-SHA-256 (and MD5, cleartext, trust in turn).

use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::NoTls;

use super::*;
use crate::support::clients::postgres::assert_sleep_cancelled;
use crate::support::clients::tls::ClientOpts;
use crate::support::clients::tools::{python, run_python, topology_python};
use crate::support::process::{run_with_input, signal};

fn chain(pg: &Postgres) -> Chain {
    Chain::start(Some(pg), None)
}

async fn client(conninfo: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .expect("tokio-postgres through the sidecar");
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_authentication_method_the_server_asks_for() {
    for method in ["scram-sha-256", "md5", "password", "trust"] {
        let pg = postgres(method);
        let c = chain(&pg);
        let client = client(&c.pg_conninfo(USER)).await;
        let sql = "select current_user::text, current_database()::text, $1::int8 * 2";
        let row = client.query_one(sql, &[&21i64]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), USER, "{method}");
        assert_eq!(row.get::<_, String>(1), USER, "{method}");
        assert_eq!(row.get::<_, i64>(2), 42, "{method}");
        let log = pg.log();
        assert!(!log.contains("authentication failed"), "{method}: {log}");
    }
}

#[test]
fn psql_through_the_sidecar_and_straight_to_the_gateway() {
    let pg = postgres("scram-sha-256");
    let c = chain(&pg);
    let (ok, out, err) = psql_without_password(&c.pg_conninfo(USER), "select current_user");
    assert!(ok, "{err}");
    assert_eq!(out, "celery\n");
    // Debian 12's psql 15: SSLRequest, then TLS with SNI.
    let (ok, out, err) = psql_without_password(&c.pg_direct(), "select current_user");
    assert!(ok, "{err}");
    assert_eq!(out, "celery\n");
    // No database: PostgreSQL's default, the role's name (libpq sends the user's, which the
    // gateway keeps as the client's choice).
    let conninfo = format!("host=127.0.0.1 port={} user=celery", c.sc.port("postgres"));
    let (ok, out, err) = psql_without_password(&conninfo, "select current_database()");
    assert!(ok, "{err}");
    assert_eq!(out, "celery\n");
}

#[test]
fn psycopg3_with_direct_tls_and_sqlalchemy_with_psycopg2() {
    let pg = postgres("scram-sha-256");
    let c = chain(&pg);
    let code = "import os, psycopg\n\
                for extra in ('', 'sslnegotiation=direct'):\n\
                \x20   with psycopg.connect(os.environ['DSN'] + ' ' + extra, password='ignored') as conn:\n\
                \x20       print(conn.execute('select current_user').fetchone()[0])\n";
    let out = run_python(&python(), code, &[("DSN", c.pg_direct())]);
    assert_eq!(out, "celery\ncelery\n");
    let code = "import os, sqlalchemy\n\
                e = sqlalchemy.create_engine(os.environ['URL'])\n\
                with e.connect() as conn:\n\
                \x20   print(conn.execute(sqlalchemy.text('select current_user')).scalar())\n";
    let url = format!(
        "postgresql+psycopg2://localhost:{}/celery",
        c.sc.port("postgres")
    );
    assert_eq!(
        run_python(&topology_python(), code, &[("URL", url)]),
        "celery\n"
    );
}

#[test]
fn pg_dump_piped_into_psql() {
    let pg = postgres("scram-sha-256");
    pg.psql("CREATE DATABASE restored OWNER celery");
    let c = chain(&pg);
    let fill = "create table t (id int primary key, v text); \
                insert into t select i, md5(i::text) from generate_series(1, 1000) i";
    let (ok, _, err) = psql_without_password(&c.pg_conninfo(USER), fill);
    assert!(ok, "{err}");
    let mut dump = Command::new("pg_dump");
    dump.arg(c.pg_conninfo(USER))
        .args(["--no-owner", "--no-privileges"]);
    let dump = run(&mut dump, CMD);
    assert!(dump.status.success(), "{:?}", texts(&dump));
    let mut restore = Command::new("psql");
    restore
        .arg(c.pg_conninfo("restored"))
        .args(["-Xq", "-v", "ON_ERROR_STOP=1"]);
    let out = run_with_input(&mut restore, Some(&dump.stdout), CMD);
    assert!(out.status.success(), "{:?}", texts(&out));
    let sum = "select count(*), md5(string_agg(v, '' order by id)) from t";
    let (_, restored, _) = psql_without_password(&c.pg_conninfo("restored"), sum);
    let (_, want, _) = psql_without_password(&c.pg_conninfo(USER), sum);
    assert_eq!(restored, want);
    assert!(restored.starts_with("1000|"), "{restored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_file_gets_the_servers_refusal_and_nothing_else() {
    let pg = postgres("scram-sha-256");
    let wrong = "Not-The-Password-3c9d";
    let c = Chain::with(Some(&pg), None, wrong, |_| {});
    let (ok, _, err) = psql_without_password(&c.pg_conninfo(USER), "select 1");
    assert!(!ok, "{}\n{}", c.gw.log_text(), pg.log());
    let refusal = "FATAL:  snigate: postgres: backend refused the gateway's login: \
                   password authentication failed for user \"celery\"";
    assert!(err.contains(refusal), "{err}");
    c.gw.wait_line("the refusal", |l| {
        l.is("refused") && l.has("reason", "backend_refused_login")
    });
    let log = c.gw.log_text();
    assert!(!log.contains(wrong) && !log.contains(PASSWORD), "{log}");
    let labels = [("route", "postgres"), ("reason", "backend_refused_login")];
    assert_eq!(c.gw.metrics().count("snigate_refusals_total", &labels), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_through_the_sidecar_cancels_pg_sleep() {
    let pg = postgres("scram-sha-256");
    let c = chain(&pg);
    let client = client(&c.pg_conninfo(USER)).await;
    assert_sleep_cancelled(client, || pg.wait_running("select pg_sleep", 1)).await;
}

/// The gateway's `plaintext CancelRequest forwarded …` lines so far.
fn forwarded_cancels(c: &Chain) -> usize {
    let log = c.gw.log();
    let forwarded = log
        .iter()
        .filter(|l| l.message().starts_with("plaintext CancelRequest forwarded"));
    forwarded.count()
}

#[test]
fn plaintext_cancel_of_libpq_16_and_psql_reaches_the_server_that_issued_the_key() {
    let pg = postgres("scram-sha-256");
    let c = chain(&pg);
    // psql 15 straight to the gateway: Ctrl-C sends a plaintext CancelRequest.
    let mut psql = Command::new("psql");
    psql.arg(c.pg_direct())
        .args(["-XAtc", "select pg_sleep(30)"]);
    let child = psql
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    pg.wait_running("select pg_sleep", 1);
    signal(child.id(), libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("canceling statement due to user request"),
        "{err}"
    );
    wait_for("the cancel forwarded", || {
        (forwarded_cancels(&c) == 1).then_some(())
    });
    // psycopg 3: cancel() is libpq's PQcancel (plaintext), cancel_safe() libpq 17's (TLS).
    let code = "import os, threading, time, psycopg\n\
                for how in ('cancel', 'cancel_safe'):\n\
                \x20   conn = psycopg.connect(os.environ['DSN'])\n\
                \x20   threading.Timer(1.0, getattr(conn, how)).start()\n\
                \x20   try:\n\
                \x20       conn.execute('select pg_sleep(30)')\n\
                \x20   except psycopg.errors.QueryCanceled:\n\
                \x20       print(how, 'cancelled')\n";
    let out = run_python(&python(), code, &[("DSN", c.pg_direct())]);
    assert_eq!(out, "cancel cancelled\ncancel_safe cancelled\n");
    // psql's and psycopg's cancel(): plaintext, routed by key; cancel_safe() came over TLS.
    assert_eq!(forwarded_cancels(&c), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_cancel_keys_are_refused_with_a_warning() {
    let pg = postgres("scram-sha-256");
    let c = chain(&pg);
    let mut tcp = tokio::net::TcpStream::connect(c.gw.addr).await.unwrap();
    let cancel = [0, 0, 0, 16, 4, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 1, 2, 3, 4];
    tcp.write_all(&cancel).await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(IO, tcp.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
    c.gw.wait_line("the warning", |l| {
        l.json()["level"] == "WARN"
            && l.message().starts_with("plaintext CancelRequest")
            && l.message().contains("not forwarded")
    });
    c.gw.wait_line("the refusal", |l| {
        l.is("refused") && l.has("reason", "plaintext_cancel")
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiate_protocol_version_reaches_the_client_before_authentication_ok() {
    let pg = postgres("scram-sha-256");
    let c = chain(&pg);
    let mut tls = ClientOpts::new(&c.pki)
        .connect(c.gw.addr, PG_SNI)
        .await
        .unwrap();
    let mut startup = bytes::BytesMut::new();
    let params = [
        ("user", "whoever"),
        ("database", USER),
        ("_pq_.snigate_test", "1"),
    ];
    postgres_protocol::message::frontend::startup_message(params, &mut startup).unwrap();
    tls.write_all(&startup).await.unwrap();
    let mut reply = Vec::new();
    while !reply.ends_with(&[b'Z', 0, 0, 0, 5, b'I']) {
        let read = tokio::time::timeout(IO, tls.read_buf(&mut reply)).await;
        let n = read.unwrap().unwrap();
        assert!(n > 0, "closed after {reply:?}");
    }
    assert_eq!(reply[0], b'v', "{reply:?}");
    let v_len = u32::from_be_bytes(reply[1..5].try_into().unwrap()) as usize;
    assert!(String::from_utf8_lossy(&reply[..=v_len]).contains("_pq_.snigate_test"));
    assert_eq!(
        &reply[v_len + 1..v_len + 10],
        &[b'R', 0, 0, 0, 8, 0, 0, 0, 0]
    );
}

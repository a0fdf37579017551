//! PostgreSQL clients: psql (libpq) with the conninfo strings the tests use, tokio-postgres
//! over any stream, and the one-byte answers to SSLRequest and GSSENCRequest.

use std::process::{Command, Output};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_postgres::error::SqlState;

use crate::support::process::{run, CMD};
use crate::support::{Pki, IO};

pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
pub const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];

/// Plaintext to a local port (a sidecar tunnel), as user postgres.
pub fn local(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=20")
}

/// Straight to the gateway: the name `sni` is checked against the gateway's certificate,
/// TCP goes to 127.0.0.1 (hostaddr), `client`'s certificate proves the worker identity.
pub fn verify_full(sni: &str, port: u16, client: &Pki) -> String {
    format!(
        "host={sni} hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres \
         sslmode=verify-full sslrootcert={} sslcert={} sslkey={} connect_timeout=20",
        client.ca().display(),
        client.client_cert().display(),
        client.client_key().display(),
    )
}

/// `psql <conninfo> -XAt -c <sql>`, run with a deadline.
pub fn psql(conninfo: &str, sql: &str) -> Output {
    run(&mut psql_command(conninfo, sql), CMD)
}

/// The psql command line, unaffected by the caller's PGSSLMODE/PGGSSENCMODE.
pub fn psql_command(conninfo: &str, sql: &str) -> Command {
    let mut cmd = Command::new("psql");
    cmd.arg(conninfo).args(["-XAt", "-c", sql]);
    cmd.env_remove("PGSSLMODE").env_remove("PGGSSENCMODE");
    cmd
}

/// Writes `req` and reads exactly one byte back (the answer to an SSL/GSSENC request).
pub async fn one_byte_answer<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, req: &[u8]) -> u8 {
    s.write_all(req).await.unwrap();
    let mut b = [0u8; 1];
    let read = tokio::time::timeout(IO, s.read_exact(&mut b));
    read.await.expect("no answer").expect("read answer");
    b[0]
}

/// A tokio-postgres session (user/db postgres) over an already negotiated stream.
pub async fn pg_session<S>(stream: S) -> tokio_postgres::Client
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut cfg = tokio_postgres::Config::new();
    cfg.user("postgres").dbname("postgres");
    cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let fut = cfg.connect_raw(stream, tokio_postgres::NoTls);
    let (client, conn) = tokio::time::timeout(IO, fut)
        .await
        .expect("startup hung")
        .unwrap();
    tokio::spawn(conn);
    client
}

/// The one text value `sql` selects.
pub async fn select_text(client: &tokio_postgres::Client, sql: &str) -> String {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// `select pg_sleep(30)` on `client`, cancelled with the client's cancel token once `running`
/// has returned (it waits until the server runs the query): the query must fail with
/// query_canceled, well before its 30 s.
pub async fn assert_sleep_cancelled(client: tokio_postgres::Client, running: impl FnOnce()) {
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move { client.simple_query("select pg_sleep(30)").await });
    running();
    let sent = token.cancel_query(tokio_postgres::NoTls).await;
    sent.expect("CancelRequest");
    let result = tokio::time::timeout(IO, sleeper)
        .await
        .expect("query was not cancelled");
    let err = result
        .unwrap()
        .expect_err("pg_sleep(30) must fail with query_canceled");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert_eq!(err.code().unwrap().code(), "57014");
}

/// A tokio-postgres client through a local port (a sidecar tunnel).
pub async fn connect_local(port: u16) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&local(port), tokio_postgres::NoTls)
        .await
        .expect("tokio-postgres through the sidecar");
    tokio::spawn(conn);
    client
}

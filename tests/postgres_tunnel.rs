//! PostgreSQL through the whole chain: client -> sidecar -> (mTLS) -> gateway -> postgres.
//! Real clients: psql (libpq, default sslmode=prefer) and tokio-postgres.

mod support;

use std::process::Command;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use support::pki::{CLIENT_NAME, PG_SNI};
use support::tls::{one_byte_answer, pg_session, GSSENC_REQUEST, IO, SSL_REQUEST};
use support::*;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

struct Chain {
    pg: Postgres,
    _gw: Gateway,
    sc: Sidecar,
    _pki: Pki,
}

fn chain() -> Chain {
    let pg = Postgres::start();
    let pki = Pki::new();
    let allow = format!("dns:{CLIENT_NAME}");
    let route = Route::new(
        "postgres",
        PG_SNI,
        "postgres",
        format!("127.0.0.1:{}", pg.port),
    );
    let gw = Gateway::start(&pki, &[route.allow(&[&allow])]);
    let sc = Sidecar::start(
        &pki,
        &[Tunnel::new("postgres", "postgres", gw.addr, PG_SNI)],
    );
    Chain {
        pg,
        _gw: gw,
        sc,
        _pki: pki,
    }
}

impl Chain {
    fn conninfo(&self) -> String {
        let port = self.sc.port("postgres");
        format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=20")
    }

    async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.conninfo(), NoTls)
            .await
            .expect("tokio-postgres through the sidecar");
        tokio::spawn(conn);
        client
    }
}

fn psql(conninfo: &str, sql: &str) -> std::process::Output {
    let mut cmd = Command::new("psql");
    cmd.arg(conninfo).args(["-X", "-A", "-t", "-c", sql]);
    cmd.env_remove("PGSSLMODE").env_remove("PGGSSENCMODE");
    run(&mut cmd, CMD)
}

#[test]
fn psql_with_default_sslmode_prefer_queries_through_sidecar() {
    let c = chain();
    let before = c.pg.connections_received();
    let out = psql(
        &c.conninfo(),
        "select 'tunnel ' || (6 * 7)::text, current_user",
    );
    let (o, e) = texts(&out);
    assert!(out.status.success(), "psql failed: {e}");
    assert_eq!(o, "tunnel 42|postgres\n");
    assert_eq!(c.pg.connections_received(), before + 1, "{}", c.pg.log());
    // The sidecar answered the SSLRequest with `N` (plaintext stays on loopback).
    let out = psql(&format!("{} sslmode=require", c.conninfo()), "select 1");
    let (_, e) = texts(&out);
    assert!(!out.status.success());
    assert!(
        e.contains("server does not support SSL, but SSL was required"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_answers_gssenc_and_ssl_requests_with_n() {
    let c = chain();
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", c.sc.port("postgres")))
        .await
        .unwrap();
    assert_eq!(one_byte_answer(&mut tcp, &GSSENC_REQUEST).await, b'N');
    assert_eq!(one_byte_answer(&mut tcp, &SSL_REQUEST).await, b'N');
    // Same connection, now plaintext on loopback: a normal session follows.
    let client = pg_session(tcp).await;
    let row = client
        .query_one("select 'after two Ns'::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "after two Ns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_query_with_parameters() {
    let c = chain();
    let client = c.client().await;
    let row = client
        .query_one("select $1::text || '!', $2::int8 * 2", &[&"hi", &21i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "hi!");
    assert_eq!(row.get::<_, i64>(1), 42);
}

const ROW: usize = 1024;
const ROWS: usize = 50 * 1024; // 50 MiB of COPY text

/// One COPY text row of exactly ROW bytes: "<id>\t<payload>\n", payload without escapes.
fn copy_row(id: usize, x: &mut u64, out: &mut Vec<u8>) {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let start = out.len();
    out.extend_from_slice(format!("{id}\t").as_bytes());
    while out.len() - start < ROW - 1 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        out.push(ALPHABET[(*x >> 58) as usize]);
    }
    out.push(b'\n');
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_fifty_megabytes_in_and_out_byte_exact() {
    let c = chain();
    let client = c.client().await;
    client
        .batch_execute("create table blob (id int primary key, payload text not null)")
        .await
        .unwrap();
    let sink = client.copy_in("copy blob from stdin").await.unwrap();
    futures_util::pin_mut!(sink);
    let (mut sent, mut x, mut chunk) = (Sha256::new(), 0x9e3779b97f4a7c15u64, Vec::new());
    for id in 1..=ROWS {
        copy_row(id, &mut x, &mut chunk);
        if chunk.len() >= 256 * 1024 || id == ROWS {
            sent.update(&chunk);
            sink.send(Bytes::from(std::mem::take(&mut chunk)))
                .await
                .unwrap();
        }
    }
    assert_eq!(sink.finish().await.unwrap(), ROWS as u64);
    let sent = hex(sent.finalize());

    let agg = "select encode(sha256(convert_to(string_agg(id::text || E'\\t' || payload || E'\\n', \
               '' order by id), 'UTF8')), 'hex'), sum(octet_length(payload) + 2 + length(id::text)) from blob";
    let row = client.query_one(agg, &[]).await.unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        sent,
        "server-side checksum of what arrived"
    );
    let total: i64 = row.get::<_, Option<i64>>(1).unwrap();
    assert_eq!(total as usize, ROW * ROWS);

    let stream = client
        .copy_out("copy (select id, payload from blob order by id) to stdout")
        .await
        .unwrap();
    futures_util::pin_mut!(stream);
    let (mut got, mut len) = (Sha256::new(), 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len();
        got.update(&chunk);
    }
    assert_eq!(len, ROW * ROWS);
    assert_eq!(
        hex(got.finalize()),
        sent,
        "COPY TO STDOUT differs from what was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_sleep_is_cancelled_through_the_sidecar() {
    let c = chain();
    let client = c.client().await;
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move { client.simple_query("select pg_sleep(30)").await });
    let direct = c.pg.client().await;
    let running = "select count(*) from pg_stat_activity \
                   where query = 'select pg_sleep(30)' and state = 'active'";
    let deadline = tokio::time::Instant::now() + READY;
    while direct
        .query_one(running, &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        != 1
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pg_sleep never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    token
        .cancel_query(NoTls)
        .await
        .expect("CancelRequest through the sidecar");
    // Bounded well below the 30 s sleep: only a working cancel returns in time.
    let result = tokio::time::timeout(IO, sleeper)
        .await
        .expect("query was not cancelled")
        .unwrap();
    let err = result.expect_err("pg_sleep(30) must fail with query_canceled");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert_eq!(err.code().unwrap().code(), "57014");
}

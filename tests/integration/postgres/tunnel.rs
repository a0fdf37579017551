//! PostgreSQL through the whole chain: client -> sidecar -> (mTLS) -> gateway -> postgres.
//! Real clients: psql (libpq, default sslmode=prefer) and tokio-postgres.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};

use super::fixture;
use crate::support::clients::postgres::{
    assert_sleep_cancelled, connect_local, local, one_byte_answer, pg_session, psql, select_text,
    GSSENC_REQUEST, SSL_REQUEST,
};
use crate::support::*;

#[test]
fn psql_with_default_sslmode_prefer_queries_through_sidecar() {
    let f = fixture();
    let sc = f.sidecar();
    let conninfo = local(sc.port("postgres"));
    let before = f.pg.connections_received();
    let out = psql(&conninfo, "select 'tunnel ' || (6 * 7)::text, current_user");
    let (o, e) = texts(&out);
    assert!(out.status.success(), "psql failed: {e}");
    assert_eq!(o, "tunnel 42|postgres\n");
    assert_eq!(f.pg.connections_received(), before + 1, "{}", f.pg.log());
    // The sidecar answered the SSLRequest with `N` (plaintext stays on loopback).
    let out = psql(&format!("{conninfo} sslmode=require"), "select 1");
    let (_, e) = texts(&out);
    assert!(!out.status.success());
    assert!(
        e.contains("server does not support SSL, but SSL was required"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_answers_gssenc_and_ssl_requests_with_n() {
    let f = fixture();
    let sc = f.sidecar();
    let mut tcp = tokio::net::TcpStream::connect(sc.addr("postgres"))
        .await
        .unwrap();
    assert_eq!(one_byte_answer(&mut tcp, &GSSENC_REQUEST).await, b'N');
    assert_eq!(one_byte_answer(&mut tcp, &SSL_REQUEST).await, b'N');
    // Same connection, now plaintext on loopback: a normal session follows.
    let client = pg_session(tcp).await;
    let got = select_text(&client, "select 'after two Ns'::text").await;
    assert_eq!(got, "after two Ns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_query_with_parameters() {
    let f = fixture();
    let sc = f.sidecar();
    let client = connect_local(sc.port("postgres")).await;
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
    let f = fixture();
    let sc = f.sidecar();
    let client = connect_local(sc.port("postgres")).await;
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
    let f = fixture();
    let sc = f.sidecar();
    let client = connect_local(sc.port("postgres")).await;
    assert_sleep_cancelled(client, || f.pg.wait_running("select pg_sleep", 1)).await;
}

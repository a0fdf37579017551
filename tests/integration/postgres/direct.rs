//! PostgreSQL clients that speak TLS themselves, straight to the gateway (no sidecar):
//! psql/libpq 15 with the SSLRequest upgrade, and libpq >= 17 `sslnegotiation=direct`
//! (psycopg), which requires ALPN `postgresql`.

use std::process::Command;

use tokio::net::TcpStream;

use super::fixture;
use crate::support::clients::postgres::{
    one_byte_answer, pg_session, psql_command, select_text, GSSENC_REQUEST, SSL_REQUEST,
};
use crate::support::clients::tls::ClientOpts;
use crate::support::clients::tools::{python, script};
use crate::support::*;

#[test]
fn psql_verify_full_through_ssl_request() {
    let f = fixture();
    let before = f.pg.connections_received();
    let mut cmd = psql_command(&f.direct(), "select 'direct ' || 42, current_user");
    let out = run(cmd.args(["-c", "\\conninfo"]), CMD);
    let (o, e) = texts(&out);
    assert!(out.status.success(), "psql: {e}");
    let mut lines = o.lines();
    assert_eq!(lines.next(), Some("direct 42|postgres"));
    let info = lines.collect::<Vec<_>>().join("\n");
    let host = format!("host \"{PG_SNI}\" (address \"127.0.0.1\")");
    assert!(info.contains(&host), "{info}");
    assert!(info.contains("SSL connection (protocol: TLSv1.3"), "{info}");
    assert_eq!(f.pg.connections_received(), before + 1);
}

#[test]
fn psycopg_with_libpq17_sslnegotiation_direct() {
    let f = fixture();
    let mut cmd = Command::new(python());
    let out = run(
        cmd.arg(script("tests/chaos/pg_direct.py")).arg(f.direct()),
        CMD,
    );
    let (o, e) = texts(&out);
    assert!(out.status.success(), "pg_direct.py failed:\n{o}\n{e}");
    assert_eq!(
        o,
        "libpq>=17 True\nssl_in_use True\nrow direct 42 postgres\n"
    );
}

#[tokio::test]
async fn postgres_route_selects_alpn_postgresql() {
    let f = fixture();
    let opts = ClientOpts {
        alpn: vec![b"postgresql".to_vec()],
        ..ClientOpts::new(&f.pki)
    };
    let tls = opts.connect(f.gw.addr, PG_SNI).await.expect("direct TLS");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"postgresql"[..]));
}

#[tokio::test]
async fn gssenc_request_gets_n_then_ssl_request_gets_s_then_tls() {
    // What libpq does with gssencmode=prefer when it has Kerberos credentials.
    let f = fixture();
    let mut tcp = TcpStream::connect(f.gw.addr).await.unwrap();
    assert_eq!(one_byte_answer(&mut tcp, &GSSENC_REQUEST).await, b'N');
    assert_eq!(one_byte_answer(&mut tcp, &SSL_REQUEST).await, b'S');
    let tls = ClientOpts::new(&f.pki)
        .handshake(tcp, PG_SNI)
        .await
        .expect("TLS after S");
    let client = pg_session(tls).await;
    let got = select_text(&client, "select 'gss, then ssl'::text").await;
    assert_eq!(got, "gss, then ssl");
}

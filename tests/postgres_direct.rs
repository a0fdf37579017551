//! PostgreSQL clients that speak TLS themselves, straight to the gateway (no sidecar):
//! psql/libpq 15 with the SSLRequest upgrade, and libpq >= 17 `sslnegotiation=direct`
//! (psycopg), which requires ALPN `postgresql`.

mod support;

use std::process::Command;

use support::pki::{p, CLIENT_NAME, PG_SNI};
use support::tls::{one_byte_answer, pg_session, ClientOpts, GSSENC_REQUEST, SSL_REQUEST};
use support::*;
use tokio::net::TcpStream;

struct Direct {
    pg: Postgres,
    pki: Pki,
    gw: Gateway,
}

fn direct() -> Direct {
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
    Direct { pg, pki, gw }
}

impl Direct {
    /// verify-full conninfo: the name is checked against the gateway cert, TCP goes to
    /// 127.0.0.1 (hostaddr), the client certificate proves the worker identity.
    fn conninfo(&self) -> String {
        format!(
            "host={PG_SNI} hostaddr=127.0.0.1 port={} user=postgres dbname=postgres \
             sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
            self.gw.port(),
            p(&self.pki.ca()),
            p(&self.pki.client_cert()),
            p(&self.pki.client_key()),
        )
    }
}

#[test]
fn psql_verify_full_through_ssl_request() {
    let d = direct();
    let before = d.pg.connections_received();
    let out = run(
        Command::new("psql")
            .arg(d.conninfo())
            .args([
                "-X",
                "-A",
                "-t",
                "-c",
                "select 'direct ' || 42, current_user",
            ])
            .args(["-c", "\\conninfo"]),
        CMD,
    );
    let (o, e) = texts(&out);
    assert!(out.status.success(), "psql: {e}");
    let mut lines = o.lines();
    assert_eq!(lines.next(), Some("direct 42|postgres"));
    let info = lines.collect::<Vec<_>>().join("\n");
    assert!(
        info.contains(&format!("host \"{PG_SNI}\" (address \"127.0.0.1\")")),
        "{info}"
    );
    assert!(info.contains("SSL connection (protocol: TLSv1.3"), "{info}");
    assert_eq!(d.pg.connections_received(), before + 1);
}

#[test]
fn psycopg_with_libpq17_sslnegotiation_direct() {
    let d = direct();
    let py = python();
    assert!(
        py.is_file(),
        "{} missing: run scripts/install-deps.sh or set SNIGATE_PYTHON",
        py.display()
    );
    let script = repo_root().join("tests/chaos/pg_direct.py");
    let out = run(Command::new(&py).arg(script).arg(d.conninfo()), CMD);
    let (o, e) = texts(&out);
    assert!(out.status.success(), "pg_direct.py failed:\n{o}\n{e}");
    assert_eq!(
        o,
        "libpq>=17 True\nssl_in_use True\nrow direct 42 postgres\n"
    );
}

#[tokio::test]
async fn postgres_route_selects_alpn_postgresql() {
    let d = direct();
    let mut opts = ClientOpts::new(&d.pki);
    opts.alpn = vec![b"postgresql".to_vec()];
    let tls = opts.connect(d.gw.addr, PG_SNI).await.expect("direct TLS");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"postgresql"[..]));
}

#[tokio::test]
async fn gssenc_request_gets_n_then_ssl_request_gets_s_then_tls() {
    // What libpq does with gssencmode=prefer when it has Kerberos credentials.
    let d = direct();
    let mut tcp = TcpStream::connect(d.gw.addr).await.unwrap();
    assert_eq!(one_byte_answer(&mut tcp, &GSSENC_REQUEST).await, b'N');
    assert_eq!(one_byte_answer(&mut tcp, &SSL_REQUEST).await, b'S');
    let tls = ClientOpts::new(&d.pki)
        .handshake(tcp, PG_SNI)
        .await
        .expect("TLS after S");
    let client = pg_session(tls).await;
    let row = client
        .query_one("select 'gss, then ssl'::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "gss, then ssl");
}

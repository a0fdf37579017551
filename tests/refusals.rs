//! Everything the gateway must refuse. After each refusal: the backend's connection counter
//! is unchanged (exact, read from the backend itself) and a good client still works.

mod support;

use std::process::Command;

use rustls::AlertDescription;
use support::pki::{p, CLIENT_NAME, LOCKED_PG_SNI, LOCKED_SNI, PG_SNI, REDIS_SNI};
use support::tls::{alert, exchange, resp_line, ClientOpts, SSL_REQUEST};
use support::*;
use tokio::net::TcpStream;

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

struct Fx {
    redis: RedisServer,
    pg: Option<Postgres>,
    pki: Pki,
    gw: Gateway,
    /// redis-server's total_connections_received before the refusal under test.
    before: u64,
}

/// Gateway with mTLS and routes: redis (allowed), locked (redis, nobody allowed) and, with
/// `with_pg`, postgres (allowed) and locked-pg.
fn fixture(with_pg: bool) -> Fx {
    let redis = RedisServer::start();
    let pg = with_pg.then(Postgres::start);
    let pki = Pki::new();
    let ok = format!("dns:{CLIENT_NAME}");
    let mut routes = vec![
        Route::new("redis", REDIS_SNI, "redis", redis.addr()).allow(&[&ok]),
        Route::new("locked", LOCKED_SNI, "redis", redis.addr()).allow(&["dns:other.snigate.test"]),
    ];
    if let Some(pg) = &pg {
        let backend = format!("127.0.0.1:{}", pg.port);
        routes.push(Route::new("postgres", PG_SNI, "postgres", &backend).allow(&[&ok]));
        routes.push(
            Route::new("locked-pg", LOCKED_PG_SNI, "postgres", &backend).allow(&["cn:nobody"]),
        );
    }
    let gw = Gateway::start(&pki, &routes);
    let before = redis.total_connections();
    Fx {
        redis,
        pg,
        pki,
        gw,
        before,
    }
}

impl Fx {
    /// The refusal was logged (one `refused ... reason=` line), opened no backend
    /// connection, and a good client still works.
    async fn assert_refused_cleanly(&self) {
        self.assert_one_refused_line();
        assert_eq!(
            self.redis.total_connections(),
            self.before,
            "backend connection opened"
        );
        let mut good = ClientOpts::new(&self.pki)
            .connect(self.gw.addr, REDIS_SNI)
            .await
            .unwrap();
        assert_eq!(resp_line(&mut good, &["PING"]).await, "+PONG\r\n");
        assert_eq!(self.redis.total_connections(), self.before + 1);
        assert!(
            !self.gw.proc.log().contains("PRIVATE KEY"),
            "key material logged"
        );
    }

    /// Exactly one new `refused ... reason=` line.
    fn assert_one_refused_line(&self) {
        self.gw.proc.wait_lines(&["refused", "reason="], 1);
        assert_eq!(
            self.gw.proc.count_lines(&["refused", "reason="]),
            1,
            "{}",
            self.gw.proc.log()
        );
    }
}

/// Handshake (and, if it completes, a PING); returns the alert the gateway sent.
async fn refused_alert(opts: &ClientOpts<'_>, fx: &Fx, name: &str) -> AlertDescription {
    let err = match opts.connect(fx.gw.addr, name).await {
        Err(e) => e,
        Ok(mut tls) => {
            let (bytes, err) = exchange(&mut tls, PING).await;
            assert_eq!(bytes, b"", "refused client got application data");
            err.expect("TLS 1.3 client-auth failure must arrive as an alert")
        }
    };
    alert(&err).unwrap_or_else(|| panic!("expected a TLS alert, got {err:?}"))
}

#[tokio::test]
async fn no_sni_gets_unrecognized_name() {
    let fx = fixture(false);
    let mut opts = ClientOpts::new(&fx.pki);
    opts.sni = false;
    assert_eq!(
        refused_alert(&opts, &fx, REDIS_SNI).await,
        AlertDescription::UnrecognisedName
    );
    fx.assert_refused_cleanly().await;
}

#[tokio::test]
async fn unknown_sni_gets_unrecognized_name() {
    let fx = fixture(false);
    let opts = ClientOpts::new(&fx.pki);
    let got = refused_alert(&opts, &fx, "unknown.snigate.test").await;
    assert_eq!(got, AlertDescription::UnrecognisedName);
    fx.assert_refused_cleanly().await;
}

#[tokio::test]
async fn client_cert_from_another_ca_is_rejected() {
    let fx = fixture(false);
    let stranger = Pki::new();
    let mut opts = ClientOpts::new(&fx.pki);
    opts.client = Some(&stranger);
    // rustls sends unknown_ca for an unknown issuer name; `snigate certs` CAs all share
    // one subject name, so a stranger's chain fails on the signature: decrypt_error.
    let got = refused_alert(&opts, &fx, REDIS_SNI).await;
    assert!(
        matches!(
            got,
            AlertDescription::UnknownCA | AlertDescription::DecryptError
        ),
        "{got:?}"
    );
    fx.assert_refused_cleanly().await;
}

#[tokio::test]
async fn missing_client_cert_is_rejected() {
    let fx = fixture(false);
    let mut opts = ClientOpts::new(&fx.pki);
    opts.client = None;
    let got = refused_alert(&opts, &fx, REDIS_SNI).await;
    assert_eq!(got, AlertDescription::CertificateRequired);
    fx.assert_refused_cleanly().await;
}

#[tokio::test]
async fn identity_not_in_allow_gets_a_redis_error() {
    let fx = fixture(false);
    let mut tls = ClientOpts::new(&fx.pki)
        .connect(fx.gw.addr, LOCKED_SNI)
        .await
        .unwrap();
    let (bytes, _) = exchange(&mut tls, PING).await;
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        "-ERR snigate: locked: client identity not allowed\r\n"
    );
    fx.assert_refused_cleanly().await;
}

/// psql straight to the gateway with verify-full and the fixture's client certificate.
fn psql_direct(fx: &Fx, sni: &str) -> std::process::Output {
    let conninfo = format!(
        "host={sni} hostaddr=127.0.0.1 port={} user=postgres dbname=postgres \
         sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
        fx.gw.port(),
        p(&fx.pki.ca()),
        p(&fx.pki.client_cert()),
        p(&fx.pki.client_key())
    );
    run(
        Command::new("psql")
            .arg(conninfo)
            .args(["-XAtc", "select 1"]),
        CMD,
    )
}

/// A good psql still gets through, and opens exactly one backend connection.
fn assert_pg_still_works(fx: &Fx, pg_before: usize) {
    let pg = fx.pg.as_ref().unwrap();
    assert_eq!(pg.connections_received(), pg_before, "{}", pg.log());
    let out = psql_direct(fx, PG_SNI);
    assert_eq!(texts(&out).0, "1\n", "{:?}", texts(&out));
    assert_eq!(pg.connections_received(), pg_before + 1);
}

#[tokio::test]
async fn identity_not_in_allow_gets_a_postgres_fatal() {
    let fx = fixture(true);
    let pg_before = fx.pg.as_ref().unwrap().connections_received();
    let out = psql_direct(&fx, LOCKED_PG_SNI);
    let (_, e) = texts(&out);
    assert!(!out.status.success());
    assert!(
        e.contains("FATAL:  snigate: locked-pg: client identity not allowed"),
        "{e}"
    );
    assert_pg_still_works(&fx, pg_before);
    fx.assert_refused_cleanly().await;
}

#[tokio::test]
async fn plaintext_garbage_is_closed_without_reply() {
    let fx = fixture(false);
    let mut tcp = TcpStream::connect(fx.gw.addr).await.unwrap();
    let (bytes, _) = exchange(
        &mut tcp,
        b"GET / HTTP/1.1\r\nHost: redis.snigate.test\r\n\r\n",
    )
    .await;
    assert_eq!(bytes, b"", "gateway answered plaintext garbage");
    fx.assert_refused_cleanly().await;
}

#[tokio::test]
async fn ssl_request_with_pipelined_bytes_is_closed() {
    let fx = fixture(true);
    let pg_before = fx.pg.as_ref().unwrap().connections_received();
    let mut tcp = TcpStream::connect(fx.gw.addr).await.unwrap();
    let mut req = SSL_REQUEST.to_vec();
    // CVE-2021-23222 shape: a plaintext query smuggled behind the SSLRequest, one write.
    req.extend_from_slice(b"Q\x00\x00\x00\x0dselect 1\x00");
    let (bytes, _) = exchange(&mut tcp, &req).await;
    // Closed before any TLS; at most the `S` answer escaped before the check.
    assert!(bytes.is_empty() || bytes == b"S", "got {bytes:?}");
    assert_pg_still_works(&fx, pg_before);
    fx.assert_refused_cleanly().await;
}

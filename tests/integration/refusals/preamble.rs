//! What comes before TLS: plaintext on the TLS port, and PostgreSQL's SSLRequest and
//! GSSENCRequest with what follows them.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::clients::hello::{raw_exchange, read_to_close};
use crate::support::clients::postgres::{one_byte_answer, psql, GSSENC_REQUEST, SSL_REQUEST};
use crate::support::clients::tls::exchange;
use crate::support::fixtures::Guarded;
use crate::support::*;

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// Plaintext on the TLS port: closed without a byte in reply, refused as not_tls.
#[tokio::test]
async fn plaintext_ping_http_and_ssh_banner_are_closed() {
    let mut g = Guarded::start(false, |_| {});
    let inputs: [&[u8]; 4] = [
        b"PING\r\n",
        PING,
        b"GET / HTTP/1.1\r\nHost: redis.snigate.test\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
    ];
    for input in inputs {
        let before = g.refused();
        let got = raw_exchange(g.gw.addr, input, false).await;
        assert_eq!(got, b"", "answered {:?}", String::from_utf8_lossy(input));
        let line = g.assert_refused(before, "not_tls").await;
        let raw = &line.raw;
        assert!(!raw.contains("OpenSSH") && !raw.contains("HTTP"), "{raw}");
    }
}

/// SSLRequest is answered `S`; what follows must be a ClientHello, and garbage is not one.
#[tokio::test]
async fn ssl_request_then_garbage_is_refused() {
    let mut g = Guarded::start(true, |_| {});
    let before = g.refused();
    let mut tcp = TcpStream::connect(g.gw.addr).await.unwrap();
    assert_eq!(one_byte_answer(&mut tcp, &SSL_REQUEST).await, b'S');
    tcp.write_all(b"\x00\x00\x00\x54\x00\x03\x00\x00user\x00postgres\x00garbage garbage garbage")
        .await
        .unwrap();
    let got = read_to_close(&mut tcp).await;
    assert!(
        !got.starts_with(b"E"),
        "a PostgreSQL reply to garbage: {got:?}"
    );
    let line = g.assert_refused(before, "handshake_failed").await;
    println!("after S + garbage the client saw {got:?}; {}", line.raw);
}

/// GSSENCRequest is answered `N` (no GSS encryption); a client that then goes on in
/// plaintext gets a FATAL ErrorResponse telling it TLS is required, and the backend never
/// sees it. A second GSSENCRequest is answered `N` and closed.
#[tokio::test]
async fn gssenc_request_is_answered_n_and_plaintext_after_it_refused() {
    let mut g = Guarded::start(true, |_| {});
    let before = g.refused();
    let mut tcp = TcpStream::connect(g.gw.addr).await.unwrap();
    assert_eq!(one_byte_answer(&mut tcp, &GSSENC_REQUEST).await, b'N');
    let mut startup = bytes::BytesMut::new();
    postgres_protocol::message::frontend::startup_message(
        [("user", "postgres"), ("database", "postgres")],
        &mut startup,
    )
    .unwrap();
    let (got, _) = exchange(&mut tcp, &startup).await;
    let text = String::from_utf8_lossy(&got);
    assert!(got.starts_with(b"E"), "{got:?}");
    assert!(text.contains("SFATAL") && text.contains("C08006"), "{text}");
    assert!(text.contains("this port requires TLS"), "{text}");
    g.assert_refused(before, "plaintext_postgres").await;

    let before = g.refused();
    let mut tcp = TcpStream::connect(g.gw.addr).await.unwrap();
    assert_eq!(one_byte_answer(&mut tcp, &GSSENC_REQUEST).await, b'N');
    assert_eq!(one_byte_answer(&mut tcp, &GSSENC_REQUEST).await, b'N');
    assert_eq!(read_to_close(&mut tcp).await, b"");
    g.assert_refused(before, "plaintext_postgres").await;
}

/// A plaintext StartupMessage (sslmode=disable) gets a FATAL telling it to use TLS.
#[tokio::test]
async fn plaintext_postgres_startup_gets_a_fatal() {
    let mut g = Guarded::start(true, |_| {});
    let before = g.refused();
    let port = g.gw.port();
    let conninfo =
        format!("host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=disable");
    let out = psql(&conninfo, "select 1");
    let (_, e) = texts(&out);
    assert!(!out.status.success());
    assert!(e.contains("FATAL:  snigate: this port requires TLS"), "{e}");
    g.assert_refused(before, "plaintext_postgres").await;
}

/// CVE-2021-23222: a plaintext query smuggled behind the SSLRequest, in the same write, is
/// never fed to the backend: the connection is closed before any TLS.
#[tokio::test]
async fn ssl_request_with_pipelined_bytes_is_closed() {
    let mut g = Guarded::start(true, |_| {});
    let before = g.refused();
    let mut tcp = TcpStream::connect(g.gw.addr).await.unwrap();
    let mut req = SSL_REQUEST.to_vec();
    req.extend_from_slice(b"Q\x00\x00\x00\x0dselect 1\x00");
    let (bytes, _) = exchange(&mut tcp, &req).await;
    // At most the `S` answer escaped before the check.
    assert!(bytes.is_empty() || bytes == b"S", "got {bytes:?}");
    g.assert_refused(before, "pipelined_after_sslrequest").await;
}

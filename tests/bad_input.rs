//! Every bad input before TLS or in the ClientHello, against a running gateway with real
//! backends. Each case proves (a) what the client sees, (b) exactly one sanitised `refused`
//! log line with its reason, (c) no backend connection (redis-server's
//! total_connections_received, PostgreSQL's log_connections lines), (d) good clients still
//! served afterwards.

mod support;

use std::time::Duration;

use rustls::AlertDescription;
use support::pki::REDIS_SNI;
use support::security::*;
use support::snigate::field;
use support::tls::{alert, exchange, one_byte_answer, ClientOpts, GSSENC_REQUEST, SSL_REQUEST};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// A TLS 1.3 ClientHello for `sni` (raw bytes).
fn hello(sni: &[u8]) -> Vec<u8> {
    client_hello(Some(sni), TLS12, &[TLS13, TLS12])
}

#[tokio::test]
async fn no_sni_gets_unrecognized_name() {
    let mut g = Guarded::start(false, |_| {});
    let before = g.refused();
    let mut opts = ClientOpts::new(&g.pki);
    opts.sni = false;
    let err = opts.connect(g.gw.addr, REDIS_SNI).await.unwrap_err();
    assert_eq!(
        alert(&err),
        Some(AlertDescription::UnrecognisedName),
        "{err}"
    );
    let line = g.assert_refused(before, "no_sni").await;
    assert_eq!(field(&line, "side").as_deref(), Some("client"));
}

#[tokio::test]
async fn unknown_sni_gets_unrecognized_name() {
    let mut g = Guarded::start(false, |_| {});
    let before = g.refused();
    let err = ClientOpts::new(&g.pki)
        .connect(g.gw.addr, "unknown.snigate.test")
        .await
        .unwrap_err();
    assert_eq!(
        alert(&err),
        Some(AlertDescription::UnrecognisedName),
        "{err}"
    );
    let line = g.assert_refused(before, "unknown_sni").await;
    assert!(line.contains("unknown.snigate.test"), "{line}");
}

/// Routing ignores letter case: the connection reaches the redis backend, nothing is refused.
#[tokio::test]
async fn mixed_case_sni_routes_to_its_route() {
    let mut g = Guarded::start(false, |_| {});
    let (ok, out, err) = s_client(g.gw.addr, "ReDiS.SniGate.TEST", &g.pki, &[], b"QUIT\r\n");
    assert!(ok && out.contains("\n+OK\r\n"), "{out}\n{err}");
    g.redis_conns += 1;
    assert_eq!(g.redis.total_connections(), g.redis_conns);
    assert_eq!(g.refused(), 0, "{}", g.gw.proc.log());
    g.good_clients_work().await;
}

/// An absolute name (trailing dot) is the same DNS name: rustls drops the dot, so it routes
/// like the name without it.
#[tokio::test]
async fn trailing_dot_sni_routes_like_the_name_without_it() {
    let mut g = Guarded::start(false, |_| {});
    let sni = format!("{REDIS_SNI}.");
    let (ok, out, err) = s_client(g.gw.addr, &sni, &g.pki, &[], b"QUIT\r\n");
    assert!(ok && out.contains("\n+OK\r\n"), "{out}\n{err}");
    g.redis_conns += 1;
    assert_eq!(g.redis.total_connections(), g.redis_conns);
    assert_eq!(g.refused(), 0, "{}", g.gw.proc.log());
    // Two trailing dots are no DNS name at all: refused at the ClientHello parser.
    let before = g.refused();
    let got = raw_exchange(g.gw.addr, &hello(b"redis.snigate.test.."), false).await;
    assert!(plain_alert(&got).is_some(), "{got:?}");
    g.assert_refused(before, "handshake_failed").await;
}

/// RFC 6066 forbids IP literals in SNI; rustls treats one as no SNI at all, and refuses a
/// bracketed IPv6 literal (no host name, no address) at the parser.
#[tokio::test]
async fn ip_literal_sni_is_refused() {
    let mut g = Guarded::start(false, |_| {});
    for (ip, alert, reason) in [
        ("127.0.0.1", UNRECOGNIZED_NAME, "no_sni"),
        ("::1", UNRECOGNIZED_NAME, "no_sni"),
        ("[::1]", ILLEGAL_PARAMETER, "handshake_failed"),
    ] {
        let before = g.refused();
        let got = raw_exchange(g.gw.addr, &hello(ip.as_bytes()), false).await;
        assert_eq!(plain_alert(&got), Some(alert), "{ip}: {got:?}");
        g.assert_refused(before, reason).await;
    }
}

/// Names that look like a route's but are not: each is an unknown name (or, when it is no
/// valid DNS name, refused by the ClientHello parser), never a prefix or suffix match.
#[tokio::test]
async fn look_alike_names_are_refused() {
    let mut g = Guarded::start(false, |_| {});
    let unknown: &[&[u8]] = &[
        b"redis.snigate.test.evil.example",
        b"evil-redis.snigate.test",
        b"redis.snigate.tes",
        b"redis.snigate.testx",
        b"redis-snigate.test",
        b"redis.snigate.test.snigate.test",
        b"rediss.snigate.test",
        b"xn--rdis-9oa.snigate.test", // punycode of a homoglyph
        b"redis_snigate.test",
    ];
    for name in unknown {
        let before = g.refused();
        let got = raw_exchange(g.gw.addr, &hello(name), false).await;
        assert_eq!(
            plain_alert(&got),
            Some(UNRECOGNIZED_NAME),
            "{name:?}: {got:?}"
        );
        let line = g.assert_refused(before, "unknown_sni").await;
        let shown = String::from_utf8_lossy(name);
        assert!(line.contains(&*shown), "{line}");
    }
    // Not DNS names at all: a Cyrillic homoglyph in UTF-8, a NUL, CR LF with a forged log
    // line behind it, a space. The parser refuses them; the log stays one clean line.
    let invalid: &[&[u8]] = &[
        "r\u{0435}dis.snigate.test".as_bytes(),
        b"redis.snigate.test\0.evil",
        b"x\r\n2026-01-01T00:00:00Z  INFO snigate: listening addr=1.2.3.4:5",
        b"redis snigate.test",
        b"*.snigate.test",
    ];
    for name in invalid {
        let before = g.refused();
        let got = raw_exchange(g.gw.addr, &hello(name), false).await;
        let desc = plain_alert(&got).unwrap_or_else(|| panic!("{name:?}: {got:?}"));
        let line = g.assert_refused(before, "handshake_failed").await;
        println!(
            "SNI {:?}: alert {desc}, {line}",
            String::from_utf8_lossy(name)
        );
    }
}

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
        assert!(
            !line.contains("OpenSSH") && !line.contains("HTTP"),
            "{line}"
        );
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
    println!("after S + garbage the client saw {got:?}; {line}");
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

/// A ClientHello cut short, then silence: dropped at the handshake deadline (1 s here).
/// A client that connects and never sends anything meets the same deadline.
#[tokio::test]
async fn truncated_client_hello_then_silence_meets_the_handshake_deadline() {
    let mut g = Guarded::start(false, |c| c.handshake = Some("1s".into()));
    let full = hello(REDIS_SNI.as_bytes());
    for sent in [&full[..full.len() / 2], &full[..3], &[][..]] {
        let before = g.refused();
        let mut tcp = TcpStream::connect(g.gw.addr).await.unwrap();
        tcp.write_all(sent).await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            read_to_close(&mut tcp).await,
            b"",
            "{} bytes sent",
            sent.len()
        );
        assert!(started.elapsed() >= Duration::from_millis(900));
        g.assert_refused(before, "handshake_timeout").await;
    }
}

/// A ClientHello cut short, then EOF: refused at once as a failed handshake; EOF before any
/// byte is `silent`.
#[tokio::test]
async fn truncated_client_hello_then_eof_is_refused() {
    let mut g = Guarded::start(false, |_| {});
    let full = hello(REDIS_SNI.as_bytes());
    for (sent, reason) in [
        (&full[..full.len() - 1], "handshake_failed"),
        (&full[..5], "handshake_failed"),
        (&full[..1], "handshake_failed"),
        (&[][..], "silent"),
    ] {
        let before = g.refused();
        let got = raw_exchange(g.gw.addr, sent, true).await;
        assert!(got.is_empty() || plain_alert(&got).is_some(), "{got:?}");
        g.assert_refused(before, reason).await;
    }
}

/// A ClientHello whose handshake header claims 16 MiB, streamed in full-size records:
/// refused long before that much is read, and the gateway's memory stays flat.
#[tokio::test]
async fn oversized_client_hello_is_refused_with_bounded_memory() {
    let mut g = Guarded::start(false, |_| {});
    let pid = g.gw.proc.pid();
    let rss_before = rss_kib(pid);
    let before = g.refused();
    let mut tcp = TcpStream::connect(g.gw.addr).await.unwrap();
    let mut first = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
    first.extend(vec![0x41; 0x4000 - 4]);
    tcp.write_all(&first).await.unwrap();
    let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    record.extend(vec![0x41; 0x4000]);
    // Up to 16 MiB more; the gateway closes long before, failing a write.
    for _ in 0..1024 {
        if tcp.write_all(&record).await.is_err() {
            break;
        }
    }
    let got = read_to_close(&mut tcp).await;
    let desc = plain_alert(&got);
    assert!(desc.is_some() || got.is_empty(), "{got:?}");
    g.assert_refused(before, "handshake_failed").await;
    let grown = rss_kib(pid).saturating_sub(rss_before);
    assert!(grown < 8 * 1024, "gateway RSS grew by {grown} KiB");
    println!("oversized ClientHello: alert {desc:?}, RSS +{grown} KiB");
}

/// A well-framed record whose ClientHello body is nonsense: decode_error.
#[tokio::test]
async fn malformed_client_hello_gets_a_decode_alert() {
    let mut g = Guarded::start(false, |_| {});
    let mut bad = hello(REDIS_SNI.as_bytes());
    // Claim a session id of 200 bytes inside a hello that has 32.
    bad[5 + 4 + 2 + 32] = 200;
    let before = g.refused();
    let got = raw_exchange(g.gw.addr, &bad, false).await;
    let desc = plain_alert(&got);
    assert!(
        matches!(desc, Some(DECODE_ERROR | ILLEGAL_PARAMETER)),
        "{got:?}"
    );
    g.assert_refused(before, "handshake_failed").await;
}

/// A plaintext StartupMessage (sslmode=disable) gets a FATAL telling it to use TLS.
#[tokio::test]
async fn plaintext_postgres_startup_gets_a_fatal() {
    let mut g = Guarded::start(true, |_| {});
    let before = g.refused();
    let port = g.gw.port();
    let out = support::run(
        std::process::Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=disable"
            ))
            .args(["-XAtc", "select 1"]),
        support::CMD,
    );
    let (_, e) = support::texts(&out);
    assert!(!out.status.success());
    assert!(e.contains("FATAL:  snigate: this port requires TLS"), "{e}");
    g.assert_refused(before, "plaintext_postgres").await;
}

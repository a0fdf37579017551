//! The server name of the ClientHello: none, unknown, another spelling of a route's, an IP
//! literal, or a look-alike.

use rustls::AlertDescription;

use super::hello;
use crate::support::clients::hello::*;
use crate::support::clients::tls::{alert, ClientOpts};
use crate::support::clients::tools::s_client;
use crate::support::fixtures::Guarded;
use crate::support::*;

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
    line.assert_field("side", "client");
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
    assert!(line.raw.contains("unknown.snigate.test"), "{}", line.raw);
}

/// Routing ignores letter case: the connection reaches the redis backend, nothing is refused.
#[tokio::test]
async fn mixed_case_sni_routes_to_its_route() {
    let mut g = Guarded::start(false, |_| {});
    let (ok, out, err) = s_client(g.gw.addr, "ReDiS.SniGate.TEST", &g.pki, &[], b"QUIT\r\n");
    assert!(ok && out.contains("\n+OK\r\n"), "{out}\n{err}");
    g.redis_conns += 1;
    assert_eq!(g.redis.total_connections(), g.redis_conns);
    assert_eq!(g.refused(), 0, "{}", g.gw.log_text());
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
    assert_eq!(g.refused(), 0, "{}", g.gw.log_text());
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
        assert!(line.raw.contains(&*shown), "{}", line.raw);
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
            "SNI {:?}: alert {desc}, {}",
            String::from_utf8_lossy(name),
            line.raw
        );
    }
}

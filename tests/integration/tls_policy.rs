//! TLS policy of a running gateway: TLS 1.2 and 1.3 only, AEAD suites only, no
//! renegotiation, no 0-RTT, configurable minimum version; `sslyze --mozilla_config=intermediate`
//! passes. Old protocol versions are refused like every other bad input: an alert, one
//! `refused` line, no backend connection, good clients unaffected.

use std::process::Command;

use rustls::pki_types::ServerName;
use rustls::AlertDescription;
use snigate::config::TlsVersion;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::certs::write;
use crate::support::clients::hello::*;
use crate::support::clients::resp::Resp;
use crate::support::clients::tls::{alert, resp_line, ClientOpts};
use crate::support::clients::tools::{python, s_client};
use crate::support::fixtures::Guarded;
use crate::support::logs::assert_sanitised;
use crate::support::*;

/// A rustls client that speaks only TLS 1.2, with `pki`'s CA and client certificate.
fn tls12_only(pki: &Pki) -> TlsConnector {
    let opts = ClientOpts {
        tls12_only: true,
        ..ClientOpts::new(pki)
    };
    TlsConnector::from(opts.config())
}

/// The hellos of SSL 3.0, TLS 1.0 and TLS 1.1 (one version offered, no supported_versions)
/// get a protocol_version alert; an SSL 2.0-format hello is not TLS at all and is closed.
#[tokio::test]
async fn old_protocol_versions_are_refused() {
    let mut g = Guarded::start(false, |_| {});
    for version in [SSL3, TLS10, TLS11] {
        let before = g.refused();
        let hello = client_hello(Some(REDIS_SNI.as_bytes()), version, &[]);
        let got = raw_exchange(g.gw.addr, &hello, false).await;
        assert_eq!(
            plain_alert(&got),
            Some(PROTOCOL_VERSION),
            "{version:#06x}: {got:?}"
        );
        g.assert_refused(before, "handshake_failed").await;
    }
    // SSLv2-compatible ClientHello (msg_type 1, version 3.1, one cipher spec).
    let before = g.refused();
    let v2 = [
        0x80, 0x1c, 0x01, 0x03, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x2f, 0x5a,
        0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
    ];
    assert_eq!(raw_exchange(g.gw.addr, &v2, false).await, b"");
    g.assert_refused(before, "not_tls").await;
}

/// Real OpenSSL clients limited to TLS 1.0 / 1.1 (security level 0 so that OpenSSL 3 offers
/// them at all) get a fatal alert. This OpenSSL has no SSL 3.0 (`-ssl3` is not an option): the hand-made
/// SSL 3.0 hello above covers it.
#[tokio::test]
async fn openssl_tls1_and_tls1_1_clients_are_refused() {
    let mut g = Guarded::start(false, |_| {});
    for flag in ["-tls1", "-tls1_1"] {
        let before = g.refused();
        let args = [flag, "-cipher", "DEFAULT@SECLEVEL=0"];
        let (ok, out, err) = s_client(g.gw.addr, REDIS_SNI, &g.pki, &args, b"PING\r\n");
        assert!(!ok, "{flag} connected:\n{out}");
        // rustls refuses these hellos before it looks at versions: they carry no
        // signature_algorithms extension (TLS 1.0/1.1 have none), hence handshake_failure.
        assert!(
            err.contains("alert handshake failure") || err.contains("alert protocol version"),
            "{flag}: {err}"
        );
        assert!(!out.contains("PONG"), "{out}");
        g.assert_refused(before, "handshake_failed").await;
    }
}

/// `tls.min_version: "1.3"`: a TLS 1.2 client (rustls, OpenSSL, hand-made hello) gets
/// protocol_version; TLS 1.3 clients are served.
#[tokio::test]
async fn min_version_1_3_refuses_tls12_clients() {
    let mut g = Guarded::start(false, |c| c.tls.min_version = TlsVersion::Tls13);
    g.good_clients_work().await;

    let before = g.refused();
    let tcp = TcpStream::connect(g.gw.addr).await.unwrap();
    let name = ServerName::try_from(REDIS_SNI).unwrap();
    let err = tls12_only(&g.pki).connect(name, tcp).await.unwrap_err();
    assert_eq!(
        alert(&err),
        Some(AlertDescription::ProtocolVersion),
        "{err}"
    );
    g.assert_refused(before, "handshake_failed").await;

    let before = g.refused();
    let (ok, _, err) = s_client(g.gw.addr, REDIS_SNI, &g.pki, &["-tls1_2"], b"PING\r\n");
    assert!(!ok && err.contains("alert protocol version"), "{err}");
    g.assert_refused(before, "handshake_failed").await;

    let before = g.refused();
    let hello = client_hello(Some(REDIS_SNI.as_bytes()), TLS12, &[]);
    let got = raw_exchange(g.gw.addr, &hello, false).await;
    assert_eq!(plain_alert(&got), Some(PROTOCOL_VERSION), "{got:?}");
    g.assert_refused(before, "handshake_failed").await;
}

/// The default minimum is TLS 1.2: a TLS 1.2-only client is served.
#[tokio::test]
async fn tls12_is_served_by_default() {
    let mut g = Guarded::start(false, |_| {});
    let tcp = TcpStream::connect(g.gw.addr).await.unwrap();
    let name = ServerName::try_from(REDIS_SNI).unwrap();
    let mut tls = tls12_only(&g.pki).connect(name, tcp).await.unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let reply = resp_line(&mut tls, &["PING"]).await;
    assert_eq!(reply, "+PONG\r\n");
    g.redis_conns += 1;
    assert_eq!(g.redis.total_connections(), g.redis_conns);
}

/// 0-RTT is never offered: the TLS 1.3 session tickets the gateway issues allow no early
/// data, so a resuming OpenSSL client does not send any. (sslyze's own `--early_data` probe
/// sends an HTTP request after the handshake, which Redis answers by closing: sslyze then
/// reports a bug in itself, so it is not used here.)
#[test]
fn zero_rtt_is_never_offered() {
    let g = Guarded::start(false, |_| {});
    let sess = g.gw.dir.path().join("session.pem");
    let early = write(g.gw.dir.path(), "early.txt", "*1\r\n$4\r\nPING\r\n");
    let (sess, early) = (sess.display().to_string(), early.display().to_string());
    let (ok, out, err) = s_client(
        g.gw.addr,
        REDIS_SNI,
        &g.pki,
        &["-sess_out", &sess],
        b"QUIT\r\n",
    );
    assert!(ok && out.contains("New, TLSv1.3"), "{out}\n{err}");
    let mut cmd = Command::new("openssl");
    cmd.args(["sess_id", "-noout", "-text", "-in", &sess]);
    let text = texts(&run(&mut cmd, CMD)).0;
    assert!(text.contains("Max Early Data: 0"), "{text}");
    let args = ["-sess_in", &sess, "-early_data", &early];
    let (ok, out, err) = s_client(g.gw.addr, REDIS_SNI, &g.pki, &args, b"QUIT\r\n");
    assert!(ok && out.contains("Reused, TLSv1.3"), "{out}\n{err}");
    assert!(out.contains("Early data was not sent"), "{out}");
    assert!(!out.contains("PONG"), "early data reached Redis: {out}");
}

/// sslyze against a running gateway with mutual TLS (sslyze presents the client
/// certificate and trusts the private CA): Mozilla's intermediate profile passes, and the
/// scan's own results show the policy.
#[test]
fn sslyze_mozilla_intermediate_passes() {
    let g = Guarded::start(false, |_| {});
    let json = g.gw.dir.path().join("sslyze.json");
    let target = format!("{REDIS_SNI}:{}{{127.0.0.1}}", g.gw.port());
    let mut cmd = Command::new(python());
    cmd.args(["-m", "sslyze", "--mozilla_config=intermediate"]);
    cmd.arg("--certinfo_ca_file").arg(g.pki.ca());
    cmd.arg("--cert").arg(g.pki.client_cert());
    cmd.arg("--key").arg(g.pki.client_key());
    cmd.arg("--json_out").arg(&json).arg(&target);
    let out = run(&mut cmd, CMD);
    let (o, e) = texts(&out);
    assert!(
        !e.contains("No module named sslyze"),
        "sslyze is not installed in {}: run scripts/install-deps.sh",
        python().display()
    );
    assert!(out.status.success(), "sslyze failed:\n{o}\n{e}");
    assert!(o.contains("OK - Compliant"), "{o}\n{e}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let scan = &report["server_scan_results"][0]["scan_result"];
    let accepted = |version: &str| -> Vec<String> {
        let suites = &scan[format!("{version}_cipher_suites")]["result"]["accepted_cipher_suites"];
        suites
            .as_array()
            .unwrap_or_else(|| panic!("no {version} result in {scan}"))
            .iter()
            .map(|s| s["cipher_suite"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    for old in ["ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"] {
        assert_eq!(accepted(old), Vec::<String>::new(), "{old} accepted");
    }
    for current in ["tls_1_2", "tls_1_3"] {
        let suites = accepted(current);
        assert!(!suites.is_empty(), "{current} not accepted");
        for s in &suites {
            assert!(
                s.contains("_GCM_") || s.contains("CHACHA20_POLY1305"),
                "{s}"
            );
        }
    }
    let reneg = &scan["session_renegotiation"]["result"];
    assert_eq!(reneg["client_renegotiations_success_count"], 0, "{reneg}");
    assert_eq!(reneg["is_vulnerable_to_client_renegotiation_dos"], false);
    assert_eq!(
        scan["tls_compression"]["result"]["supports_compression"],
        false
    );
    g.assert_no_backend_connection();
    assert_sanitised(&g.gw.log());
    println!(
        "sslyze: {}",
        o.lines()
            .filter(|l| l.contains("Compliant"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// Between sidecar and gateway: TLS 1.3 with AES-128-GCM (the sidecar's first choice),
/// resumed from the second connection on; a tunnel with `session_resumption: false` does a
/// full handshake every time. The gateway's span says which, on the closing line.
#[tokio::test]
async fn sidecar_negotiates_aes_128_and_resumes_unless_told_not_to() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let gw = Gateway::start(&redis_gateway(&pki, redis.addr()));
    let mut full = tunnel("full", Protocol::Redis, gw.addr, REDIS_SNI);
    full.session_resumption = false;
    let resuming = tunnel("resuming", Protocol::Redis, gw.addr, REDIS_SNI);
    let sc = Sidecar::start(&sidecar(&pki, vec![resuming, full]));

    let order = ["resuming", "resuming", "resuming", "full", "full"];
    for (i, tunnel) in order.iter().enumerate() {
        let tcp = TcpStream::connect(sc.addr(tunnel)).await.unwrap();
        Resp::new(tcp).ping().await;
        gw.wait_lines("closed", i + 1);
    }
    let closed = gw.lines("closed");
    let tls = |l: &crate::support::logs::Line| {
        l.field("tls")
            .unwrap_or_else(|| panic!("no tls in {}", l.raw))
    };
    let seen: Vec<String> = closed.iter().map(tls).collect();
    let suite = "TLSv1_3/TLS13_AES_128_GCM_SHA256";
    let expected: Vec<String> = ["full", "resumed", "resumed", "full", "full"]
        .iter()
        .map(|kind| format!("{suite}/{kind}"))
        .collect();
    assert_eq!(seen, expected);
}

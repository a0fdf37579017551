//! The command line itself: `snigate certs` output, signals, log format.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::pki::{CLIENT_NAME, LOCKED_PG_SNI, LOCKED_SNI, PG_SNI, REDIS_SNI, TCP_SNI};
use support::*;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

/// (DNS SANs, subject CN) of the first certificate in a PEM file.
fn names(path: &Path) -> (Vec<String>, Option<String>) {
    let pem = fs::read(path).unwrap();
    let (_, pem) = parse_x509_pem(&pem).expect("PEM");
    let cert = pem.parse_x509().expect("X.509");
    let sans = match cert.subject_alternative_name().expect("SAN extension") {
        Some(ext) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(String::from);
    (sans, cn)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn certs_writes_the_dev_pki_with_the_requested_names() {
    let pki = Pki::new();
    let (server_sans, _) = names(&pki.server_cert());
    let want = [REDIS_SNI, PG_SNI, LOCKED_SNI, LOCKED_PG_SNI, TCP_SNI];
    assert_eq!(server_sans, want.map(String::from).to_vec());
    let (client_sans, client_cn) = names(&pki.client_cert());
    assert_eq!(client_sans, vec![CLIENT_NAME.to_owned()]);
    assert_eq!(client_cn.as_deref(), Some(CLIENT_NAME));
    for key in ["ca.key", "server.key", "client.key"] {
        assert_eq!(mode(&pki.path().join(key)), 0o600, "{key} mode");
    }
}

#[test]
fn certs_default_client_name_and_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["ca.crt", "ca.key", "client.crt", "client.key"] {
        fs::write(dir.path().join(f), "stale\n").unwrap();
        fs::set_permissions(dir.path().join(f), fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut cmd = Command::new(snigate_bin());
    cmd.args(["certs", "--server-name", "only.snigate.test", "--out"]);
    let out = run(cmd.arg(dir.path()), CMD);
    assert!(out.status.success(), "{:?}", texts(&out));
    let (sans, _) = names(&dir.path().join("server.crt"));
    assert_eq!(sans, vec!["only.snigate.test".to_owned()]);
    let (sans, cn) = names(&dir.path().join("client.crt"));
    assert_eq!(sans, vec!["worker.snigate.test".to_owned()]);
    assert_eq!(cn.as_deref(), Some("worker.snigate.test"));
    for key in ["ca.key", "client.key"] {
        let text = fs::read_to_string(dir.path().join(key)).unwrap();
        assert!(text.starts_with("-----BEGIN"), "{key} not overwritten");
        assert_eq!(
            mode(&dir.path().join(key)),
            0o600,
            "{key} mode after overwrite"
        );
    }
}

fn started_pair(pki: &Pki, redis: &RedisServer) -> (Gateway, Sidecar) {
    let gw = Gateway::start(
        pki,
        &[Route::new("redis", REDIS_SNI, "redis", redis.addr())],
    );
    let sc = Sidecar::start(pki, &[Tunnel::new("redis", "redis", gw.addr, REDIS_SNI)]);
    (gw, sc)
}

fn assert_stops_cleanly(proc: &mut support::snigate::Proc, port: u16, sig: libc::c_int) {
    let status = proc.guard().stop_with(sig, Duration::from_secs(15));
    assert_eq!(
        status.code(),
        Some(0),
        "exit after signal {sig}: {status}\n{}",
        proc.log()
    );
    let refused = std::net::TcpStream::connect(loopback(port)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn sigterm_and_sigint_exit_zero_and_stop_listening() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let (mut gw, mut sc) = started_pair(&pki, &redis);
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{}/", sc.port("redis")))
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(10))
            .unwrap();
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG");
        drop(con);
        let side_port = sc.port("redis");
        assert_stops_cleanly(&mut sc.proc, side_port, sig);
        let gw_port = gw.port();
        assert_stops_cleanly(&mut gw.proc, gw_port, sig);
    }
}

#[test]
fn logs_are_plain_text_without_colours_or_secrets() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    let (gw, sc) = started_pair(&pki, &redis);
    for log in [gw.proc.log(), sc.proc.log()] {
        assert!(
            !log.contains('\u{1b}'),
            "ANSI escape in a non-terminal log:\n{log}"
        );
        assert!(!log.contains("PRIVATE KEY"), "{log}");
        assert!(log.contains(" INFO "), "{log}");
    }
}

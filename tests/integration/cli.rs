//! The command line itself: `snigate certs` output, and the stop signals.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

use crate::support::clients::resp::Resp;
use crate::support::fixtures::redis_chain;
use crate::support::launch::command;
use crate::support::running::Process;
use crate::support::*;

/// (DNS SANs, subject CN) of the first certificate in a PEM file.
fn names_of(path: &Path) -> (Vec<String>, Option<String>) {
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
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command();
    cmd.args(["certs", "--out"]).arg(dir.path());
    let names = [REDIS_SNI, PG_SNI, LOCKED_SNI, LOCKED_PG_SNI, TCP_SNI];
    for name in names {
        cmd.args(["--server-name", name]);
    }
    let out = run(cmd.args(["--client-name", CLIENT_NAME]), CMD);
    assert!(out.status.success(), "{:?}", texts(&out));
    let (server_sans, _) = names_of(&dir.path().join("server.crt"));
    assert_eq!(server_sans, names.map(String::from).to_vec());
    let (client_sans, client_cn) = names_of(&dir.path().join("client.crt"));
    assert_eq!(client_sans, vec![CLIENT_NAME.to_owned()]);
    assert_eq!(client_cn.as_deref(), Some(CLIENT_NAME));
    for key in ["ca.key", "server.key", "client.key"] {
        assert_eq!(mode(&dir.path().join(key)), 0o600, "{key} mode");
    }
}

#[test]
fn certs_default_client_name_and_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["ca.crt", "ca.key", "client.crt", "client.key"] {
        fs::write(dir.path().join(f), "stale\n").unwrap();
        fs::set_permissions(dir.path().join(f), fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut cmd = command();
    cmd.args(["certs", "--server-name", "only.snigate.test", "--out"]);
    let out = run(cmd.arg(dir.path()), CMD);
    assert!(out.status.success(), "{:?}", texts(&out));
    let (sans, _) = names_of(&dir.path().join("server.crt"));
    assert_eq!(sans, vec!["only.snigate.test".to_owned()]);
    let (sans, cn) = names_of(&dir.path().join("client.crt"));
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

fn assert_stops_cleanly(proc: &mut Process, addr: std::net::SocketAddr, sig: libc::c_int) {
    let status = proc.stop(sig);
    let log = proc.log_text();
    assert_eq!(
        status.code(),
        Some(0),
        "exit after signal {sig}: {status}\n{log}"
    );
    let refused = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_exit_zero_and_stop_listening() {
    let (pki, redis) = (Pki::new(), RedisServer::start());
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let (mut gw, mut sc) = redis_chain(&pki, &redis, |_| {}, |_| {});
        let tunnel = sc.addr("redis");
        Resp::connect(tunnel).await.unwrap().ping().await;
        assert_stops_cleanly(&mut sc, tunnel, sig);
        let addr = gw.addr;
        assert_stops_cleanly(&mut gw, addr, sig);
    }
}

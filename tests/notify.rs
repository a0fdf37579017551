//! systemd's `Type=notify` protocol with a real `NOTIFY_SOCKET`: the sidecar says `READY=1`
//! only once its listener is bound and its gateway probe has passed, and `STOPPING=1` when
//! its drain starts.

mod support;

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};

use support::admin::try_http;
use support::pki::REDIS_SNI;
use support::snigate::{field, gateway_yaml, message, sidecar_yaml_with};
use support::*;

/// What the service manager's socket received next, within `READY`.
fn next_datagram(socket: &UnixDatagram) -> String {
    socket.set_nonblocking(false).unwrap();
    socket.set_read_timeout(Some(READY)).unwrap();
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the readiness bound");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn nothing_received(socket: &UnixDatagram) -> bool {
    socket.set_nonblocking(true).unwrap();
    let err = socket.recv(&mut [0u8; 512]).expect_err("no datagram yet");
    err.kind() == ErrorKind::WouldBlock
}

#[test]
fn sidecar_notifies_ready_after_its_probe_and_stopping_when_it_drains() {
    let pki = Pki::new();
    let redis = RedisServer::start();
    let gateway_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();

    // The gateway is not there yet: the sidecar binds, probes, and must stay silent.
    let tunnel = Tunnel::new("redis", "redis", loopback(gateway_port), REDIS_SNI);
    let opts = Opts::new().admin().timeout("probe_interval", "200ms");
    let config = dir.path().join("sidecar.yaml");
    fs::write(
        &config,
        sidecar_yaml_with(&pki.ca(), Some(&pki), &[tunnel], &opts),
    )
    .unwrap();
    let log_path = dir.path().join("sidecar.log");
    let child = Command::new(snigate_bin())
        .args(["sidecar", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut sidecar = ChildGuard::new(child, libc::SIGKILL);
    let log = || fs::read_to_string(&log_path).unwrap_or_default();
    let admin: std::net::SocketAddr = wait_for("the sidecar's admin endpoint", READY, || {
        let log = log();
        let line = log
            .lines()
            .find(|l| message(l).as_deref() == Some("admin listening"))?;
        field(line, "addr")?.parse().ok()
    });
    wait_for("a failed gateway probe in /readyz", READY, || {
        let reply = try_http(admin, "GET", "/readyz").ok()?;
        (reply.status == 503 && reply.body.contains("tunnel:redis: failing gateway")).then_some(())
    });
    assert!(log().contains("listening"), "{}", log());
    assert!(
        nothing_received(&socket),
        "READY before the gateway answered"
    );

    let gateway = Gateway::from_yaml(&gateway_yaml(
        &format!("127.0.0.1:{gateway_port}"),
        &pki,
        true,
        &[Route::new("redis", REDIS_SNI, "redis", redis.addr())],
    ));
    assert_eq!(next_datagram(&socket), "READY=1\nSTATUS=ready");
    assert_eq!(try_http(admin, "GET", "/readyz").unwrap().status, 200);

    let status = sidecar.stop_with(libc::SIGTERM, READY);
    assert_eq!(
        next_datagram(&socket),
        "STOPPING=1\nSTATUS=draining open connections"
    );
    assert_eq!(status.code(), Some(0), "{}", log());
    assert!(nothing_received(&socket), "more than READY and STOPPING");
    drop(gateway);
}

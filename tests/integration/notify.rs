//! systemd's `Type=notify` protocol with a real `NOTIFY_SOCKET`: the sidecar says `READY=1`
//! only once its listener is bound and its gateway probe has passed, and `STOPPING=1` when
//! its drain starts.

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;

use crate::support::config::ms;
use crate::support::sockets::DeadPort;
use crate::support::*;

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
    let gateway_port = DeadPort::new();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();

    // The gateway is not there yet: the sidecar binds, probes, and must stay silent.
    let mut config = redis_sidecar(&pki, gateway_port.addr);
    config.timeouts.probe_interval = ms(200);
    let notify = socket_path.display().to_string();
    let mut sc = Launch::default()
        .env("NOTIFY_SOCKET", notify)
        .sidecar(&config);
    sc.wait_readyz(503, &["tunnel:redis: failing gateway"]);
    assert!(
        nothing_received(&socket),
        "READY before the gateway answered"
    );

    let mut config = redis_gateway(&pki, redis.addr());
    config.listen = gateway_port.release();
    let gateway = Gateway::start(&config);
    assert_eq!(next_datagram(&socket), "READY=1\nSTATUS=ready");
    assert_eq!(sc.get("/readyz").status, 200);

    let status = sc.stop(libc::SIGTERM);
    let stopping = "STOPPING=1\nSTATUS=draining open connections";
    assert_eq!(next_datagram(&socket), stopping);
    assert_eq!(status.code(), Some(0), "{}", sc.log_text());
    assert!(nothing_received(&socket), "more than READY and STOPPING");
    drop(gateway);
}

//! systemd's readiness protocol (`sd_notify`) for `Type=notify` units: one datagram tells the
//! service manager the process is ready (listeners bound, far side probed), another that it has
//! started to drain.
//!
//! Written here rather than taken from a crate: the protocol is one `sendto` of `KEY=VALUE`
//! lines to the unix datagram socket named by `NOTIFY_SOCKET` (a path, or `@name` in the
//! abstract namespace), which the standard library does in a few lines with no dependency.
//! Without `NOTIFY_SOCKET` (not under systemd) nothing is sent.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::admin::Health;

/// How often readiness is checked until it is first reached.
const READY_POLL: Duration = Duration::from_millis(100);

/// Where state changes are sent: the service manager's socket, if there is one.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// The socket named by `NOTIFY_SOCKET`; does nothing when it is unset.
    pub fn from_env() -> Notifier {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(value) => Notifier::to(&value),
            None => Notifier { target: None },
        }
    }

    /// The socket named by a `NOTIFY_SOCKET` value; an address that cannot be used is logged
    /// once and ignored, since readiness reporting must never stop the service itself.
    pub fn to(value: &OsStr) -> Notifier {
        let target = address(value).and_then(|addr| Ok((UnixDatagram::unbound()?, addr)));
        match target {
            Ok(target) => Notifier {
                target: Some(target),
            },
            Err(e) => {
                tracing::warn!(socket = ?value, error = %e, "NOTIFY_SOCKET unusable; not notifying systemd");
                Notifier { target: None }
            }
        }
    }

    /// Whether there is anyone to tell.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated `KEY=VALUE` pairs) in one datagram.
    pub fn send(&self, state: &str) {
        if let Some((socket, addr)) = &self.target {
            match socket.send_to_addr(state.as_bytes(), addr) {
                Ok(_) => tracing::debug!(state, "notified systemd"),
                Err(e) => tracing::warn!(error = %e, "cannot notify systemd"),
            }
        }
    }
}

fn address(value: &OsStr) -> std::io::Result<SocketAddr> {
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(value),
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither an absolute path nor an @abstract name",
        )),
    }
}

/// Tells the service manager `READY=1` once `health` is first ready (listeners bound and,
/// on the sidecar, every tunnel's gateway probe passed), and `STOPPING=1` when `drain` is
/// cancelled (accepting has stopped; open connections are finishing).
pub async fn follow(notifier: Notifier, health: Arc<Health>, drain: CancellationToken) {
    if !notifier.enabled() {
        return;
    }
    loop {
        if health.readiness().0 {
            notifier.send("READY=1\nSTATUS=ready");
            break;
        }
        tokio::select! {
            _ = drain.cancelled() => break,
            _ = tokio::time::sleep(READY_POLL) => {}
        }
    }
    drain.cancelled().await;
    notifier.send("STOPPING=1\nSTATUS=draining open connections");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn datagrams_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        Notifier::to(path.as_os_str()).send("READY=1");
        assert_eq!(received(&listener), "READY=1");

        let name = format!("snigate-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::to(OsStr::new(&format!("@{name}"))).send("STOPPING=1");
        assert_eq!(received(&listener), "STOPPING=1");
    }

    #[test]
    fn unusable_addresses_notify_nobody() {
        for value in ["", "relative/notify.sock", "vsock:2:1234"] {
            assert!(!Notifier::to(OsStr::new(value)).enabled(), "{value}");
        }
        // A socket nobody listens on: sending fails quietly.
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone.sock");
        let notifier = Notifier::to(gone.as_os_str());
        assert!(notifier.enabled());
        notifier.send("READY=1");
    }
}

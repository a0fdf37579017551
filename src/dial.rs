//! Outbound TCP and the socket options both legs of every connection get.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use crate::config::HostPort;

/// Keepalive probes find peers that vanished (a node gone, a NAT entry dropped) on idle
/// tunnels. They do not reset HAProxy's `timeout tunnel`: see the README on long-lived
/// connections.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEPALIVE_RETRIES: u32 = 3;

/// Connects to `addr` (resolved now) within `deadline`, and tunes the socket.
pub async fn dial(addr: &HostPort, deadline: Duration) -> io::Result<TcpStream> {
    let attempt = TcpStream::connect((addr.host.as_str(), addr.port));
    let stream = tokio::time::timeout(deadline, attempt)
        .await
        .map_err(|_| timed_out(deadline))??;
    tune(&stream);
    Ok(stream)
}

/// TCP_NODELAY, because request/reply protocols (one Redis command, one reply) must not wait
/// for Nagle; keepalive, because tunnels may idle for hours. Set on a listening socket, the
/// options are inherited by every connection it accepts (Linux copies them at accept), which
/// saves four setsockopt calls per accepted connection.
pub fn tune(socket: &impl AsFd) {
    let socket = SockRef::from(socket);
    let _ = socket.set_tcp_nodelay(true);
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    let _ = socket.set_tcp_keepalive(&keepalive);
}

/// The error of a deadline that passed.
pub fn timed_out(after: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no answer within {after:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// The listener is tuned once; what it accepts must come out tuned too.
    #[tokio::test]
    async fn accepted_sockets_inherit_the_listeners_options() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        tune(&listener);
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
        assert!(SockRef::from(&accepted).keepalive().unwrap());
    }
}

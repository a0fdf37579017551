//! Outbound TCP: resolve at connect time, bounded by a deadline, TCP_NODELAY set.

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::HostPort;

pub async fn dial(addr: &HostPort, deadline: Duration) -> io::Result<TcpStream> {
    let attempt = TcpStream::connect((addr.host.as_str(), addr.port));
    let stream = tokio::time::timeout(deadline, attempt)
        .await
        .map_err(|_| timed_out(deadline))??;
    // Latency-bound protocols (one Redis command, one reply) need every write sent now.
    stream.set_nodelay(true)?;
    Ok(stream)
}

pub fn timed_out(after: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no answer within {after:?}"),
    )
}

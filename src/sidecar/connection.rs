//! One local client through the sidecar, as a sequence of named steps.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::Instrument;

use super::failure::Failure;
use super::{Sidecar, Tunnel};
use crate::closing;
use crate::config::Protocol;
use crate::conversation::Conversation;
use crate::listener::Accepted;
use crate::metrics::{Metrics, OpenGuard};
use crate::protocol::postgres::{self, PacketError};
use crate::relay::relay;
use crate::shutdown::Serving;

/// Room for a client's first write (a Redis command, HELLO, AUTH).
const FIRST_WRITE: usize = 16 * 1024;

/// Serves one local client of tunnel `name`, leaving one log line and its metrics.
pub async fn handle(sidecar: Arc<Sidecar>, name: String, conn: Accepted, serving: Serving) {
    let span = tracing::info_span!("conn", id = conn.id, peer = %conn.peer, tunnel = %name);
    async move {
        let started = Instant::now();
        // A tunnel removed by a reload after this connection was accepted: nothing to serve.
        let Some(tunnel) = sidecar.snapshot().tunnels.get(&name).cloned() else {
            return;
        };
        let _open = OpenGuard::new(&sidecar.metrics, &name);
        if let Err(failure) = serve(&sidecar, &tunnel, conn.stream, started, &serving).await {
            closing::record_refused(&sidecar.metrics, Some(&name), started, &failure);
        }
    }
    .instrument(span)
    .await;
}

async fn serve(
    sidecar: &Sidecar,
    tunnel: &Tunnel,
    mut local: TcpStream,
    started: Instant,
    serving: &Serving,
) -> Result<(), Failure> {
    let first = first_bytes(tunnel, &mut local, serving).await?;
    let connect_started = Instant::now();
    let obtained = tunnel
        .obtain(&first, &serving.handshakes, &sidecar.metrics)
        .await;
    let gateway = match obtained {
        Ok(gateway) => gateway,
        Err(failure) => return Err(refuse(tunnel, local, &first, failure).await),
    };
    let label = Metrics::route(&tunnel.name);
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    sidecar
        .metrics
        .connect_seconds
        .get_or_create(&label)
        .observe(connect_seconds);
    let mut conversation = Conversation::new(tunnel.protocol);
    conversation.client_sent(&first);
    let sent = first.len() as u64;
    drop(first);
    let mut outcome = relay(local, gateway, conversation, serving.stops()).await;
    outcome.from_client += sent;
    closing::record_relayed(&sidecar.metrics, &tunnel.name, started, &outcome);
    Ok(())
}

/// What the client sends before a gateway connection is taken: its first write for Redis,
/// its startup packet for PostgreSQL, nothing for `tcp` (the server speaks first), so a
/// client that connects and leaves costs the gateway nothing.
async fn first_bytes(
    tunnel: &Tunnel,
    local: &mut TcpStream,
    serving: &Serving,
) -> Result<Vec<u8>, Failure> {
    match tunnel.protocol {
        Protocol::Postgres => Ok(postgres_preamble(tunnel, local).await?.bytes().to_vec()),
        Protocol::Redis => first_write(local, serving).await,
        Protocol::Tcp => Ok(Vec::new()),
    }
}

/// Waits as long as the client likes (a pool may connect long before its first command);
/// the buffer is taken only once there is something to read.
async fn first_write(local: &mut TcpStream, serving: &Serving) -> Result<Vec<u8>, Failure> {
    loop {
        tokio::select! {
            readable = local.readable() => readable.map_err(|_| Failure::Silent)?,
            _ = serving.drain.cancelled() => return Err(Failure::Drained),
        }
        let mut first = Vec::with_capacity(FIRST_WRITE);
        match local.try_read_buf(&mut first) {
            Ok(0) => return Err(Failure::Silent),
            Ok(_) => return Ok(first),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return Err(Failure::Silent),
        }
    }
}

/// Answers SSLRequest and GSSENCRequest with `N`: the local leg is loopback plaintext and the
/// tunnel already encrypts, so the client goes on unencrypted (libpq's sslmode=prefer default).
async fn postgres_preamble(
    tunnel: &Tunnel,
    local: &mut TcpStream,
) -> Result<postgres::Packet, Failure> {
    let deadline = tunnel.timeouts.handshake;
    let negotiate = async {
        // A client that connects and closes (a port check) is not a malformed preamble.
        if local.peek(&mut [0u8; 1]).await.map_err(PacketError::from)? == 0 {
            return Err(Failure::Silent);
        }
        loop {
            match postgres::read_packet(local).await? {
                postgres::Packet::SslRequest | postgres::Packet::GssEncRequest => {
                    local.write_all(b"N").await.map_err(PacketError::from)?;
                }
                packet => return Ok::<_, Failure>(packet),
            }
        }
    };
    tokio::time::timeout(deadline, negotiate)
        .await
        .map_err(|_| Failure::PreambleTimeout(deadline))?
}

/// Tells the client why, in its protocol; a connection lost after START is just closed, as
/// any connection that dies (its bytes may have arrived; the client decides what to retry).
async fn refuse(
    tunnel: &Tunnel,
    mut local: TcpStream,
    greeting: &[u8],
    failure: Failure,
) -> Failure {
    if matches!(failure, Failure::Lost { .. }) {
        return failure;
    }
    let deadline = tunnel.timeouts.handshake;
    closing::tell_client(
        tunnel.protocol,
        &tunnel.name,
        &mut local,
        greeting,
        &failure,
        deadline,
    )
    .await;
    failure
}

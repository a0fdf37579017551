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
use crate::listener::Accepted;
use crate::metrics::{Metrics, OpenGuard};
use crate::protocol::postgres::{self, PacketError};
use crate::relay::relay;
use crate::shutdown::Serving;

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
    let first = match tunnel.protocol {
        Protocol::Postgres => Some(postgres_preamble(tunnel, &mut local).await?),
        _ => None,
    };
    let greeting = first.as_ref().map_or(&[][..], postgres::Packet::bytes);
    let connect_started = Instant::now();
    let slot = serving.handshakes.acquire().await;
    // Boxed so that the handshake's state is freed once it is done rather than sized into
    // the future that lives as long as the connection.
    let connected = Box::pin(tunnel.connect()).await;
    drop(slot);
    let mut gateway = match connected {
        Ok(gateway) => gateway,
        Err(failure) => return Err(refuse(tunnel, local, greeting, failure).await),
    };
    let label = Metrics::route(&tunnel.name);
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    sidecar
        .metrics
        .connect_seconds
        .get_or_create(&label)
        .observe(connect_seconds);
    gateway
        .write_all(greeting)
        .await
        .map_err(Failure::Forward)?;
    let mut outcome = relay(local, gateway, &serving.force).await;
    outcome.from_client += greeting.len() as u64;
    closing::log_relayed(started, &outcome);
    let lasted = started.elapsed();
    sidecar.metrics.record_relayed(
        &tunnel.name,
        outcome.from_client,
        outcome.from_backend,
        lasted,
    );
    Ok(())
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

async fn refuse(
    tunnel: &Tunnel,
    mut local: TcpStream,
    greeting: &[u8],
    failure: Failure,
) -> Failure {
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

//! One local client through the sidecar, as a sequence of named steps.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tracing::Instrument;

use super::failure::Failure;
use super::Tunnel;
use crate::closing;
use crate::config::Protocol;
use crate::listener::Accepted;
use crate::protocol;
use crate::protocol::postgres::{self, PacketError};
use crate::relay::relay;

pub async fn handle(tunnel: Arc<Tunnel>, conn: Accepted) {
    let span = tracing::info_span!("conn", id = conn.id, peer = %conn.peer, tunnel = %tunnel.name);
    async move {
        let started = Instant::now();
        if let Err(failure) = serve(&tunnel, conn.stream, started).await {
            closing::log_refused(started, &failure);
        }
    }
    .instrument(span)
    .await;
}

async fn serve(tunnel: &Tunnel, mut local: TcpStream, started: Instant) -> Result<(), Failure> {
    let first = match tunnel.protocol {
        Protocol::Postgres => Some(postgres_preamble(tunnel, &mut local).await?),
        _ => None,
    };
    let mut gateway = match tunnel.connect().await {
        Ok(gateway) => gateway,
        Err(failure) => return refuse(tunnel, local, first, failure).await,
    };
    if let Some(packet) = &first {
        forward(&mut gateway, packet).await?;
    }
    let outcome = relay(local, gateway).await;
    closing::log_relayed(started, &outcome);
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
        loop {
            match postgres::read_packet(local).await? {
                postgres::Packet::SslRequest | postgres::Packet::GssEncRequest => {
                    local.write_all(b"N").await.map_err(PacketError::from)?;
                }
                packet => return Ok(packet),
            }
        }
    };
    tokio::time::timeout(deadline, negotiate)
        .await
        .map_err(|_| Failure::PreambleTimeout(deadline))?
}

async fn forward(
    gateway: &mut TlsStream<TcpStream>,
    packet: &postgres::Packet,
) -> Result<(), Failure> {
    let bytes = match packet {
        postgres::Packet::Startup(bytes) | postgres::Packet::Cancel(bytes) => bytes,
        postgres::Packet::SslRequest | postgres::Packet::GssEncRequest => return Ok(()),
    };
    gateway.write_all(bytes).await.map_err(Failure::Forward)
}

async fn refuse(
    tunnel: &Tunnel,
    mut local: TcpStream,
    first: Option<postgres::Packet>,
    failure: Failure,
) -> Result<(), Failure> {
    let message = format!("snigate: {}: {}", tunnel.name, failure);
    let reply = protocol::refuse(tunnel.protocol, &mut local, first, &message);
    let _ = tokio::time::timeout(tunnel.timeouts.handshake, reply).await;
    Err(failure)
}

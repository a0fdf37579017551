//! From an accepted TCP connection to a TLS stream on the route its SNI names: the optional
//! PostgreSQL preamble, then the ClientHello, then the rest of the handshake.

use std::sync::Arc;

use rustls::server::Acceptor;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::LazyConfigAcceptor;

use super::refusal::Refusal;
use super::routing::{Miss, Route, RouteTable};
use crate::buffer::Lent;
use crate::protocol::postgres::{self, Packet};
use crate::tls::ServerStream;

/// First byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// A fatal `unrecognized_name` alert, sent in the clear before any handshake keys exist.
const ALERT_UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];
/// libpq sends at most a GSSENCRequest and then an SSLRequest before the ClientHello.
const MAX_PREAMBLES: usize = 2;

/// `slots` caps the handshakes doing cryptography at once. A slot is taken only once a whole
/// ClientHello has arrived: clients that trickle bytes (slowloris) hold no slot, only their
/// deadline, so they cannot make real clients wait.
pub async fn accept(
    mut tcp: TcpStream,
    routes: &RouteTable,
    slots: &Semaphore,
) -> Result<(Arc<Route>, Box<ServerStream>), Refusal> {
    let via_ssl_request = preamble(&mut tcp).await?;
    let start = LazyConfigAcceptor::new(Acceptor::default(), Lent::new(tcp))
        .await
        .map_err(Refusal::Handshake)?;
    let route = match routes.lookup(start.client_hello().server_name()) {
        Ok(route) => route,
        Err(miss) => {
            let mut tcp = start.io;
            let _ = tcp.write_all(&ALERT_UNRECOGNIZED_NAME).await;
            return Err(match miss {
                Miss::NoSni => Refusal::NoSni,
                Miss::Unknown(name) => Refusal::UnknownSni(name),
            });
        }
    };
    if via_ssl_request && route.protocol != crate::config::Protocol::Postgres {
        return Err(Refusal::NotPostgres(route.name.clone()));
    }
    let config = route.tls.for_client(start.client_hello().alpn());
    let _slot = slots.acquire().await;
    let tls = start
        .into_stream(config)
        .await
        .map_err(Refusal::Handshake)?;
    // Boxed: the stream (1.2 KiB) lives as long as the connection, and each step it passes
    // through would otherwise hold its own copy in the connection's future.
    Ok((route, Box::new(tls)))
}

/// Handles what may come before a ClientHello. Returns whether the client used SSLRequest.
async fn preamble(tcp: &mut TcpStream) -> Result<bool, Refusal> {
    for _ in 0..MAX_PREAMBLES {
        let first = peek_first(tcp).await?;
        if first == TLS_HANDSHAKE {
            return Ok(false);
        }
        if !postgres::may_start_packet(first) {
            return Err(Refusal::NotTls(first));
        }
        match postgres::read_packet(tcp).await? {
            Packet::SslRequest => {
                if pipelined(tcp) {
                    return Err(Refusal::Pipelined);
                }
                write(tcp, b"S").await?;
                return Ok(true);
            }
            Packet::GssEncRequest => write(tcp, b"N").await?,
            Packet::Cancel(request) => return Err(Refusal::PlaintextCancel(request)),
            startup @ Packet::Startup(_) => {
                let message = "snigate: this port requires TLS: use sslmode=require, \
                               sslnegotiation=direct, or the snigate sidecar";
                let _ = postgres::refuse(tcp, startup.bytes(), message).await;
                return Err(Refusal::Plaintext("StartupMessage"));
            }
        }
    }
    Err(Refusal::Plaintext("GSSENCRequest after GSSENCRequest"))
}

async fn peek_first(tcp: &mut TcpStream) -> Result<u8, Refusal> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) => Err(Refusal::Silent),
        Ok(_) => Ok(first[0]),
        Err(e) => Err(Refusal::Handshake(e)),
    }
}

/// Anything already readable after the SSLRequest was sent before our `S`, so it was never
/// protected by TLS and must not reach the handshake, let alone the backend.
fn pipelined(tcp: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(tcp.try_read(&mut probe), Ok(n) if n > 0)
}

async fn write(tcp: &mut TcpStream, bytes: &[u8]) -> Result<(), Refusal> {
    tcp.write_all(bytes).await.map_err(Refusal::Handshake)
}

//! Every way a sidecar connection can end before (or instead of) relaying.

use std::io;
use std::time::Duration;

use crate::config::HostPort;
use crate::error::{Classified, Side};
use crate::protocol::postgres::PacketError;

/// Why the sidecar did not relay a local client's connection.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("client closed before sending anything")]
    Silent,
    #[error("malformed PostgreSQL preamble from the local client: {0}")]
    Preamble(#[from] PacketError),
    #[error("the local client sent no startup packet within {0:?}")]
    PreambleTimeout(Duration),
    #[error("gateway {addr} unreachable: {source}")]
    Unreachable { addr: HostPort, source: io::Error },
    #[error("TLS handshake with gateway {addr} failed: {source}")]
    Handshake { addr: HostPort, source: io::Error },
    #[error("could not forward the startup packet to the gateway: {0}")]
    Forward(io::Error),
}

impl Classified for Failure {
    fn side(&self) -> Side {
        match self {
            Failure::Silent | Failure::Preamble(_) | Failure::PreambleTimeout(_) => Side::Client,
            _ => Side::Backend,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Failure::Silent => "silent",
            Failure::Preamble(_) => "bad_preamble",
            Failure::PreambleTimeout(_) => "preamble_timeout",
            Failure::Unreachable { .. } => "gateway_unreachable",
            Failure::Handshake { .. } => "gateway_handshake_failed",
            Failure::Forward(_) => "gateway_write_failed",
        }
    }

    /// The gateway down or restarting (refused connections, EOF or reset mid-handshake,
    /// timeouts) passes; a certificate or name that does not verify, or a gateway alert
    /// refusing us (rustls reports both as InvalidData), does not.
    fn transient(&self) -> bool {
        match self {
            Failure::Handshake { source, .. } => source.kind() != io::ErrorKind::InvalidData,
            Failure::Unreachable { .. } => true,
            _ => false,
        }
    }
}

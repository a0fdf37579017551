//! Every way a sidecar connection can end before (or instead of) relaying.

use std::io;
use std::time::Duration;

use crate::config::HostPort;
use crate::error::{Classified, Side};
use crate::protocol::postgres::PacketError;

use super::proxy::ProxyError;

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
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("TLS handshake with gateway {addr} failed: {source}")]
    Handshake { addr: HostPort, source: io::Error },
    #[error("could not send to gateway {addr}: {source}")]
    Unsent { addr: HostPort, source: io::Error },
    #[error("gateway {addr} is stopping and took nothing")]
    GoAway { addr: HostPort },
    #[error("connection to gateway {addr} lost after the client's first bytes: {source}")]
    Lost { addr: HostPort, source: io::Error },
    #[error("stopping: closed before the client sent anything")]
    Drained,
}

impl Classified for Failure {
    fn side(&self) -> Side {
        match self {
            Failure::Silent | Failure::Preamble(_) | Failure::PreambleTimeout(_) => Side::Client,
            Failure::Drained => Side::Local,
            _ => Side::Backend,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Failure::Silent => "silent",
            Failure::Preamble(_) => "bad_preamble",
            Failure::PreambleTimeout(_) => "preamble_timeout",
            Failure::Unreachable { .. } => "gateway_unreachable",
            Failure::Proxy(error) => error.reason(),
            Failure::Handshake { .. } => "gateway_handshake_failed",
            Failure::Unsent { .. } => "gateway_write_failed",
            Failure::GoAway { .. } => "gateway_going_away",
            Failure::Lost { .. } => "gateway_lost",
            Failure::Drained => "drained",
        }
    }

    /// The gateway down or restarting (refused connections, EOF or reset mid-handshake,
    /// timeouts, GOAWAY, a write that failed) passes, and the client waits while it is
    /// retried; a certificate or name that does not verify, or a gateway alert refusing us
    /// (rustls reports both as InvalidData), does not. Nor does a connection lost after
    /// START: the client's bytes may have reached the backend, so they are not sent again.
    /// An egress proxy's failures are classified by [`ProxyError::transient`].
    fn transient(&self) -> bool {
        match self {
            Failure::Proxy(error) => error.transient(),
            Failure::Handshake { source, .. } => source.kind() != io::ErrorKind::InvalidData,
            Failure::Unreachable { .. } | Failure::Unsent { .. } | Failure::GoAway { .. } => true,
            _ => false,
        }
    }
}

//! Every way a gateway connection can end before (or instead of) relaying.

use std::io;
use std::time::Duration;

use crate::config::HostPort;
use crate::error::{Classified, Side};
use crate::login::LoginError;
use crate::protocol::postgres::PacketError;

/// Why the gateway did not relay a connection.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("client closed before sending anything")]
    Silent,
    #[error("closed by the drain before the client sent anything")]
    Drained,
    #[error("not TLS: the first byte is {0:#04x}")]
    NotTls(u8),
    #[error("bytes were pipelined after the SSLRequest (CVE-2021-23222)")]
    Pipelined,
    #[error("plaintext PostgreSQL {0}: TLS is required")]
    Plaintext(&'static str),
    #[error("malformed PostgreSQL preamble: {0}")]
    Preamble(#[from] PacketError),
    #[error("no SNI in the ClientHello")]
    NoSni,
    #[error("no route for SNI \"{0}\"")]
    UnknownSni(String),
    #[error("SSLRequest client asked for route {0}, which is not a postgres route")]
    NotPostgres(String),
    #[error("handshake not finished within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
    #[error("client identity {0} is not in the route's allow list")]
    NotAllowed(String),
    #[error("a snigate/1 connection began with {0:#04x}, not START")]
    BadStart(u8),
    #[error("route at its limit of {0} connections")]
    RouteFull(usize),
    #[error("backend {addr} unreachable: {source} (tried for {:.1}s)", tried.as_secs_f64())]
    Backend {
        addr: HostPort,
        source: io::Error,
        /// How long the dial was retried.
        tried: Duration,
    },
    #[error(transparent)]
    Login(#[from] LoginError),
    /// libpq ≤ 16 cancels in plaintext: no SNI, so only the key says where it goes.
    #[error("plaintext PostgreSQL CancelRequest with a key no open login connection here issued")]
    PlaintextCancel(Vec<u8>),
}

impl Classified for Refusal {
    fn side(&self) -> Side {
        match self {
            Refusal::Backend { .. } => Side::Backend,
            Refusal::Login(e) if !e.by_client() => Side::Backend,
            Refusal::Drained => Side::Local,
            _ => Side::Client,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Refusal::Silent => "silent",
            Refusal::Drained => "drained",
            Refusal::NotTls(_) => "not_tls",
            Refusal::Pipelined => "pipelined_after_sslrequest",
            Refusal::Plaintext(_) => "plaintext_postgres",
            Refusal::Preamble(_) => "bad_preamble",
            Refusal::NoSni => "no_sni",
            Refusal::UnknownSni(_) => "unknown_sni",
            Refusal::NotPostgres(_) => "sslrequest_not_postgres",
            Refusal::HandshakeTimeout(_) => "handshake_timeout",
            Refusal::Handshake(e) => {
                crate::tls::reason::certificate_reason(e).unwrap_or("handshake_failed")
            }
            Refusal::NotAllowed(_) => "identity_not_allowed",
            Refusal::BadStart(_) => "bad_start",
            Refusal::RouteFull(_) => "route_full",
            Refusal::Backend { .. } => "backend_unreachable",
            Refusal::Login(e) => e.reason(),
            Refusal::PlaintextCancel(_) => "plaintext_cancel",
        }
    }

    fn transient(&self) -> bool {
        match self {
            Refusal::Login(e) => e.transient(),
            other => matches!(other, Refusal::Backend { .. } | Refusal::RouteFull(_)),
        }
    }

    fn client_message(&self) -> String {
        match self {
            Refusal::NotAllowed(_) => "client identity not allowed".to_owned(),
            other => other.to_string(),
        }
    }
}

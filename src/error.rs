//! How every connection-level error is classified, on both roles: which side caused it, a
//! stable reason, whether retrying may help, and what the client is told. One trait feeds the
//! `refused` log line, the refusal metrics and the client's native error reply.

use std::fmt;

/// Who is responsible for an error or a close, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The peer that connected to us (a worker, or the sidecar as the gateway sees it).
    Client,
    /// What we connect to (Redis/PostgreSQL for the gateway, the gateway for the sidecar).
    Backend,
    /// snigate itself: shutdown, local resources.
    Local,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Backend => "backend",
            Side::Local => "local",
        })
    }
}

/// Implemented by each role's connection error (the gateway's `Refusal`, the sidecar's
/// `Failure`).
pub trait Classified: std::error::Error {
    /// Who caused it.
    fn side(&self) -> Side;
    /// A short, stable, snake_case reason usable as a metric label.
    fn reason(&self) -> &'static str;
    /// Whether the same client may succeed by retrying later (the far side or capacity will
    /// come back), as opposed to being refused for who it is or what it sent. Decides the
    /// Redis reply code (`LOADING` or `ERR`) a client sees.
    fn transient(&self) -> bool;
    /// What the client itself is told, after `snigate: <route>: `; the full error by default.
    fn client_message(&self) -> String {
        self.to_string()
    }
}

//! What every connection-level error is classified by: which side caused it.

use std::fmt;

/// Who is responsible for an error or a close, for logs and (later) metrics.
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

/// Implemented by each domain's connection error so the close log can say who and why.
pub trait Classified {
    fn side(&self) -> Side;
    /// A short, stable, snake_case reason usable as a metric label.
    fn reason(&self) -> &'static str;
}

//! How a connection ends: the one structured line each connection leaves, and for a refused
//! one the native error its client is told and the metric it counts in. Shared by both roles.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Protocol;
use crate::error::{Classified, Side};
use crate::metrics::Metrics;
use crate::protocol;
use crate::relay::Outcome;

/// After a relay: bytes each way, duration, who closed, and why if it was an error.
pub fn log_relayed(started: Instant, outcome: &Outcome) {
    let why = match &outcome.error {
        None if outcome.closed_by == Side::Local => "drain grace period over".to_owned(),
        None => "eof".to_owned(),
        // Many clients (redis-cli, libpq) close without close_notify; that is an ordinary close.
        Some(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "eof without close_notify".to_owned()
        }
        Some(e) => e.to_string(),
    };
    tracing::info!(
        bytes_from_client = outcome.from_client,
        bytes_from_backend = outcome.from_backend,
        duration_ms = started.elapsed().as_millis() as u64,
        closed_by = %outcome.closed_by,
        why = %why,
        "closed"
    );
}

/// A connection that never reached the relay: one `refused` line, and one count in
/// `refusals_total` (a route or tunnel was chosen) or `handshake_failures_total` (none was).
pub fn record_refused<E: Classified>(
    metrics: &Metrics,
    route: Option<&str>,
    started: Instant,
    error: &E,
) {
    tracing::info!(
        side = %error.side(),
        reason = %error.reason(),
        error = %error,
        duration_ms = started.elapsed().as_millis() as u64,
        "refused"
    );
    let label = Metrics::reason(route.unwrap_or(""), error.reason());
    match route {
        Some(_) => metrics.refusals.get_or_create(&label).inc(),
        None => metrics.handshake_failures.get_or_create(&label).inc(),
    };
}

/// Tells the client, in its protocol, why it is not served: `snigate: <name>: <message>`.
/// `greeting` is what was already read from the client. Bounded by `deadline` so a client
/// that never sends its first command cannot hold the connection.
pub async fn tell_client<S, E>(
    protocol: Protocol,
    name: &str,
    stream: &mut S,
    greeting: &[u8],
    error: &E,
    deadline: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    E: Classified,
{
    let message = format!("snigate: {name}: {}", error.client_message());
    let reply = protocol::refuse(protocol, stream, greeting, &message, error.transient());
    let _ = tokio::time::timeout(deadline, reply).await;
}

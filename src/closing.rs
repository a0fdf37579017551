//! The one structured line each connection leaves when it ends.

use std::fmt::Display;
use std::time::Instant;

use crate::error::{Classified, Side};
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

/// A connection that never reached the relay: refused, or the far side could not be reached.
pub fn log_refused<E: Classified + Display>(started: Instant, error: &E) {
    tracing::info!(
        side = %error.side(),
        reason = %error.reason(),
        error = %error,
        duration_ms = started.elapsed().as_millis() as u64,
        "refused"
    );
}

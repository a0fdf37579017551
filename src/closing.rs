//! How a connection ends: the one structured line each connection leaves, and for a refused
//! one the native error its client is told and the metric it counts in. Shared by both roles.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Protocol;
use crate::error::Classified;
use crate::metrics::Metrics;
use crate::protocol;
use crate::relay::{Ending, Outcome};

/// After a relay: its one `closed` line (bytes each way, duration, who closed, why) and its
/// metrics, including a count in `drain_cut_total` when the drain budget cut it.
pub fn record_relayed(metrics: &Metrics, name: &str, started: Instant, outcome: &Outcome) {
    let why = match (&outcome.error, outcome.ending) {
        (_, Ending::AtRest) => "drained at rest".to_owned(),
        (_, Ending::Cut(activity)) => format!("drain budget over; cut while busy: {activity}"),
        (None, Ending::Peers) => "eof".to_owned(),
        // Many clients (redis-cli, libpq) close without close_notify; that is an ordinary close.
        (Some(e), _) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "eof without close_notify".to_owned()
        }
        (Some(e), _) => e.to_string(),
    };
    let lasted = started.elapsed();
    tracing::info!(
        bytes_from_client = outcome.from_client,
        bytes_from_backend = outcome.from_backend,
        duration_ms = lasted.as_millis() as u64,
        closed_by = %outcome.closed_by,
        why = %why,
        "closed"
    );
    metrics.record_relayed(name, outcome.from_client, outcome.from_backend, lasted);
    if let Ending::Cut(_) = outcome.ending {
        metrics.drain_cut.get_or_create(&Metrics::route(name)).inc();
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Side;
    use crate::relay::Ending;

    fn outcome(ending: Ending) -> Outcome {
        Outcome {
            from_client: 10,
            from_backend: 20,
            closed_by: Side::Local,
            error: None,
            ending,
        }
    }

    #[test]
    fn a_connection_cut_by_the_drain_budget_is_counted_and_one_drained_at_rest_is_not() {
        let metrics = Metrics::new("gateway");
        let started = Instant::now();
        record_relayed(&metrics, "pg", started, &outcome(Ending::AtRest));
        record_relayed(
            &metrics,
            "pg",
            started,
            &outcome(Ending::Cut("a transaction open")),
        );
        record_relayed(&metrics, "pg", started, &outcome(Ending::Peers));
        let text = metrics.encode();
        assert!(
            text.contains("snigate_drain_cut_total{route=\"pg\"} 1\n"),
            "{text}"
        );
    }
}

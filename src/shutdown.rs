//! Stopping: SIGTERM, SIGINT or `/quitquitquit` turns readiness off, keeps accepting for the
//! configured delay, stops accepting and starts the drain: each connection is closed at its
//! first safe point (its conversation at rest), and whatever is still open when the drain
//! period ends is cut.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Health;
use crate::config::{Limits, Timeouts};
use crate::relay::Stops;

/// The process-wide controls every accept loop and connection hangs off.
#[derive(Clone)]
pub struct Serving {
    /// Cancelled to stop accepting.
    pub accept: CancellationToken,
    /// Cancelled when the process stops accepting: each connection closes at its next safe
    /// point (a relay whose conversation is at rest, a warm connection before START, a client
    /// that has sent nothing: at once).
    pub drain: CancellationToken,
    /// Cancelled to close connections still open when the drain period ends.
    pub force: CancellationToken,
    /// Every connection task, so a stop can wait for them.
    pub tracker: TaskTracker,
    /// The accept loops, so a stop can wait until every listening socket is closed.
    pub listeners: TaskTracker,
    /// One permit per open connection.
    pub connections: Arc<Semaphore>,
    /// One permit per TLS handshake in progress.
    pub handshakes: Arc<Semaphore>,
}

impl Serving {
    /// Fresh controls with the configured limits.
    pub fn new(limits: Limits) -> Serving {
        Serving {
            accept: CancellationToken::new(),
            drain: CancellationToken::new(),
            force: CancellationToken::new(),
            tracker: TaskTracker::new(),
            listeners: TaskTracker::new(),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            handshakes: Arc::new(Semaphore::new(limits.max_handshakes)),
        }
    }

    /// The drain's signals, for a relay.
    pub fn stops(&self) -> Stops<'_> {
        Stops {
            drain: &self.drain,
            force: &self.force,
        }
    }
}

/// Cancels `token` on the first SIGTERM or SIGINT.
pub fn cancel_on_signal(token: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = token.cancelled() => return,
        };
        tracing::info!(signal = name, "stop requested");
        token.cancel();
    });
    Ok(())
}

/// Runs the stop sequence once `requested` is cancelled; returns when the process may exit.
pub async fn stop_when(
    requested: CancellationToken,
    health: &Health,
    timeouts: Timeouts,
    serving: Serving,
) {
    requested.cancelled().await;
    health.set_draining();
    if !timeouts.shutdown_delay.is_zero() {
        tracing::info!(delay = ?timeouts.shutdown_delay, "still accepting while the delay runs");
        tokio::time::sleep(timeouts.shutdown_delay).await;
    }
    serving.accept.cancel();
    serving.drain.cancel();
    serving.listeners.close();
    serving.listeners.wait().await;
    serving.tracker.close();
    let open = serving.tracker.len();
    tracing::info!(open, grace = ?timeouts.drain, "no longer accepting; draining");
    if tokio::time::timeout(timeouts.drain, serving.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = serving.tracker.len(),
            "drain period over; cutting the connections still busy"
        );
        serving.force.cancel();
        // Relays end at once when forced; the bound only guards against a stuck peer write.
        let _ = tokio::time::timeout(Duration::from_secs(5), serving.tracker.wait()).await;
    }
    tracing::info!("stopped");
}

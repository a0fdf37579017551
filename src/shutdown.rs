//! Signals and drain: SIGTERM or SIGINT stops the accept loops; open connections get a grace
//! period to finish before the process exits.

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long open connections may keep going after a stop signal.
pub const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// Cancels `token` on the first SIGTERM or SIGINT.
pub fn cancel_on_signal(token: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stopping: no new connections");
        token.cancel();
    });
    Ok(())
}

/// Waits for the tracked connections to finish, at most `grace`; true when all finished.
pub async fn drain(tracker: TaskTracker, grace: Duration) -> bool {
    tracker.close();
    let open = tracker.len();
    let finished = tokio::time::timeout(grace, tracker.wait()).await.is_ok();
    if !finished {
        tracing::warn!(
            open,
            ?grace,
            "grace period over; closing the remaining connections"
        );
    }
    finished
}

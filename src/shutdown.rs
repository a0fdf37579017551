//! Stopping: SIGTERM, SIGINT or `/quitquitquit` turns readiness off, keeps accepting for the
//! configured delay, then starts the drain: each connection is closed at its first safe point
//! (its conversation at rest), and whatever is still open when the drain period ends is cut.
//! The gateway stops accepting as the drain starts (the router has other replicas); the
//! sidecar keeps accepting until the connections open at that moment are done (see
//! [`WhileDraining`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Health;
use crate::config::{Limits, Timeouts};
use crate::relay::Stops;

/// Whether a role's listeners stay open while its connections drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhileDraining {
    /// The gateway: readiness is off and the router sends new clients to other replicas.
    StopAccepting,
    /// The sidecar: it is the pod's only way out, and a client whose idle connection the drain
    /// closes needs a new one at once to finish what it was doing. kombu, say, records a
    /// message it has just popped (BRPOP's reply) in its unacked hash on a second connection:
    /// refused, that message is lost. Connections accepted during the drain are drained in
    /// their turn once the listeners close.
    KeepAccepting,
}

/// How long the sidecar still accepts after the connections open at its drain's start are done.
const FOLLOW_UP: Duration = Duration::from_millis(250);

/// A drain generation: the connections it tracks and the signal that drains them.
#[derive(Clone, Default)]
struct Generation {
    tracker: TaskTracker,
    drain: CancellationToken,
}

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
    /// Connections accepted once the drain has started.
    late: Generation,
    while_draining: WhileDraining,
}

impl Serving {
    /// Fresh controls with the configured limits.
    pub fn new(limits: Limits, while_draining: WhileDraining) -> Serving {
        Serving {
            accept: CancellationToken::new(),
            drain: CancellationToken::new(),
            force: CancellationToken::new(),
            tracker: TaskTracker::new(),
            listeners: TaskTracker::new(),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            handshakes: Arc::new(Semaphore::new(limits.max_handshakes)),
            late: Generation::default(),
            while_draining,
        }
    }

    /// Runs a new connection's task, handing it the controls of its generation: one accepted
    /// after the drain started is tracked and drained with the late ones.
    pub fn spawn<T, F>(&self, task: T)
    where
        T: FnOnce(Serving) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let serving = if self.drain.is_cancelled() {
            Serving {
                tracker: self.late.tracker.clone(),
                drain: self.late.drain.clone(),
                ..self.clone()
            }
        } else {
            self.clone()
        };
        let tracker = serving.tracker.clone();
        tracker.spawn(task(serving));
    }

    async fn stop_accepting(&self) {
        self.accept.cancel();
        self.listeners.close();
        self.listeners.wait().await;
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
    let deadline = Instant::now() + timeouts.drain;
    let keep_accepting = serving.while_draining == WhileDraining::KeepAccepting;
    serving.drain.cancel();
    serving.tracker.close();
    let mut done = true;
    if keep_accepting {
        let open = serving.tracker.len();
        tracing::info!(open, grace = ?timeouts.drain, "draining; still accepting until these are done");
        done = within(deadline, &serving.tracker).await;
        // The last of them may have just forwarded a reply whose client follows it up on a new
        // connection (kombu's unacked write after BRPOP), within milliseconds.
        let follow_up = tokio::time::sleep(FOLLOW_UP);
        let _ = tokio::time::timeout_at(deadline, follow_up).await;
    }
    serving.stop_accepting().await;
    serving.late.drain.cancel();
    serving.late.tracker.close();
    let open = serving.tracker.len() + serving.late.tracker.len();
    tracing::info!(open, grace = ?timeouts.drain, "no longer accepting; draining");
    done = done && within(deadline, &serving.tracker).await;
    done = done && within(deadline, &serving.late.tracker).await;
    if !done {
        tracing::warn!(
            open = serving.tracker.len() + serving.late.tracker.len(),
            "drain period over; cutting the connections still busy"
        );
        serving.force.cancel();
        // Relays end at once when forced; the bound only guards against a stuck peer write.
        let both = async {
            serving.tracker.wait().await;
            serving.late.tracker.wait().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), both).await;
    }
    tracing::info!("stopped");
}

/// Whether every task of `tracker` ended before `deadline`.
async fn within(deadline: Instant, tracker: &TaskTracker) -> bool {
    tokio::time::timeout_at(deadline, tracker.wait())
        .await
        .is_ok()
}

//! Warm connections: per tunnel, `warm` TLS connections to the gateway kept established and
//! idle, so a new client's first bytes leave at once instead of after a TCP and a TLS round
//! trip. One task per tunnel owns them: it watches each for GOAWAY or a close while idle,
//! hands the oldest to a client that asks, replaces used ones at once, retires them at
//! `warm_max_age`, and re-dials with backoff while the gateway is away.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dialer::Dialer;
use super::start::Fresh;
use crate::config::{Protocol, TunnelConfig};
use crate::metrics::{Metrics, RouteLabel};
use crate::protocol::snigate::GOAWAY;
use crate::retry::Backoff;

/// Longest pause between dials while the gateway is away: no client waits on these.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// A client asking for a connection; dropped unanswered when none is ready.
type Request = oneshot::Sender<Fresh>;

/// One tunnel's warm connections, as its clients see them.
pub struct Pool {
    settings: Settings,
    requests: OnceLock<mpsc::Sender<Request>>,
    /// Stops the keeper when the tunnel goes (a reload replaced it).
    gone: CancellationToken,
}

#[derive(Clone)]
struct Settings {
    label: RouteLabel,
    size: usize,
    max_age: Duration,
    /// A `tcp` backend speaks first: a warm connection to a gateway without `snigate/1`
    /// would make it dial the backend at once, so none are kept against such a gateway.
    needs_start: bool,
}

impl Pool {
    /// The pool `config` asks for; it keeps nothing until [`Pool::start`].
    pub fn new(config: &TunnelConfig) -> Pool {
        Pool {
            settings: Settings {
                label: Metrics::route(&config.name),
                size: config.warm,
                max_age: config.warm_max_age,
                needs_start: config.protocol == Protocol::Tcp,
            },
            requests: OnceLock::new(),
            gone: CancellationToken::new(),
        }
    }

    /// Starts keeping connections (once); they are closed when `drain` is cancelled.
    pub fn start(&self, dialer: Arc<Dialer>, metrics: Arc<Metrics>, drain: CancellationToken) {
        if self.settings.size == 0 || self.requests.get().is_some() {
            return;
        }
        let (send, receive) = mpsc::channel(16);
        if self.requests.set(send).is_ok() {
            let keeper = Keeper {
                settings: self.settings.clone(),
                dialer,
                metrics,
                idle: VecDeque::new(),
                backoff: Backoff::new(MAX_PAUSE),
                not_before: Instant::now(),
                framed_seen: false,
            };
            tokio::spawn(keeper.run(receive, self.gone.clone(), drain));
        }
    }

    /// A ready connection, if there is one; `None` at once otherwise.
    pub async fn take(&self) -> Option<Fresh> {
        let requests = self.requests.get()?;
        let (ask, answer) = oneshot::channel();
        requests.send(ask).await.ok()?;
        answer.await.ok()
    }

    /// Closes the ready connections and keeps no more.
    pub fn stop(&self) {
        self.gone.cancel();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A ready connection and when it was established.
struct Idle {
    fresh: Fresh,
    since: Instant,
}

/// The task that owns one tunnel's idle connections.
struct Keeper {
    settings: Settings,
    dialer: Arc<Dialer>,
    metrics: Arc<Metrics>,
    idle: VecDeque<Idle>,
    backoff: Backoff,
    /// No new dial before this: the gateway failed or dropped a connection recently.
    not_before: Instant,
    /// The gateway has selected `snigate/1` since this keeper started.
    framed_seen: bool,
}

impl Keeper {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        gone: CancellationToken,
        drain: CancellationToken,
    ) {
        let mut dialing = JoinSet::new();
        let ready = (self.metrics.warm.ready)
            .get_or_create(&self.settings.label)
            .clone();
        loop {
            self.top_up(&mut dialing);
            ready.set(self.idle.len() as i64);
            let wake = self.next_wake();
            tokio::select! {
                _ = gone.cancelled() => break,
                _ = drain.cancelled() => break,
                request = requests.recv() => match request {
                    Some(ask) => self.hand_over(ask),
                    None => break,
                },
                (index, why) = closed_while_idle(&mut self.idle) => {
                    self.idle.remove(index);
                    self.discarded(why);
                }
                Some(dialled) = dialing.join_next() => match dialled {
                    Ok(Ok(fresh)) => self.keep(fresh),
                    Ok(Err(failure)) => self.dial_failed(&failure),
                    Err(_) => self.dial_failed(&"the dial task ended early"),
                },
                _ = tokio::time::sleep_until(wake) => self.retire_aged(),
            }
        }
        ready.set(0);
    }

    /// Dials until ready and dialling connections make the pool's size, unless pausing. A
    /// tunnel that needs START finds out with one connection whether the gateway speaks it.
    fn top_up(&self, dialing: &mut JoinSet<Result<Fresh, super::Failure>>) {
        if Instant::now() < self.not_before {
            return;
        }
        let size = match self.settings.needs_start && !self.framed_seen {
            true => 1,
            false => self.settings.size,
        };
        while self.idle.len() + dialing.len() < size {
            let dialer = self.dialer.clone();
            dialing.spawn(async move { dialer.dial().await });
        }
    }

    /// When something is due: the oldest connection's retirement, or the end of a pause.
    fn next_wake(&self) -> Instant {
        let retire = self
            .idle
            .front()
            .map(|oldest| oldest.since + self.settings.max_age);
        let far = Instant::now() + self.settings.max_age;
        let resume = Some(self.not_before).filter(|at| *at > Instant::now());
        [retire, resume].into_iter().flatten().min().unwrap_or(far)
    }

    /// The oldest ready connection to the client who asked; used ones are replaced at once.
    /// Each is checked first for a close that arrived since the keeper last looked.
    fn hand_over(&mut self, ask: Request) {
        while let Some(mut idle) = self.idle.pop_front() {
            let mut now = Context::from_waker(Waker::noop());
            if let Poll::Ready(why) = poll_closed(&mut idle.fresh, &mut now) {
                self.discarded(why);
                continue;
            }
            match ask.send(idle.fresh) {
                Ok(()) => {
                    self.metrics
                        .warm
                        .hits
                        .get_or_create(&self.settings.label)
                        .inc();
                    self.backoff.reset();
                    self.not_before = Instant::now();
                }
                // The client went away meanwhile: the connection is as good as before.
                Err(fresh) => self.idle.push_front(Idle {
                    fresh,
                    since: idle.since,
                }),
            }
            return;
        }
        self.metrics
            .warm
            .misses
            .get_or_create(&self.settings.label)
            .inc();
    }

    fn keep(&mut self, fresh: Fresh) {
        self.framed_seen |= fresh.framed;
        if self.settings.needs_start && !fresh.framed {
            tracing::info!(
                tunnel = %self.settings.label.route,
                "the gateway does not speak snigate/1: no warm connections for this tcp \
                 tunnel (each would open a backend connection); trying again later"
            );
            self.not_before = Instant::now() + self.settings.max_age;
            return;
        }
        self.idle.push_back(Idle {
            fresh,
            since: Instant::now(),
        });
    }

    fn retire_aged(&mut self) {
        let now = Instant::now();
        while let Some(oldest) = self.idle.front() {
            if oldest.since + self.settings.max_age > now {
                break;
            }
            self.idle.pop_front();
            self.count_discarded("aged");
            self.backoff.reset();
        }
    }

    fn discarded(&mut self, why: &'static str) {
        tracing::debug!(tunnel = %self.settings.label.route, why, "warm connection discarded");
        self.count_discarded(why);
        self.pause();
    }

    fn dial_failed(&mut self, failure: &dyn std::fmt::Display) {
        tracing::debug!(
            tunnel = %self.settings.label.route,
            error = %failure,
            "warm connection: dial failed"
        );
        self.pause();
    }

    fn pause(&mut self) {
        self.not_before = Instant::now() + self.backoff.pause();
    }

    fn count_discarded(&self, reason: &str) {
        let label = Metrics::reason(&self.settings.label.route, reason);
        self.metrics.warm.discarded.get_or_create(&label).inc();
    }
}

/// Resolves when an idle connection is read from: GOAWAY, a close, an error, or (never
/// expected before START) any other byte. Pending forever while there is none.
async fn closed_while_idle(idle: &mut VecDeque<Idle>) -> (usize, &'static str) {
    poll_fn(|cx| {
        let mut entries = idle.iter_mut().enumerate();
        entries
            .find_map(|(index, entry)| match poll_closed(&mut entry.fresh, cx) {
                Poll::Ready(why) => Some((index, why)),
                Poll::Pending => None,
            })
            .map_or(Poll::Pending, Poll::Ready)
    })
    .await
}

/// Ready with the reason once the gateway has said or done anything on an idle connection.
fn poll_closed(fresh: &mut Fresh, cx: &mut Context<'_>) -> Poll<&'static str> {
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    match Pin::new(&mut *fresh.stream).poll_read(cx, &mut buf) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(Ok(())) if buf.filled() == [GOAWAY] => Poll::Ready("goaway"),
        Poll::Ready(_) => Poll::Ready("closed"),
    }
}

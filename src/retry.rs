//! Retrying the far side while a new client waits: a gateway or backend that is restarting
//! refuses or drops connections for a second or two, and a client should not see that.
//! Both roles use it: the sidecar towards the gateway, the gateway towards its backends.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// First pause after a failed attempt; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between attempts: a far side that comes back is used within a second.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Runs `attempt` until it succeeds, fails for good (`retryable` says no), or `budget` has
/// passed since the first attempt; returns the last result. Pauses grow exponentially with
/// jitter, so sidecars that lost the same gateway do not come back in lockstep.
pub async fn within<T, E, F, Fut>(
    budget: Duration,
    mut attempt: F,
    retryable: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + budget;
    let mut backoff = Backoff::new(MAX_PAUSE);
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let wait = backoff.pause();
        if !retryable(&error) || Instant::now() + wait >= deadline {
            return Err(error);
        }
        tracing::debug!(
            pause_ms = wait.as_millis() as u64,
            "far side unavailable; retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

/// Pauses between attempts: from [`FIRST_PAUSE`], doubling up to a maximum, each between
/// half and all of its nominal length.
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at [`FIRST_PAUSE`] and grows to `max`.
    pub fn new(max: Duration) -> Backoff {
        Backoff {
            next: FIRST_PAUSE,
            max,
        }
    }

    /// The pause to make now; the next one is twice as long.
    pub fn pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(self.max);
        pause.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// Back to the first pause: the far side has proved itself again.
    pub fn reset(&mut self) {
        self.next = FIRST_PAUSE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_within_the_budget() {
        let tries = Cell::new(0);
        let result = within(
            Duration::from_secs(5),
            || {
                tries.set(tries.get() + 1);
                let n = tries.get();
                async move {
                    if n < 4 {
                        Err(n)
                    } else {
                        Ok(n)
                    }
                }
            },
            |_| true,
        )
        .await;
        assert_eq!(result, Ok(4));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_once_on_a_lasting_failure_and_after_the_budget_otherwise() {
        let tries = Cell::new(0);
        let attempt = || {
            tries.set(tries.get() + 1);
            async { Err::<(), _>("refused") }
        };
        assert_eq!(
            within(Duration::from_secs(5), attempt, |_| false).await,
            Err("refused")
        );
        assert_eq!(tries.get(), 1);
        let started = Instant::now();
        let attempt = || {
            tries.set(tries.get() + 1);
            async { Err::<(), _>("refused") }
        };
        assert!(within(Duration::from_secs(5), attempt, |_| true)
            .await
            .is_err());
        assert!(started.elapsed() <= Duration::from_secs(5));
        assert!(
            tries.get() > 5,
            "retried with growing pauses: {}",
            tries.get()
        );
    }
}

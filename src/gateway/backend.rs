//! The backend connection, retried within `timeouts.retry` while the backend restarts: a
//! refused, reset or timed-out dial, and for PostgreSQL a session refused with SQLSTATE
//! 57P03 ("the database system is starting up" or "shutting down"), which a fast restart
//! answers for a moment on each side of the gap where nothing listens. Nothing a client asked
//! for has been done at either point, so the client simply waits a little longer.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::refusal::Refusal;
use super::routing::Route;
use crate::config::{Protocol, Timeouts};
use crate::dial::{dial, timed_out};
use crate::protocol::postgres;
use crate::retry;

/// Room for a PostgreSQL server's first answer (an authentication request, or an error).
const ANSWER_CAPACITY: usize = 1024;

/// A backend connection ready for the login or the relay.
pub struct Connected {
    /// The connection.
    pub stream: TcpStream,
    /// How many of the client's first bytes were already sent on it (its StartupMessage).
    pub sent: usize,
    /// What the backend already answered, to be passed to the client before relaying.
    pub answer: Vec<u8>,
}

/// Why one attempt did not give a backend that accepts the session.
enum Failed {
    Dial(io::Error),
    /// PostgreSQL is restarting; its refusal is what the client gets if it lasts.
    NotYet(Connected),
}

impl Failed {
    fn describe(&self) -> String {
        match self {
            Failed::Dial(error) => error.to_string(),
            Failed::NotYet(_) => "not accepting sessions yet (SQLSTATE 57P03)".to_owned(),
        }
    }
}

/// Connects to the route's backend; for a PostgreSQL StartupMessage (no login route), also
/// sends it and reads the first answer, to retry a session the backend refuses while it
/// restarts.
pub async fn connect(
    route: &Route,
    greeting: &[u8],
    timeouts: &Timeouts,
) -> Result<Connected, Refusal> {
    let started = Instant::now();
    // A login route's StartupMessage is the login's to send (with its own role).
    let startup = route.protocol == Protocol::Postgres
        && route.login.is_none()
        && postgres::is_startup(greeting);
    let attempt = || async {
        let stream = dial(&route.backend, timeouts.connect)
            .await
            .map_err(Failed::Dial)?;
        if !startup {
            return Ok(Connected {
                stream,
                sent: 0,
                answer: Vec::new(),
            });
        }
        start_session(stream, greeting, timeouts.connect).await
    };
    // One line per client kept waiting, so an operator sees who waits for which backend.
    let told = AtomicBool::new(timeouts.retry.is_zero());
    let retryable = |failed: &Failed| {
        let retry = retryable(failed);
        if retry && !told.swap(true, Ordering::Relaxed) {
            tracing::info!(backend = %route.backend, error = %failed.describe(), budget = ?timeouts.retry, "backend unavailable; retrying");
        }
        retry
    };
    match retry::within(timeouts.retry, attempt, retryable).await {
        Ok(connected) | Err(Failed::NotYet(connected)) => Ok(connected),
        Err(Failed::Dial(source)) => Err(Refusal::Backend {
            addr: route.backend.clone(),
            source,
            tried: started.elapsed(),
        }),
    }
}

/// Sends the StartupMessage and reads the first answer within `deadline`.
async fn start_session(
    mut stream: TcpStream,
    startup: &[u8],
    deadline: Duration,
) -> Result<Connected, Failed> {
    let exchange = async {
        stream.write_all(startup).await?;
        let mut answer = Vec::with_capacity(ANSWER_CAPACITY);
        match stream.read_buf(&mut answer).await? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(answer),
        }
    };
    let answer = match tokio::time::timeout(deadline, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => return Err(Failed::Dial(error)),
        Err(_) => return Err(Failed::Dial(timed_out(deadline))),
    };
    let not_yet = postgres::cannot_connect_now(&answer);
    let connected = Connected {
        stream,
        sent: startup.len(),
        answer,
    };
    if not_yet {
        Err(Failed::NotYet(connected))
    } else {
        Ok(connected)
    }
}

/// Failures a restarting backend causes; anything else (a name that does not resolve, no
/// route to the host) is answered at once.
fn retryable(failed: &Failed) -> bool {
    match failed {
        Failed::NotYet(_) => true,
        Failed::Dial(error) => matches!(
            error.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::TimedOut
        ),
    }
}

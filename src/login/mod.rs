//! The gateway logs in to the backend for its clients (a route's `login:`): the client
//! certificate is the only credential a worker holds. PostgreSQL: the gateway answers the
//! client's StartupMessage after doing the authentication exchange itself. Redis: the
//! connection is authenticated before the client's first command, and the client's own AUTH
//! and HELLO … AUTH are rewritten to the gateway's credentials.

mod backend;
pub mod cancel;
mod password;
mod pg_auth;
mod postgres;
mod probe;
mod redis;
mod redis_commands;
mod redis_inline;
mod redis_policy;
mod redis_replies;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::{HostPort, Invalid, LoginConfig, Protocol, Timeouts};
use crate::dial::dial;
use crate::tls::ServerStream;
pub use backend::Backend;
pub use cancel::{CancelKeys, Issued};
pub use password::{Password, PasswordError};
pub use probe::probe;

/// A route's login: who, and the password read from its file.
#[derive(Debug)]
pub struct Login {
    /// PostgreSQL role or Redis ACL user; `None`: Redis' `default` user.
    pub user: Option<String>,
    password: Password,
    /// The password the file held before its last change: tried when the current one is
    /// refused, so a rotation that updates the Secret before the role loses no client.
    previous: Option<Password>,
}

impl Login {
    /// Reads the password file of `routes[route].login`; `old` is the same route's login in
    /// the running config, whose password becomes the previous one if the file changed.
    pub fn load(route: usize, config: &LoginConfig, old: Option<&Login>) -> Result<Login, Invalid> {
        let password = Password::read(&config.password_file).map_err(|e| {
            Invalid::new(
                format!("routes[{route}].login.password_file"),
                e.to_string(),
                "mount the Secret holding the backend password at this path",
            )
        })?;
        let previous = match old {
            Some(old) if old.password != password => Some(old.password.clone()),
            Some(old) => old.previous.clone(),
            None => None,
        };
        Ok(Login {
            user: config.user.clone(),
            password,
            previous,
        })
    }

    /// The passwords to try, current first.
    fn passwords(&self) -> impl Iterator<Item = &Password> {
        std::iter::once(&self.password).chain(self.previous.as_ref())
    }
}

/// Why the gateway could not log in for a client.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The backend's own error message (never the password, which it does not know to say).
    #[error("backend refused the gateway's login: {message}")]
    Refused {
        message: String,
        /// The password was wrong (PostgreSQL 28P01, Redis WRONGPASS): maybe mid-rotation.
        wrong_password: bool,
    },
    #[error("backend asked for {0}, which the gateway cannot do")]
    Unsupported(String),
    #[error("backend {addr} failed during the gateway's login: {source}")]
    Backend { addr: HostPort, source: io::Error },
    #[error("backend did not finish the gateway's login within {0:?}")]
    Timeout(Duration),
    #[error("malformed startup packet: {0}")]
    Client(String),
    #[error("client connection failed during the login: {0}")]
    ClientGone(io::Error),
}

impl LoginError {
    /// A stable snake_case reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            LoginError::Refused { .. } => "backend_refused_login",
            LoginError::Unsupported(_) => "login_unsupported",
            LoginError::Backend { .. } | LoginError::Timeout(_) => "login_failed",
            LoginError::Client(_) => "bad_startup",
            LoginError::ClientGone(_) => "client_gone",
        }
    }

    /// Whether the client caused it (the rest is the backend's side).
    pub fn by_client(&self) -> bool {
        matches!(self, LoginError::Client(_) | LoginError::ClientGone(_))
    }

    /// Whether the client may succeed later without anyone changing anything.
    pub fn transient(&self) -> bool {
        matches!(self, LoginError::Backend { .. } | LoginError::Timeout(_))
    }

    fn wrong_password(&self) -> bool {
        matches!(
            self,
            LoginError::Refused {
                wrong_password: true,
                ..
            }
        )
    }
}

/// What a login needs to know about its route and the gateway.
pub struct Target<'a> {
    /// The route's name, in what clients are told.
    pub route: &'a str,
    /// The route's protocol.
    pub protocol: Protocol,
    /// Where the route's backend is.
    pub backend: &'a HostPort,
    /// The running config's deadlines.
    pub timeouts: Timeouts,
    /// Where PostgreSQL cancel keys are remembered.
    pub cancels: &'a Arc<CancelKeys>,
    /// The route's login in the newest config, read again while a refused login is retried.
    pub newest: &'a (dyn Fn() -> Option<Arc<Login>> + Send + Sync),
}

impl Target<'_> {
    async fn dial(&self) -> Result<TcpStream, LoginError> {
        dial(self.backend, self.timeouts.connect)
            .await
            .map_err(|e| self.failed(e))
    }

    fn failed(&self, source: io::Error) -> LoginError {
        LoginError::Backend {
            addr: self.backend.clone(),
            source,
        }
    }
}

/// A backend connection logged in for a client.
pub struct LoggedIn {
    /// What the relay talks to.
    pub backend: Backend,
    /// The cancel key the server issued, known while this is kept.
    pub issued: Option<Issued>,
    /// How many bytes of the greeting the login consumed; the rest goes to `backend`.
    pub consumed: usize,
}

/// Logs in on `backend` for the client on `tls`. `greeting` holds the client's first bytes
/// and is extended with what else the login reads from the client.
pub async fn log_in(
    target: &Target<'_>,
    login: &Arc<Login>,
    tls: &mut ServerStream,
    backend: TcpStream,
    greeting: &mut Vec<u8>,
) -> Result<LoggedIn, LoginError> {
    let logged_in = match target.protocol {
        Protocol::Postgres => postgres::log_in(target, login, tls, backend, greeting).await?,
        Protocol::Redis | Protocol::Tcp => LoggedIn {
            backend: Backend::Redis(Box::new(redis::log_in(target, login, backend).await?)),
            issued: None,
            consumed: 0,
        },
    };
    let user = login.user.as_deref().unwrap_or("default");
    tracing::debug!(user, "the gateway logged in to the backend for the client");
    Ok(logged_in)
}

/// Runs `attempt` with the current password, then the previous one, on a new backend
/// connection each (the first on `first`). While every password is refused as wrong, tries
/// again with the newest config's login within `timeouts.retry`: a password rotation is in
/// progress, and the Secret or the role will catch up.
async fn with_passwords<T, F, Fut>(
    target: &Target<'_>,
    login: &Arc<Login>,
    first: TcpStream,
    attempt: F,
) -> Result<T, LoginError>
where
    F: Fn(TcpStream, Password) -> Fut,
    Fut: Future<Output = Result<T, LoginError>>,
{
    let mut first = Some(first);
    let attempt = &attempt;
    let round = move || {
        let login = (target.newest)().unwrap_or_else(|| login.clone());
        let conn = first.take();
        async move {
            let stream = match conn {
                Some(stream) => stream,
                None => target.dial().await?,
            };
            let outcome = attempt(stream, login.password.clone()).await;
            match (&outcome, &login.previous) {
                (Err(e), Some(previous)) if e.wrong_password() => {
                    let outcome = attempt(target.dial().await?, previous.clone()).await;
                    if outcome.is_ok() {
                        tracing::warn!(
                            "the backend refused the current password of this route's login; \
                             logged in with the one before it (a rotation in progress, or a \
                             wrong password file)"
                        );
                    }
                    outcome
                }
                _ => outcome,
            }
        }
    };
    crate::retry::within(target.timeouts.retry, round, LoginError::wrong_password).await
}

/// Bounds one login exchange with the backend by `timeouts.handshake`.
async fn bounded<T>(
    target: &Target<'_>,
    exchange: impl Future<Output = Result<T, LoginError>>,
) -> Result<T, LoginError> {
    let deadline = target.timeouts.handshake;
    tokio::time::timeout(deadline, exchange)
        .await
        .unwrap_or(Err(LoginError::Timeout(deadline)))
}

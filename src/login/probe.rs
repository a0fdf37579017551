//! The background probe of a login route: the gateway logs in the way it does for clients
//! (current password, then the previous one), so `/readyz` and `login_up` say whether it can.

use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;

use super::pg_auth::{authenticate, Conn};
use super::{redis, Login, LoginError, Password};
use crate::config::{HostPort, Protocol};
use crate::dial::dial;

/// Logs in to `backend` as `login` within `deadline`, then leaves. A PostgreSQL probe asks
/// for no database, so the server picks the one named like the role; AuthenticationOk is
/// the success, whatever the database step says next.
pub async fn probe(
    protocol: Protocol,
    backend: &HostPort,
    login: &Login,
    deadline: Duration,
) -> Result<(), LoginError> {
    let attempts = async {
        let mut result = Ok(());
        for password in login.passwords() {
            result = once(protocol, backend, login, password, deadline).await;
            if result.is_ok() {
                break;
            }
        }
        result
    };
    tokio::time::timeout(deadline, attempts)
        .await
        .unwrap_or(Err(LoginError::Timeout(deadline)))
}

async fn once(
    protocol: Protocol,
    backend: &HostPort,
    login: &Login,
    password: &Password,
    deadline: Duration,
) -> Result<(), LoginError> {
    let failed = |source| LoginError::Backend {
        addr: backend.clone(),
        source,
    };
    let mut tcp = dial(backend, deadline).await.map_err(failed)?;
    let user = login.user.as_deref();
    match protocol {
        Protocol::Postgres => {
            let user = user.unwrap_or_default();
            let mut startup = BytesMut::new();
            let params = [("user", user), ("application_name", "snigate-login-probe")];
            frontend::startup_message(params, &mut startup).map_err(failed)?;
            let mut conn = Conn::new(tcp);
            authenticate(&mut conn, &startup, user, password)
                .await
                .map_err(|e| e.into_login(failed))?;
            let mut terminate = BytesMut::new();
            frontend::terminate(&mut terminate);
            let _ = conn.tcp.write_all(&terminate).await;
            Ok(())
        }
        Protocol::Redis => redis::authenticate(&mut tcp, user, password)
            .await
            .map_err(failed)?,
        Protocol::Tcp => Err(LoginError::Unsupported("a login on a tcp route".into())),
    }
}

//! A route's `login:` section: the gateway logs in to the backend for its clients.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::common::Protocol;
use super::Invalid;

/// Who the gateway logs in to the backend as, for every client of the route.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// PostgreSQL role (required) or Redis ACL user (absent: Redis' `default` user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A file holding the password (a mounted Secret); re-read when its contents change.
    pub password_file: PathBuf,
}

impl LoginConfig {
    /// Checks what can be checked without reading the password file.
    pub(super) fn validate(
        &self,
        route: usize,
        protocol: Protocol,
        has_client_ca: bool,
    ) -> Result<(), Invalid> {
        let key = format!("routes[{route}].login");
        if !has_client_ca {
            return Err(Invalid::new(
                key,
                "the gateway would log in for any client, but tls.client_ca is not set, so \
                 anonymous clients could borrow its credentials",
                "set tls.client_ca (and an allow list on this route), or remove login",
            ));
        }
        match (protocol, self.user.as_deref()) {
            (Protocol::Tcp, _) => Err(Invalid::new(
                key,
                "a tcp route carries a protocol the gateway does not speak, so it cannot log in",
                "remove login, or set protocol to redis or postgres",
            )),
            (Protocol::Postgres, None) => Err(Invalid::new(
                format!("{key}.user"),
                "PostgreSQL needs the role to log in as",
                "set login.user to the role, e.g. `user: celery`",
            )),
            (_, Some(user)) if user.is_empty() || user.contains('\0') => Err(Invalid::new(
                format!("{key}.user"),
                "the user name is empty or contains a NUL byte",
                "set login.user to the role (PostgreSQL) or ACL user (Redis)",
            )),
            _ => Ok(()),
        }
    }
}

//! Pieces shared by the gateway and sidecar schemas: protocols, timeouts, addresses and names.

use std::fmt;
use std::time::Duration;

use rustls_pki_types::{DnsName, ServerName};
use serde::{Deserialize, Serialize};

/// The application protocol behind a route or tunnel; it decides the pre-TLS preamble handling
/// and the shape of the error a client sees when the far side is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Redis,
    Postgres,
    Tcp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Redis => "redis",
            Protocol::Postgres => "postgres",
            Protocol::Tcp => "tcp",
        })
    }
}

/// Deadlines on each phase that a slow or silent peer could otherwise hold open forever.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// The whole TLS handshake, including a PostgreSQL SSLRequest preamble.
    #[serde(default = "Timeouts::default_handshake", with = "humantime_serde")]
    pub handshake: Duration,
    /// The TCP connect to the backend (gateway) or to the gateway (sidecar).
    #[serde(default = "Timeouts::default_connect", with = "humantime_serde")]
    pub connect: Duration,
    /// How long a new client waits while the far side refuses or drops connections (a
    /// gateway or backend restarting): attempts are retried with backoff for this long before
    /// the client gets its native error. `0s`: one attempt.
    #[serde(default = "Timeouts::default_retry", with = "humantime_serde")]
    pub retry: Duration,
    /// After a stop request, how long open connections may finish before they are closed.
    #[serde(default = "Timeouts::default_drain", with = "humantime_serde")]
    pub drain: Duration,
    /// After a stop request, how long to keep accepting (readiness already off): time for
    /// Kubernetes to take the pod out of its Service, or for a worker to finish its last task.
    #[serde(default, with = "humantime_serde")]
    pub shutdown_delay: Duration,
    /// How often the far side (backends, or the gateway for the sidecar) is probed; `0s`
    /// turns probing off (then a sidecar is ready as soon as it listens).
    #[serde(default = "Timeouts::default_probe_interval", with = "humantime_serde")]
    pub probe_interval: Duration,
    /// How often the certificate, key, CA and CRL files are checked for changed contents;
    /// `0s` turns the check off (SIGHUP still reloads everything). Kubernetes itself takes up
    /// to a minute to update a mounted Secret, so a few seconds adds nothing noticeable.
    #[serde(default = "Timeouts::default_watch_interval", with = "humantime_serde")]
    pub watch_interval: Duration,
}

impl Timeouts {
    fn default_handshake() -> Duration {
        Duration::from_secs(10)
    }
    fn default_connect() -> Duration {
        Duration::from_secs(5)
    }
    fn default_retry() -> Duration {
        Duration::from_secs(10)
    }
    fn default_drain() -> Duration {
        Duration::from_secs(30)
    }
    fn default_probe_interval() -> Duration {
        Duration::from_secs(10)
    }
    fn default_watch_interval() -> Duration {
        Duration::from_secs(2)
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Self::default_handshake(),
            connect: Self::default_connect(),
            retry: Self::default_retry(),
            drain: Self::default_drain(),
            shutdown_delay: Duration::ZERO,
            probe_interval: Self::default_probe_interval(),
            watch_interval: Self::default_watch_interval(),
        }
    }
}

/// The oldest TLS version a peer may use; TLS 1.2 and 1.3 are the only ones snigate speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// Caps that keep one flood from starving everyone else. Read at start; a change needs a
/// restart.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Open connections in the whole process; past it, new ones wait in the listen backlog.
    #[serde(default = "Limits::default_max_connections")]
    pub max_connections: usize,
    /// TLS handshakes past their ClientHello at once (the part that costs CPU).
    #[serde(default = "Limits::default_max_handshakes")]
    pub max_handshakes: usize,
}

impl Limits {
    fn default_max_connections() -> usize {
        10_000
    }
    fn default_max_handshakes() -> usize {
        256
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: Self::default_max_connections(),
            max_handshakes: Self::default_max_handshakes(),
        }
    }
}

/// How many threads run connections. Read at start; a change needs a restart.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// Unset: one for the sidecar (it serves one pod), and for the gateway the CPUs this
    /// process may use (its cgroup quota, not the host's core count). With one thread,
    /// connections never wait on another thread's wakeup: the least CPU per operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,
}

impl Runtime {
    /// The thread count to start with; `role_default` applies when none is configured.
    pub fn threads(&self, role_default: usize) -> usize {
        self.worker_threads.unwrap_or(role_default)
    }

    pub(super) fn validate(&self) -> Result<(), super::Invalid> {
        match self.worker_threads {
            Some(0) => Err(super::Invalid::new(
                "runtime.worker_threads",
                "0 threads cannot run anything",
                "set it to 1 or more, or remove it for the default",
            )),
            _ => Ok(()),
        }
    }
}

/// A `host:port` that is resolved when a connection is made, so that Kubernetes Service names
/// follow their current address instead of the one seen at startup.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPort {
    /// A DNS name or an IP literal (without brackets).
    pub host: String,
    /// Never 0.
    pub port: u16,
}

impl TryFrom<String> for HostPort {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("`{s}` is not host:port (write e.g. redis.svc:6379 or [::1]:6379)");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(HostPort {
            host: host.to_owned(),
            port,
        })
    }
}

impl From<HostPort> for String {
    fn from(addr: HostPort) -> String {
        addr.to_string()
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Checks that `name` is a DNS name fit for SNI and returns it lower-cased.
///
/// IP literals are refused because a ClientHello never carries one as SNI, so the OpenShift
/// router (and the gateway) could not route on it.
pub fn sni_name(name: &str) -> Result<String, NameError> {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(NameError::IpAddress(name.to_owned()));
    }
    match ServerName::try_from(name) {
        Ok(ServerName::DnsName(dns)) if !name.contains('*') => Ok(normalise(&dns)),
        _ => Err(NameError::NotDns(name.to_owned())),
    }
}

/// Why a name cannot be used as SNI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("`{0}` is an IP address; SNI carries DNS names only: use the Route host name")]
    IpAddress(String),
    #[error("`{0}` is not a valid DNS name (letters, digits, '-' and '.' only; no wildcards)")]
    NotDns(String),
}

fn normalise(dns: &DnsName<'_>) -> String {
    dns.as_ref().trim_end_matches('.').to_ascii_lowercase()
}

//! The sidecar's configuration file: schema and the checks serde cannot express.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::common::{sni_name, HostPort, Limits, Protocol, Runtime, Timeouts, TlsVersion};
use super::proxy::ProxyKey;
use super::{at_least_one, distinct_name, Invalid};

/// The sidecar's configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarConfig {
    /// Optional HTTP endpoint for probes and metrics: /livez /startup /readyz /metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<SocketAddr>,
    /// The trust root and the client certificate.
    pub tls: SidecarTls,
    /// Deadlines of each phase.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Caps on connections and handshakes.
    #[serde(default)]
    pub limits: Limits,
    /// Threads.
    #[serde(default)]
    pub runtime: Runtime,
    /// The HTTP proxy every tunnel reaches its gateway through, or `none`; unset: the
    /// environment's `HTTPS_PROXY` and `NO_PROXY`, read as curl reads them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyKey>,
    /// Local listener → gateway route, at least one.
    pub tunnels: Vec<TunnelConfig>,
}

/// The sidecar's `tls:` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarTls {
    /// The only trust root for the gateway's certificate: a private CA, never the system store.
    pub ca: PathBuf,
    /// PEM client certificate chain presented to the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Its private key; given together with `cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The oldest TLS version spoken to the gateway.
    #[serde(default)]
    pub min_version: TlsVersion,
}

impl SidecarTls {
    /// The files a running sidecar watches for changes.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.ca.clone()];
        files.extend(self.cert.clone());
        files.extend(self.key.clone());
        files
    }
}

/// One tunnel: a local plaintext listener and the gateway route it reaches.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelConfig {
    /// Used in logs, metrics and the errors clients see.
    pub name: String,
    /// Loopback address local clients connect to.
    pub listen: SocketAddr,
    /// Decides the preamble handling and the native error replies.
    pub protocol: Protocol,
    /// The gateway (the Route host and port 443 in production).
    pub connect: HostPort,
    /// Defaults to the host part of `connect`; filled in by validation.
    #[serde(default)]
    pub server_name: String,
    /// The plaintext side is meant for the worker in the same pod only.
    #[serde(default)]
    pub allow_non_loopback: bool,
    /// Resume TLS sessions with the gateway (an abbreviated handshake per new connection);
    /// `false` makes every connection a full handshake.
    #[serde(default = "resume_by_default")]
    pub session_resumption: bool,
    /// TLS connections to the gateway kept established and idle, so that a new client's
    /// first bytes leave at once.
    #[serde(default)]
    pub warm: usize,
    /// A warm connection unused this long is replaced: below the router's tunnel timeout
    /// (1 h by default) and any idle limit on the way.
    #[serde(default = "warm_max_age_default", with = "humantime_serde")]
    pub warm_max_age: Duration,
    /// This tunnel's proxy, or `none`, in place of the top-level `proxy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyKey>,
}

fn resume_by_default() -> bool {
    true
}

fn warm_max_age_default() -> Duration {
    Duration::from_secs(600)
}

/// More would be a typo, not a plan: each is a connection held open on the gateway.
const MAX_WARM: usize = 64;
/// Shorter would mostly churn handshakes.
const MIN_WARM_MAX_AGE: Duration = Duration::from_secs(1);

impl SidecarConfig {
    pub(super) fn validate(&mut self) -> Result<(), Invalid> {
        self.runtime.validate()?;
        if let Some(proxy) = &self.proxy {
            proxy.setting("proxy")?;
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(Invalid::new(
                "tls.cert",
                "tls.cert and tls.key must be given together",
                "set both (a client certificate and its key) or neither",
            ));
        }
        at_least_one(
            &self.tunnels,
            "tunnels",
            "tunnel",
            "name, listen, protocol and connect",
        )?;
        let mut names = HashMap::new();
        let mut listens = HashMap::new();
        for (i, tunnel) in self.tunnels.iter_mut().enumerate() {
            distinct_name(&mut names, "tunnels", "tunnel", i, &tunnel.name)?;
            // Port 0 asks the OS for a free port, so several tunnels may use it.
            let fixed_port = tunnel.listen.port() != 0;
            if let Some(j) = listens.insert(tunnel.listen, i).filter(|_| fixed_port) {
                return Err(Invalid::new(
                    format!("tunnels[{i}].listen"),
                    format!(
                        "{} is also the listen address of tunnels[{j}]",
                        tunnel.listen
                    ),
                    "give every tunnel its own port",
                ));
            }
            tunnel.validate(i)?;
        }
        Ok(())
    }
}

impl TunnelConfig {
    fn validate(&mut self, i: usize) -> Result<(), Invalid> {
        if !self.listen.ip().is_loopback() && !self.allow_non_loopback {
            return Err(Invalid::new(
                format!("tunnels[{i}].listen"),
                format!(
                    "{} is not a loopback address: the plaintext side would be reachable by others",
                    self.listen
                ),
                "listen on 127.0.0.1 or [::1], or set allow_non_loopback: true if you mean it",
            ));
        }
        let (key, name) = if self.server_name.is_empty() {
            (format!("tunnels[{i}].connect"), self.connect.host.clone())
        } else {
            (
                format!("tunnels[{i}].server_name"),
                self.server_name.clone(),
            )
        };
        self.server_name = sni_name(&name).map_err(|e| {
            Invalid::new(
                key,
                e.to_string(),
                "set server_name to the gateway route's DNS name",
            )
        })?;
        if let Some(proxy) = &self.proxy {
            proxy.setting(&format!("tunnels[{i}].proxy"))?;
        }
        if self.warm > MAX_WARM {
            return Err(Invalid::new(
                format!("tunnels[{i}].warm"),
                format!("{} warm connections is more than {MAX_WARM}", self.warm),
                "keep as many as the tunnel's clients open at once, a few at most",
            ));
        }
        if self.warm_max_age < MIN_WARM_MAX_AGE {
            return Err(Invalid::new(
                format!("tunnels[{i}].warm_max_age"),
                format!(
                    "{:?} is shorter than {MIN_WARM_MAX_AGE:?}",
                    self.warm_max_age
                ),
                "use minutes, below the router's tunnel timeout, e.g. 10m",
            ));
        }
        Ok(())
    }
}

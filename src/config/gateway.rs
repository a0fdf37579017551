//! The gateway's configuration file: schema and the checks serde cannot express.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::common::{sni_name, HostPort, Limits, Protocol, Runtime, Timeouts, TlsVersion};
use super::login::LoginConfig;
use super::{at_least_one, distinct_name, AllowRule, Invalid};

/// The gateway's configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where TLS clients (the router, sidecars) connect.
    pub listen: SocketAddr,
    /// Optional HTTP endpoint for probes and metrics: /livez /startup /readyz /metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<SocketAddr>,
    /// The served certificate and how clients are verified.
    pub tls: GatewayTls,
    /// Deadlines of each phase.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Caps on connections and handshakes.
    #[serde(default)]
    pub limits: Limits,
    /// Threads.
    #[serde(default)]
    pub runtime: Runtime,
    /// SNI name → backend, at least one.
    pub routes: Vec<RouteConfig>,
}

/// The gateway's `tls:` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayTls {
    /// PEM certificate chain, leaf first; valid for every route's server names.
    pub cert: PathBuf,
    /// PEM private key of the certificate.
    pub key: PathBuf,
    /// When set, every route requires a client certificate issued by this CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
    /// PEM file of certificate revocation lists for client certificates; needs `client_ca`.
    /// Fails closed: a missing, unreadable or expired CRL refuses clients, never ignores them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
    /// The oldest TLS version accepted.
    #[serde(default)]
    pub min_version: TlsVersion,
}

impl GatewayTls {
    /// The files a running gateway watches for changes.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.cert.clone(), self.key.clone()];
        files.extend(self.client_ca.clone());
        files.extend(self.crl.clone());
        files
    }
}

/// One route: the SNI names that select it and the backend it relays to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Used in logs, metrics and the errors clients see.
    pub name: String,
    /// SNI names, normalised to lower case by validation.
    pub server_names: Vec<String>,
    /// Decides the preamble handling and the native error replies.
    pub protocol: Protocol,
    /// Resolved at each connect.
    pub backend: HostPort,
    /// Client identities admitted; empty: any client the CA verified.
    #[serde(default)]
    pub allow: Vec<AllowRule>,
    /// Open connections on this route; past it, clients get the protocol's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// The gateway logs in to the backend itself; clients hold no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginConfig>,
}

impl GatewayConfig {
    /// Normalises server names in place and rejects what would make routing ambiguous.
    pub(super) fn validate(&mut self) -> Result<(), Invalid> {
        self.runtime.validate()?;
        at_least_one(
            &self.routes,
            "routes",
            "route",
            "name, server_names, protocol and backend",
        )?;
        if self.tls.crl.is_some() && self.tls.client_ca.is_none() {
            return Err(Invalid::new(
                "tls.crl",
                "a CRL revokes client certificates, but tls.client_ca is not set",
                "set tls.client_ca, or remove tls.crl",
            ));
        }
        let mut route_names = HashMap::new();
        let mut owners: HashMap<String, String> = HashMap::new();
        for (i, route) in self.routes.iter_mut().enumerate() {
            distinct_name(&mut route_names, "routes", "route", i, &route.name)?;
            route.validate(i, self.tls.client_ca.is_some(), &mut owners)?;
        }
        Ok(())
    }
}

impl RouteConfig {
    fn validate(
        &mut self,
        i: usize,
        has_client_ca: bool,
        owners: &mut HashMap<String, String>,
    ) -> Result<(), Invalid> {
        if self.server_names.is_empty() {
            return Err(Invalid::new(
                format!("routes[{i}].server_names"),
                "the list is empty, so no client could reach this route",
                "list the SNI names (the Route hosts) that select this route",
            ));
        }
        for (k, name) in self.server_names.iter_mut().enumerate() {
            let key = format!("routes[{i}].server_names[{k}]");
            *name = sni_name(name).map_err(|e| {
                Invalid::new(&key, e.to_string(), "use the DNS name clients send as SNI")
            })?;
            if let Some(other) = owners.insert(name.clone(), self.name.clone()) {
                return Err(Invalid::new(
                    key,
                    format!("`{name}` is already served by route `{other}`"),
                    "a server name may select one route only: remove one of them",
                ));
            }
        }
        if !self.allow.is_empty() && !has_client_ca {
            return Err(Invalid::new(
                format!("routes[{i}].allow"),
                "an allow list needs client certificates, but tls.client_ca is not set",
                "set tls.client_ca to the CA that issues client certificates",
            ));
        }
        if let Some(login) = &self.login {
            login.validate(i, self.protocol, has_client_ca)?;
        }
        Ok(())
    }
}

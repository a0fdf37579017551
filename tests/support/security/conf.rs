//! Gateway configs with the security keys: tls.crl, tls.min_version, limits, per-route caps.

use std::path::PathBuf;

use crate::support::pki::{p, Pki};

pub struct RouteConf {
    pub name: String,
    pub server_names: Vec<String>,
    pub protocol: String,
    pub backend: String,
    pub allow: Vec<String>,
    pub max_connections: Option<usize>,
}

impl RouteConf {
    pub fn new(name: &str, sni: &str, protocol: &str, backend: impl std::fmt::Display) -> Self {
        RouteConf {
            name: name.into(),
            server_names: vec![sni.into()],
            protocol: protocol.into(),
            backend: backend.to_string(),
            allow: Vec::new(),
            max_connections: None,
        }
    }

    pub fn allow(mut self, ids: &[&str]) -> Self {
        self.allow = ids.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n);
        self
    }
}

/// A gateway config; `yaml()` writes `listen: 127.0.0.1:0` and no backend probes, so tests
/// count every backend connection.
pub struct GwConf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub crl: Option<PathBuf>,
    pub min_version: Option<String>,
    /// `timeouts.handshake`, e.g. `1s`.
    pub handshake: Option<String>,
    /// `limits:` keys in order, e.g. `("max_connections", "3")`.
    pub limits: Vec<(String, String)>,
    pub routes: Vec<RouteConf>,
}

impl GwConf {
    /// `pki`'s server certificate; its CA as `client_ca` (mutual TLS).
    pub fn new(pki: &Pki, routes: Vec<RouteConf>) -> Self {
        GwConf {
            cert: pki.server_cert(),
            key: pki.server_key(),
            client_ca: Some(pki.ca()),
            crl: None,
            min_version: None,
            handshake: None,
            limits: Vec::new(),
            routes,
        }
    }

    pub fn yaml(&self) -> String {
        let mut y = String::from("listen: 127.0.0.1:0\n");
        y += "timeouts: {probe_interval: 0s";
        if let Some(h) = &self.handshake {
            y += &format!(", handshake: {h}");
        }
        y += "}\n";
        if !self.limits.is_empty() {
            let kv: Vec<String> = self
                .limits
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            y += &format!("limits: {{{}}}\n", kv.join(", "));
        }
        y += &format!("tls:\n  cert: {}\n  key: {}\n", p(&self.cert), p(&self.key));
        if let Some(ca) = &self.client_ca {
            y += &format!("  client_ca: {}\n", p(ca));
        }
        if let Some(crl) = &self.crl {
            y += &format!("  crl: {}\n", p(crl));
        }
        if let Some(v) = &self.min_version {
            y += &format!("  min_version: \"{v}\"\n");
        }
        y += "routes:\n";
        for r in &self.routes {
            y += &format!("  - name: {}\n", r.name);
            y += &format!("    server_names: [{}]\n", r.server_names.join(", "));
            y += &format!("    protocol: {}\n    backend: {}\n", r.protocol, r.backend);
            if !r.allow.is_empty() {
                y += &format!("    allow: [{}]\n", r.allow.join(", "));
            }
            if let Some(n) = r.max_connections {
                y += &format!("    max_connections: {n}\n");
            }
        }
        y
    }
}

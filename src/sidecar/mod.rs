//! The sidecar role: plaintext on loopback for the worker, TLS with SNI to the gateway.

mod connection;
mod dialer;
mod egress;
mod failure;
mod listeners;
mod proxy;
mod reload;
mod start;
mod tunnel;
mod warm;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::admin::Health;
use crate::config::{self, ConfigError, Invalid, SidecarConfig};
use crate::listener::ListenError;
use crate::metrics::Metrics;
use crate::probe;
use crate::reload::{Fingerprints, Live};
use crate::shutdown::Serving;
use crate::tls::client::ClientTls;
use crate::tls::expiry::{self, Role};

pub use failure::Failure;
use tunnel::Tunnel;

/// The detail of a tunnel's readiness check before its first probe has finished.
pub const NOT_PROBED: &str = "not probed yet";

/// What one config (and the certificate files it names) turned into; replaced whole on reload.
pub struct Snapshot {
    /// The validated config.
    pub config: SidecarConfig,
    tunnels: HashMap<String, Arc<Tunnel>>,
    files: Fingerprints,
}

/// A running sidecar: its live config, listening sockets, metrics and health.
pub struct Sidecar {
    live: Live<Snapshot>,
    listeners: listeners::Listeners,
    /// Metrics of every tunnel.
    pub metrics: Arc<Metrics>,
    /// What the admin endpoint reports.
    pub health: Arc<Health>,
}

impl Sidecar {
    /// Loads the config, the CA and the client certificate; all `--check` needs.
    pub fn load(file: &Path) -> Result<Sidecar, ConfigError> {
        Sidecar::from_config(config::load_sidecar(file)?, file)
    }

    /// A sidecar running `config`, which came from `origin` (the name errors give).
    pub fn from_config(config: SidecarConfig, origin: &Path) -> Result<Sidecar, ConfigError> {
        let metrics = Metrics::new("sidecar");
        let snapshot = Snapshot::build(config, origin, &metrics)?;
        let live = Live::new(origin, snapshot, metrics.clone());
        let health = Arc::new(Health::default());
        let snapshot = live.get();
        // Without probes there is nothing to wait for: ready once listening.
        if !snapshot.config.timeouts.probe_interval.is_zero() {
            for name in snapshot.tunnels.keys() {
                let check = format!("tunnel:{name}");
                health.report(&check, false, true, NOT_PROBED.into());
            }
        }
        Ok(Sidecar {
            live,
            listeners: listeners::Listeners::default(),
            metrics,
            health,
        })
    }

    /// The config new connections use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.get()
    }

    /// Binds every tunnel (all or none) and starts serving and probing them.
    pub async fn start(self: &Arc<Self>, serving: Serving) -> Result<(), ListenError> {
        self.listeners.set_serving(serving.clone());
        let snapshot = self.snapshot();
        self.bind_tunnels(&snapshot).await?;
        log_routes(&snapshot);
        self.warm_tunnels(&snapshot);
        self.health.set_started();
        if !self.snapshot().config.timeouts.probe_interval.is_zero() {
            tokio::spawn(self.clone().probe_tunnels(serving.accept));
        }
        Ok(())
    }

    /// Starts keeping the warm connections of `next`'s tunnels, and stops those of the
    /// running snapshot, which a reload is about to replace.
    fn warm_tunnels(&self, next: &Snapshot) {
        let Some(serving) = self.listeners.serving() else {
            return;
        };
        let current = self.snapshot();
        if !std::ptr::eq(Arc::as_ptr(&current), next) {
            current
                .tunnels
                .values()
                .for_each(|tunnel| tunnel.stop_warm());
        }
        for tunnel in next.tunnels.values() {
            tunnel.start_warm(self.metrics.clone(), serving.drain.clone());
        }
    }

    /// A full TLS handshake to the gateway for every tunnel, each interval, closed without
    /// START, so it costs no backend connection (on a gateway that speaks `snigate/1`): the
    /// sidecar is ready only while every tunnel could carry a connection.
    async fn probe_tunnels(self: Arc<Self>, stop: CancellationToken) {
        let reporter = probe::Reporter {
            health: &self.health,
            gauge: &self.metrics.far_side_up,
            kind: "tunnel",
            gating: true,
        };
        let round = || {
            let snapshot = self.snapshot();
            let probes = snapshot.tunnels.values().map(|tunnel| {
                let (name, tunnel) = (tunnel.name.clone(), tunnel.clone());
                let probe = async move {
                    let mut fresh = tunnel.dialer.dial().await?;
                    let _ = fresh.stream.shutdown().await;
                    Ok::<_, Failure>(())
                };
                (name, probe)
            });
            (snapshot.config.timeouts.probe_interval, probes.collect())
        };
        reporter.run(stop, round).await;
    }
}

/// How each tunnel reaches its gateway: straight, or through which proxy and why; the first
/// thing to check when a gateway cannot be reached from a private network.
fn log_routes(snapshot: &Snapshot) {
    for tunnel in snapshot.tunnels.values() {
        let dialer = &tunnel.dialer;
        tracing::info!(tunnel = %tunnel.name, connect = %dialer.addr, route = %dialer.egress, "tunnel route");
    }
}

impl crate::reload::Snapshot for Snapshot {
    fn load(file: &Path, metrics: &Metrics) -> Result<Snapshot, ConfigError> {
        Snapshot::build(config::load_sidecar(file)?, file, metrics)
    }

    fn rebuild(&self, file: &Path, metrics: &Metrics) -> Result<Snapshot, ConfigError> {
        Snapshot::build(self.config.clone(), file, metrics)
    }

    fn files(&self) -> &Fingerprints {
        &self.files
    }

    fn watched(&self) -> Vec<PathBuf> {
        self.config.tls.files()
    }

    fn watch_interval(&self) -> Duration {
        self.config.timeouts.watch_interval
    }
}

impl Snapshot {
    fn build(
        config: SidecarConfig,
        file: &Path,
        metrics: &Metrics,
    ) -> Result<Snapshot, ConfigError> {
        let files = Fingerprints::of(&config.tls.files());
        let tls = ClientTls::load(&config.tls).map_err(|e| ConfigError::invalid(file, e))?;
        let mut certs = vec![(config.tls.ca.as_path(), Role::Trusted)];
        certs.extend(config.tls.cert.as_deref().map(|c| (c, Role::Client)));
        expiry::record(metrics, &certs, None);
        let routes = egress::resolve(&config, |name| std::env::var(name).ok())
            .map_err(|e| ConfigError::invalid(file, e))?;
        let mut tunnels = HashMap::new();
        for ((i, t), egress) in config.tunnels.iter().enumerate().zip(routes) {
            let tunnel = Tunnel::new(t, egress, &tls, config.timeouts).ok_or_else(|| {
                let key = format!("tunnels[{i}].server_name");
                ConfigError::invalid(file, Invalid::new(key, "not a DNS name", "use a DNS name"))
            })?;
            tunnels.insert(t.name.clone(), tunnel);
        }
        Ok(Snapshot {
            config,
            tunnels,
            files,
        })
    }
}

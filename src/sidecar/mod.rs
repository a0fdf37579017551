//! The sidecar role: plaintext on loopback for the worker, TLS with SNI to the gateway.

mod connection;
mod failure;
mod listeners;
mod reload;
mod tunnel;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::admin::Health;
use crate::config::{self, ConfigError, Invalid, SidecarConfig};
use crate::metrics::Metrics;
use crate::reload::{FileWatch, Fingerprints};
use crate::shutdown::Serving;
use crate::tls::client::ClientTls;

pub use failure::Failure;
use tunnel::Tunnel;

/// What one config (and the certificate files it names) turned into; replaced whole on reload.
pub struct Snapshot {
    pub config: SidecarConfig,
    tunnels: HashMap<String, Arc<Tunnel>>,
    files: Fingerprints,
}

pub struct Sidecar {
    file: PathBuf,
    current: ArcSwap<Snapshot>,
    watch: FileWatch,
    listeners: listeners::Listeners,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

impl Sidecar {
    /// Loads the config, the CA and the client certificate; all `--check` needs.
    pub fn load(file: &Path) -> Result<Sidecar, ConfigError> {
        let metrics = Metrics::new();
        let snapshot = Snapshot::build(config::load_sidecar(file)?, file, &metrics)?;
        let health = Arc::new(Health::default());
        // Without probes there is nothing to wait for: ready once listening.
        if !snapshot.config.timeouts.probe_interval.is_zero() {
            for name in snapshot.tunnels.keys() {
                let check = format!("tunnel:{name}");
                health.report(&check, false, true, "not probed yet".into());
            }
        }
        Ok(Sidecar {
            file: file.to_owned(),
            current: ArcSwap::from_pointee(snapshot),
            watch: FileWatch::default(),
            listeners: listeners::Listeners::default(),
            metrics,
            health,
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Binds every tunnel (all or none) and starts serving and probing them.
    pub async fn start(self: &Arc<Self>, serving: Serving) -> Result<(), String> {
        self.listeners.set_serving(serving.clone());
        self.bind_tunnels(&self.snapshot()).await?;
        self.health.set_started();
        if !self.snapshot().config.timeouts.probe_interval.is_zero() {
            tokio::spawn(self.clone().probe_tunnels(serving.accept));
        }
        Ok(())
    }

    /// A full TLS handshake to the gateway for every tunnel, each interval: the sidecar is
    /// ready only while every tunnel could carry a connection.
    async fn probe_tunnels(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let snapshot = self.snapshot();
            for tunnel in snapshot.tunnels.values() {
                let result = tunnel.connect().await;
                let detail = result
                    .as_ref()
                    .err()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let ok = result.is_ok();
                if let Ok(mut tls) = result {
                    let _ = tls.shutdown().await;
                }
                self.health
                    .report(&format!("tunnel:{}", tunnel.name), ok, true, detail);
                let label = Metrics::route(&tunnel.name);
                self.metrics
                    .far_side_up
                    .get_or_create(&label)
                    .set(i64::from(ok));
            }
            self.health.retain(|name| {
                name.strip_prefix("tunnel:")
                    .is_none_or(|t| snapshot.tunnels.contains_key(t))
            });
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(snapshot.config.timeouts.probe_interval) => {}
            }
        }
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
        let mut certs = vec![config.tls.ca.as_path()];
        certs.extend(config.tls.cert.as_deref());
        crate::tls::record_expiry(&certs, metrics);
        let mut tunnels = HashMap::new();
        for (i, t) in config.tunnels.iter().enumerate() {
            let tunnel = Tunnel::new(t, &tls, config.timeouts).ok_or_else(|| {
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

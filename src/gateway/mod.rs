//! The gateway role: terminate TLS, pick the route by SNI, check the client, relay to the
//! backend.

mod accept;
mod connection;
mod refusal;
mod reload;
pub mod routing;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::Health;
use crate::config::{self, ConfigError, GatewayConfig};
use crate::listener;
use crate::metrics::Metrics;
use crate::probe;
use crate::reload::{FileWatch, Fingerprints};
use crate::shutdown::Serving;
use crate::tls::server::ServerTls;
use routing::RouteTable;

pub use refusal::Refusal;

/// What one config (and the certificate files it names) turned into; replaced whole on reload,
/// so each connection sees one consistent version from start to end.
pub struct Snapshot {
    pub config: GatewayConfig,
    routes: RouteTable,
    files: Fingerprints,
}

pub struct Gateway {
    file: PathBuf,
    current: ArcSwap<Snapshot>,
    watch: FileWatch,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

impl Gateway {
    /// Loads the config and every certificate and key it names; this is all `--check` needs.
    pub fn load(file: &Path) -> Result<Gateway, ConfigError> {
        let metrics = Metrics::new();
        let snapshot = Snapshot::build(config::load_gateway(file)?, file, &metrics)?;
        Ok(Gateway {
            file: file.to_owned(),
            current: ArcSwap::from_pointee(snapshot),
            watch: FileWatch::default(),
            metrics,
            health: Arc::new(Health::default()),
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Serves until `serving.accept` is cancelled.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, serving: Serving) {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(role = %"gateway", addr = %addr, "listening");
        }
        self.health.set_started();
        if !self.snapshot().config.timeouts.probe_interval.is_zero() {
            tokio::spawn(self.clone().probe_backends(serving.accept.clone()));
        }
        let (accept, tracker) = (serving.accept.clone(), serving.tracker.clone());
        let limit = serving.connections.clone();
        listener::serve(listener, accept, tracker, limit, move |conn| {
            connection::handle(self.clone(), conn, serving.clone())
        })
        .await;
    }

    /// Probes every backend each interval; results go to metrics and `/readyz` detail but do
    /// not gate readiness: one backend down must not take the other routes out of service.
    async fn probe_backends(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let snapshot = self.snapshot();
            let timeouts = snapshot.config.timeouts;
            for route in snapshot.routes.routes() {
                let result = probe::backend(route.protocol, &route.backend, timeouts.connect).await;
                let detail = result.as_ref().err().cloned().unwrap_or_default();
                let check = format!("backend:{}", route.name);
                self.health.report(&check, result.is_ok(), false, detail);
                self.metrics
                    .far_side_up
                    .get_or_create(&Metrics::route(&route.name))
                    .set(i64::from(result.is_ok()));
            }
            self.health.retain(|name| {
                name.strip_prefix("backend:")
                    .is_none_or(|r| snapshot.routes.routes().any(|x| x.name == r))
            });
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(timeouts.probe_interval) => {}
            }
        }
    }
}

impl Snapshot {
    fn build(
        config: GatewayConfig,
        file: &Path,
        metrics: &Metrics,
    ) -> Result<Snapshot, ConfigError> {
        let files = Fingerprints::of(&config.tls.files());
        let tls = ServerTls::load(&config.tls)
            .and_then(|tls| tls.check_names(&config.routes).map(|()| tls))
            .map_err(|e| ConfigError::invalid(file, e))?;
        let mut certs = vec![config.tls.cert.as_path()];
        certs.extend(config.tls.client_ca.as_deref());
        crate::tls::record_expiry(&certs, metrics);
        Ok(Snapshot {
            routes: RouteTable::new(&config.routes, |protocol| tls.route_config(protocol)),
            config,
            files,
        })
    }
}

//! The gateway role: terminate TLS, pick the route by SNI, check the client, relay to the
//! backend.

mod accept;
mod connection;
mod refusal;
mod reload;
pub mod routing;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::Health;
use crate::config::{self, ConfigError, GatewayConfig};
use crate::listener;
use crate::metrics::Metrics;
use crate::probe;
use crate::reload::{Fingerprints, Live};
use crate::shutdown::Serving;
use crate::tls::expiry::{self, Role};
use crate::tls::server::ServerTls;
use routing::RouteTable;

pub use refusal::Refusal;

/// What one config (and the certificate files it names) turned into; replaced whole on reload,
/// so each connection sees one consistent version from start to end.
pub struct Snapshot {
    /// The validated config.
    pub config: GatewayConfig,
    routes: RouteTable,
    files: Fingerprints,
}

/// A running gateway: its live config, metrics and health.
pub struct Gateway {
    live: Live<Snapshot>,
    /// Metrics of every route.
    pub metrics: Arc<Metrics>,
    /// What the admin endpoint reports.
    pub health: Arc<Health>,
}

impl Gateway {
    /// Loads the config and every certificate and key it names; this is all `--check` needs.
    pub fn load(file: &Path) -> Result<Gateway, ConfigError> {
        let metrics = Metrics::new("gateway");
        Ok(Gateway {
            live: Live::load(file, metrics.clone())?,
            metrics,
            health: Arc::new(Health::default()),
        })
    }

    /// The config new connections use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.get()
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
        let reporter = probe::Reporter {
            health: &self.health,
            metrics: &self.metrics,
            kind: "backend",
            gating: false,
        };
        let round = || {
            let snapshot = self.snapshot();
            let timeouts = snapshot.config.timeouts;
            let probes = snapshot.routes.routes().map(|route| {
                let (name, route) = (route.name.clone(), route.clone());
                let probe = async move {
                    probe::backend(route.protocol, &route.backend, timeouts.connect).await
                };
                (name, probe)
            });
            (timeouts.probe_interval, probes.collect())
        };
        reporter.run(stop, round).await;
    }
}

impl crate::reload::Snapshot for Snapshot {
    fn load(file: &Path, metrics: &Metrics) -> Result<Snapshot, ConfigError> {
        Snapshot::build(config::load_gateway(file)?, file, metrics)
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
        config: GatewayConfig,
        file: &Path,
        metrics: &Metrics,
    ) -> Result<Snapshot, ConfigError> {
        let files = Fingerprints::of(&config.tls.files());
        let tls = ServerTls::load(&config.tls)
            .and_then(|tls| tls.check_names(&config.routes).map(|()| tls))
            .map_err(|e| ConfigError::invalid(file, e))?;
        let mut certs = vec![(config.tls.cert.as_path(), Role::Served)];
        certs.extend(
            config
                .tls
                .client_ca
                .as_deref()
                .map(|ca| (ca, Role::Trusted)),
        );
        expiry::record(metrics, &certs, config.tls.crl.as_deref());
        let limits = config.routes.iter();
        metrics
            .set_route_limits(limits.filter_map(|r| Some((r.name.as_str(), r.max_connections?))));
        Ok(Snapshot {
            routes: RouteTable::new(&config.routes, |protocol| tls.route_config(protocol)),
            config,
            files,
        })
    }
}

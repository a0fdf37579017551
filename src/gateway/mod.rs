//! The gateway role: terminate TLS, pick the route by SNI, check the client, relay to the
//! backend.

mod accept;
mod backend;
mod connection;
mod refusal;
mod reload;
pub mod routing;
mod start;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::Health;
use crate::config::Timeouts;
use crate::config::{self, ConfigError, GatewayConfig};
use crate::listener;
use crate::login::{self, CancelKeys, Login};
use crate::metrics::{Metrics, RouteLabel};
use crate::probe;
use crate::reload::{Fingerprints, Live};
use crate::shutdown::Serving;
use crate::tls::expiry::{self, Role};
use crate::tls::server::ServerTls;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use routing::{Route, RouteTable};
use std::future::Future;

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
    /// Cancel keys of the open login connections, for plaintext CancelRequests.
    pub cancels: Arc<CancelKeys>,
}

impl Gateway {
    /// Loads the config and every certificate and key it names; this is all `--check` needs.
    pub fn load(file: &Path) -> Result<Gateway, ConfigError> {
        let metrics = Metrics::new("gateway");
        Ok(Gateway {
            live: Live::load(file, metrics.clone())?,
            metrics,
            health: Arc::new(Health::default()),
            cancels: Arc::default(),
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
            let stop = serving.accept.clone();
            let backends = |route: Arc<Route>, t: Timeouts| {
                Some(async move { probe::backend(route.protocol, &route.backend, t.connect).await })
            };
            tokio::spawn(self.clone().probe_routes(
                stop.clone(),
                "backend",
                |m| &m.far_side_up,
                backends,
            ));
            // The gateway's own login, as clients' connections would do it.
            let logins = |route: Arc<Route>, t: Timeouts| {
                let login = route.login.clone()?;
                let deadline = t.connect + t.handshake;
                Some(
                    async move { login::probe(route.protocol, &route.backend, &login, deadline).await },
                )
            };
            tokio::spawn(
                self.clone()
                    .probe_routes(stop, "login", |m| &m.login_up, logins),
            );
        }
        let (accept, limit) = (serving.accept.clone(), serving.connections.clone());
        listener::serve(listener, accept, limit, move |conn| {
            serving.spawn(|serving| connection::handle(self.clone(), conn, serving))
        })
        .await;
    }

    /// Runs `probe` on every route it applies to (`Some`) each interval; results go to the
    /// `/readyz` checks `<kind>:<route>` and `gauge`, but never gate readiness: one backend
    /// down must not take the other routes out of service.
    async fn probe_routes<P, F, E>(
        self: Arc<Self>,
        stop: CancellationToken,
        kind: &'static str,
        gauge: fn(&Metrics) -> &Family<RouteLabel, Gauge>,
        probe: P,
    ) where
        P: Fn(Arc<Route>, Timeouts) -> Option<F>,
        F: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let reporter = probe::Reporter {
            health: &self.health,
            gauge: gauge(&self.metrics),
            kind,
            gating: false,
        };
        let round = || {
            let snapshot = self.snapshot();
            let timeouts = snapshot.config.timeouts;
            let probes = snapshot
                .routes
                .routes()
                .filter_map(|route| Some((route.name.clone(), probe(route.clone(), timeouts)?)));
            (timeouts.probe_interval, probes.collect())
        };
        reporter.run(stop, round).await;
    }
}

impl crate::reload::Snapshot for Snapshot {
    fn load(file: &Path, metrics: &Metrics) -> Result<Snapshot, ConfigError> {
        Snapshot::build(config::load_gateway(file)?, file, metrics, None)
    }

    fn rebuild(&self, file: &Path, metrics: &Metrics) -> Result<Snapshot, ConfigError> {
        Snapshot::build(self.config.clone(), file, metrics, Some(self))
    }

    fn files(&self) -> &Fingerprints {
        &self.files
    }

    fn watched(&self) -> Vec<PathBuf> {
        watched(&self.config)
    }

    fn what(&self, file: &Path) -> &'static str {
        if password_files(&self.config).any(|f| f == file) {
            "login"
        } else {
            "certificates"
        }
    }

    fn watch_interval(&self) -> Duration {
        self.config.timeouts.watch_interval
    }
}

impl Snapshot {
    /// `old`: the running snapshot when only the files it names are read again; a changed
    /// password keeps the one before it as a fallback.
    fn build(
        config: GatewayConfig,
        file: &Path,
        metrics: &Metrics,
        old: Option<&Snapshot>,
    ) -> Result<Snapshot, ConfigError> {
        let files = Fingerprints::of(&watched(&config));
        let logins = Snapshot::logins(&config, old).map_err(|e| ConfigError::invalid(file, e))?;
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
            routes: RouteTable::new(
                &config.routes,
                |protocol| tls.route_configs(protocol),
                logins,
                &metrics.open,
            ),
            config,
            files,
        })
    }

    fn logins(
        config: &GatewayConfig,
        old: Option<&Snapshot>,
    ) -> Result<Vec<Option<Arc<Login>>>, config::Invalid> {
        let mut logins = Vec::with_capacity(config.routes.len());
        for (i, route) in config.routes.iter().enumerate() {
            let login = match &route.login {
                Some(login) => {
                    let old = old
                        .and_then(|s| s.routes.named(&route.name))
                        .and_then(|r| r.login.as_deref());
                    Some(Arc::new(Login::load(i, login, old)?))
                }
                None => None,
            };
            logins.push(login);
        }
        Ok(logins)
    }
}

/// The certificate files, then the password files.
fn watched(config: &GatewayConfig) -> Vec<PathBuf> {
    let mut files = config.tls.files();
    files.extend(password_files(config).map(Path::to_path_buf));
    files
}

fn password_files(config: &GatewayConfig) -> impl Iterator<Item = &Path> {
    let logins = config.routes.iter().filter_map(|r| r.login.as_ref());
    logins.map(|login| login.password_file.as_path())
}

//! Prometheus metrics, labelled by route (gateway) or tunnel (sidecar).
//!
//! Everything is recorded per connection or per event, never per byte read, so the data path
//! pays nothing for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Label of per-route (gateway) or per-tunnel (sidecar) series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// Route or tunnel name.
    pub route: String,
}

/// Label of refusal and handshake-failure counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Route or tunnel name; empty when none was chosen.
    pub route: String,
    /// The stable reason of the error.
    pub reason: String,
}

/// Label of the byte counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// Route or tunnel name.
    pub route: String,
    /// `from_client` or `to_client`.
    pub direction: &'static str,
}

/// Label of per-file series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabel {
    /// The path as configured.
    pub file: String,
}

/// Label of one certificate among those the process presents or trusts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabel {
    /// The path as configured.
    pub file: String,
    /// Its position in the PEM file: 0 is the first (the leaf of a chain).
    pub index: String,
    /// `served` (gateway chain), `client` (sidecar chain) or `trusted` (a CA).
    pub role: &'static str,
    /// The certificate's subject, e.g. `CN=snigate development CA`.
    pub subject: String,
}

/// Label of the build and role series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabel {
    /// `gateway` or `sidecar`.
    pub role: &'static str,
    /// The crate version.
    pub version: &'static str,
}

/// Label of the per-kind reload gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WhatLabel {
    /// `config` or `certificates`.
    pub what: &'static str,
}

/// Label of the reload counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    /// `config`, `certificates` or `login` (password files).
    pub what: &'static str,
    /// `success` or `failure`.
    pub result: &'static str,
}

type Histograms = Family<RouteLabel, Histogram, fn() -> Histogram>;

/// Every metric of the process, registered under the `snigate_` prefix.
pub struct Metrics {
    /// Connections open now. On the gateway, those admitted to their route: the count
    /// `max_connections` admits against (`Route::admit`). Never cleared, so that the
    /// connections still open keep counting across reloads, even on a route removed and
    /// added again.
    pub open: Family<RouteLabel, Gauge>,
    /// Connections that reached a route or tunnel.
    pub accepted: Family<RouteLabel, Counter>,
    /// Failures before a route is known (no SNI, not TLS, bad certificate…): route is "".
    pub handshake_failures: Family<ReasonLabel, Counter>,
    /// Clients refused after the handshake (identity, far side unreachable).
    pub refusals: Family<ReasonLabel, Counter>,
    /// Bytes relayed, counted when a connection closes.
    pub bytes: Family<DirectionLabel, Counter>,
    /// Time to connect to the far side.
    pub connect_seconds: Histograms,
    /// Lifetime of relayed connections.
    pub duration_seconds: Histograms,
    /// notAfter of every certificate in each loaded file.
    pub cert_expiry: Family<CertLabel, Gauge<f64, AtomicU64>>,
    /// The earliest nextUpdate of the CRLs in each CRL file.
    pub crl_next_update: Family<FileLabel, Gauge<f64, AtomicU64>>,
    /// Reloads by what and result.
    pub reloads: Family<ReloadLabel, Counter>,
    /// 1 when the latest reload of each kind succeeded (or none failed since start).
    pub reload_ok: Family<WhatLabel, Gauge>,
    /// `max_connections` of each route that has one.
    pub route_limit: Family<RouteLabel, Gauge>,
    /// 1 when the last health probe of the backend (gateway) or gateway (sidecar) passed.
    pub far_side_up: Family<RouteLabel, Gauge>,
    /// 1 when the gateway's last probe login to the backend of a `login` route succeeded.
    pub login_up: Family<RouteLabel, Gauge>,
    /// Warm connections: the sidecar's pool, the gateway's connections waiting for START.
    pub warm: Warm,
    /// Connections the drain budget cut while they were in the middle of something.
    pub drain_cut: Family<RouteLabel, Counter>,
    registry: Registry,
}

/// `snigate/1` connections kept ready before a client needs them.
#[derive(Default)]
pub struct Warm {
    /// Sidecar: idle connections ready to carry a client now.
    pub ready: Family<RouteLabel, Gauge>,
    /// Sidecar: clients that got a ready connection.
    pub hits: Family<RouteLabel, Counter>,
    /// Sidecar: clients that found none ready and dialled.
    pub misses: Family<RouteLabel, Counter>,
    /// Sidecar: ready connections closed unused, by reason.
    pub discarded: Family<ReasonLabel, Counter>,
    /// Gateway: `snigate/1` connections waiting for START (warm ones and probes).
    pub waiting: Family<RouteLabel, Gauge>,
}

impl Warm {
    fn register(&self, r: &mut Registry) {
        let ready = ("warm_ready", "Warm connections ready to carry a client");
        r.register(ready.0, ready.1, self.ready.clone());
        let hits = ("warm_hits", "Clients that got a warm connection");
        r.register(hits.0, hits.1, self.hits.clone());
        let misses = ("warm_misses", "Clients that found no warm connection ready");
        r.register(misses.0, misses.1, self.misses.clone());
        let discarded = (
            "warm_discarded",
            "Warm connections closed unused, by reason",
        );
        r.register(discarded.0, discarded.1, self.discarded.clone());
        let waiting = ("warm_waiting", "snigate/1 connections waiting for START");
        r.register(waiting.0, waiting.1, self.waiting.clone());
    }
}

fn connect_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 4.0, 12))
}

impl Metrics {
    /// A registry with every metric of `role` (`gateway` or `sidecar`), and the series alerts
    /// compare against at zero.
    pub fn new(role: &'static str) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("snigate");
        let m = Metrics {
            open: Family::default(),
            accepted: Family::default(),
            handshake_failures: Family::default(),
            refusals: Family::default(),
            bytes: Family::default(),
            connect_seconds: Family::new_with_constructor(connect_histogram),
            duration_seconds: Family::new_with_constructor(duration_histogram),
            cert_expiry: Family::default(),
            crl_next_update: Family::default(),
            reloads: Family::default(),
            reload_ok: Family::default(),
            route_limit: Family::default(),
            far_side_up: Family::default(),
            login_up: Family::default(),
            warm: Warm::default(),
            drain_cut: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "connections_open",
            "Open connections admitted to a route or tunnel",
            m.open.clone(),
        );
        r.register(
            "connections",
            "Connections that reached a route or tunnel",
            m.accepted.clone(),
        );
        r.register(
            "handshake_failures",
            "Connections refused before a route was chosen",
            m.handshake_failures.clone(),
        );
        r.register(
            "refusals",
            "Connections refused after the handshake",
            m.refusals.clone(),
        );
        r.register("bytes", "Bytes relayed, by direction", m.bytes.clone());
        r.register(
            "connect_seconds",
            "Time to connect to the far side",
            m.connect_seconds.clone(),
        );
        r.register(
            "connection_duration_seconds",
            "Lifetime of relayed connections",
            m.duration_seconds.clone(),
        );
        r.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of each loaded certificate",
            m.cert_expiry.clone(),
        );
        r.register(
            "crl_next_update_timestamp_seconds",
            "Earliest nextUpdate of the CRLs in each CRL file",
            m.crl_next_update.clone(),
        );
        r.register(
            "reloads",
            "Config and certificate reloads",
            m.reloads.clone(),
        );
        r.register(
            "last_reload_successful",
            "Whether the latest reload of each kind succeeded",
            m.reload_ok.clone(),
        );
        r.register(
            "route_max_connections",
            "max_connections of each route that has one",
            m.route_limit.clone(),
        );
        r.register(
            "far_side_up",
            "Last health probe of the backend or gateway passed",
            m.far_side_up.clone(),
        );
        r.register(
            "login_up",
            "Last probe login of the gateway to the backend of a login route succeeded",
            m.login_up.clone(),
        );
        r.register(
            "drain_cut",
            "Connections cut mid-request when the drain period ended",
            m.drain_cut.clone(),
        );
        let version = env!("CARGO_PKG_VERSION");
        r.register(
            "build",
            "The role and version of this process; alert rules join on its role",
            Info::new(InfoLabel { role, version }),
        );
        m.warm.register(r);
        // Series that alert rules compare against exist from the start, at zero.
        for what in ["config", "certificates", "login"] {
            for result in ["success", "failure"] {
                let _ = m.reloads.get_or_create(&ReloadLabel { what, result });
            }
            m.reload_ok.get_or_create(&WhatLabel { what }).set(1);
        }
        Arc::new(Metrics { registry, ..m })
    }

    /// The label of route or tunnel `name`.
    pub fn route(name: &str) -> RouteLabel {
        RouteLabel {
            route: name.to_owned(),
        }
    }

    /// The label of a refusal on `route` (empty: none chosen yet).
    pub fn reason(route: &str, reason: &str) -> ReasonLabel {
        ReasonLabel {
            route: route.to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// Counts a connection that reached route or tunnel `route`.
    pub fn record_accepted(&self, route: &str) {
        self.accepted.get_or_create(&Self::route(route)).inc();
    }

    /// Counts a finished relay: bytes each way and how long it lasted.
    pub fn record_relayed(
        &self,
        route: &str,
        from_client: u64,
        from_far_side: u64,
        lasted: Duration,
    ) {
        for (direction, n) in [("from_client", from_client), ("to_client", from_far_side)] {
            let label = DirectionLabel {
                route: route.to_owned(),
                direction,
            };
            self.bytes.get_or_create(&label).inc_by(n);
        }
        self.duration_seconds
            .get_or_create(&Self::route(route))
            .observe(lasted.as_secs_f64());
    }

    /// Counts one reload attempt and remembers whether it worked.
    pub fn record_reload(&self, what: &'static str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads
            .get_or_create(&ReloadLabel { what, result })
            .inc();
        self.reload_ok
            .get_or_create(&WhatLabel { what })
            .set(i64::from(ok));
    }

    /// Publishes the `max_connections` of each limited route; routes gone from the config
    /// lose their series.
    pub fn set_route_limits<'a>(&self, limits: impl Iterator<Item = (&'a str, usize)>) {
        self.route_limit.clear();
        for (route, max) in limits {
            let max = i64::try_from(max).unwrap_or(i64::MAX);
            self.route_limit.get_or_create(&Self::route(route)).set(max);
        }
    }

    /// The Prometheus text exposition (OpenMetrics) of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Counts a connection as open for as long as it lives.
pub struct OpenGuard {
    _open: Raised,
}

impl OpenGuard {
    /// Counts the connection as accepted and open until dropped.
    pub fn new(metrics: &Metrics, route: &str) -> OpenGuard {
        metrics.record_accepted(route);
        OpenGuard {
            _open: Raised::new(&metrics.open, &Metrics::route(route)),
        }
    }
}

/// Holds a gauge one higher for as long as it lives.
pub struct Raised(Gauge);

impl Raised {
    /// Raises the gauge of `label` in `family` until dropped.
    pub fn new(family: &Family<RouteLabel, Gauge>, label: &RouteLabel) -> Raised {
        let gauge = family.get_or_create(label).clone();
        gauge.inc();
        Raised(gauge)
    }

    /// Raises `gauge` unless it is already at `max`, as one atomic step: connections
    /// admitted at the same moment cannot together pass `max`. `None` when it is full.
    pub fn below(gauge: &Gauge, max: usize) -> Option<Raised> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let raise = |n: i64| (n < max).then_some(n + 1);
        // Relaxed: the count guards no other data.
        let raised = gauge
            .inner()
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, raise);
        raised.ok().map(|_| Raised(gauge.clone()))
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        self.0.dec();
    }
}

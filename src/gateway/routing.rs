//! The gateway's route table: SNI name → route. Pure data, no I/O.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::Refusal;
use crate::config::{AllowRule, HostPort, Protocol, RouteConfig};
use crate::login::Login;
use crate::metrics::{Metrics, Raised, RouteLabel};
use crate::tls::server::RouteTls;

/// Everything the gateway needs to serve one route.
pub struct Route {
    /// The route's name.
    pub name: String,
    /// The route's protocol.
    pub protocol: Protocol,
    /// Where its clients are relayed.
    pub backend: HostPort,
    /// Identities admitted; empty: any verified client.
    pub allow: Vec<AllowRule>,
    /// Its own TLS configs, so sessions never resume across routes.
    pub tls: RouteTls,
    /// The gateway logs in to the backend for the client (`login:`).
    pub login: Option<Arc<Login>>,
    /// `max_connections` of this config; `None`: unlimited.
    max_connections: Option<usize>,
    /// The route's `connections_open` gauge. Shared by every table built from the same
    /// metrics, so a reload keeps counting the connections already open.
    open: Gauge,
}

impl Route {
    /// A place among the route's open connections, counted in `connections_open` until
    /// dropped.
    pub fn admit(&self) -> Result<Raised, Refusal> {
        let max = self.max_connections.unwrap_or(usize::MAX);
        Raised::below(&self.open, max).ok_or(Refusal::RouteFull(max))
    }
}

/// Why a ClientHello matched no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    NoSni,
    Unknown(String),
}

/// Every route of a config, by SNI name.
#[derive(Default)]
pub struct RouteTable {
    by_name: HashMap<String, Arc<Route>>,
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Builds the table from validated route configs (names already normalised and unique)
    /// and each route's login, in the same order; each route counts its open connections in
    /// its series of `open`.
    pub fn new(
        routes: &[RouteConfig],
        tls_for: impl Fn(Protocol) -> RouteTls,
        logins: Vec<Option<Arc<Login>>>,
        open: &Family<RouteLabel, Gauge>,
    ) -> RouteTable {
        let mut by_name = HashMap::new();
        let mut all = Vec::new();
        for (config, login) in routes.iter().zip(logins) {
            let route = Arc::new(Route {
                name: config.name.clone(),
                protocol: config.protocol,
                backend: config.backend.clone(),
                allow: config.allow.clone(),
                tls: tls_for(config.protocol),
                login,
                max_connections: config.max_connections,
                open: open.get_or_create(&Metrics::route(&config.name)).clone(),
            });
            for name in &config.server_names {
                by_name.insert(name.clone(), route.clone());
            }
            all.push(route);
        }
        RouteTable {
            by_name,
            routes: all,
        }
    }

    /// The route called `name`.
    pub fn named(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|route| route.name == name)
    }

    /// Every route once, in config order.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }

    /// Exact, case-insensitive match on the SNI of the current handshake.
    pub fn lookup(&self, sni: Option<&str>) -> Result<Arc<Route>, Miss> {
        let sni = sni.ok_or(Miss::NoSni)?;
        let key = sni.to_ascii_lowercase();
        self.by_name
            .get(&key)
            .cloned()
            .ok_or_else(|| Miss::Unknown(sanitise(sni)))
    }
}

/// A client-chosen name made safe for one log line: printable ASCII, at most 253 bytes.
pub fn sanitise(name: &str) -> String {
    name.chars()
        .take(253)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, GatewayConfig};
    use rustls::ServerConfig;
    use std::sync::atomic::Ordering;

    /// Route `r` (redis, unlimited, two names) and route `p` (postgres, `p_max`), or only `r`
    /// when `p_max` is `None`, counting in `open` as the tables of one process do.
    fn table_of(open: &Family<RouteLabel, Gauge>, p_max: Option<usize>) -> RouteTable {
        let mut yaml = "listen: 127.0.0.1:0\ntls: {cert: c, key: k}\nroutes:\n\
             - {name: r, server_names: [redis.example.test, cache.example.test], protocol: redis, backend: 'h:1'}\n"
            .to_owned();
        if let Some(max) = p_max {
            yaml += &format!(
                "- {{name: p, server_names: [pg.example.test], protocol: postgres, backend: 'h:2', max_connections: {max}}}\n"
            );
        }
        let config: GatewayConfig = parse_str(&yaml).unwrap();
        let tls = Arc::new(
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new())),
        );
        let logins = vec![None; config.routes.len()];
        RouteTable::new(&config.routes, |_| RouteTls::new(tls.clone()), logins, open)
    }

    fn table() -> RouteTable {
        table_of(&Family::default(), Some(1))
    }

    fn pg(t: &RouteTable) -> Arc<Route> {
        t.lookup(Some("pg.example.test")).unwrap()
    }

    /// `n` places on route `p`, which must all be admitted.
    fn places(t: &RouteTable, n: usize) -> Vec<Raised> {
        (0..n).map(|_| pg(t).admit().unwrap()).collect()
    }

    fn assert_full(t: &RouteTable, max: usize) {
        match pg(t).admit() {
            Err(Refusal::RouteFull(m)) => assert_eq!(m, max),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("admitted past {max}"),
        }
    }

    fn open_on(open: &Family<RouteLabel, Gauge>, route: &str) -> i64 {
        open.get_or_create(&Metrics::route(route)).get()
    }

    #[test]
    fn several_names_per_route_and_case_insensitive() {
        let t = table();
        assert_eq!(t.lookup(Some("redis.example.test")).unwrap().name, "r");
        assert_eq!(t.lookup(Some("CACHE.Example.TEST")).unwrap().name, "r");
        assert_eq!(t.lookup(Some("pg.example.test")).unwrap().name, "p");
    }

    #[test]
    fn a_route_admits_up_to_its_limit_and_frees_places_on_drop() {
        let open = Family::default();
        let t = table_of(&open, Some(1));
        let first = pg(&t).admit().unwrap();
        assert_full(&t, 1);
        assert_eq!(
            open_on(&open, "p"),
            1,
            "a refused connection is not counted"
        );
        drop(first);
        assert_eq!(open_on(&open, "p"), 0);
        let _again = pg(&t).admit().unwrap();
        let redis = t.lookup(Some("redis.example.test")).unwrap();
        let unlimited: Vec<Raised> = (0..3).map(|_| redis.admit().unwrap()).collect();
        assert_eq!(open_on(&open, "r"), 3, "unlimited routes count too");
        drop(unlimited);
        assert_eq!(open_on(&open, "r"), 0);
    }

    /// A reload builds a new table: the connections admitted by the old one still count, and
    /// the limit of the newest config decides for new ones.
    #[test]
    fn a_new_table_keeps_counting_the_connections_already_open() {
        let open = Family::default();
        let before = table_of(&open, Some(2));
        let mut held = places(&before, 2);
        let same = table_of(&open, Some(2));
        assert_full(&same, 2);
        drop(before);
        held.pop();
        held.extend(places(&same, 1));
        assert_full(&same, 2);
        let lower = table_of(&open, Some(1));
        assert_full(&lower, 1);
        held.pop();
        assert_full(&lower, 1);
        let higher = table_of(&open, Some(3));
        held.extend(places(&higher, 2));
        assert_full(&higher, 3);
        assert_eq!(open_on(&open, "p"), 3);
    }

    /// Admission is one atomic step: four threads racing for two places never hold more.
    #[test]
    fn racing_admissions_never_pass_the_limit() {
        let open = Family::default();
        let t = table_of(&open, Some(2));
        let most = std::sync::atomic::AtomicI64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        let place = pg(&t).admit();
                        most.fetch_max(open_on(&open, "p"), Ordering::Relaxed);
                        drop(place);
                    }
                });
            }
        });
        let most = most.into_inner();
        assert!(most <= 2, "{most} held at once");
        assert_eq!(open_on(&open, "p"), 0);
    }

    #[test]
    fn a_route_removed_and_added_again_starts_from_its_open_connections() {
        let open = Family::default();
        let held = pg(&table_of(&open, Some(1))).admit().unwrap();
        let without = table_of(&open, None);
        assert!(without.named("p").is_none());
        let again = table_of(&open, Some(1));
        assert_full(&again, 1);
        drop(held);
        assert!(pg(&again).admit().is_ok());
    }

    #[test]
    fn misses_say_why() {
        let t = table();
        assert_eq!(t.lookup(None).err(), Some(Miss::NoSni));
        assert_eq!(
            t.lookup(Some("redis.example.test.evil")).err(),
            Some(Miss::Unknown("redis.example.test.evil".into()))
        );
        assert_eq!(sanitise("a\nb\u{7f}c"), "a?b?c");
    }
}

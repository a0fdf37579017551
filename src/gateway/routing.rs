//! The gateway's route table: SNI name → route. Pure data, no I/O.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Refusal;
use crate::config::{AllowRule, HostPort, Protocol, RouteConfig};
use crate::login::Login;
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
    /// `max_connections` of the route, as permits; `None` when unlimited.
    limit: Option<(usize, Arc<Semaphore>)>,
}

impl Route {
    /// A place among the route's open connections, held until dropped.
    pub fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, Refusal> {
        match &self.limit {
            None => Ok(None),
            Some((max, slots)) => slots
                .clone()
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| Refusal::RouteFull(*max)),
        }
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
    /// and each route's login, in the same order.
    pub fn new(
        routes: &[RouteConfig],
        tls_for: impl Fn(Protocol) -> RouteTls,
        logins: Vec<Option<Arc<Login>>>,
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
                limit: config
                    .max_connections
                    .map(|max| (max, Arc::new(Semaphore::new(max)))),
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

    fn table() -> RouteTable {
        let config: GatewayConfig = parse_str(
            "listen: 127.0.0.1:0\ntls: {cert: c, key: k}\nroutes:\n\
             - {name: r, server_names: [redis.example.test, cache.example.test], protocol: redis, backend: 'h:1'}\n\
             - {name: p, server_names: [pg.example.test], protocol: postgres, backend: 'h:2', max_connections: 1}\n",
        )
        .unwrap();
        let tls = Arc::new(
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new())),
        );
        RouteTable::new(
            &config.routes,
            |_| RouteTls::new(tls.clone()),
            vec![None, None],
        )
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
        let t = table();
        let pg = t.lookup(Some("pg.example.test")).unwrap();
        let first = pg.admit().unwrap();
        assert!(first.is_some());
        assert!(matches!(pg.admit(), Err(Refusal::RouteFull(1))));
        drop(first);
        assert!(pg.admit().unwrap().is_some());
        let redis = t.lookup(Some("redis.example.test")).unwrap();
        assert!(
            redis.admit().unwrap().is_none(),
            "no limit, no permit to hold"
        );
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

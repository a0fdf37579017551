//! Server names: the config-side normalisation (`sni_name`), the log-side sanitising of a
//! client-chosen name (`sanitise`) and the route lookup by the SNI of a ClientHello.
//!
//! Properties: no panic; a normalised name is lower-case ASCII, has no trailing dot, is no IP
//! literal, and normalises to itself; a sanitised name is at most 253 printable ASCII
//! characters; a lookup finds a route exactly when the name is one of its server names in
//! any letter case, and a miss reports the sanitised name.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use rustls::server::ResolvesServerCertUsingSni;
use rustls::ServerConfig;
use snigate::config::{gateway_from_str, sni_name};
use snigate::gateway::routing::{sanitise, Miss, RouteTable};
use snigate::metrics::Metrics;
use snigate::tls::server::RouteTls;

const CONFIG: &str = "listen: 127.0.0.1:0
tls: {cert: server.crt, key: server.key}
routes:
  - {name: redis, server_names: [redis.snigate.test, Cache.Snigate.Test.], protocol: redis, backend: '127.0.0.1:6379'}
  - {name: postgres, server_names: [postgres.snigate.test], protocol: postgres, backend: '127.0.0.1:5432'}
";
const NAMES: [&str; 3] = [
    "redis.snigate.test",
    "cache.snigate.test",
    "postgres.snigate.test",
];

fn table() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let config = gateway_from_str(CONFIG, "fuzz.yaml".as_ref()).expect("fuzz config");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = Arc::new(
            ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(ResolvesServerCertUsingSni::new())),
        );
        let metrics = Metrics::new("gateway");
        let tls_for = |_| RouteTls::new(tls.clone());
        RouteTable::new(&config.routes, tls_for, vec![None, None], &metrics.open)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(normal) = sni_name(name) {
        assert!(normal.is_ascii(), "{normal:?}");
        assert_eq!(normal, normal.to_ascii_lowercase());
        assert!(!normal.ends_with('.'), "{normal:?}");
        assert!(normal.parse::<std::net::IpAddr>().is_err(), "{normal:?}");
        assert_eq!(sni_name(&normal).as_deref(), Ok(normal.as_str()));
    }
    let clean = sanitise(name);
    assert!(clean.len() <= 253 && clean.bytes().all(|b| b.is_ascii_graphic()));
    let known = NAMES.contains(&name.to_ascii_lowercase().as_str());
    match table().lookup(Some(name)) {
        Ok(route) => {
            assert!(known, "{name:?} found route {}", route.name);
        }
        Err(Miss::Unknown(reported)) => {
            assert!(!known, "{name:?} missed");
            assert_eq!(reported, clean);
        }
        Err(Miss::NoSni) => panic!("a name reported as no SNI"),
    }
});

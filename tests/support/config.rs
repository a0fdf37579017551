//! Gateway and sidecar configs as the product's own types, with the defaults tests want:
//! loopback port 0 everywhere (the harness reads the bound addresses from the log), an admin
//! endpoint, no background probes (so tests count every connection), mutual TLS with a
//! test Pki. Tests change what they need with plain field assignment; a config key added to
//! the product is added here once.

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Duration;

use snigate::config::{
    AllowRule, GatewayConfig, GatewayTls, HostPort, Limits, Protocol, RouteConfig, SidecarConfig,
    SidecarTls, Timeouts, TunnelConfig,
};

use super::certs::{Pki, CLIENT_NAME, REDIS_SNI};

/// `127.0.0.1:0`: the OS picks a free port.
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The product's timeouts, but no probes (a probe is a connection tests would have to count)
/// and no retries (a client sees the far side as it is at once); tests of either set them.
pub fn timeouts() -> Timeouts {
    Timeouts {
        probe_interval: Duration::ZERO,
        retry: Duration::ZERO,
        ..Timeouts::default()
    }
}

/// A gateway serving `pki`'s server certificate and requiring client certificates from its CA.
pub fn gateway(pki: &Pki, routes: Vec<RouteConfig>) -> GatewayConfig {
    GatewayConfig {
        listen: any_port(),
        admin: Some(any_port()),
        tls: GatewayTls {
            cert: pki.server_cert(),
            key: pki.server_key(),
            client_ca: Some(pki.ca()),
            crl: None,
            min_version: Default::default(),
        },
        timeouts: timeouts(),
        limits: Limits::default(),
        runtime: Default::default(),
        routes,
    }
}

/// A gateway with one route, `redis` (SNI REDIS_SNI), to `backend`.
pub fn redis_gateway(pki: &Pki, backend: impl Display) -> GatewayConfig {
    gateway(
        pki,
        vec![route("redis", REDIS_SNI, Protocol::Redis, backend)],
    )
}

/// A sidecar with one tunnel, `redis`, to the gateway at `connect`.
pub fn redis_sidecar(pki: &Pki, connect: impl Display) -> SidecarConfig {
    sidecar(
        pki,
        vec![tunnel("redis", Protocol::Redis, connect, REDIS_SNI)],
    )
}

/// A route selected by `sni`, open to any client the CA verified.
pub fn route(name: &str, sni: &str, protocol: Protocol, backend: impl Display) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        server_names: vec![sni.into()],
        protocol,
        backend: host_port(backend),
        allow: Vec::new(),
        max_connections: None,
        login: None,
    }
}

/// Like `route`, open only to the default client identity (`dns:` + CLIENT_NAME).
pub fn worker_route(
    name: &str,
    sni: &str,
    protocol: Protocol,
    backend: impl Display,
) -> RouteConfig {
    RouteConfig {
        allow: allow(&[&format!("dns:{CLIENT_NAME}")]),
        ..route(name, sni, protocol, backend)
    }
}

/// An `allow` list from its YAML spelling (`dns:…`, `uri:…`, `cn:…`).
pub fn allow(ids: &[&str]) -> Vec<AllowRule> {
    let rule = |id: &&str| AllowRule::try_from(id.to_string()).expect("allow rule");
    ids.iter().map(rule).collect()
}

/// A sidecar trusting `pki`'s CA and presenting its client certificate.
pub fn sidecar(pki: &Pki, tunnels: Vec<TunnelConfig>) -> SidecarConfig {
    SidecarConfig {
        admin: Some(any_port()),
        tls: SidecarTls {
            ca: pki.ca(),
            cert: Some(pki.client_cert()),
            key: Some(pki.client_key()),
            min_version: Default::default(),
        },
        timeouts: timeouts(),
        limits: Limits::default(),
        runtime: Default::default(),
        proxy: None,
        tunnels,
    }
}

/// A tunnel on a free loopback port to `connect`, with SNI `sni`.
pub fn tunnel(name: &str, protocol: Protocol, connect: impl Display, sni: &str) -> TunnelConfig {
    TunnelConfig {
        name: name.into(),
        listen: any_port(),
        protocol,
        connect: host_port(connect),
        server_name: sni.into(),
        allow_non_loopback: false,
        session_resumption: true,
        warm: 0,
        warm_max_age: Duration::from_secs(600),
        proxy: None,
    }
}

pub fn host_port(addr: impl Display) -> HostPort {
    HostPort::try_from(addr.to_string()).expect("host:port")
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The YAML the product reads.
pub fn yaml(config: &impl serde::Serialize) -> String {
    serde_yaml::to_string(config).expect("config serializes")
}

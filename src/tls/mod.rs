//! TLS: PEM loading, the gateway's server configs, the sidecar's client config, identities.

pub mod client;
pub mod crl;
pub mod expiry;
pub mod identity;
pub mod pem;
pub mod reason;
pub mod server;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use tokio::net::TcpStream;

use crate::buffer::Lent;
use crate::config::TlsVersion;

/// The gateway's end of a client's TLS connection. The socket under rustls is read through a
/// lent buffer: rustls itself reads at most 4 KiB per call, so a 16 KiB record would cost
/// four or five syscalls; this way one read takes up to 64 KiB and rustls copies from it.
pub type ServerStream = tokio_rustls::server::TlsStream<Lent<TcpStream>>;

/// The sidecar's end of its TLS connection to the gateway, read the same way.
pub type ClientStream = tokio_rustls::client::TlsStream<Lent<TcpStream>>;

/// TLS 1.2 and 1.3 only; every suite of the ring provider is an AEAD, rustls never
/// renegotiates, and 0-RTT stays off (rustls' default `max_early_data_size` of 0).
fn versions(min: TlsVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static FROM_TLS12: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY_TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match min {
        TlsVersion::Tls12 => &FROM_TLS12,
        TlsVersion::Tls13 => &ONLY_TLS13,
    }
}

/// ring's suites with AES-128-GCM first. Between a sidecar and a gateway the sidecar's order
/// decides (rustls servers follow the client's), and AES-128 does 10 rounds per block where
/// AES-256 does 14, at a strength Mozilla's and NIST's guidance accept for TLS; other clients
/// keep their own preference.
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| !is_aes_128_gcm(suite.suite()));
    Arc::new(provider)
}

fn is_aes_128_gcm(suite: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as S;
    matches!(
        suite,
        S::TLS13_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    )
}

//! TLS: PEM loading, the gateway's server configs, the sidecar's client config, identities.

pub mod client;
pub mod identity;
pub mod pem;
pub mod server;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// TLS 1.2 and 1.3 only; every suite of the ring provider is an AEAD.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

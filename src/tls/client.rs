//! The sidecar's TLS side: trust only the private CA, present the client certificate if any.

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::ClientConfig;

use super::{pem, provider, server::ALPN_POSTGRESQL};
use crate::config::{Invalid, Protocol, SidecarTls, TunnelConfig};
use crate::protocol::snigate;

/// The sidecar's TLS client settings, from which each tunnel's config is made.
pub struct ClientTls {
    base: ClientConfig,
}

impl ClientTls {
    /// Loads the CA and the optional client certificate and key.
    pub fn load(tls: &SidecarTls) -> Result<ClientTls, Invalid> {
        let roots = pem::roots("tls.ca", &tls.ca)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(super::versions(tls.min_version))
            .expect("the ring provider supports TLS 1.2 and 1.3")
            .with_root_certificates(roots);
        let base = match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => {
                let chain = pem::certificates("tls.cert", cert)?;
                let key_der = pem::private_key("tls.key", key)?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    Invalid::new(
                        "tls.key",
                        format!("{} does not fit {}: {e}", key.display(), cert.display()),
                        "use the private key that was issued with this certificate",
                    )
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(ClientTls { base })
    }

    /// The config for one tunnel: every tunnel offers ALPN `snigate/1` first; PostgreSQL
    /// tunnels then `postgresql`, as libpq 17 does, which a gateway that predates `snigate/1`
    /// selects.
    pub fn tunnel_config(&self, tunnel: &TunnelConfig) -> Arc<ClientConfig> {
        let mut config = self.base.clone();
        config.alpn_protocols = vec![snigate::ALPN.to_vec()];
        if tunnel.protocol == Protocol::Postgres {
            config.alpn_protocols.push(ALPN_POSTGRESQL.to_vec());
        }
        if !tunnel.session_resumption {
            config.resumption = Resumption::disabled();
        }
        Arc::new(config)
    }
}

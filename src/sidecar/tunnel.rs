//! One configured tunnel, ready to open TLS connections to the gateway.

use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::failure::Failure;
use crate::buffer::Lent;
use crate::config::{HostPort, Protocol, Timeouts, TunnelConfig};
use crate::dial::{dial, timed_out};
use crate::tls::client::ClientTls;
use crate::tls::ClientStream;

/// A tunnel of the running config with its TLS connector.
pub struct Tunnel {
    /// The tunnel's name.
    pub name: String,
    /// The tunnel's protocol.
    pub protocol: Protocol,
    connect: HostPort,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    /// The sidecar's deadlines.
    pub timeouts: Timeouts,
}

impl Tunnel {
    /// `config.server_name` has been validated as a DNS name when the config was loaded.
    pub fn new(config: &TunnelConfig, tls: &ClientTls, timeouts: Timeouts) -> Option<Arc<Tunnel>> {
        Some(Arc::new(Tunnel {
            name: config.name.clone(),
            protocol: config.protocol,
            connect: config.connect.clone(),
            server_name: ServerName::try_from(config.server_name.clone()).ok()?,
            tls: TlsConnector::from(tls.tunnel_config(config)),
            timeouts,
        }))
    }

    /// TCP then TLS to the gateway, each under its deadline; never a plaintext fallback.
    /// Boxed: the stream (1.1 KiB) lives as long as the connection, and each step it passes
    /// through would otherwise hold its own copy in the connection's future.
    pub async fn connect(&self) -> Result<Box<ClientStream>, Failure> {
        let addr = &self.connect;
        let tcp =
            dial(addr, self.timeouts.connect)
                .await
                .map_err(|source| Failure::Unreachable {
                    addr: addr.clone(),
                    source,
                })?;
        let handshake = self.tls.connect(self.server_name.clone(), Lent::new(tcp));
        let failed = |source| Failure::Handshake {
            addr: addr.clone(),
            source,
        };
        tokio::time::timeout(self.timeouts.handshake, handshake)
            .await
            .map_err(|_| failed(timed_out(self.timeouts.handshake)))?
            .map(Box::new)
            .map_err(failed)
    }
}

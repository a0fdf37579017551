//! Reaching the gateway: a TCP connection (straight, or through the egress proxy's CONNECT),
//! then TLS with the tunnel's SNI, each under its deadline; never a plaintext fallback.

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::egress::Egress;
use super::failure::Failure;
use super::proxy;
use super::start::Fresh;
use crate::buffer::Lent;
use crate::config::{HostPort, Timeouts};
use crate::dial::{dial, timed_out};

/// How one tunnel opens connections to its gateway.
pub struct Dialer {
    /// The gateway's address as configured.
    pub addr: HostPort,
    /// Straight to the gateway, or through a proxy.
    pub egress: Egress,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    timeouts: Timeouts,
}

impl Dialer {
    /// A dialer for `addr` by way of `egress`, verifying the gateway as `server_name`.
    pub fn new(
        addr: HostPort,
        egress: Egress,
        server_name: ServerName<'static>,
        tls: TlsConnector,
        timeouts: Timeouts,
    ) -> Dialer {
        Dialer {
            addr,
            egress,
            server_name,
            tls,
            timeouts,
        }
    }

    /// A new TLS connection to the gateway that has carried nothing yet.
    pub async fn dial(&self) -> Result<Fresh, Failure> {
        let tcp = self.tcp().await?;
        // Boxed: the stream (1.1 KiB) lives as long as the connection, and each step it
        // passes through would otherwise hold its own copy in the connection's future.
        let handshake = Box::pin(self.tls(tcp));
        Ok(Fresh::new(handshake.await?))
    }

    async fn tcp(&self) -> Result<TcpStream, Failure> {
        if let Egress::Proxy { url, .. } = &self.egress {
            return Ok(proxy::connect(url, &self.addr, self.timeouts.connect).await?);
        }
        dial(&self.addr, self.timeouts.connect)
            .await
            .map_err(|source| Failure::Unreachable {
                addr: self.addr.clone(),
                source,
            })
    }

    async fn tls(&self, tcp: TcpStream) -> Result<Box<crate::tls::ClientStream>, Failure> {
        let handshake = self.tls.connect(self.server_name.clone(), Lent::new(tcp));
        let failed = |source| Failure::Handshake {
            addr: self.addr.clone(),
            source,
        };
        tokio::time::timeout(self.timeouts.handshake, handshake)
            .await
            .map_err(|_| failed(timed_out(self.timeouts.handshake)))?
            .map(Box::new)
            .map_err(failed)
    }
}

//! The sidecar role: plaintext on loopback for the worker, TLS with SNI to the gateway.

mod connection;
mod failure;

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ConfigError, HostPort, Invalid, Protocol, SidecarConfig, Timeouts};
use crate::dial::{dial, timed_out};
use crate::listener;
use crate::tls::client::ClientTls;

pub use failure::Failure;

/// One configured tunnel, ready to open TLS connections to the gateway.
pub struct Tunnel {
    name: String,
    protocol: Protocol,
    connect: HostPort,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    timeouts: Timeouts,
}

pub struct Sidecar {
    tunnels: Vec<(Arc<Tunnel>, std::net::SocketAddr)>,
}

impl Sidecar {
    /// Loads the CA and client certificate and prepares every tunnel; all `--check` needs.
    pub fn new(config: &SidecarConfig, file: &Path) -> Result<Sidecar, ConfigError> {
        let tls = ClientTls::load(&config.tls).map_err(|e| ConfigError::invalid(file, e))?;
        let mut tunnels = Vec::new();
        for (i, t) in config.tunnels.iter().enumerate() {
            let server_name = ServerName::try_from(t.server_name.clone()).map_err(|e| {
                let key = format!("tunnels[{i}].server_name");
                ConfigError::invalid(file, Invalid::new(key, e.to_string(), "use a DNS name"))
            })?;
            let tunnel = Tunnel {
                name: t.name.clone(),
                protocol: t.protocol,
                connect: t.connect.clone(),
                server_name,
                tls: TlsConnector::from(tls.tunnel_config(t.protocol)),
                timeouts: config.timeouts,
            };
            tunnels.push((Arc::new(tunnel), t.listen));
        }
        Ok(Sidecar { tunnels })
    }

    /// Binds every tunnel's listener first, so that one bad address stops the sidecar before
    /// any tunnel serves.
    pub async fn bind(&self) -> Result<Vec<(Arc<Tunnel>, TcpListener)>, (String, std::io::Error)> {
        let mut bound = Vec::new();
        for (tunnel, addr) in &self.tunnels {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| (format!("tunnel {} listen {addr}", tunnel.name), e))?;
            bound.push((tunnel.clone(), listener));
        }
        Ok(bound)
    }
}

/// Serves the bound tunnels until `shutdown` is cancelled.
pub async fn serve(
    bound: Vec<(Arc<Tunnel>, TcpListener)>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut loops = tokio::task::JoinSet::new();
    for (tunnel, listener) in bound {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(role = %"sidecar", tunnel = %tunnel.name, addr = %addr, "listening");
        }
        let (shutdown, tracker) = (shutdown.clone(), tracker.clone());
        loops.spawn(listener::serve(listener, shutdown, tracker, move |conn| {
            connection::handle(tunnel.clone(), conn)
        }));
    }
    while loops.join_next().await.is_some() {}
}

impl Tunnel {
    /// TCP then TLS to the gateway, each under its deadline; never a plaintext fallback.
    async fn connect(&self) -> Result<TlsStream<TcpStream>, Failure> {
        let addr = &self.connect;
        let tcp =
            dial(addr, self.timeouts.connect)
                .await
                .map_err(|source| Failure::Unreachable {
                    addr: addr.clone(),
                    source,
                })?;
        let handshake = self.tls.connect(self.server_name.clone(), tcp);
        let failed = |source| Failure::Handshake {
            addr: addr.clone(),
            source,
        };
        tokio::time::timeout(self.timeouts.handshake, handshake)
            .await
            .map_err(|_| failed(timed_out(self.timeouts.handshake)))?
            .map_err(failed)
    }
}

//! One configured tunnel: how it reaches its gateway, and its warm connections.

use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::dialer::Dialer;
use super::egress::Egress;
use super::failure::Failure;
use super::warm::Pool;
use crate::config::{Protocol, Timeouts, TunnelConfig};
use crate::error::Classified;
use crate::metrics::Metrics;
use crate::retry;
use crate::tls::client::ClientTls;
use crate::tls::ClientStream;

/// A tunnel of the running config.
pub struct Tunnel {
    /// The tunnel's name.
    pub name: String,
    /// The tunnel's protocol.
    pub protocol: Protocol,
    /// The sidecar's deadlines.
    pub timeouts: Timeouts,
    /// TCP and TLS to the gateway.
    pub dialer: Arc<Dialer>,
    warm: Pool,
}

impl Tunnel {
    /// `config.server_name` has been validated as a DNS name when the config was loaded.
    pub fn new(
        config: &TunnelConfig,
        egress: Egress,
        tls: &ClientTls,
        timeouts: Timeouts,
    ) -> Option<Arc<Tunnel>> {
        let server_name = ServerName::try_from(config.server_name.clone()).ok()?;
        let connector = TlsConnector::from(tls.tunnel_config(config));
        let addr = config.connect.clone();
        let dialer = Dialer::new(addr, egress, server_name, connector, timeouts);
        Some(Arc::new(Tunnel {
            name: config.name.clone(),
            protocol: config.protocol,
            timeouts,
            dialer: Arc::new(dialer),
            warm: Pool::new(config),
        }))
    }

    /// Starts keeping warm connections, if the tunnel asks for any, until `drain`.
    pub fn start_warm(&self, metrics: Arc<Metrics>, drain: CancellationToken) {
        self.warm.start(self.dialer.clone(), metrics, drain);
    }

    /// Closes the warm connections: a reload replaced this tunnel.
    pub fn stop_warm(&self) {
        self.warm.stop();
    }

    /// A gateway connection that has taken the client's `first` bytes: a warm one, else a
    /// new one (`slots` caps handshakes at once). While the gateway refuses, drops or sends
    /// away connections, the client waits and it is tried again within `timeouts.retry`.
    pub async fn obtain(
        &self,
        first: &[u8],
        slots: &Semaphore,
        metrics: &Metrics,
    ) -> Result<Box<ClientStream>, Failure> {
        let attempt = || self.attempt(first, slots, metrics);
        retry::within(self.timeouts.retry, attempt, Failure::transient).await
    }

    async fn attempt(
        &self,
        first: &[u8],
        slots: &Semaphore,
        metrics: &Metrics,
    ) -> Result<Box<ClientStream>, Failure> {
        let (fresh, warm) = match self.warm.take().await {
            Some(fresh) => (fresh, true),
            None => {
                let _slot = slots.acquire().await;
                (self.dialer.dial().await?, false)
            }
        };
        let started = fresh
            .start(first, &self.dialer.addr, self.timeouts.handshake)
            .await;
        if let (true, Err(failure)) = (warm, &started) {
            // Found dead at use: the gateway went away or closed it an instant ago.
            let why = match failure {
                Failure::GoAway { .. } => "goaway",
                _ => "closed",
            };
            let label = Metrics::reason(&self.name, why);
            metrics.warm.discarded.get_or_create(&label).inc();
        }
        started
    }
}

//! The gateway role: terminate TLS, pick the route by SNI, check the client, relay to the
//! backend.

mod accept;
mod connection;
mod refusal;

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ConfigError, GatewayConfig, Timeouts};
use crate::listener;
use crate::routing::RouteTable;
use crate::tls::server::ServerTls;

pub use refusal::Refusal;

pub struct Gateway {
    routes: RouteTable,
    timeouts: Timeouts,
}

impl Gateway {
    /// Loads every certificate and key the config names; this is all `--check` needs.
    pub fn new(config: &GatewayConfig, file: &Path) -> Result<Gateway, ConfigError> {
        let tls = ServerTls::load(&config.tls)
            .and_then(|tls| tls.check_names(&config.routes).map(|()| tls))
            .map_err(|e| ConfigError::invalid(file, e))?;
        Ok(Gateway {
            routes: RouteTable::new(&config.routes, |protocol| tls.route_config(protocol)),
            timeouts: config.timeouts,
        })
    }

    /// Serves until `shutdown` is cancelled; open connections stay on `tracker`.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(role = %"gateway", addr = %addr, "listening");
        }
        listener::serve(listener, shutdown, tracker, move |conn| {
            connection::handle(self.clone(), conn)
        })
        .await;
    }
}

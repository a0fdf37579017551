//! The sidecar's listening sockets, one per tunnel, reconciled with the config on reload:
//! new tunnels are bound, removed ones stop accepting, unchanged ones keep their socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{connection, Sidecar, Snapshot};
use crate::listener::{self, ListenError};
use crate::shutdown::Serving;

/// The bound socket of each tunnel, and how to stop its accept loop.
#[derive(Default)]
pub struct Listeners {
    serving: OnceLock<Serving>,
    bound: Mutex<HashMap<String, (SocketAddr, CancellationToken)>>,
}

impl Listeners {
    /// The process-wide controls accept loops hang off; set once, at start.
    pub fn set_serving(&self, serving: Serving) {
        let _ = self.serving.set(serving);
    }

    /// The process-wide controls, once set.
    pub fn serving(&self) -> Option<&Serving> {
        self.serving.get()
    }
}

impl Sidecar {
    /// Makes the bound sockets match `snapshot`: binds everything new first, and changes
    /// nothing if any bind fails, so a bad reload leaves the running tunnels as they were.
    pub(super) async fn bind_tunnels(
        self: &Arc<Self>,
        snapshot: &Snapshot,
    ) -> Result<(), ListenError> {
        let Some(serving) = self.listeners.serving() else {
            return Err(ListenError::NotServing);
        };
        let wanted: HashMap<&String, SocketAddr> = snapshot
            .config
            .tunnels
            .iter()
            .map(|t| (&t.name, t.listen))
            .collect();
        let current = self.bound_addresses();
        let mut fresh = Vec::new();
        for (name, addr) in &wanted {
            if current.get(*name) != Some(addr) {
                let listener =
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| ListenError::Bind {
                            tunnel: (*name).clone(),
                            addr: *addr,
                            source,
                        })?;
                fresh.push(((*name).clone(), *addr, listener));
            }
        }
        // A poisoned lock means a panic elsewhere while holding it; the table is still whole.
        let mut bound = self
            .listeners
            .bound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        bound.retain(|name, (addr, stop)| {
            let keep = wanted.get(name) == Some(addr);
            if !keep {
                tracing::info!(tunnel = %name, addr = %addr, "tunnel removed: no longer accepting");
                stop.cancel();
            }
            keep
        });
        for (name, addr, listener) in fresh {
            let stop = serving.accept.child_token();
            bound.insert(name.clone(), (addr, stop.clone()));
            serving.listeners.spawn(self.clone().accept_loop(
                name,
                listener,
                stop,
                serving.clone(),
            ));
        }
        Ok(())
    }

    fn bound_addresses(&self) -> HashMap<String, SocketAddr> {
        self.listeners
            .bound
            .lock()
            .map(|b| b.iter().map(|(n, (a, _))| (n.clone(), *a)).collect())
            .unwrap_or_default()
    }

    async fn accept_loop(
        self: Arc<Self>,
        name: String,
        listener: TcpListener,
        stop: CancellationToken,
        serving: Serving,
    ) {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(role = %"sidecar", tunnel = %name, addr = %addr, "listening");
        }
        let limit = serving.connections.clone();
        listener::serve(listener, stop, limit, move |conn| {
            serving.spawn(|serving| connection::handle(self.clone(), name.clone(), conn, serving))
        })
        .await;
    }
}

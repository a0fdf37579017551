//! Accept loops: bind, accept with backoff when the process runs out of resources, hand each
//! connection to its task, stop when asked.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Why a tunnel's listening socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("tunnel {tunnel}: cannot bind {addr}: {source}")]
    Bind {
        tunnel: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the sidecar is not serving yet")]
    NotServing,
}

/// An accepted connection with the id its logs carry.
pub struct Accepted {
    /// Unique in the process, for logs.
    pub id: u64,
    /// The accepted socket.
    pub stream: TcpStream,
    /// Who connected.
    pub peer: SocketAddr,
    /// Held for the connection's lifetime: its place under `limits.max_connections`.
    pub permit: OwnedSemaphorePermit,
}

/// Longest pause after repeated accept failures (EMFILE and friends): long enough not to spin,
/// short enough to pick up again soon after descriptors are freed.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts until `shutdown`, handing each connection to `handle` (which starts its task). At
/// `limit` open connections it stops accepting, so new clients wait in the kernel's backlog
/// instead of costing memory here.
pub async fn serve<H>(
    listener: TcpListener,
    shutdown: CancellationToken,
    limit: Arc<Semaphore>,
    handle: H,
) where
    H: Fn(Accepted),
{
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    crate::dial::tune(&listener);
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                handle(Accepted {
                    id,
                    stream,
                    peer,
                    permit,
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, pause = ?backoff, "accept failed; pausing");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

//! A `snigate/1` connection before START: a sidecar's warm connection, or its probe. It
//! costs the backend nothing, and the gateway closes it with GOAWAY as soon as it drains,
//! so the sidecar takes its next client elsewhere without losing a byte.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::refusal::Refusal;
use super::routing::Route;
use super::Gateway;
use crate::metrics::{Metrics, Raised};
use crate::protocol::snigate::{GOAWAY, START, STARTED};
use crate::shutdown::Serving;
use crate::tls::ServerStream;

/// How long a connection told GOAWAY is read, and what it sends discarded, until the
/// sidecar closes it: closing a socket with unread bytes sends a TCP reset, which can
/// destroy the GOAWAY before the sidecar has read it. Sidecars close at once.
const LINGER: Duration = Duration::from_secs(1);

/// Waits for a sidecar's START; `false` when the connection ended without one. Those ends
/// are no client's connection (probes, warm connections retired or sent away), so they are
/// logged at debug only.
pub async fn started_by_sidecar(
    gateway: &Gateway,
    route: &Route,
    tls: &mut ServerStream,
    serving: &Serving,
) -> Result<bool, Refusal> {
    let waiting = Raised::new(&gateway.metrics.warm.waiting, &Metrics::route(&route.name));
    let waited = wait_for_start(tls, serving).await?;
    drop(waiting);
    match waited {
        Waited::Started => return Ok(true),
        Waited::Closed => {
            tracing::debug!("closed before START: a probe or an unused warm connection")
        }
        Waited::GoneAway => tracing::debug!("GOAWAY before START: draining"),
    }
    Ok(false)
}

/// How the wait for START ended.
enum Waited {
    /// START read, STARTED sent: the client's bytes follow.
    Started,
    /// The sidecar closed it unused (a probe, or a warm connection retired or no longer
    /// wanted).
    Closed,
    /// The gateway is draining: GOAWAY sent, nothing relayed.
    GoneAway,
}

/// Waits for START, the sidecar closing, or the drain; nothing read before START is ever
/// relayed.
async fn wait_for_start(tls: &mut ServerStream, serving: &Serving) -> Result<Waited, Refusal> {
    let mut first = [0u8; 1];
    // A START that has arrived wins over a drain that begins at the same moment: it is
    // served, and the drain then treats it like any other open connection.
    let read = tokio::select! {
        biased;
        read = tls.read(&mut first) => read,
        _ = serving.drain.cancelled() => {
            go_away(tls).await;
            return Ok(Waited::GoneAway);
        }
    };
    match read {
        Ok(1) if first[0] == START => {}
        Ok(1) => return Err(Refusal::BadStart(first[0])),
        _ => return Ok(Waited::Closed),
    }
    let answer = async {
        tls.write_all(&[STARTED]).await?;
        tls.flush().await
    };
    Ok(match answer.await {
        Ok(()) => Waited::Started,
        Err(_) => Waited::Closed,
    })
}

/// GOAWAY, close_notify, then whatever the sidecar sent is read and dropped until it closes.
async fn go_away(tls: &mut ServerStream) {
    let bye = async {
        tls.write_all(&[GOAWAY]).await?;
        tls.shutdown().await?;
        let mut sink = [0u8; 512];
        while tls.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(LINGER, bye).await;
}

//! One client connection through the gateway, as a sequence of named steps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::Instrument;

use super::accept::accept;
use super::refusal::Refusal;
use super::Gateway;
use crate::closing;
use crate::dial::dial;
use crate::listener::Accepted;
use crate::protocol;
use crate::relay::relay;
use crate::routing::Route;
use crate::tls::identity::Identity;

pub async fn handle(gateway: Arc<Gateway>, conn: Accepted) {
    let span = tracing::info_span!("conn", id = conn.id, peer = %conn.peer, route = tracing::field::Empty, client = tracing::field::Empty);
    async move {
        let started = Instant::now();
        if let Err(refusal) = serve(&gateway, conn.stream).await {
            closing::log_refused(started, &refusal);
        } else {
            tracing::debug!("served");
        }
    }
    .instrument(span)
    .await;
}

async fn serve(gateway: &Gateway, tcp: TcpStream) -> Result<(), Refusal> {
    let started = Instant::now();
    let deadline = gateway.timeouts.handshake;
    let (route, mut tls) = tokio::time::timeout(deadline, accept(tcp, &gateway.routes))
        .await
        .map_err(|_| Refusal::HandshakeTimeout(deadline))??;
    let span = tracing::Span::current();
    span.record("route", route.name.as_str());
    let identity = identity(&tls);
    if let Some(id) = &identity {
        span.record("client", tracing::field::display(id));
    }
    if let Err(refusal) = authorize(&route, identity.as_ref()) {
        return refuse(&route, &mut tls, refusal, deadline).await;
    }
    let backend = match connect(&route, gateway.timeouts.connect).await {
        Ok(backend) => backend,
        Err(refusal) => return refuse(&route, &mut tls, refusal, deadline).await,
    };
    let outcome = relay(tls, backend).await;
    closing::log_relayed(started, &outcome);
    Ok(())
}

fn identity(tls: &TlsStream<TcpStream>) -> Option<Identity> {
    let certs = tls.get_ref().1.peer_certificates()?;
    Identity::from_der(certs.first()?)
}

fn authorize(route: &Route, identity: Option<&Identity>) -> Result<(), Refusal> {
    if route.allow.is_empty() || identity.is_some_and(|id| id.is_allowed(&route.allow)) {
        return Ok(());
    }
    let who = identity.map_or_else(|| "anonymous".to_owned(), ToString::to_string);
    Err(Refusal::NotAllowed(who))
}

async fn connect(route: &Route, deadline: Duration) -> Result<TcpStream, Refusal> {
    dial(&route.backend, deadline)
        .await
        .map_err(|source| Refusal::Backend {
            addr: route.backend.clone(),
            source,
        })
}

/// Tells the client, in its protocol, why it is not served; bounded by `deadline` so a client
/// that never sends its first command cannot hold the connection.
async fn refuse(
    route: &Route,
    tls: &mut TlsStream<TcpStream>,
    refusal: Refusal,
    deadline: Duration,
) -> Result<(), Refusal> {
    let message = format!("snigate: {}: {}", route.name, refusal.client_message());
    let _ = tokio::time::timeout(
        deadline,
        protocol::refuse(route.protocol, tls, None, &message),
    )
    .await;
    Err(refusal)
}

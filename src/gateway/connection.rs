//! One client connection through the gateway, as a sequence of named steps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

use super::accept::accept;
use super::backend;
use super::refusal::Refusal;
use super::routing::Route;
use super::start::started_by_sidecar;
use super::{Gateway, Snapshot};
use crate::closing;
use crate::config::Protocol;
use crate::conversation::Conversation;
use crate::listener::Accepted;
use crate::login::{self, Backend, LoggedIn, Target};
use crate::metrics::Metrics;
use crate::protocol::snigate;
use crate::relay::relay;
use crate::shutdown::Serving;
use crate::tls::identity::Identity;
use crate::tls::ServerStream;

/// Room for a client's first write (a Redis command, a PostgreSQL StartupMessage).
const GREETING_CAPACITY: usize = 16 * 1024;

/// Serves one accepted connection, leaving one log line and its metrics.
pub async fn handle(gateway: Arc<Gateway>, conn: Accepted, serving: Serving) {
    let span = tracing::info_span!("conn", id = conn.id, peer = %conn.peer, route = tracing::field::Empty, tls = tracing::field::Empty, client = tracing::field::Empty);
    async move {
        let started = Instant::now();
        let snapshot = gateway.snapshot();
        match serve(&gateway, &snapshot, conn.stream, &serving).await {
            Ok(()) => {}
            Err((None, Refusal::PlaintextCancel(request))) => {
                forward_cancel(&gateway, &snapshot, request, started).await
            }
            Err((route, refusal)) => {
                closing::record_refused(&gateway.metrics, route.as_deref(), started, &refusal)
            }
        }
    }
    .instrument(span)
    .await;
}

/// On refusal, also returns the route's name when one had been chosen.
async fn serve(
    gateway: &Gateway,
    snapshot: &Snapshot,
    tcp: TcpStream,
    serving: &Serving,
) -> Result<(), (Option<String>, Refusal)> {
    let started = Instant::now();
    let deadline = snapshot.config.timeouts.handshake;
    // Boxed so that the handshake's state is freed once it is done rather than sized into
    // the future that lives as long as the connection.
    let handshake = Box::pin(accept(tcp, &snapshot.routes, &serving.handshakes));
    let (route, tls) = tokio::time::timeout(deadline, handshake)
        .await
        .map_err(|_| Refusal::HandshakeTimeout(deadline))
        .and_then(|accepted| accepted)
        .map_err(|refusal| (None, refusal))?;
    gateway.metrics.record_accepted(&route.name);
    serve_route(gateway, snapshot, &route, tls, started, serving)
        .await
        .map_err(|refusal| (Some(route.name.clone()), refusal))
}

/// From a finished handshake on `route` to the end of the relay.
async fn serve_route(
    gateway: &Gateway,
    snapshot: &Snapshot,
    route: &Route,
    mut tls: Box<ServerStream>,
    started: Instant,
    serving: &Serving,
) -> Result<(), Refusal> {
    let deadline = snapshot.config.timeouts.handshake;
    let identity = describe(route, &tls);
    let sidecar = snigate::negotiated(tls.get_ref().1.alpn_protocol());
    if sidecar && !started_by_sidecar(gateway, route, &mut tls, serving).await? {
        return Ok(());
    }
    // Authorized before admitted: a client the route does not allow never takes one of its
    // places, not even while it is told so.
    if let Err(refusal) = authorize(route, identity.as_ref()) {
        return Err(refuse(route, &mut tls, &[], refusal, deadline).await);
    }
    // Open (`connections_open`) from here until the connection ends.
    let _place = match route.admit() {
        Ok(place) => place,
        Err(refusal) => return Err(refuse(route, &mut tls, &[], refusal, deadline).await),
    };
    let first_bytes = tokio::select! {
        greeting = greeting(route, &mut tls) => greeting,
        // Nothing was forwarded yet: the drain closes it at once.
        _ = serving.drain.cancelled() => return Err(drained(&mut tls, serving).await),
    };
    let greeting = first_bytes.ok_or(Refusal::Silent)?;
    forward(gateway, snapshot, route, tls, greeting, started, serving).await
}

/// Dials the backend, logs in for the client on a `login` route, sends what the client has
/// sent so far, and relays until both sides are done.
async fn forward(
    gateway: &Gateway,
    snapshot: &Snapshot,
    route: &Route,
    mut tls: Box<ServerStream>,
    mut greeting: Vec<u8>,
    started: Instant,
    serving: &Serving,
) -> Result<(), Refusal> {
    let deadline = snapshot.config.timeouts.handshake;
    let connect_started = Instant::now();
    let connected = match backend::connect(route, &greeting, &snapshot.config.timeouts).await {
        Ok(backend) => backend,
        Err(refusal) => return Err(refuse(route, &mut tls, &greeting, refusal, deadline).await),
    };
    gateway
        .metrics
        .connect_seconds
        .get_or_create(&Metrics::route(&route.name))
        .observe(connect_started.elapsed().as_secs_f64());
    let (stream, answer) = (connected.stream, connected.answer);
    let logged_in = match log_in(gateway, snapshot, route, &mut tls, stream, &mut greeting).await {
        Ok(logged_in) => logged_in,
        Err(refusal) => return Err(refuse(route, &mut tls, &greeting, refusal, deadline).await),
    };
    let (mut backend, _issued) = (logged_in.backend, logged_in.issued);
    let rest = &greeting[logged_in.consumed.max(connected.sent)..];
    if backend.write_all(rest).await.is_err() || backend.flush().await.is_err() {
        return Ok(());
    }
    let mut conversation = Conversation::new(route.protocol);
    conversation.client_sent(&greeting);
    if logged_in.consumed > 0 {
        conversation.session_started_by_login();
    }
    if pass_on(&answer, &mut tls, &mut conversation).await.is_err() {
        return Ok(());
    }
    // Freed before the relay: an idle connection should not keep 16 KiB it no longer needs.
    let greeted = greeting.len() as u64;
    drop(greeting);
    let mut outcome = relay(tls, backend, conversation, serving.stops()).await;
    outcome.from_client += greeted;
    outcome.from_backend += answer.len() as u64;
    closing::record_relayed(&gateway.metrics, &route.name, started, &outcome);
    Ok(())
}

/// Closes a connection the drain caught before its client sent anything (close_notify, FIN).
async fn drained(tls: &mut ServerStream, serving: &Serving) -> Refusal {
    tokio::select! {
        _ = tls.shutdown() => {}
        _ = serving.force.cancelled() => {}
    }
    Refusal::Drained
}

/// Records the route, TLS summary and client identity on the connection's span.
fn describe(route: &Route, tls: &ServerStream) -> Option<Identity> {
    let span = tracing::Span::current();
    span.record("route", route.name.as_str());
    span.record("tls", tracing::field::display(TlsSummary(tls)));
    let identity = identity(tls);
    if let Some(id) = &identity {
        span.record("client", tracing::field::display(id));
    }
    identity
}

/// `TLSv1_3/TLS13_AES_128_GCM_SHA256/resumed`: what an operator checks first when a client
/// is slow to connect or a peer negotiates something unexpected. Formatted only when the
/// span is logged.
struct TlsSummary<'a>(&'a ServerStream);

impl std::fmt::Display for TlsSummary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let conn = self.0.get_ref().1;
        if let (Some(version), Some(suite)) =
            (conn.protocol_version(), conn.negotiated_cipher_suite())
        {
            write!(f, "{version:?}/{:?}/", suite.suite())?;
        }
        match conn.handshake_kind() {
            Some(rustls::HandshakeKind::Resumed) => f.write_str("resumed"),
            _ => f.write_str("full"),
        }
    }
}

fn identity(tls: &ServerStream) -> Option<Identity> {
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

/// Redis and PostgreSQL clients speak first, so the backend is dialled only once the client
/// has: a connection that only completes TLS (a port scan) costs the backend nothing.
/// Server-first `tcp` protocols are dialled at once (after START, for a sidecar). `None`:
/// closed without a word.
async fn greeting(route: &Route, tls: &mut ServerStream) -> Option<Vec<u8>> {
    if route.protocol == Protocol::Tcp {
        return Some(Vec::new());
    }
    let mut greeting = Vec::with_capacity(GREETING_CAPACITY);
    match tls.read_buf(&mut greeting).await {
        Ok(n) if n > 0 => Some(greeting),
        _ => None,
    }
}

/// Passes on what the backend already answered (to a StartupMessage sent with the dial).
async fn pass_on(
    answer: &[u8],
    tls: &mut ServerStream,
    conversation: &mut Conversation,
) -> std::io::Result<()> {
    if !answer.is_empty() {
        tls.write_all(answer).await?;
        tls.flush().await?;
        conversation.far_side_sent(answer);
    }
    Ok(())
}

/// On a login route, the gateway logs in for the client (see `login`); elsewhere the backend
/// is used as it is.
async fn log_in(
    gateway: &Gateway,
    snapshot: &Snapshot,
    route: &Route,
    tls: &mut ServerStream,
    backend: TcpStream,
    greeting: &mut Vec<u8>,
) -> Result<LoggedIn, Refusal> {
    let Some(login) = &route.login else {
        return Ok(LoggedIn {
            backend: Backend::Plain(backend),
            issued: None,
            consumed: 0,
        });
    };
    let newest = || {
        let routes = &gateway.snapshot().routes;
        routes.named(&route.name).and_then(|r| r.login.clone())
    };
    let target = Target {
        route: &route.name,
        protocol: route.protocol,
        backend: &route.backend,
        timeouts: snapshot.config.timeouts,
        cancels: &gateway.cancels,
        newest: &newest,
    };
    Ok(login::log_in(&target, login, tls, backend, greeting).await?)
}

/// A plaintext CancelRequest goes to the server that issued its key, if a login connection
/// of this process holds it; otherwise it cannot be routed (no SNI) and is refused.
async fn forward_cancel(
    gateway: &Gateway,
    snapshot: &Snapshot,
    request: Vec<u8>,
    started: Instant,
) {
    let deadline = snapshot.config.timeouts.connect;
    match gateway.cancels.forward(&request, deadline).await {
        Ok(server) => {
            tracing::info!(%server, "plaintext CancelRequest forwarded to the server that issued its key")
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                "plaintext CancelRequest (libpq 16 or older, or psql's Ctrl-C) not forwarded: it has no \
                 SNI, and its key is not one an open login connection of this process holds; \
                 cancel through the sidecar, or with libpq 17's encrypted cancel (PQcancelCreate)"
            );
            let refusal = Refusal::PlaintextCancel(request);
            closing::record_refused(&gateway.metrics, None, started, &refusal);
        }
    }
}

async fn refuse(
    route: &Route,
    tls: &mut ServerStream,
    greeting: &[u8],
    refusal: Refusal,
    deadline: Duration,
) -> Refusal {
    closing::tell_client(
        route.protocol,
        &route.name,
        tls,
        greeting,
        &refusal,
        deadline,
    )
    .await;
    refusal
}

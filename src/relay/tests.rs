#[derive(Default, Clone)]
struct Tokens {
    drain: CancellationToken,
    force: CancellationToken,
}

fn duplex() -> (DuplexStream, DuplexStream) {
    tokio::io::duplex(64)
}

fn spawn(
    client: DuplexStream,
    backend: DuplexStream,
    conversation: Conversation,
    tokens: &Tokens,
) -> JoinHandle<Outcome> {
    let tokens = tokens.clone();
    tokio::spawn(async move {
        let stops = Stops {
            drain: &tokens.drain,
            force: &tokens.force,
        };
        relay(client, backend, conversation, stops).await
    })
}

/// A relay of a Redis conversation: the client's end, the backend's end, the relay task.
fn redis_relay(tokens: &Tokens) -> (DuplexStream, DuplexStream, JoinHandle<Outcome>) {
    let ((client, client_end), (backend_end, backend)) = (duplex(), duplex());
    let redis = Conversation::new(Protocol::Redis);
    (
        client,
        backend,
        spawn(client_end, backend_end, redis, tokens),
    )
}

async fn read_all(stream: &mut DuplexStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).await.unwrap();
    all
}

async fn read_exactly(stream: &mut DuplexStream, n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    stream.read_exact(&mut bytes).await.unwrap();
    bytes
}

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

use super::*;
use crate::config::Protocol;

#[tokio::test]
async fn half_close_travels_both_ways_and_bytes_are_counted() {
    let ((mut client, client_end), (backend_end, mut backend)) = (duplex(), duplex());
    let relay = spawn(
        client_end,
        backend_end,
        Conversation::Opaque,
        &Tokens::default(),
    );

    let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let writer = tokio::spawn(async move {
        client.write_all(&payload).await.unwrap();
        client.shutdown().await.unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        reply
    });
    let mut received = Vec::new();
    backend.read_to_end(&mut received).await.unwrap();
    assert_eq!(received.len(), 100_000);
    assert!(received.iter().enumerate().all(|(i, &b)| b == i as u8));
    backend
        .write_all(b"after the client's half-close")
        .await
        .unwrap();
    backend.shutdown().await.unwrap();

    assert_eq!(writer.await.unwrap(), b"after the client's half-close");
    let outcome = relay.await.unwrap();
    assert_eq!((outcome.from_client, outcome.from_backend), (100_000, 29));
    assert_eq!(outcome.closed_by, Side::Client);
    assert!(outcome.error.is_none());
}

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

#[tokio::test]
async fn drain_closes_a_connection_at_rest_at_once_and_both_sides_see_eof() {
    let tokens = Tokens::default();
    let (mut client, mut backend, relay) = redis_relay(&tokens);
    client.write_all(PING).await.unwrap();
    assert_eq!(read_exactly(&mut backend, PING.len()).await, PING);
    backend.write_all(b"+PONG\r\n").await.unwrap();
    assert_eq!(read_exactly(&mut client, 7).await, b"+PONG\r\n");

    tokens.drain.cancel();
    let outcome = relay.await.unwrap();
    assert_eq!(outcome.ending, Ending::AtRest);
    assert_eq!(outcome.closed_by, Side::Local);
    assert_eq!(read_all(&mut client).await, b"");
    assert_eq!(read_all(&mut backend).await, b"");
}

#[tokio::test]
async fn drain_waits_for_the_reply_outstanding_then_closes() {
    let tokens = Tokens::default();
    let (mut client, mut backend, relay) = redis_relay(&tokens);
    client.write_all(PING).await.unwrap();
    assert_eq!(read_exactly(&mut backend, PING.len()).await, PING);
    tokens.drain.cancel();
    tokio::task::yield_now().await;
    assert!(!relay.is_finished(), "closed with a reply outstanding");

    backend.write_all(b"+PO").await.unwrap();
    backend.write_all(b"NG\r\n").await.unwrap();
    assert_eq!(read_all(&mut client).await, b"+PONG\r\n");
    assert_eq!(relay.await.unwrap().ending, Ending::AtRest);
}

#[tokio::test]
async fn client_bytes_read_after_deciding_to_close_never_reach_the_far_side() {
    let tokens = Tokens::default();
    tokens.drain.cancel();
    let (mut client, mut backend, relay) = redis_relay(&tokens);
    // The relay task has not run yet: the bytes are there when it first looks.
    client.write_all(PING).await.unwrap();
    let outcome = relay.await.unwrap();
    assert_eq!((outcome.ending, outcome.from_client), (Ending::AtRest, 0));
    assert_eq!(read_all(&mut backend).await, b"");
}

#[tokio::test]
async fn the_end_of_the_drain_budget_cuts_a_busy_connection_and_says_why() {
    let tokens = Tokens::default();
    let (mut client, mut backend, relay) = redis_relay(&tokens);
    let partial = b"*2\r\n$5\r\nBRPOP";
    client.write_all(partial).await.unwrap();
    assert_eq!(read_exactly(&mut backend, partial.len()).await, partial);
    tokens.drain.cancel();
    tokens.force.cancel();
    let outcome = relay.await.unwrap();
    assert_eq!(outcome.ending, Ending::Cut("a partial command"));
    assert_eq!(outcome.closed_by, Side::Local);
}

#[tokio::test]
async fn an_opaque_connection_is_never_at_rest() {
    let ((_client, client_end), (backend_end, _backend)) = (duplex(), duplex());
    let tokens = Tokens::default();
    tokens.drain.cancel();
    let relay = spawn(client_end, backend_end, Conversation::Opaque, &tokens);
    tokio::task::yield_now().await;
    assert!(!relay.is_finished());
    tokens.force.cancel();
    assert_eq!(
        relay.await.unwrap().ending,
        Ending::Cut("an opaque protocol")
    );
}

#[tokio::test]
async fn a_redis_server_that_closes_ends_the_relay_though_the_client_keeps_its_side_open() {
    let tokens = Tokens::default();
    let (mut client, mut backend, relay) = redis_relay(&tokens);
    client.write_all(PING).await.unwrap();
    assert_eq!(read_exactly(&mut backend, PING.len()).await, PING);
    backend.write_all(b"+PONG\r\n").await.unwrap();
    backend.shutdown().await.unwrap();
    assert_eq!(read_all(&mut client).await, b"+PONG\r\n");
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), relay).await;
    let outcome = ended.expect("the relay outlived its server").unwrap();
    assert_eq!(
        (outcome.ending, outcome.closed_by),
        (Ending::Peers, Side::Backend)
    );
    // The client's next request fails instead of vanishing.
    assert!(client.write_all(PING).await.is_err());
}

//! The link with real sockets on loopback: what the far side receives, when, and how a
//! connection ends.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{relay, Link};

const RTT: Duration = Duration::from_millis(40);

fn link() -> Link {
    Link {
        half: RTT / 2,
        handshake: RTT,
        window: Some(64 << 10),
        trace: None,
    }
}

/// A client connected through a link (relaying one connection) to `target`.
async fn client_through_link(target: SocketAddr) -> TcpStream {
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        let (client, _) = front.accept().await.unwrap();
        relay(client, target, Instant::now(), 0, &link()).await;
    });
    TcpStream::connect(addr).await.unwrap()
}

#[tokio::test]
async fn bytes_arrive_in_order_after_handshake_and_delay_then_fin() {
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = Instant::now();
    let mut client = client_through_link(target.local_addr().unwrap()).await;
    client.write_all(b"hello ").await.unwrap();
    client.write_all(&vec![b'x'; 200_000]).await.unwrap();
    client.shutdown().await.unwrap();

    let (mut server, _) = target.accept().await.unwrap();
    // the target hears of the connection when the client's ACK would arrive: 1.5 RTT
    assert!(started.elapsed() >= RTT + RTT / 2);
    let mut got = Vec::new();
    server.read_to_end(&mut got).await.unwrap();
    assert_eq!(&got[..6], b"hello ");
    assert_eq!(got.len(), 6 + 200_000);
    assert!(got[6..].iter().all(|&b| b == b'x'));
}

#[tokio::test]
async fn an_answer_takes_a_round_trip_and_fin_comes_back() {
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut client = client_through_link(target.local_addr().unwrap()).await;
    client.write_all(b"?").await.unwrap();
    let (mut server, _) = target.accept().await.unwrap();
    let mut byte = [0u8; 1];
    server.read_exact(&mut byte).await.unwrap();

    let sent = Instant::now();
    client.write_all(b"p").await.unwrap();
    server.read_exact(&mut byte).await.unwrap();
    server.write_all(b"q").await.unwrap();
    client.read_exact(&mut byte).await.unwrap();
    assert_eq!(&byte, b"q");
    assert!(sent.elapsed() >= RTT);

    server.shutdown().await.unwrap();
    assert_eq!(client.read(&mut byte).await.unwrap(), 0, "EOF expected");
}

#[tokio::test]
async fn a_reset_is_passed_on() {
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut client = client_through_link(target.local_addr().unwrap()).await;
    client.write_all(b"!").await.unwrap();
    let (mut server, _) = target.accept().await.unwrap();
    let mut byte = [0u8; 1];
    server.read_exact(&mut byte).await.unwrap();

    client.set_zero_linger().unwrap();
    drop(client);
    let err = server.read(&mut byte).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn a_refused_target_resets_the_client() {
    let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = unused.local_addr().unwrap();
    drop(unused);
    let mut client = client_through_link(target).await;
    let err = client.read(&mut [0u8; 1]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

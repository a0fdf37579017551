//! The CONNECT exchange against scripted answers, each also cut into every pair of reads the
//! proxy's bytes could arrive in. Real proxies (tinyproxy) are driven by tests/proxy.rs.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::*;

const TARGET: &str = "gw.example.test:443";
const OK: &[u8] = b"HTTP/1.0 200 Connection established\r\nProxy-agent: test\r\n\r\n";

/// A proxy at a loopback port that reads the request head, answers `answer` split at
/// `split` (two writes), then echoes; the request head it read comes back on the channel.
async fn scripted(
    answer: &'static [u8],
    split: usize,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut peer, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if peer.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            request.push(byte[0]);
        }
        let (first, second) = answer.split_at(split);
        peer.write_all(first).await.unwrap();
        peer.flush().await.unwrap();
        tokio::task::yield_now().await;
        peer.write_all(second).await.unwrap();
        let mut echo = [0u8; 64];
        if let Ok(n) = peer.read(&mut echo).await {
            let _ = peer.write_all(&echo[..n]).await;
        }
        request
    });
    (addr, task)
}

fn proxy_at(addr: SocketAddr, credentials: &str) -> ProxyUrl {
    ProxyUrl::parse(&format!("http://{credentials}{addr}")).unwrap()
}

fn target() -> HostPort {
    HostPort::try_from(TARGET.to_owned()).unwrap()
}

async fn attempt(answer: &'static [u8], split: usize) -> Result<TcpStream, ProxyError> {
    let (addr, _proxy) = scripted(answer, split).await;
    connect(&proxy_at(addr, ""), &target(), Duration::from_secs(5)).await
}

#[tokio::test]
async fn sends_connect_with_credentials_and_hands_back_the_stream() {
    let (addr, proxy) = scripted(OK, OK.len()).await;
    let url = proxy_at(addr, "Aladdin:open%20sesame@");
    let mut tcp = connect(&url, &target(), Duration::from_secs(5))
        .await
        .unwrap();
    tcp.write_all(b"hello").await.unwrap();
    let mut echo = [0u8; 5];
    tcp.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"hello");
    let request = String::from_utf8(proxy.await.unwrap()).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        request,
        format!(
            "CONNECT {TARGET} HTTP/1.1\r\nHost: {TARGET}\r\nUser-Agent: snigate/{version}\r\n\
             Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
        )
    );
}

#[tokio::test]
async fn any_split_of_the_answer_is_read_whole() {
    for split in 0..=OK.len() {
        assert!(attempt(OK, split).await.is_ok(), "split at {split}");
    }
    let refusal: &[u8] = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
        Proxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 3\r\n\r\nno\n";
    for split in 0..=refusal.len() {
        let error = attempt(refusal, split).await.unwrap_err();
        assert_eq!(error.reason(), "proxy_auth_required", "split at {split}");
    }
}

#[tokio::test]
async fn refusals_name_the_proxy_the_target_and_the_status() {
    let cases: [(&'static [u8], &str, &str, bool); 5] = [
        (
            b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
            "refused CONNECT gw.example.test:443: 407 Proxy Authentication Required",
            "proxy_auth_required",
            false,
        ),
        (
            b"HTTP/1.0 403 Access violation\r\n\r\n",
            "refused CONNECT gw.example.test:443: 403 Access violation",
            "proxy_refused",
            false,
        ),
        (
            b"HTTP/1.1 503 \r\n\r\n",
            "refused CONNECT gw.example.test:443: 503 Service Unavailable",
            "proxy_upstream_failed",
            true,
        ),
        (
            b"SSH-2.0-OpenSSH_9.2\r\n",
            "answered CONNECT gw.example.test:443 with something other than HTTP",
            "proxy_bad_answer",
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x01",
            "answered CONNECT gw.example.test:443 with something other than HTTP: 3 bytes \
             after its 200 answer, before TLS began",
            "proxy_bad_answer",
            false,
        ),
    ];
    for (answer, message, reason, transient) in cases {
        let (addr, _proxy) = scripted(answer, answer.len()).await;
        let error = connect(&proxy_at(addr, ""), &target(), Duration::from_secs(5))
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("proxy {addr} {message}")),
            "{text}"
        );
        assert_eq!(
            (error.reason(), error.transient()),
            (reason, transient),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_proxy_that_is_down_silent_or_closing_is_transient() {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = proxy_at(silent.local_addr().unwrap(), "");
    let error = connect(&url, &target(), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!((error.reason(), error.transient()), ("proxy_timeout", true));
    drop(silent);
    let error = connect(&url, &target(), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(
        (error.reason(), error.transient()),
        ("proxy_unreachable", true)
    );
    let closing = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = proxy_at(closing.local_addr().unwrap(), "");
    tokio::spawn(async move {
        let (mut peer, _) = closing.accept().await.unwrap();
        let _ = peer.read(&mut [0u8; 512]).await;
        let _ = peer.write_all(b"HTTP/1.1 200").await;
    });
    let error = connect(&url, &target(), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!((error.reason(), error.transient()), ("proxy_closed", true));
}

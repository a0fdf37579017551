//! HTTP CONNECT through an egress proxy: one request, one answer head, and then the same TCP
//! connection carries the tunnel's TLS end to end. The proxy sees `CONNECT host:port`, and
//! after its `200` only the ClientHello and the ciphertext that any other route would carry.
//!
//! Written by hand rather than with hyper's client: the exchange is a single request and a
//! single answer head, and the stream must come back as the plain `TcpStream` the TLS layer
//! takes; with hyper it would come back only through an upgrade and a downcast, with hyper's
//! connection task driven beside the request. The head is parsed by httparse, hyper's own
//! parser, and nothing is read past it unnoticed.

use std::io;
use std::time::Duration;

use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{HostPort, ProxyUrl};
use crate::dial::dial;

/// Longest answer head read; proxies send a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// Most header lines read in an answer head.
const MAX_HEADERS: usize = 64;
/// Longest reason phrase repeated to the client.
const MAX_REASON: usize = 64;

/// Why a connection through the proxy did not open; the proxy's address, never its URL.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("proxy {proxy} unreachable: {source}")]
    Unreachable { proxy: HostPort, source: io::Error },
    #[error("proxy {proxy} did not answer CONNECT {target} within {after:?}")]
    Timeout {
        proxy: HostPort,
        target: HostPort,
        after: Duration,
    },
    #[error("proxy {proxy} closed the connection during CONNECT {target}: {source}")]
    Closed {
        proxy: HostPort,
        target: HostPort,
        source: io::Error,
    },
    #[error("proxy {proxy} refused CONNECT {target}: {status} {reason}")]
    Refused {
        proxy: HostPort,
        target: HostPort,
        status: u16,
        reason: String,
    },
    #[error("proxy {proxy} answered CONNECT {target} with something other than HTTP: {detail}")]
    BadAnswer {
        proxy: HostPort,
        target: HostPort,
        detail: String,
    },
}

impl ProxyError {
    /// A stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::Unreachable { .. } => "proxy_unreachable",
            ProxyError::Timeout { .. } => "proxy_timeout",
            ProxyError::Closed { .. } => "proxy_closed",
            ProxyError::Refused { status: 407, .. } => "proxy_auth_required",
            ProxyError::Refused { status, .. } if upstream_failed(*status) => {
                "proxy_upstream_failed"
            }
            ProxyError::Refused { .. } => "proxy_refused",
            ProxyError::BadAnswer { .. } => "proxy_bad_answer",
        }
    }

    /// A proxy that is down, slow or restarting, or that could not reach the gateway (which
    /// may be restarting behind it) may serve the next attempt; one that refuses us (407,
    /// 403, any other answer) or speaks no HTTP will not.
    pub fn transient(&self) -> bool {
        match self {
            ProxyError::Unreachable { .. }
            | ProxyError::Timeout { .. }
            | ProxyError::Closed { .. } => true,
            ProxyError::Refused { status, .. } => upstream_failed(*status),
            ProxyError::BadAnswer { .. } => false,
        }
    }
}

/// The proxy's own failures to reach the gateway: 502, 503 and 504, and 500, which
/// tinyproxy answers when its connection to the target fails.
fn upstream_failed(status: u16) -> bool {
    matches!(status, 500 | 502 | 503 | 504)
}

/// A TCP connection to `target` through `proxy`, open within `deadline` in all: the
/// connection to the proxy and its answer to CONNECT.
pub async fn connect(
    proxy: &ProxyUrl,
    target: &HostPort,
    deadline: Duration,
) -> Result<TcpStream, ProxyError> {
    let until = Instant::now() + deadline;
    let mut tcp = dial(&proxy.addr, deadline)
        .await
        .map_err(|source| ProxyError::Unreachable {
            proxy: proxy.addr.clone(),
            source,
        })?;
    match tokio::time::timeout_at(until, exchange(&mut tcp, proxy, target)).await {
        Ok(Ok(())) => Ok(tcp),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(ProxyError::Timeout {
            proxy: proxy.addr.clone(),
            target: target.clone(),
            after: deadline,
        }),
    }
}

async fn exchange(
    tcp: &mut TcpStream,
    proxy: &ProxyUrl,
    target: &HostPort,
) -> Result<(), ProxyError> {
    let closed = |source| ProxyError::Closed {
        proxy: proxy.addr.clone(),
        target: target.clone(),
        source,
    };
    let bad = |detail| ProxyError::BadAnswer {
        proxy: proxy.addr.clone(),
        target: target.clone(),
        detail,
    };
    tcp.write_all(&request(proxy, target))
        .await
        .map_err(closed)?;
    let mut head = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    let answer = loop {
        match tcp.read(&mut head[filled..]).await.map_err(closed)? {
            0 => return Err(closed(io::ErrorKind::UnexpectedEof.into())),
            n => filled += n,
        }
        if let Some(answer) = parse(&head[..filled]).map_err(bad)? {
            break answer;
        }
        if filled == MAX_HEAD {
            return Err(bad(format!(
                "no end of the answer head in {MAX_HEAD} bytes"
            )));
        }
    };
    if !(200..300).contains(&answer.status) {
        return Err(ProxyError::Refused {
            proxy: proxy.addr.clone(),
            target: target.clone(),
            status: answer.status,
            reason: answer.reason,
        });
    }
    // The gateway speaks only after our ClientHello: anything here came from the proxy.
    match filled - answer.len {
        0 => Ok(()),
        extra => Err(bad(format!(
            "{extra} bytes after its {} answer, before TLS began",
            answer.status
        ))),
    }
}

/// `CONNECT host:port`, with the URL's credentials when it has some.
fn request(proxy: &ProxyUrl, target: &HostPort) -> Vec<u8> {
    let version = env!("CARGO_PKG_VERSION");
    let mut out =
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: snigate/{version}\r\n")
            .into_bytes();
    if let Some(authorization) = &proxy.authorization {
        out.extend_from_slice(b"Proxy-Authorization: ");
        out.extend_from_slice(authorization.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// An answer head: its status, reason phrase and length in bytes.
struct Answer {
    status: u16,
    reason: String,
    len: usize,
}

/// The answer head at the start of `bytes`, once it is complete.
fn parse(bytes: &[u8]) -> Result<Option<Answer>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let status = response.code.unwrap_or_default();
    Ok(Some(Answer {
        status,
        reason: reason_phrase(status, response.reason.unwrap_or_default()),
        len,
    }))
}

/// The proxy's reason phrase, cut short and printable, or the standard one if it sent none.
fn reason_phrase(status: u16, sent: &str) -> String {
    let printable: String = sent
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_REASON)
        .collect();
    match printable.trim() {
        "" => StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or_default()
            .to_owned(),
        phrase => phrase.to_owned(),
    }
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;

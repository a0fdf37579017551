//! The backend side of a relayed connection: the TCP stream itself, or, on a Redis login
//! route, the session that keeps the client's AUTH from reaching Redis.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::redis::Session;

/// What the relay talks to on the backend side.
pub enum Backend {
    /// Bytes go both ways unchanged.
    Plain(TcpStream),
    /// Client commands are scanned for AUTH and HELLO … AUTH (boxed: it holds buffers).
    Redis(Box<Session<TcpStream>>),
}

impl AsyncRead for Backend {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Backend::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Backend::Redis(session) => Pin::new(session.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Backend {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Backend::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Backend::Redis(session) => Pin::new(session.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Backend::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Backend::Redis(session) => Pin::new(session.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Backend::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Backend::Redis(session) => Pin::new(session.as_mut()).poll_shutdown(cx),
        }
    }
}

//! The data path: a bidirectional copy with half-close in both directions, bounded buffers,
//! per-direction byte counts and a record of which side closed first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::error::Side;

/// One TLS record's worth of plaintext, so each read can become one full record.
const BUFFER_SIZE: usize = 16 * 1024;

/// How a relayed connection ended.
#[derive(Debug)]
pub struct Outcome {
    pub from_client: u64,
    pub from_backend: u64,
    /// The side that reached end-of-stream or failed first.
    pub closed_by: Side,
    /// The I/O error that ended it, if it did not end with both sides closing cleanly.
    pub error: Option<io::Error>,
}

/// Copies until both directions are finished; an EOF on one side becomes a write shutdown
/// (TLS close_notify, then TCP FIN) on the other, so half-closed protocols keep working.
/// `stop` ends the relay early (the drain grace period is over): both sides are closed.
pub async fn relay<C, B>(client: C, backend: B, stop: &CancellationToken) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = Tracked::new(client);
    let mut backend = Tracked::new(backend);
    let copy = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut backend,
        BUFFER_SIZE,
        BUFFER_SIZE,
    );
    let (result, stopped) = tokio::select! {
        result = copy => (result.err(), false),
        _ = stop.cancelled() => (None, true),
    };
    let closed_by = match (client.ended_at, backend.ended_at) {
        _ if stopped => Side::Local,
        (Some(c), Some(b)) if b < c => Side::Backend,
        (None, Some(_)) => Side::Backend,
        _ => Side::Client,
    };
    Outcome {
        from_client: client.bytes_read,
        from_backend: backend.bytes_read,
        closed_by,
        error: result,
    }
}

/// A stream wrapper that notes bytes read and when its peer stopped (EOF or error).
struct Tracked<S> {
    inner: S,
    bytes_read: u64,
    ended_at: Option<Instant>,
}

impl<S> Tracked<S> {
    fn new(inner: S) -> Self {
        Tracked {
            inner,
            bytes_read: 0,
            ended_at: None,
        }
    }

    fn note<T>(&mut self, result: &Poll<io::Result<T>>) {
        if let Poll::Ready(Err(_)) = result {
            self.ended_at.get_or_insert_with(Instant::now);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let n = buf.filled().len() - before;
            this.bytes_read += n as u64;
            if n == 0 && buf.remaining() > 0 {
                this.ended_at.get_or_insert_with(Instant::now);
            }
        }
        this.note(&result);
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note(&result);
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.note(&result);
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.note(&result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn half_close_travels_both_ways_and_bytes_are_counted() {
        let (mut client, client_end) = tokio::io::duplex(64);
        let (backend_end, mut backend) = tokio::io::duplex(64);
        let relay =
            tokio::spawn(
                async move { relay(client_end, backend_end, &CancellationToken::new()).await },
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
}

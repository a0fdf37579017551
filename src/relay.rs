//! The data path: a bidirectional copy with half-close in both directions, bounded buffers,
//! per-direction byte counts and a record of which side closed first.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::buffer::Lent;
use crate::error::Side;

/// How a relayed connection ended.
#[derive(Debug)]
pub struct Outcome {
    /// Bytes the client sent.
    pub from_client: u64,
    /// Bytes the far side sent.
    pub from_backend: u64,
    /// The side that reached end-of-stream or failed first.
    pub closed_by: Side,
    /// The I/O error that ended it, if it did not end with both sides closing cleanly.
    pub error: Option<io::Error>,
}

/// Copies until both directions are finished; an EOF on one side becomes a write shutdown
/// (TLS close_notify, then TCP FIN) on the other, so half-closed protocols keep working.
/// `stop` ends the relay early (the drain grace period is over): both sides are closed.
///
/// Each side is read through a [`Lent`] buffer: bytes go from it straight to the writer,
/// several TLS records at a time, and no buffer is held while the connection is idle.
pub async fn relay<C, B>(client: C, backend: B, stop: &CancellationToken) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client, mut backend) = (Lent::new(client), Lent::new(backend));
    let mut ends = Ends::default();
    let mut up = Pump::new(Side::Client, Side::Backend);
    let mut down = Pump::new(Side::Backend, Side::Client);
    let copy = poll_fn(|cx| {
        let up_done = up
            .poll(cx, &mut client, &mut backend, &mut ends)?
            .is_ready();
        let down_done = down
            .poll(cx, &mut backend, &mut client, &mut ends)?
            .is_ready();
        if up_done && down_done {
            Poll::Ready(Ok::<_, io::Error>(()))
        } else {
            Poll::Pending
        }
    });
    let (error, stopped) = tokio::select! {
        result = copy => (result.err(), false),
        _ = stop.cancelled() => (None, true),
    };
    Outcome {
        from_client: up.bytes,
        from_backend: down.bytes,
        closed_by: if stopped { Side::Local } else { ends.first() },
        error,
    }
}

/// When each side stopped: reached end-of-stream, or failed a read or a write.
#[derive(Default)]
struct Ends {
    client: Option<Instant>,
    backend: Option<Instant>,
}

impl Ends {
    fn mark(&mut self, side: Side) {
        let slot = match side {
            Side::Backend => &mut self.backend,
            Side::Client | Side::Local => &mut self.client,
        };
        slot.get_or_insert_with(Instant::now);
    }

    /// Notes `side` as ended when `result` is its failure.
    fn charge<T>(&mut self, result: io::Result<T>, side: Side) -> io::Result<T> {
        if result.is_err() {
            self.mark(side);
        }
        result
    }

    fn first(&self) -> Side {
        match (self.client, self.backend) {
            (Some(c), Some(b)) if b < c => Side::Backend,
            (None, Some(_)) => Side::Backend,
            _ => Side::Client,
        }
    }
}

enum State {
    Copying,
    ShuttingDown,
    Done,
}

/// One direction: what `from` sends, written to `to`, then `to`'s write side shut down.
struct Pump {
    from: Side,
    to: Side,
    state: State,
    /// Bytes written since the last flush: flushed when the reader has nothing more, so a
    /// TLS writer never holds a record back while waiting for more input.
    unflushed: bool,
    bytes: u64,
}

impl Pump {
    fn new(from: Side, to: Side) -> Self {
        Pump {
            from,
            to,
            state: State::Copying,
            unflushed: false,
            bytes: 0,
        }
    }

    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
        ends: &mut Ends,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncBufRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            match self.state {
                State::Done => return Poll::Ready(Ok(())),
                State::ShuttingDown => {
                    let shut = ready!(Pin::new(&mut *writer).poll_shutdown(cx));
                    self.state = State::Done;
                    return Poll::Ready(ends.charge(shut, self.to));
                }
                State::Copying => {}
            }
            let chunk = match Pin::new(&mut *reader).poll_fill_buf(cx) {
                Poll::Pending => return self.flush(cx, writer, ends),
                Poll::Ready(chunk) => ends.charge(chunk, self.from)?,
            };
            if chunk.is_empty() {
                ends.mark(self.from);
                self.state = State::ShuttingDown;
                continue;
            }
            let written = match ready!(Pin::new(&mut *writer).poll_write(cx, chunk)) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "peer takes no more",
                )),
                written => written,
            };
            let written = ends.charge(written, self.to)?;
            Pin::new(&mut *reader).consume(written);
            self.bytes += written as u64;
            self.unflushed = true;
        }
    }

    /// Flushes what was written; the pump then waits for the reader.
    fn flush<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut W,
        ends: &mut Ends,
    ) -> Poll<io::Result<()>> {
        if self.unflushed {
            let flushed = ready!(Pin::new(writer).poll_flush(cx));
            ends.charge(flushed, self.to)?;
            self.unflushed = false;
        }
        Poll::Pending
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

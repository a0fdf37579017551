//! The data path: a bidirectional copy with half-close in both directions, bounded buffers,
//! per-direction byte counts, a record of which side closed first, and the drain: a
//! connection is closed at the first point where its conversation is at rest.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::buffer::Lent;
use crate::conversation::Conversation;
use crate::error::Side;

/// How a relayed connection ended.
#[derive(Debug)]
pub struct Outcome {
    /// Bytes the client sent.
    pub from_client: u64,
    /// Bytes the far side sent.
    pub from_backend: u64,
    /// The side that reached end-of-stream or failed first; `Local` when snigate closed it.
    pub closed_by: Side,
    /// The I/O error that ended it, if it did not end with both sides closing cleanly.
    pub error: Option<io::Error>,
    /// Whether the drain ended it, and how.
    pub ending: Ending,
}

/// Who ended a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Its peers: an end-of-stream or an error on both directions.
    Peers,
    /// The drain, at a point where the conversation was at rest: nothing was lost.
    AtRest,
    /// The drain budget ran out while the connection was in the middle of something (what).
    Cut(&'static str),
}

/// The drain's two signals, as a connection sees them.
#[derive(Clone, Copy)]
pub struct Stops<'a> {
    /// Close at the next point where the conversation is at rest.
    pub drain: &'a CancellationToken,
    /// Close now: the drain budget is over.
    pub force: &'a CancellationToken,
}

/// Copies until both directions are finished; an EOF on one side becomes a write shutdown
/// (TLS close_notify, then TCP FIN) on the other, so half-closed protocols keep working. A
/// Redis or PostgreSQL server that closes its side never reads again, so there the far
/// side's EOF ends the relay: a request the client sends next fails at once instead of
/// waiting for a reply that cannot come.
///
/// Once `stops.drain` fires, the relay closes both sides cleanly as soon as `conversation`
/// is at rest and no far-side bytes wait in its buffer: when the token fires, after each
/// write of far-side bytes, and before each write of client bytes, which are then never
/// forwarded (the client may send them again elsewhere). `stops.force` closes it wherever
/// it is.
///
/// Each side is read through a [`Lent`] buffer: bytes go from it straight to the writer,
/// several TLS records at a time, and no buffer is held while the connection is idle.
pub async fn relay<C, B>(
    client: C,
    backend: B,
    conversation: Conversation,
    stops: Stops<'_>,
) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client, mut backend) = (Lent::new(client), Lent::new(backend));
    let mut ends = Ends::default();
    let mut up = Pump::new(Side::Client, Side::Backend);
    let mut down = Pump::new(Side::Backend, Side::Client);
    let mut watch = Watch {
        conversation,
        draining: false,
    };
    let mut drain = pin!(stops.drain.cancelled());
    let copy = poll_fn(|cx| {
        if !watch.draining {
            watch.draining = drain.as_mut().poll(cx).is_ready();
        }
        if watch.closes_with(&backend) {
            return Poll::Ready(Ok(Ending::AtRest));
        }
        let up_done = up
            .poll(cx, &mut client, &mut backend, &mut ends, &mut watch)?
            .is_ready();
        if watch.closes_with(&backend) {
            return Poll::Ready(Ok(Ending::AtRest));
        }
        let down_done = down
            .poll(cx, &mut backend, &mut client, &mut ends, &mut watch)?
            .is_ready();
        if watch.closes_with(&backend) {
            Poll::Ready(Ok(Ending::AtRest))
        } else if down_done && (up_done || watch.conversation.over_when_far_side_closes()) {
            Poll::Ready(Ok::<_, io::Error>(Ending::Peers))
        } else {
            Poll::Pending
        }
    });
    let copied = tokio::select! {
        result = copy => Some(result),
        _ = stops.force.cancelled() => None,
    };
    let (error, ending) = match copied {
        Some(Ok(ending)) => (None, ending),
        Some(Err(error)) => (Some(error), Ending::Peers),
        None => (None, Ending::Cut(watch.conversation.activity())),
    };
    if ending == Ending::AtRest {
        let closed = async { tokio::join!(client.shutdown(), backend.shutdown()) };
        tokio::select! {
            _ = closed => {}
            _ = stops.force.cancelled() => {}
        }
    }
    Outcome {
        from_client: up.bytes,
        from_backend: down.bytes,
        closed_by: match ending {
            Ending::Peers => ends.first(),
            Ending::AtRest | Ending::Cut(_) => Side::Local,
        },
        error,
        ending,
    }
}

/// What the pumps consult and tell about the conversation.
struct Watch {
    conversation: Conversation,
    /// The drain token has fired.
    draining: bool,
}

impl Watch {
    /// Draining and at rest: the relay closes the connection here.
    fn closing(&self) -> bool {
        self.draining && self.conversation.at_rest()
    }

    /// Closing, and no far-side bytes read but not yet forwarded would be thrown away.
    fn closes_with<B>(&self, far: &Lent<B>) -> bool {
        self.closing() && !far.holds_bytes()
    }

    fn forwarded(&mut self, from: Side, bytes: &[u8]) {
        match from {
            Side::Client => self.conversation.client_sent(bytes),
            Side::Backend | Side::Local => self.conversation.far_side_sent(bytes),
        }
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
        watch: &mut Watch,
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
            if watch.closing() {
                // The relay closes here: client bytes read now are never forwarded.
                return Poll::Pending;
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
            watch.forwarded(self.from, &chunk[..written]);
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
mod tests;

//! Read buffers lent to a connection only while bytes flow through it.
//!
//! A proxy's memory is mostly idle connections (a Celery worker keeps its broker connection
//! open for hours). A buffer owned by every connection would cost 64 KiB each; a buffer taken
//! from a per-thread pool on the first read and given back as soon as it is drained and the
//! socket has nothing more costs nothing while the connection is idle, and lets busy
//! connections read 64 KiB per syscall.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

/// Four TLS records: a bulk transfer becomes one read and one vectored write per 64 KiB.
const SIZE: usize = 64 * 1024;

/// Free buffers a thread keeps for the next busy connection (2 MiB at most).
const KEEP: usize = 32;

thread_local! {
    static FREE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take() -> Box<[u8]> {
    FREE.with(|free| free.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; SIZE].into_boxed_slice())
}

fn give(buffer: Box<[u8]>) {
    FREE.with(|free| {
        let mut free = free.borrow_mut();
        if free.len() < KEEP {
            free.push(buffer);
        }
    });
}

/// An [`AsyncBufRead`] over a plain stream whose buffer is lent from the thread's pool.
pub struct Lent<S> {
    inner: S,
    buffer: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    /// An error met after some bytes were read: reported once those are consumed.
    deferred: Option<io::Error>,
}

impl<S> Lent<S> {
    /// Wraps `inner`; no buffer is taken until the first read.
    pub fn new(inner: S) -> Self {
        Lent {
            inner,
            buffer: None,
            start: 0,
            end: 0,
            deferred: None,
        }
    }

    /// Whether bytes read from the stream wait in the buffer, not yet consumed.
    pub fn holds_bytes(&self) -> bool {
        self.start < self.end
    }

    /// Reads into the buffer until it is full or the stream has nothing more. `Err` carries
    /// what to return when nothing at all was read (pending, end of stream or an error).
    fn fill(&mut self, cx: &mut Context<'_>) -> Result<(), Poll<io::Result<()>>>
    where
        S: AsyncRead + Unpin,
    {
        let buffer = self.buffer.get_or_insert_with(take);
        while self.end < buffer.len() {
            let mut read = ReadBuf::new(&mut buffer[self.end..]);
            match Pin::new(&mut self.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if !read.filled().is_empty() => self.end += read.filled().len(),
                Poll::Ready(Err(error)) if self.end > 0 => {
                    self.deferred = Some(error);
                    break;
                }
                _ if self.end > 0 => break,
                polled => return Err(polled),
            }
        }
        Ok(())
    }

    fn give_back(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            give(buffer);
        }
    }
}

impl<S> Drop for Lent<S> {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl<S: AsyncRead + Unpin> AsyncBufRead for Lent<S> {
    /// Refills only when drained, and then reads until the buffer is full or the stream has
    /// nothing more for now: a TLS stream yields one record per read, and four records
    /// should leave as one write, not four.
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        if this.start == this.end {
            if let Some(error) = this.deferred.take() {
                return Poll::Ready(Err(error));
            }
            (this.start, this.end) = (0, 0);
            if let Err(polled) = this.fill(cx) {
                this.give_back();
                return polled.map_ok(|()| &[][..]);
            }
        }
        match &this.buffer {
            Some(buffer) => Poll::Ready(Ok(&buffer[this.start..this.end])),
            None => Poll::Ready(Ok(&[])),
        }
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        let this = self.get_mut();
        this.start = (this.start + amount).min(this.end);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lent<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let available = ready!(self.as_mut().poll_fill_buf(cx))?;
        let amount = available.len().min(out.remaining());
        out.put_slice(&available[..amount]);
        self.consume(amount);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Lent<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    /// rustls hands over all its pending records at once: one writev, not one write each.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test]
    async fn the_buffer_goes_back_to_the_pool_once_drained() {
        let (mut writer, reader) = tokio::io::duplex(1024);
        let mut lent = Lent::new(reader);
        writer.write_all(b"ping").await.unwrap();
        assert_eq!(lent.fill_buf().await.unwrap(), b"ping");
        assert!(lent.buffer.is_some());
        Pin::new(&mut lent).consume(4);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let polled = Pin::new(&mut lent).poll_fill_buf(&mut cx);
        assert!(polled.is_pending());
        assert!(lent.buffer.is_none());
        drop(writer);
        assert_eq!(lent.fill_buf().await.unwrap(), b"");
    }

    /// Yields its pieces one per read (as a TLS stream yields one record), then an error.
    struct Pieces(Vec<io::Result<&'static [u8]>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.0.pop() {
                Some(piece) => Poll::Ready(piece.map(|bytes| out.put_slice(bytes))),
                None => Poll::Pending,
            }
        }
    }

    #[tokio::test]
    async fn one_fill_gathers_every_piece_and_an_error_waits_its_turn() {
        let broken = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        let mut lent = Lent::new(Pieces(vec![Err(broken), Ok(b"c"), Ok(b"b"), Ok(b"a")]));
        assert_eq!(lent.fill_buf().await.unwrap(), b"abc");
        Pin::new(&mut lent).consume(3);
        let error = lent.fill_buf().await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }

    /// rustls writes its pending records as one writev only when the stream says it can.
    #[tokio::test]
    async fn vectored_writes_reach_the_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        assert!(Lent::new(tcp).is_write_vectored());
    }
}

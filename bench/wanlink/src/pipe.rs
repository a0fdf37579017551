//! One direction of a relayed connection: a reader that takes whatever the sender has written
//! and stamps it with its arrival time, and a writer that hands each chunk to the receiver
//! when it is due. The queue between them keeps the order; its size is capped by a window.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;

use crate::timer::Timer;
use crate::trace::Tap;

/// Most bytes taken from a socket in one read.
const CHUNK: usize = 256 << 10;

/// What crosses the link, in order.
pub enum Item {
    Data(Vec<u8>),
    /// The sender shut down its writing side (FIN).
    Eof,
    /// The sender's socket failed (RST).
    Reset,
}

/// An item and the time it arrives at the far end.
pub struct Stamped {
    due: Instant,
    item: Item,
}

/// How a writer ended.
pub enum End {
    /// EOF delivered, or the reader went away.
    Closed,
    /// The sender was reset: the receiver must be reset too.
    Reset,
    /// The receiver could not take the bytes (it closed or was reset).
    Failed,
}

/// The emulated receive window of one direction: bytes the reader has taken and the far end
/// has not acknowledged yet (an acknowledgement comes back RTT/2 after delivery).
pub struct Window {
    credit: Option<Arc<Semaphore>>,
    chunk: usize,
}

impl Window {
    /// A window of `cap` bytes; None: no cap.
    pub fn new(cap: Option<usize>) -> Window {
        Window {
            credit: cap.map(|c| Arc::new(Semaphore::new(c))),
            chunk: cap.map_or(CHUNK, |c| c.min(CHUNK)),
        }
    }

    /// Waits until a whole chunk may be read.
    async fn take(&self) {
        if let Some(credit) = &self.credit {
            // The semaphore is never closed; `chunk` is at most CHUNK, which fits a u32.
            if let Ok(permit) = credit.acquire_many(self.chunk as u32).await {
                permit.forget();
            }
        }
    }

    fn give_back(&self, n: usize) {
        if let Some(credit) = &self.credit {
            credit.add_permits(n);
        }
    }

    fn ack_at(&self, n: usize, at: Instant) {
        if let Some(credit) = &self.credit {
            let credit = credit.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(at.into()).await;
                credit.add_permits(n);
            });
        }
    }
}

/// Reads `src` until EOF or an error. A chunk read at time t leaves at max(t, `leave_after`)
/// (a new connection's bytes wait for the emulated handshake) and arrives `half` later.
pub async fn read(
    src: &TcpStream,
    tx: UnboundedSender<Stamped>,
    window: &Window,
    leave_after: Instant,
    half: Duration,
) {
    let mut buf = vec![0u8; window.chunk];
    loop {
        window.take().await;
        let result = read_some(src, &mut buf).await;
        let due = Instant::now().max(leave_after) + half;
        let read = *result.as_ref().unwrap_or(&0);
        window.give_back(window.chunk - read);
        let item = match result {
            Ok(0) => Item::Eof,
            Ok(n) => Item::Data(buf[..n].to_vec()),
            Err(_) => Item::Reset,
        };
        let last = !matches!(item, Item::Data(_));
        if tx.send(Stamped { due, item }).is_err() || last {
            return;
        }
    }
}

/// Delivers what `read` queued to `dst`, each item when it is due.
pub async fn write(
    dst: &TcpStream,
    mut rx: UnboundedReceiver<Stamped>,
    window: &Window,
    half: Duration,
    tap: Tap<'_>,
) -> End {
    let Ok(timer) = Timer::new() else {
        return End::Failed;
    };
    while let Some(Stamped { due, item }) = rx.recv().await {
        if timer.sleep_until(due).await.is_err() {
            return End::Failed;
        }
        match item {
            Item::Data(bytes) => {
                if write_all(dst, &bytes).await.is_err() {
                    return End::Failed;
                }
                tap.note(format_args!("{}", bytes.len()));
                window.ack_at(bytes.len(), Instant::now() + half);
            }
            Item::Eof => {
                tap.note(format_args!("FIN"));
                // SAFETY: shutdown(2) on a socket this function borrows.
                unsafe { libc::shutdown(dst.as_raw_fd(), libc::SHUT_WR) };
                return End::Closed;
            }
            Item::Reset => {
                tap.note(format_args!("RST"));
                return End::Reset;
            }
        }
    }
    End::Closed
}

async fn read_some(src: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        src.readable().await?;
        match src.try_read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

async fn write_all(dst: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        dst.writable().await?;
        match dst.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

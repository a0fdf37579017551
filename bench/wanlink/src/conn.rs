//! One connection across the link. The local kernel accepts it at once, so the link charges
//! the TCP handshake itself: the client's bytes leave one RTT after it connected (when its
//! SYN-ACK would have come back) and the target sees the connection half an RTT later (when
//! the client's ACK and first bytes would have arrived), as a real connect across the WAN.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::mpsc::unbounded_channel;
use tokio::sync::Notify;

use crate::pipe::{self, End, Window};
use crate::timer::Timer;
use crate::trace::{Tap, Trace};

/// The shape of the link, shared by all connections.
pub struct Link {
    /// One-way delay: RTT/2.
    pub half: Duration,
    /// What a new connection waits before its first bytes leave: one RTT, or zero.
    pub handshake: Duration,
    /// Bytes in flight per direction; None: no cap.
    pub window: Option<usize>,
    pub trace: Option<Trace>,
}

/// Relays `client` (accepted at `accepted`, the link's connection number `conn`) to `target`
/// until both directions are closed or one of them is reset.
pub async fn relay(
    client: TcpStream,
    target: SocketAddr,
    accepted: Instant,
    conn: u64,
    link: &Link,
) {
    let tap = |dir| Tap {
        trace: link.trace.as_ref(),
        conn,
        dir,
        since: accepted,
    };
    let _ = client.set_nodelay(true);
    let leave_after = accepted + link.handshake;
    let abort = Notify::new();
    let up_window = Window::new(link.window);
    let (up_tx, up_rx) = unbounded_channel();
    let reading = pipe::read(&client, up_tx, &up_window, leave_after, link.half);
    let far = async {
        // tokio's own timer would round this up to a whole millisecond: use the precise one
        let connect_at = leave_after + link.half;
        let waited = async { Timer::new()?.sleep_until(connect_at).await };
        let connected = match waited.await {
            Ok(()) => TcpStream::connect(target).await,
            Err(e) => Err(e),
        };
        let server = match connected {
            Ok(server) => server,
            Err(e) => {
                eprintln!("wanlink: connect {target}: {e}");
                // the refusal travels back to the client like any answer
                tokio::time::sleep(link.half).await;
                let _ = client.set_zero_linger();
                abort.notify_one();
                return;
            }
        };
        let _ = server.set_nodelay(true);
        let down_window = Window::new(link.window);
        let (down_tx, down_rx) = unbounded_channel();
        let up = async {
            let end = pipe::write(&server, up_rx, &up_window, link.half, tap(">")).await;
            finish(end, &server, &client, &abort);
        };
        let down_reading = pipe::read(&server, down_tx, &down_window, Instant::now(), link.half);
        let down = async {
            let end = pipe::write(&client, down_rx, &down_window, link.half, tap("<")).await;
            finish(end, &client, &server, &abort);
        };
        tokio::join!(up, down_reading, down);
    };
    tokio::select! {
        _ = async { tokio::join!(reading, far) } => {}
        _ = abort.notified() => {}
    }
}

/// After a writer into `dst` (fed from `src`) ended: a reset travels on (`dst` is closed with
/// RST), and a receiver that refused bytes resets the sender, as its kernel would. Either
/// ends the whole connection: both sockets close when `relay` returns.
fn finish(end: End, dst: &TcpStream, src: &TcpStream, abort: &Notify) {
    let reset = match end {
        End::Closed => return,
        End::Reset => dst,
        End::Failed => src,
    };
    let _ = reset.set_zero_linger();
    abort.notify_one();
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;

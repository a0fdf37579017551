//! A plain TCP server that speaks first (as RabbitMQ or MariaDB do) and counts the
//! connections it accepted: what a `tcp` route's backend sees.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use crate::support::IO;

/// What the server sends first on every connection, then it echoes.
pub const GREETING: &[u8] = b"HELLO\r\n";

pub struct Speaker {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Speaker {
    /// Listens on a free loopback port until the test process ends.
    pub fn start() -> Speaker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    let _ = conn.write_all(GREETING);
                    let _ = std::io::copy(&mut conn.try_clone().unwrap(), &mut conn);
                });
            }
        });
        Speaker { addr, accepted }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// A client of `addr` (e.g. a sidecar tunnel in front of this server) reads the greeting.
    pub fn greeted_through(addr: SocketAddr) {
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(IO)).unwrap();
        let mut hello = vec![0u8; GREETING.len()];
        std::io::Read::read_exact(&mut client, &mut hello).unwrap();
        assert_eq!(hello, GREETING);
    }
}

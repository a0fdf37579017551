//! TCP sockets: a port that refuses connections, and what the kernel says about sockets
//! (`ss`): established sockets with their timers, the accept queue of a listening socket.

use std::net::SocketAddr;
use std::process::Command;

use socket2::{Domain, Type};

use super::process::{run, texts, CMD};

/// A loopback port where nothing listens, and that nothing else can take while this lives:
/// a socket bound to it that never listens, so every connection is refused.
pub struct DeadPort {
    _socket: socket2::Socket,
    pub addr: SocketAddr,
}

impl DeadPort {
    pub fn new() -> DeadPort {
        let socket = socket2::Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        DeadPort {
            _socket: socket,
            addr,
        }
    }

    /// Frees the port for a server that comes (back) there; its address.
    pub fn release(self) -> SocketAddr {
        self.addr
    }
}

/// One established socket: its addresses and the whole `ss` record (owner, timers, …).
pub struct Socket {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub record: String,
}

/// Every established TCP socket of every process, from `ss -tnieop`.
pub fn established() -> Vec<Socket> {
    let text = ss(&["-tnieopH", "state", "established"]);
    let mut records: Vec<String> = Vec::new();
    for line in text.lines() {
        match records.last_mut() {
            // A record's continuation lines are indented.
            Some(last) if line.starts_with(char::is_whitespace) => last.push_str(line),
            _ => records.push(line.to_owned()),
        }
    }
    let socket = |record: String| {
        let words: Vec<&str> = record.split_whitespace().collect();
        let local = words.get(2)?.parse().ok()?;
        let peer = words.get(3)?.parse().ok()?;
        Some(Socket {
            local,
            peer,
            record,
        })
    };
    records.into_iter().filter_map(socket).collect()
}

/// Connections the kernel has completed and queued on the listening socket at `addr` that
/// the process has not accepted (the listening socket's Recv-Q).
pub fn accept_queue(addr: SocketAddr) -> usize {
    let text = ss(&[
        "-ltnH",
        "state",
        "listening",
        "sport",
        "=",
        &format!(":{}", addr.port()),
    ]);
    let queued = text.lines().find_map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        (words.get(2)? == &addr.to_string()).then(|| words[0].parse().ok())?
    });
    queued.unwrap_or_else(|| panic!("no listening socket on {addr}:\n{text}"))
}

fn ss(args: &[&str]) -> String {
    let out = run(Command::new("ss").args(args), CMD);
    assert!(out.status.success(), "ss: {:?}", texts(&out));
    texts(&out).0
}

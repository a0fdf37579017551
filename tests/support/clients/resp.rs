//! A minimal RESP2 client over any stream that counts the bytes it writes and reads, so
//! tests can compare them with snigate's byte counters, plus a checked SET/GET traffic
//! generator for reload and drain tests.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::support::{wait_for, IO};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
}

/// RESP encoding of one command.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

pub struct Resp<S> {
    io: BufReader<S>,
    /// Bytes written to / read from the stream so far.
    pub sent: u64,
    pub received: u64,
}

impl Resp<TcpStream> {
    pub async fn connect(addr: SocketAddr) -> io::Result<Resp<TcpStream>> {
        Ok(Resp::new(TcpStream::connect(addr).await?))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Resp<S> {
    pub fn new(stream: S) -> Resp<S> {
        Resp {
            io: BufReader::with_capacity(64 * 1024, stream),
            sent: 0,
            received: 0,
        }
    }

    /// Write raw bytes (e.g. part of a command) and flush.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.get_mut().write_all(bytes).await?;
        self.io.get_mut().flush().await?;
        self.sent += bytes.len() as u64;
        Ok(())
    }

    /// Read one reply (bounded by a deadline).
    pub async fn read_reply(&mut self) -> io::Result<Reply> {
        match tokio::time::timeout(IO, self.read_reply_inner()).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no RESP reply")),
        }
    }

    async fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let n = self.io.read_until(b'\n', &mut line).await?;
        self.received += n as u64;
        if n == 0 || !line.ends_with(b"\r\n") {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("EOF after {:?}", String::from_utf8_lossy(&line)),
            ));
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    async fn read_reply_inner(&mut self) -> io::Result<Reply> {
        let line = self.read_line().await?;
        let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("bad reply {line:?}"));
        let (kind, rest) = line.split_at(1.min(line.len()));
        Ok(match kind {
            "+" => Reply::Status(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(rest.parse().map_err(|_| bad())?),
            "$" => {
                let len: i64 = rest.parse().map_err(|_| bad())?;
                if len < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut data = vec![0u8; len as usize + 2];
                    self.io.read_exact(&mut data).await?;
                    self.received += data.len() as u64;
                    data.truncate(len as usize);
                    Reply::Bulk(Some(data))
                }
            }
            _ => return Err(bad()),
        })
    }

    /// Send one command and read its reply.
    pub async fn cmd(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.write(&encode(args)).await?;
        self.read_reply().await
    }

    /// PING, which must answer PONG.
    pub async fn ping(&mut self) {
        let reply = self.cmd(&[b"PING"]).await.unwrap();
        assert_eq!(reply, Reply::Status("PONG".into()));
    }

    /// Close our side and read until the peer closes too; the bytes after are counted.
    pub async fn close(mut self) -> io::Result<()> {
        self.io.get_mut().shutdown().await?;
        let mut rest = Vec::new();
        let fut = self.io.read_to_end(&mut rest);
        tokio::time::timeout(IO, fut)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "peer did not close"))??;
        assert!(rest.is_empty(), "unexpected bytes before EOF: {rest:?}");
        Ok(())
    }
}

/// Deterministic, incompressible-looking bytes (xorshift), different for every `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What a traffic stream did, returned when it stops.
#[derive(Debug)]
pub struct TrafficReport {
    pub ops: u64,
    /// Bytes the client wrote and read on its connection.
    pub sent: u64,
    pub received: u64,
    /// SHA-256 over every value SET, and over every value GET returned.
    pub sha_set: [u8; 32],
    pub sha_got: [u8; 32],
}

/// One long-lived connection doing checked SET/GET round trips with values of 1–64 KiB
/// until stopped; any wrong reply or error ends it with `Err`.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    task: JoinHandle<Result<TrafficReport, String>>,
}

impl Traffic {
    /// Connect to `addr` (a sidecar tunnel of a Redis route) and start at once.
    pub async fn start(addr: SocketAddr, name: &str) -> Traffic {
        let conn = Resp::connect(addr).await.expect("connect traffic stream");
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(conn, name.to_owned(), stop.clone(), ops.clone()));
        Traffic { stop, ops, task }
    }

    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Wait until `n` more round trips have completed (traffic really flows right now).
    pub fn wait_progress(&self, n: u64) {
        let target = self.ops() + n;
        wait_for("traffic progress", || {
            assert!(!self.task.is_finished(), "traffic stream ended early");
            (self.ops() >= target).then_some(())
        });
    }

    /// Stop after the current round trip, close the connection, and report.
    pub async fn finish(self) -> TrafficReport {
        self.stop.store(true, Ordering::Relaxed);
        match self.task.await.expect("traffic task panicked") {
            Ok(report) => report,
            Err(e) => panic!("traffic stream failed: {e}"),
        }
    }
}

async fn run(
    mut conn: Resp<TcpStream>,
    name: String,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
) -> Result<TrafficReport, String> {
    let (mut set_hash, mut got_hash) = (Sha256::new(), Sha256::new());
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("{name}:{}", i % 8);
        let len = 1024 + (i.wrapping_mul(7919) % (63 * 1024)) as usize;
        let value = payload(i ^ 0xA5A5, len);
        set_hash.update(&value);
        let r = conn.cmd(&[b"SET", key.as_bytes(), &value]).await;
        if r.as_ref().ok() != Some(&Reply::Status("OK".into())) {
            return Err(format!("op {i}: SET replied {r:?}"));
        }
        match conn.cmd(&[b"GET", key.as_bytes()]).await {
            Ok(Reply::Bulk(Some(got))) => {
                got_hash.update(&got);
                if got != value {
                    return Err(format!("op {i}: GET returned different bytes"));
                }
            }
            other => return Err(format!("op {i}: GET replied {other:?}")),
        }
        i += 1;
        ops.store(i, Ordering::Relaxed);
    }
    let (sent, received) = (conn.sent, conn.received);
    conn.close().await.map_err(|e| format!("close: {e}"))?;
    Ok(TrafficReport {
        ops: i,
        sent,
        received,
        sha_set: set_hash.finalize().into(),
        sha_got: got_hash.finalize().into(),
    })
}

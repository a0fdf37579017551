//! The test harness: real servers (redis-server, PostgreSQL), the real `snigate` binary as
//! gateway and sidecar, real clients. One module per concern:
//!
//! - `config` — gateway and sidecar configs as the product's own types, with test defaults.
//! - `launch` — the binary as gateway or sidecar with such a config, started once its admin
//!   endpoint says so; `running` — what a test does with it then: its log, metrics, bound
//!   addresses, signals, exit status, config rewrites.
//! - `logs` — the JSON log lines of a process, parsed.
//! - `admin` — the admin endpoint over HTTP, and `/metrics` parsed.
//! - `certs` — development PKIs, extra certificates and CRLs; `secret` lays files out like a
//!   mounted Kubernetes Secret.
//! - `servers` — redis-server and PostgreSQL on free ports.
//! - `clients` — TLS and RESP clients, PostgreSQL and command-line clients, raw ClientHellos.
//! - `fixtures` — ready-made topologies: a guarded gateway, a sidecar → gateway chain.
//! - `process` — child processes that are always reaped, commands with deadlines, `/proc`.
//!
//! Every process started here is owned by a guard whose `Drop` kills it, and every file
//! lives in a tempdir, so a failing test leaves nothing behind. Nothing here sleeps for a
//! fixed time: waits poll a condition, bounded only to turn a hang into a failure.

pub mod admin;
pub mod certs;
pub mod clients;
pub mod config;
pub mod fixtures;
pub mod launch;
pub mod logs;
pub mod process;
pub mod running;
pub mod secret;
pub mod servers;
pub mod sockets;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use self::launch::{Gateway, Launch, Sidecar};
pub use certs::{Pki, CLIENT_NAME, LOCKED_PG_SNI, LOCKED_SNI, PG_SNI, REDIS_SNI, TCP_SNI};
pub use config::{gateway, redis_gateway, redis_sidecar, route, sidecar, tunnel, worker_route};
pub use process::{run, texts, CMD};
pub use servers::{Postgres, RedisServer};
pub use snigate::config::Protocol;

/// Bound for a readiness or condition wait: generous for a loaded 2-core CI machine, it only
/// turns a hang into a failure.
pub const READY: Duration = Duration::from_secs(30);
/// Bound for one network exchange in a test.
pub const IO: Duration = Duration::from_secs(20);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A loopback port that was free a moment ago (the OS picked it): for servers that cannot
/// bind port 0 themselves, and for "nothing listens here" addresses.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls `cond` until it returns `Some`, or panics naming `what` after READY.
pub fn wait_for<T>(what: &str, cond: impl FnMut() -> Option<T>) -> T {
    poll(READY, cond).unwrap_or_else(|| panic!("timed out after {READY:?} waiting for {what}"))
}

/// Polls `cond` until it returns `Some`; `None` once `limit` has passed.
pub fn poll<T>(limit: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

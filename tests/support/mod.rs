//! Test harness shared by every integration test file: real servers (redis-server,
//! PostgreSQL), the real `snigate` binary as gateway and sidecar, real clients.
//!
//! Every process started here is owned by a guard whose `Drop` kills it, and every file
//! lives in a tempdir, so a failing test leaves nothing behind.
#![allow(dead_code, unused_imports)]

pub mod admin;
pub mod pki;
pub mod postgres;
pub mod redis_server;
pub mod resp;
pub mod security;
pub mod snigate;
pub mod speaker;
pub mod squid;
pub mod stop;
pub mod tls;
pub mod wanlink;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub use self::pki::Pki;
pub use self::postgres::Postgres;
pub use self::redis_server::RedisServer;
pub use self::snigate::{Gateway, Opts, Route, Sidecar, Tunnel};

/// Upper bound for any readiness wait; generous for a loaded 2-core CI machine.
pub const READY: Duration = Duration::from_secs(30);
/// Upper bound for one client command (psql, redis-cli, python).
pub const CMD: Duration = Duration::from_secs(60);

/// Path of the binary under test, built by cargo for integration tests.
pub fn snigate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_snigate")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python interpreter with psycopg (libpq >= 17) and redis-py installed.
pub fn python() -> PathBuf {
    match std::env::var_os("SNIGATE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join(".venv/bin/python"),
    }
}

/// A loopback port that was free a moment ago (the OS picked it). Used for servers that
/// cannot bind port 0 themselves, and for "nothing listens here" addresses.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Poll `cond` until it returns `Some`, or panic with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, cond: impl FnMut() -> Option<T>) -> T {
    poll(limit, cond).unwrap_or_else(|| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Poll `cond` until it returns `Some`; `None` once `limit` has passed.
pub fn poll<T>(limit: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Run a client command with stdin closed and a hard deadline; returns its output.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    run_with_input(cmd, None, limit)
}

/// Like `run`, feeding `input` (then EOF) on stdin when given.
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>, limit: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    if let (Some(data), Some(mut pipe)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut pipe, &data);
        });
    }
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap_or_else(|e| panic!("wait {desc}: {e}")),
        Err(_) => {
            // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{desc} did not finish within {limit:?}");
        }
    }
}

/// Output as (stdout, stderr) strings, for assertions and failure messages.
pub fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Guard for a long-running child process: stopped with `signal`, then killed if it does
/// not exit within a few seconds, and always reaped.
pub struct ChildGuard {
    pub child: Child,
    pub signal: libc::c_int,
}

impl ChildGuard {
    pub fn new(child: Child, signal: libc::c_int) -> Self {
        ChildGuard { child, signal }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Send `sig` and wait (bounded) for the exit status.
    pub fn stop_with(&mut self, sig: libc::c_int, limit: Duration) -> std::process::ExitStatus {
        if let Some(st) = self.exited() {
            return st;
        }
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.exited() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("wait after SIGKILL");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let sig = self.signal;
        self.stop_with(sig, Duration::from_secs(5));
    }
}

//! Child processes that are always reaped, client commands with a deadline, and what `/proc`
//! says about a process.

use std::fs;
use std::io::Write;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::{poll, READY};

/// Bound for one client command (psql, redis-cli, python).
pub const CMD: Duration = Duration::from_secs(60);

/// Runs a client command with stdin closed and a hard deadline; returns its output.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    run_with_input(cmd, None, limit)
}

/// Like `run`, feeding `input` (then EOF) on stdin when given.
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>, limit: Duration) -> Output {
    let desc = format!("{cmd:?}");
    let stdin = match input {
        Some(_) => Stdio::piped(),
        None => Stdio::null(),
    };
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {desc}: {e}"));
    if let (Some(data), Some(mut pipe)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        thread::spawn(move || pipe.write_all(&data));
    }
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap_or_else(|e| panic!("wait {desc}: {e}")),
        Err(_) => {
            signal(pid, libc::SIGKILL);
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

/// Sends `sig` to `pid` (0: only checks that it exists).
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// A long-running child process: killed with `on_drop` when the guard goes, and always reaped.
pub struct ChildGuard {
    pub child: Child,
    on_drop: libc::c_int,
}

impl ChildGuard {
    pub fn new(child: Child, on_drop: libc::c_int) -> Self {
        ChildGuard { child, on_drop }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The exit status, waiting for it (bounded by READY: a hang is a failure).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let pid = self.pid();
        poll(READY, || self.exited())
            .unwrap_or_else(|| panic!("pid {pid} still running after {READY:?}"))
    }

    /// Sends `sig` and waits for the exit status.
    pub fn stop(&mut self, sig: libc::c_int) -> ExitStatus {
        if let Some(status) = self.exited() {
            return status;
        }
        signal(self.pid(), sig);
        self.wait_exit()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.exited().is_none() {
            signal(self.pid(), self.on_drop);
            if poll(Duration::from_secs(5), || self.exited()).is_none() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// Resident memory of process `pid` in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (children inherit it).
pub fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on our own process with a valid pointer.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

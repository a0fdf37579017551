//! A snigate process with a chosen RUST_LOG and file-descriptor limit.

use std::fs::{self, File};
use std::io;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::write;
use crate::support::snigate::{field, message};
use crate::support::{snigate_bin, wait_for, ChildGuard, READY};

pub struct Launched {
    pub guard: ChildGuard,
    pub dir: TempDir,
    pub log_path: PathBuf,
    /// `addr=` of every `listening` line (tunnel name, or "" for the gateway).
    pub addrs: Vec<(String, SocketAddr)>,
}

impl Launched {
    /// `snigate <role> --config <yaml>` with `RUST_LOG=rust_log`; `nofile`: RLIMIT_NOFILE of
    /// the process. Waits for `listeners` listening lines.
    pub fn start(
        role: &str,
        yaml: &str,
        listeners: usize,
        rust_log: &str,
        nofile: Option<u64>,
    ) -> Launched {
        let dir = tempfile::Builder::new()
            .prefix(&format!("snigate-{role}-"))
            .tempdir()
            .unwrap();
        let config = write(dir.path(), &format!("{role}.yaml"), yaml);
        let log_path = dir.path().join(format!("{role}.log"));
        let mut cmd = Command::new(snigate_bin());
        cmd.arg(role).arg("--config").arg(&config);
        cmd.current_dir(dir.path()).env("RUST_LOG", rust_log);
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(File::create(&log_path).unwrap());
        if let Some(n) = nofile {
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit(2) is async-signal-safe; it runs in the child before exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
            }
        }
        let guard = ChildGuard::new(cmd.spawn().expect("spawn snigate"), libc::SIGKILL);
        let mut me = Launched {
            guard,
            dir,
            log_path,
            addrs: Vec::new(),
        };
        me.addrs = wait_for(&format!("{role} listening"), READY, || {
            if let Some(st) = me.guard.exited() {
                panic!("snigate {role} exited early ({st}):\n{}", me.log());
            }
            let found: Vec<(String, SocketAddr)> = me
                .log()
                .lines()
                .filter(|l| message(l).as_deref() == Some("listening"))
                .filter_map(|l| {
                    let addr = field(l, "addr")?.parse().ok()?;
                    Some((field(l, "tunnel").unwrap_or_default(), addr))
                })
                .collect();
            (found.len() >= listeners).then_some(found)
        });
        me
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn addr(&self, tunnel: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(t, _)| t == tunnel)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no listener {tunnel:?} in {:?}", self.addrs))
    }

    /// User + system CPU time the process has used, from /proc/<pid>/stat.
    pub fn cpu_time(&self) -> Duration {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.guard.pid())).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after_comm.split_whitespace().collect();
        // Fields 14 and 15 of stat(5) (utime, stime): indexes 11 and 12 after the comm.
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / hz)
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

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (children inherit it);
/// returns the new soft limit.
pub fn raise_nofile() -> u64 {
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
    lim.rlim_cur
}

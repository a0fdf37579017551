//! The emulated WAN link of the benchmark (bench/wanlink) between two test processes: a TCP
//! relay that adds RTT/2 per direction and charges the TCP handshake, with a trace of every
//! delivery (`CONN DIR MS WHAT`).

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::support::certs::tempdir;
use crate::support::process::{run, texts, ChildGuard};
use crate::support::{free_port, loopback, repo_root, wait_for};

pub struct Wanlink {
    _guard: ChildGuard,
    pub dir: TempDir,
    /// Where the link accepts; connections go on to the target given at start.
    pub addr: SocketAddr,
}

impl Wanlink {
    /// A link to `target` with `rtt` (e.g. `40ms`), built first if it is not yet.
    pub fn start(target: SocketAddr, rtt: &str) -> Wanlink {
        let bin = binary();
        let dir = tempdir("snigate-wanlink-");
        let addr = loopback(free_port());
        let log = dir.path().join("wanlink.log");
        let child = Command::new(bin)
            .args(["--route", &format!("{addr}={target}"), "--rtt", rtt])
            .arg("--trace")
            .arg(dir.path().join("trace"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn wanlink");
        let mut guard = ChildGuard::new(child, libc::SIGKILL);
        wait_for("wanlink: ready", || {
            if let Some(status) = guard.exited() {
                panic!(
                    "wanlink exited ({status}): {}",
                    fs::read_to_string(&log).unwrap()
                );
            }
            let said = fs::read_to_string(&log).unwrap_or_default();
            said.starts_with("wanlink: ready").then_some(())
        });
        Wanlink {
            _guard: guard,
            dir,
            addr,
        }
    }

    /// The trace so far: (connection, `>` towards the target or `<`, what was delivered).
    pub fn trace(&self) -> Vec<(u64, String, String)> {
        let text = fs::read_to_string(self.dir.path().join("trace")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                Some((
                    f.first()?.parse().ok()?,
                    f.get(1)?.to_string(),
                    f.get(3)?.to_string(),
                ))
            })
            .collect()
    }
}

/// bench/wanlink's release binary, built by cargo (a no-op when it is up to date).
fn binary() -> PathBuf {
    let manifest = repo_root().join("bench/wanlink/Cargo.toml");
    let out = run(
        Command::new("cargo")
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(&manifest),
        std::time::Duration::from_secs(600),
    );
    assert!(out.status.success(), "building wanlink: {:?}", texts(&out));
    repo_root().join("bench/wanlink/target/release/wanlink")
}

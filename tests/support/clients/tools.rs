//! Command-line clients: redis-cli, `openssl s_client`, and Python scripts (redis-py and
//! psycopg, what Celery uses): tests/support/redis_recover.py and the chaos suite's
//! tests/chaos/pg_direct.py.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, Stdio};

use tempfile::TempDir;

use crate::support::process::{run, run_with_input, texts, ChildGuard, CMD};
use crate::support::{repo_root, Pki};

/// What `redis-cli -h 127.0.0.1 -p <port> <args>` printed, stdout then stderr, one reply per
/// line (redis-cli 7 follows an error reply with an empty line, dropped here).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    let (o, e) = texts(&run(&mut cmd, CMD));
    (o + &e).trim_end().to_owned() + "\n"
}

/// `openssl s_client` to `addr` with SNI `sni` exactly as given (OpenSSL sends any string;
/// empty: none), `pki`'s CA and client certificate, extra `args`; sends `input` and returns
/// (success, stdout, stderr).
pub fn s_client(
    addr: SocketAddr,
    sni: &str,
    pki: &Pki,
    args: &[&str],
    input: &[u8],
) -> (bool, String, String) {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-ign_eof", "-connect", &addr.to_string()]);
    if !sni.is_empty() {
        cmd.args(["-servername", sni]);
    }
    cmd.arg("-CAfile").arg(pki.ca());
    cmd.arg("-cert").arg(pki.client_cert());
    cmd.arg("-key").arg(pki.client_key());
    cmd.args(args);
    let out = run_with_input(&mut cmd, Some(input), CMD);
    let (o, e) = texts(&out);
    (out.status.success(), o, e)
}

/// The Python interpreter with psycopg (libpq >= 17), redis-py and sslyze installed.
pub fn python() -> PathBuf {
    let py = match std::env::var_os("SNIGATE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join(".venv/bin/python"),
    };
    assert!(
        py.is_file(),
        "{} missing: run scripts/install-deps.sh",
        py.display()
    );
    py
}

/// The venv with Celery, kombu, SQLAlchemy and psycopg2 (the manifest checks' and fleet's).
pub fn topology_python() -> PathBuf {
    repo_root().join(".venv-topology/bin/python")
}

/// A venv with redis-py 5 (RESP2 unless asked; `AUTH` rather than `HELLO 3 AUTH`).
pub fn redis5_python() -> PathBuf {
    repo_root().join(".venv-redis5/bin/python")
}

/// Runs Python `code` with interpreter `py` and `env`; its stdout, once it exits 0.
pub fn run_python(py: &Path, code: &str, env: &[(&str, String)]) -> String {
    let mut cmd = Command::new(py);
    cmd.arg("-c").arg(code);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let out = run(&mut cmd, CMD);
    let (o, e) = texts(&out);
    assert!(
        out.status.success(),
        "python failed:\n{code}\nstdout:\n{o}\nstderr:\n{e}"
    );
    o
}

/// A script of the repository, by its path from the root (e.g. `tests/chaos/pg_direct.py`).
pub fn script(path: &str) -> PathBuf {
    repo_root().join(path)
}

/// redis_recover.py: one redis-py client meets its far side down, then, once told the far
/// side is back, must recover on its own.
pub struct RedisRecover {
    py: ChildGuard,
    stdout: BufReader<ChildStdout>,
    dir: TempDir,
    /// What the client saw while the far side was down (its first line).
    pub down: String,
}

impl RedisRecover {
    /// Runs the script against the local `port`, until it has met the far side down.
    pub fn start(port: u16) -> RedisRecover {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(python());
        cmd.arg(script("tests/support/redis_recover.py"))
            .arg(port.to_string());
        cmd.arg(dir.path().join("back"));
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut py = ChildGuard::new(cmd.spawn().unwrap(), libc::SIGKILL);
        let mut stdout = BufReader::new(py.child.stdout.take().unwrap());
        let mut lines = Vec::new();
        while lines.last().map(String::as_str) != Some("waiting\n") {
            let mut line = String::new();
            let n = stdout.read_line(&mut line).unwrap();
            assert_ne!(n, 0, "redis_recover.py ended: {lines:?}");
            lines.push(line);
        }
        let down = lines.swap_remove(0);
        RedisRecover {
            py,
            stdout,
            dir,
            down,
        }
    }

    /// Tells the script the far side is back; returns what it printed after, once it exits 0.
    pub fn finish(mut self) -> String {
        fs::write(self.dir.path().join("back"), "").unwrap();
        let status = self.py.wait_exit();
        let (mut rest, mut err) = (String::new(), String::new());
        self.stdout.read_to_string(&mut rest).unwrap();
        let mut stderr = self.py.child.stderr.take().unwrap();
        stderr.read_to_string(&mut err).unwrap();
        assert!(status.success(), "{} {rest} {err}", self.down);
        rest
    }
}

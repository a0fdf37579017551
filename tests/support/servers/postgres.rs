//! A private PostgreSQL cluster: a copy of one initdb'd template in a tempdir, trust auth, a
//! free loopback port, `log_connections=on` so tests can count backend connections exactly.
//!
//! initdb/postgres refuse to run as root; when the tests run as root the cluster runs as
//! the `postgres` OS user (the process itself gets that uid, so the guard owns postgres).

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use crate::support::certs::tempdir;
use crate::support::process::{run, texts, ChildGuard, CMD};
use crate::support::{free_port, wait_for};

pub struct Postgres {
    guard: ChildGuard,
    pub dir: TempDir,
    pub port: u16,
    /// Whether pg_ctl was used, so a postmaster that is not the guard's child may run.
    by_pg_ctl: AtomicBool,
}

/// `$SNIGATE_PG_BINDIR/<tool>` (set by scripts/test.sh), else the newest installed
/// server binaries, e.g. /usr/lib/postgresql/15/bin.
pub fn pg_bin(tool: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("SNIGATE_PG_BINDIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(tool);
    }
    let versions = fs::read_dir("/usr/lib/postgresql").expect("no /usr/lib/postgresql");
    let newest = versions
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .max();
    let (_, bin) = newest.expect("no /usr/lib/postgresql/<version>");
    bin.join(tool)
}

/// (uid, gid) of the `postgres` user when we are root, else None (run as ourselves).
fn run_as() -> Option<(u32, u32)> {
    if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("running as root but no `postgres` OS user");
    let f: Vec<&str> = line.split(':').collect();
    Some((f[2].parse().unwrap(), f[3].parse().unwrap()))
}

fn as_pg_user(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = run_as() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// A tempdir the cluster's user owns.
fn cluster_dir() -> TempDir {
    let dir = tempdir("snigate-pg-");
    if let Some((uid, gid)) = run_as() {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    }
    dir
}

/// An initdb'd data directory, made once per server version and kept under the target
/// directory: copying it takes a tenth of the time initdb takes.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let out = run(Command::new(pg_bin("postgres")).arg("--version"), CMD);
        // `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`
        let version: String = texts(&out).0.split_whitespace().nth(2).unwrap().into();
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pg-template-{version}"));
        if !cache.join("PG_VERSION").is_file() {
            let scratch = cluster_dir();
            let data = scratch.path().join("data");
            let mut initdb = Command::new(pg_bin("initdb"));
            initdb.arg("-D").arg(&data).current_dir(scratch.path());
            initdb.args(["-U", "postgres", "--auth=trust", "--no-sync"]);
            initdb.args(["-E", "UTF8", "--locale=C"]);
            let out = run(as_pg_user(&mut initdb), CMD);
            assert!(out.status.success(), "initdb failed: {:?}", texts(&out));
            // Copied aside and renamed into place, so a concurrent run never sees half of it.
            let staged = PathBuf::from(format!("{}.{}", cache.display(), std::process::id()));
            copy_tree(&data, &staged);
            if fs::rename(&staged, &cache).is_err() {
                fs::remove_dir_all(&staged).unwrap();
            }
        }
        cache
    })
}

/// `cp -a`: keeps the owner (the cluster's user) and the 0700 mode PostgreSQL insists on.
fn copy_tree(from: &Path, to: &Path) {
    let out = run(Command::new("cp").arg("-a").arg(from).arg(to), CMD);
    assert!(out.status.success(), "cp -a: {:?}", texts(&out));
}

impl Postgres {
    pub fn start() -> Postgres {
        let mut dir = cluster_dir();
        copy_tree(template(), &dir.path().join("data"));
        for _attempt in 0..5 {
            match Self::try_start(dir) {
                Ok(pg) => return pg,
                Err(again) => dir = again,
            }
        }
        panic!("postgres did not start on any of 5 ports");
    }

    /// Starts the cluster in `dir` on a free port; gives `dir` back if the port was taken.
    fn try_start(dir: TempDir) -> Result<Postgres, TempDir> {
        let port = free_port();
        let log = File::create(dir.path().join("postgres.log")).unwrap();
        let mut cmd = Command::new(pg_bin("postgres"));
        cmd.arg("-D")
            .arg(dir.path().join("data"))
            .arg("-k")
            .arg(dir.path());
        cmd.args(["-p", &port.to_string()]).current_dir(dir.path());
        for setting in [
            "listen_addresses=127.0.0.1",
            "log_connections=on",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_wal_size=1GB",
            "logging_collector=off",
        ] {
            cmd.args(["-c", setting]);
        }
        let child = as_pg_user(&mut cmd)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn postgres");
        let mut pg = Postgres {
            guard: ChildGuard::new(child, libc::SIGQUIT),
            dir,
            port,
            by_pg_ctl: AtomicBool::new(false),
        };
        if pg.wait_ready() {
            return Ok(pg);
        }
        Err(std::mem::replace(&mut pg.dir, TempDir::new().unwrap()))
    }

    /// true once our cluster answers on the port; false if the postmaster exited or another
    /// cluster answers there (the port was taken).
    fn wait_ready(&mut self) -> bool {
        let port = self.port.to_string();
        let data = self.dir.path().join("data").display().to_string();
        wait_for("pg_isready", || {
            if self.guard.exited().is_some() {
                return Some(false);
            }
            let mut cmd = Command::new(pg_bin("pg_isready"));
            cmd.args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-t", "2"]);
            if !run(&mut cmd, Duration::from_secs(10)).status.success() {
                return None;
            }
            let mut cmd = Command::new("psql");
            cmd.arg(self.conninfo())
                .args(["-XAtc", "show data_directory"]);
            let answer = texts(&run(&mut cmd, CMD)).0;
            Some(answer.trim() == data)
        })
    }

    /// `pg_ctl -D <data> ARGS` as the cluster's user, e.g. a fast restart. A postmaster that
    /// pg_ctl starts is not the guard's child: it is stopped with pg_ctl when this is dropped.
    pub fn pg_ctl(&self, args: &[&str]) -> Output {
        self.by_pg_ctl.store(true, Ordering::Relaxed);
        let mut cmd = Command::new(pg_bin("pg_ctl"));
        cmd.arg("-D").arg(self.dir.path().join("data")).args(args);
        run(as_pg_user(&mut cmd), CMD)
    }

    /// `127.0.0.1:<port>`, for a route's backend.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Direct (untunnelled) libpq conninfo.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Backend connections accepted so far (one `connection received` line each).
    pub fn connections_received(&self) -> usize {
        self.log()
            .matches("LOG:  connection received: host=")
            .count()
    }

    /// Runs SQL with psql as `postgres` over the Unix socket (trusted whatever a test does to
    /// TCP authentication); returns trimmed unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// Like `psql`, in database `db`.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        let socket = self.dir.path().display();
        let conninfo = format!("host={socket} port={} user=postgres dbname={db}", self.port);
        let mut cmd = Command::new("psql");
        cmd.arg(conninfo)
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        let out = run(&mut cmd, CMD);
        let (o, e) = texts(&out);
        assert!(out.status.success(), "psql as postgres failed: {e}");
        o.trim_end().to_owned()
    }

    /// Waits until `n` sessions are running a query that starts with `query`.
    pub fn wait_running(&self, query: &str, n: usize) {
        let sql = format!(
            "select count(*) from pg_stat_activity where state = 'active' and query like '{query}%'"
        );
        wait_for(&format!("{n} sessions running {query}"), || {
            (self.psql(&sql) == n.to_string()).then_some(())
        });
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if *self.by_pg_ctl.get_mut() {
            self.pg_ctl(&["stop", "-m", "immediate"]);
        }
    }
}

//! A private PostgreSQL cluster: initdb into a tempdir, trust auth, a free loopback port,
//! `log_connections=on` so tests can count backend connections exactly.
//!
//! initdb/postgres refuse to run as root; when the tests run as root the cluster runs as
//! the `postgres` OS user (the process itself gets that uid, so the guard owns postgres).

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::{free_port, run, texts, wait_for, ChildGuard, CMD, READY};

pub struct Postgres {
    guard: ChildGuard,
    pub dir: TempDir,
    pub port: u16,
}

/// `$SNIGATE_PG_BINDIR/<tool>` (set by scripts/test.sh), else the newest installed
/// server binaries, e.g. /usr/lib/postgresql/15/bin.
pub fn pg_bin(tool: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("SNIGATE_PG_BINDIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(tool);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server not installed in /usr/lib/postgresql")
        .filter_map(|e| {
            let e = e.ok()?;
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    let (_, bin) = versions.pop().expect("no /usr/lib/postgresql/<version>");
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

fn as_pg_user(cmd: &mut Command, who: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = who {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

impl Postgres {
    pub fn start() -> Postgres {
        let who = run_as();
        let mut dir = tempfile::Builder::new()
            .prefix("snigate-pg-")
            .tempdir()
            .unwrap();
        if let Some((uid, gid)) = who {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(pg_bin("initdb"));
        initdb.arg("-D").arg(&data).current_dir(dir.path());
        initdb.args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        let out = run(as_pg_user(&mut initdb, who), CMD);
        assert!(out.status.success(), "initdb failed: {:?}", texts(&out));
        for _attempt in 0..5 {
            let port = free_port();
            let log = File::create(dir.path().join("postgres.log")).unwrap();
            let mut cmd = Command::new(pg_bin("postgres"));
            cmd.arg("-D").arg(&data).arg("-k").arg(dir.path());
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
            let child = as_pg_user(&mut cmd, who)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn postgres");
            let mut pg = Postgres {
                guard: ChildGuard::new(child, libc::SIGQUIT),
                dir,
                port,
            };
            if pg.wait_ready() {
                return pg;
            }
            dir = std::mem::replace(&mut pg.dir, TempDir::new().unwrap());
        }
        panic!("postgres did not start on any of 5 ports");
    }

    /// true once pg_isready succeeds; false if the postmaster exited (port taken).
    fn wait_ready(&mut self) -> bool {
        let port = self.port.to_string();
        wait_for("pg_isready", READY, || {
            if self.guard.exited().is_some() {
                return Some(false);
            }
            let mut cmd = Command::new(pg_bin("pg_isready"));
            cmd.args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-t", "2"]);
            run(&mut cmd, Duration::from_secs(10))
                .status
                .success()
                .then_some(true)
        })
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

    /// Run SQL with psql directly against the server; returns trimmed unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let out = run(
            Command::new("psql").arg(self.conninfo()).args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ]),
            CMD,
        );
        let (o, e) = texts(&out);
        assert!(out.status.success(), "direct psql failed: {e}");
        o.trim_end().to_owned()
    }

    /// A direct tokio-postgres client (the connection task is spawned on the runtime).
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.conninfo(), tokio_postgres::NoTls)
            .await
            .expect("direct tokio-postgres connect");
        tokio::spawn(conn);
        client
    }
}

//! A private redis-server on a free loopback port, with an admin connection that reads
//! exact counters (`INFO stats total_connections_received`, `INFO clients`).

use std::fs::File;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use tempfile::TempDir;

use crate::support::certs::tempdir;
use crate::support::process::ChildGuard;
use crate::support::{free_port, loopback, wait_for};

pub struct RedisServer {
    // Field order matters: the admin connection closes before the server is killed.
    admin: Mutex<redis::Connection>,
    _guard: ChildGuard,
    _dir: TempDir,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        for _attempt in 0..5 {
            if let Some(server) = Self::try_start_on(free_port()) {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Start on `port` exactly (e.g. a backend coming back on its old address).
    pub fn start_on(port: u16) -> RedisServer {
        Self::try_start_on(port).unwrap_or_else(|| panic!("redis-server could not use port {port}"))
    }

    /// `None` if the port was taken: redis-server exited, or another one answers there.
    fn try_start_on(port: u16) -> Option<RedisServer> {
        let dir = tempdir("snigate-redis-");
        let log = File::create(dir.path().join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn redis-server (is it installed?)");
        let mut guard = ChildGuard::new(child, libc::SIGKILL);
        let admin = wait_ready(&mut guard, port)?;
        Some(RedisServer {
            admin: Mutex::new(admin),
            _guard: guard,
            _dir: dir,
            port,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// A new direct (untunnelled) connection; counts in total_connections_received.
    pub fn direct(&self) -> redis::Connection {
        connect(self.port).expect("direct redis connection")
    }

    fn info_field(&self, section: &str, field: &str) -> u64 {
        let mut admin = self.admin.lock().unwrap();
        let info: String = redis::cmd("INFO")
            .arg(section)
            .query(&mut *admin)
            .expect("INFO");
        let prefix = format!("{field}:");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {field} in INFO {section}:\n{info}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Connections ever accepted by redis-server. Read over one long-lived admin
    /// connection, so reading it does not change it.
    pub fn total_connections(&self) -> u64 {
        self.info_field("stats", "total_connections_received")
    }

    pub fn blocked_clients(&self) -> u64 {
        self.info_field("clients", "blocked_clients")
    }

    /// Clients whose query buffer holds the start of a command not yet whole (`qbuf` > 0 in
    /// `CLIENT LIST`, the admin connection's own `CLIENT LIST` left out): proof that a
    /// partial command went through every hop before it.
    pub fn partial_commands(&self) -> usize {
        let mut admin = self.admin.lock().unwrap();
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut *admin)
            .expect("CLIENT LIST");
        let partial = |l: &&str| !l.contains(" cmd=client|list ") && !l.contains(" qbuf=0 ");
        list.lines().filter(partial).count()
    }
}

fn connect(port: u16) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let con = client.get_connection_with_timeout(Duration::from_secs(5))?;
    con.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(con)
}

/// Waits until our server answers; `None` if it exited, or if another one answers on `port`
/// (ours lost the race for the port and is about to exit).
fn wait_ready(guard: &mut ChildGuard, port: u16) -> Option<redis::Connection> {
    let ours = guard.pid();
    wait_for(&format!("redis-server on port {port}"), || {
        if guard.exited().is_some() {
            return Some(None);
        }
        let mut con = connect(port).ok()?;
        let info: String = redis::cmd("INFO").arg("server").query(&mut con).ok()?;
        let pid = info.lines().find_map(|l| l.strip_prefix("process_id:"))?;
        Some((pid.trim() == ours.to_string()).then_some(con))
    })
}

//! A private squid on a free loopback port: the corporate egress proxy a sidecar reaches its
//! gateway through. Optionally with basic auth (basic_ncsa_auth and an htpasswd file) and a
//! rule that allows CONNECT only to port 443, as squid's default config does. Its access log
//! is what the proxy saw: one line per request, written when the request (for CONNECT, the
//! tunnel) ends.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use tempfile::TempDir;

use crate::support::certs::tempdir;
use crate::support::process::{run, texts, ChildGuard, CMD};
use crate::support::{free_port, loopback, poll, wait_for, READY};

/// How the proxy is set up.
#[derive(Clone, Debug, Default)]
pub struct SquidOpts {
    /// `user`, `password`: basic auth required of every request.
    pub auth: Option<(String, String)>,
    /// `http_access deny CONNECT !SSL_ports`: CONNECT only to port 443.
    pub only_443: bool,
}

pub struct Squid {
    _guard: ChildGuard,
    pub dir: TempDir,
    pub port: u16,
}

/// One access log line: `TCP_TUNNEL/200`, `CONNECT`, `127.0.0.1:8443`, the user or `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub result: String,
    pub method: String,
    pub target: String,
    pub user: String,
}

impl Squid {
    pub fn start(opts: &SquidOpts) -> Squid {
        for _attempt in 0..5 {
            if let Some(squid) = Self::try_start(opts, free_port()) {
                return squid;
            }
        }
        panic!("squid did not start on any of 5 free ports");
    }

    fn try_start(opts: &SquidOpts, port: u16) -> Option<Squid> {
        let dir = tempdir("snigate-squid-");
        // Squid started as root runs as the `proxy` user, which writes the logs here.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        fs::write(dir.path().join("squid.conf"), config(&dir, opts, port)).unwrap();
        let out = File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new("squid")
            .arg("-N")
            .arg("-f")
            .arg(dir.path().join("squid.conf"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn squid (is it installed? scripts/install-deps.sh)");
        let mut guard = ChildGuard::new(child, libc::SIGTERM);
        // Its own line, not a test connection, which the access log would record.
        let cache_log = dir.path().join("cache.log");
        let ready = poll(READY, || {
            if guard.exited().is_some() {
                return Some(false);
            }
            let log = fs::read_to_string(&cache_log).unwrap_or_default();
            log.contains("Accepting HTTP Socket connections")
                .then_some(true)
        });
        match ready {
            Some(true) => Some(Squid {
                _guard: guard,
                dir,
                port,
            }),
            _ => None,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// `http://[user:password@]127.0.0.1:PORT` with the credentials given.
    pub fn url(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((user, password)) => format!("http://{user}:{password}@{}", self.addr()),
            None => format!("http://{}", self.addr()),
        }
    }

    /// Every request logged so far.
    pub fn access(&self) -> Vec<Access> {
        let log = fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines().map(parse_access).collect()
    }

    /// Waits until at least `n` requests are logged; returns them all.
    pub fn wait_access(&self, n: usize) -> Vec<Access> {
        wait_for(&format!("{n} squid access log lines"), || {
            let access = self.access();
            (access.len() >= n).then_some(access)
        })
    }
}

fn config(dir: &TempDir, opts: &SquidOpts, port: u16) -> String {
    let d = dir.path().display();
    let mut conf = format!(
        "http_port 127.0.0.1:{port}\npid_filename {d}/squid.pid\ncache_log {d}/cache.log\n\
         access_log stdio:{d}/access.log\ncache deny all\ncache_mem 8 MB\ncoredump_dir {d}\n\
         shutdown_lifetime 0 seconds\npinger_enable off\n\
         acl SSL_ports port 443\nacl CONNECT method CONNECT\n"
    );
    if opts.only_443 {
        conf += "http_access deny CONNECT !SSL_ports\n";
    }
    match &opts.auth {
        Some((user, password)) => {
            let passwd = dir.path().join("passwd");
            fs::write(&passwd, format!("{user}:{}\n", apr1(password))).unwrap();
            conf += &format!(
                "auth_param basic program /usr/lib/squid/basic_ncsa_auth {}\n\
                 auth_param basic children 1 startup=1 idle=1\n\
                 acl authed proxy_auth REQUIRED\nhttp_access allow authed\n",
                passwd.display()
            );
        }
        None => conf += "http_access allow all\n",
    }
    conf + "http_access deny all\n"
}

/// The htpasswd (APR1 MD5) hash of `password`, which basic_ncsa_auth checks.
fn apr1(password: &str) -> String {
    let out = run(
        Command::new("openssl").args(["passwd", "-apr1", password]),
        CMD,
    );
    assert!(out.status.success(), "openssl passwd: {:?}", texts(&out));
    texts(&out).0.trim().to_owned()
}

/// `time elapsed client result/status bytes method target user hierarchy type`.
fn parse_access(line: &str) -> Access {
    let f: Vec<&str> = line.split_whitespace().collect();
    let field = |i: usize| f.get(i).map_or_else(String::new, |s| s.to_string());
    Access {
        result: field(3),
        method: field(5),
        target: field(6),
        user: field(7),
    }
}

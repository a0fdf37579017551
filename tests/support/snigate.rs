//! The binary under test as gateway or sidecar: YAML config written into a tempdir,
//! `listen: 127.0.0.1:0`, stderr captured to a file, readiness = the `listening ... addr=`
//! log line(s).

use std::collections::HashMap;
use std::fmt::Display;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

use super::pki::{p, Pki};
use super::{run, snigate_bin, wait_for, ChildGuard, CMD, READY};

pub struct Route {
    pub name: String,
    pub server_names: Vec<String>,
    pub protocol: String,
    pub backend: String,
    pub allow: Option<Vec<String>>,
}

impl Route {
    pub fn new(name: &str, sni: &str, protocol: &str, backend: impl Display) -> Route {
        Route {
            name: name.into(),
            server_names: vec![sni.into()],
            protocol: protocol.into(),
            backend: backend.to_string(),
            allow: None,
        }
    }

    pub fn allow(mut self, ids: &[&str]) -> Route {
        self.allow = Some(ids.iter().map(|s| s.to_string()).collect());
        self
    }
}

/// Gateway YAML: the Pki's server cert, `client_ca` = the Pki's CA when `mtls`.
pub fn gateway_yaml(listen: &str, pki: &Pki, mtls: bool, routes: &[Route]) -> String {
    // No background backend probes: tests count every connection a backend receives.
    let mut y = format!("listen: {listen}\ntimeouts: {{probe_interval: 0s}}\ntls:\n");
    y += &format!(
        "  cert: {}\n  key: {}\n",
        p(&pki.server_cert()),
        p(&pki.server_key())
    );
    if mtls {
        y += &format!("  client_ca: {}\n", p(&pki.ca()));
    }
    y += "routes:\n";
    for r in routes {
        y += &format!("  - name: {}\n", r.name);
        y += &format!("    server_names: [{}]\n", r.server_names.join(", "));
        y += &format!("    protocol: {}\n    backend: {}\n", r.protocol, r.backend);
        if let Some(allow) = &r.allow {
            y += &format!("    allow: [{}]\n", allow.join(", "));
        }
    }
    y
}

pub struct Tunnel {
    pub name: String,
    pub listen: String,
    pub protocol: String,
    pub connect: String,
    pub server_name: Option<String>,
}

impl Tunnel {
    pub fn new(name: &str, protocol: &str, connect: impl Display, sni: &str) -> Tunnel {
        Tunnel {
            name: name.into(),
            listen: "127.0.0.1:0".into(),
            protocol: protocol.into(),
            connect: connect.to_string(),
            server_name: Some(sni.into()),
        }
    }
}

/// Sidecar YAML trusting `ca`, presenting `client`'s certificate when given.
pub fn sidecar_yaml(ca: &Path, client: Option<&Pki>, tunnels: &[Tunnel]) -> String {
    let mut y = format!("tls:\n  ca: {}\n", p(ca));
    if let Some(c) = client {
        y += &format!(
            "  cert: {}\n  key: {}\n",
            p(&c.client_cert()),
            p(&c.client_key())
        );
    }
    y += "tunnels:\n";
    for t in tunnels {
        y += &format!("  - name: {}\n    listen: {}\n", t.name, t.listen);
        y += &format!("    protocol: {}\n    connect: {}\n", t.protocol, t.connect);
        if let Some(sni) = &t.server_name {
            y += &format!("    server_name: {sni}\n");
        }
    }
    y
}

/// A running `snigate <role>` process with its config and stderr log in a tempdir.
pub struct Proc {
    guard: ChildGuard,
    pub dir: TempDir,
    pub log_path: PathBuf,
}

impl Proc {
    /// Start `snigate <role> --config <dir>/<role>.yaml`; wait for `listeners` ready lines.
    fn start(role: &str, yaml: &str, listeners: usize) -> (Proc, Vec<String>) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("snigate-{role}-"))
            .tempdir()
            .unwrap();
        let config = dir.path().join(format!("{role}.yaml"));
        fs::write(&config, yaml).unwrap();
        let log_path = dir.path().join(format!("{role}.log"));
        let child = Command::new(snigate_bin())
            .arg(role)
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log_path).unwrap())
            .spawn()
            .expect("spawn snigate");
        let mut proc = Proc {
            guard: ChildGuard::new(child, libc::SIGKILL),
            dir,
            log_path,
        };
        let lines = wait_for(&format!("{role} listening lines"), READY, || {
            if let Some(st) = proc.guard.exited() {
                panic!(
                    "snigate {role} exited early ({st}); config:\n{yaml}\nlog:\n{}",
                    proc.log()
                );
            }
            let ready = proc.listening_lines();
            (ready.len() >= listeners).then_some(ready)
        });
        (proc, lines)
    }

    fn listening_lines(&self) -> Vec<String> {
        let log = self.log();
        log.lines()
            .filter(|l| l.contains("listening") && l.contains("addr="))
            .map(String::from)
            .collect()
    }

    /// Everything the process has written to stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Number of log lines containing every one of `parts`.
    pub fn count_lines(&self, parts: &[&str]) -> usize {
        let log = self.log();
        log.lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    /// Wait until at least `n` log lines contain every one of `parts`.
    pub fn wait_lines(&self, parts: &[&str], n: usize) {
        wait_for(&format!("{n} log line(s) with {parts:?}"), READY, || {
            (self.count_lines(parts) >= n).then_some(())
        });
    }

    pub fn guard(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }
}

/// Value of `key=` in a log line, without quotes or trailing punctuation.
pub fn field(line: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=");
    let start = line.split_whitespace().find_map(|w| w.strip_prefix(&pat))?;
    Some(
        start
            .trim_matches(|c| c == '"' || c == ',' || c == ';')
            .to_owned(),
    )
}

pub struct Gateway {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Gateway {
    /// Gateway with mTLS (client_ca = pki's CA) and the given routes.
    pub fn start(pki: &Pki, routes: &[Route]) -> Gateway {
        Self::from_yaml(&gateway_yaml("127.0.0.1:0", pki, true, routes))
    }

    pub fn from_yaml(yaml: &str) -> Gateway {
        let (proc, lines) = Proc::start("gateway", yaml, 1);
        let addr = field(&lines[0], "addr")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no addr=IP:PORT in {:?}", lines[0]));
        Gateway { proc, addr }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

pub struct Sidecar {
    pub proc: Proc,
    pub addrs: HashMap<String, SocketAddr>,
}

impl Sidecar {
    /// Sidecar trusting `pki`'s CA and presenting `pki`'s client certificate.
    pub fn start(pki: &Pki, tunnels: &[Tunnel]) -> Sidecar {
        Self::from_yaml(&sidecar_yaml(&pki.ca(), Some(pki), tunnels), tunnels.len())
    }

    pub fn from_yaml(yaml: &str, tunnels: usize) -> Sidecar {
        let (proc, lines) = Proc::start("sidecar", yaml, tunnels);
        let mut addrs = HashMap::new();
        for l in &lines {
            let name = field(l, "tunnel").unwrap_or_else(|| panic!("no tunnel= in {l:?}"));
            let addr = field(l, "addr").and_then(|a| a.parse().ok());
            addrs.insert(name, addr.unwrap_or_else(|| panic!("bad addr= in {l:?}")));
        }
        Sidecar { proc, addrs }
    }

    /// Local port of tunnel `name`.
    pub fn port(&self, name: &str) -> u16 {
        match self.addrs.get(name) {
            Some(a) => a.port(),
            None => panic!("no tunnel {name} in {:?}", self.addrs),
        }
    }
}

/// `snigate <role> --config <path> --check`, bounded.
pub fn check(role: &str, config: &Path) -> Output {
    let mut cmd = Command::new(snigate_bin());
    cmd.arg(role).arg("--config").arg(config).arg("--check");
    run(cmd.env("RUST_LOG", "info"), CMD)
}

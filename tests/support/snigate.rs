//! The binary under test as gateway or sidecar: YAML config written into a tempdir,
//! `listen: 127.0.0.1:0`, stderr captured to a file, readiness = the `listening ... addr=`
//! log line(s).

use std::collections::HashMap;
use std::fmt::Display;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::admin::{http, scrape, HttpReply, Scrape};
use super::pki::{p, Pki};
use super::{poll, run, snigate_bin, wait_for, ChildGuard, CMD, READY};

pub struct Route {
    pub name: String,
    pub server_names: Vec<String>,
    pub protocol: String,
    pub backend: String,
    pub allow: Option<Vec<String>>,
    /// `login: {user, password_file}`: the gateway logs in to the backend.
    pub login: Option<(Option<String>, PathBuf)>,
}

impl Route {
    pub fn new(name: &str, sni: &str, protocol: &str, backend: impl Display) -> Route {
        Route {
            name: name.into(),
            server_names: vec![sni.into()],
            protocol: protocol.into(),
            backend: backend.to_string(),
            allow: None,
            login: None,
        }
    }

    pub fn login(mut self, user: Option<&str>, password_file: &Path) -> Route {
        self.login = Some((user.map(String::from), password_file.to_owned()));
        self
    }

    pub fn allow(mut self, ids: &[&str]) -> Route {
        self.allow = Some(ids.iter().map(|s| s.to_string()).collect());
        self
    }
}

/// Settings beyond routes and tunnels: the admin endpoint, `timeouts:` keys and extra
/// command-line arguments.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// Write `admin: 127.0.0.1:0` and wait for the `admin listening addr=` line at start.
    pub admin: bool,
    /// `timeouts:` keys in order. The gateway's default `probe_interval: 0s` (no backend
    /// probes, so tests count every backend connection) is overridden by the same key here.
    pub timeouts: Vec<(String, String)>,
    /// Arguments before the subcommand (`snigate ARGS gateway --config F`).
    pub args_before: Vec<String>,
    /// Arguments after `--config FILE`.
    pub args_after: Vec<String>,
    /// Environment variables of the process (the caller's proxy variables are never passed).
    pub env: Vec<(String, String)>,
}

impl Opts {
    pub fn new() -> Opts {
        Opts::default()
    }

    pub fn admin(mut self) -> Opts {
        self.admin = true;
        self
    }

    /// Sets `timeouts.<key>: <value>` (replacing an earlier value of the same key).
    pub fn timeout(mut self, key: &str, value: &str) -> Opts {
        self.timeouts.retain(|(k, _)| k != key);
        self.timeouts.push((key.into(), value.into()));
        self
    }

    /// Sets the environment variable `key` of the process.
    pub fn env(mut self, key: &str, value: &str) -> Opts {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `--log-format json` before the subcommand.
    pub fn json_before(mut self) -> Opts {
        self.args_before
            .extend(["--log-format".into(), "json".into()]);
        self
    }

    /// `--log-format json` after `--config FILE`.
    pub fn json_after(mut self) -> Opts {
        self.args_after
            .extend(["--log-format".into(), "json".into()]);
        self
    }

    fn timeouts_with_default(&self, default: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = default
            .iter()
            .filter(|(k, _)| !self.timeouts.iter().any(|(key, _)| key == k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.extend(self.timeouts.iter().cloned());
        all
    }

    fn yaml_head(&self, default_timeouts: &[(&str, &str)]) -> String {
        let mut y = String::new();
        if self.admin {
            y += "admin: 127.0.0.1:0\n";
        }
        let timeouts = self.timeouts_with_default(default_timeouts);
        if !timeouts.is_empty() {
            let kv: Vec<String> = timeouts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            y += &format!("timeouts: {{{}}}\n", kv.join(", "));
        }
        y
    }
}

/// The gateway's certificate, key and optional client CA (any paths, e.g. symlinks).
#[derive(Clone, Debug)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// `tls.crl`: CRLs for client certificates (needs `client_ca`).
    pub crl: Option<PathBuf>,
}

impl ServerFiles {
    /// The Pki's server cert and key; its CA as `client_ca` when `mtls`.
    pub fn of(pki: &Pki, mtls: bool) -> ServerFiles {
        ServerFiles {
            cert: pki.server_cert(),
            key: pki.server_key(),
            client_ca: mtls.then(|| pki.ca()),
            crl: None,
        }
    }
}

/// Gateway YAML: the Pki's server cert, `client_ca` = the Pki's CA when `mtls`.
pub fn gateway_yaml(listen: &str, pki: &Pki, mtls: bool, routes: &[Route]) -> String {
    gateway_yaml_with(
        listen,
        &ServerFiles::of(pki, mtls),
        routes,
        &Opts::default(),
    )
}

/// Gateway YAML with any certificate paths and the admin/timeouts of `opts`.
pub fn gateway_yaml_with(
    listen: &str,
    files: &ServerFiles,
    routes: &[Route],
    opts: &Opts,
) -> String {
    // No background backend probes unless asked: tests count every backend connection.
    let mut y = format!("listen: {listen}\n");
    y += &opts.yaml_head(&[("probe_interval", "0s")]);
    y += "tls:\n";
    y += &format!("  cert: {}\n  key: {}\n", p(&files.cert), p(&files.key));
    if let Some(ca) = &files.client_ca {
        y += &format!("  client_ca: {}\n", p(ca));
    }
    if let Some(crl) = &files.crl {
        y += &format!("  crl: {}\n", p(crl));
    }
    y += "routes:\n";
    for r in routes {
        y += &format!("  - name: {}\n", r.name);
        y += &format!("    server_names: [{}]\n", r.server_names.join(", "));
        y += &format!("    protocol: {}\n    backend: {}\n", r.protocol, r.backend);
        if let Some(allow) = &r.allow {
            y += &format!("    allow: [{}]\n", allow.join(", "));
        }
        if let Some((user, file)) = &r.login {
            y += &format!("    login:\n      password_file: {}\n", p(file));
            if let Some(user) = user {
                y += &format!("      user: {user}\n");
            }
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
    pub session_resumption: Option<bool>,
    /// `warm:` connections kept ready to the gateway.
    pub warm: Option<usize>,
    /// `proxy:` of the tunnel: a URL or `none`.
    pub proxy: Option<String>,
}

impl Tunnel {
    pub fn new(name: &str, protocol: &str, connect: impl Display, sni: &str) -> Tunnel {
        Tunnel {
            name: name.into(),
            listen: "127.0.0.1:0".into(),
            protocol: protocol.into(),
            connect: connect.to_string(),
            server_name: Some(sni.into()),
            session_resumption: None,
            warm: None,
            proxy: None,
        }
    }

    /// With `proxy: url` (or `none`).
    pub fn proxy(mut self, url: &str) -> Tunnel {
        self.proxy = Some(url.into());
        self
    }

    /// With `warm: n`.
    pub fn warm(mut self, n: usize) -> Tunnel {
        self.warm = Some(n);
        self
    }
}

/// Sidecar YAML trusting `ca`, presenting `client`'s certificate when given.
pub fn sidecar_yaml(ca: &Path, client: Option<&Pki>, tunnels: &[Tunnel]) -> String {
    sidecar_yaml_with(ca, client, tunnels, &Opts::default())
}

/// Sidecar YAML with the admin/timeouts of `opts` (no `timeouts:` key unless given).
pub fn sidecar_yaml_with(
    ca: &Path,
    client: Option<&Pki>,
    tunnels: &[Tunnel],
    opts: &Opts,
) -> String {
    let files = ClientFiles {
        ca: ca.to_owned(),
        cert: client.map(|c| (c.client_cert(), c.client_key())),
    };
    sidecar_yaml_files(&files, tunnels, opts)
}

/// The sidecar's CA and optional client certificate + key (any paths, e.g. symlinks).
#[derive(Clone, Debug)]
pub struct ClientFiles {
    pub ca: PathBuf,
    pub cert: Option<(PathBuf, PathBuf)>,
}

/// Sidecar YAML with any certificate paths.
pub fn sidecar_yaml_files(files: &ClientFiles, tunnels: &[Tunnel], opts: &Opts) -> String {
    let mut y = opts.yaml_head(&[]);
    y += &format!("tls:\n  ca: {}\n", p(&files.ca));
    if let Some((cert, key)) = &files.cert {
        y += &format!("  cert: {}\n  key: {}\n", p(cert), p(key));
    }
    y += "tunnels:\n";
    for t in tunnels {
        y += &format!("  - name: {}\n    listen: {}\n", t.name, t.listen);
        y += &format!("    protocol: {}\n    connect: {}\n", t.protocol, t.connect);
        if let Some(sni) = &t.server_name {
            y += &format!("    server_name: {sni}\n");
        }
        if let Some(resume) = t.session_resumption {
            y += &format!("    session_resumption: {resume}\n");
        }
        if let Some(warm) = t.warm {
            y += &format!("    warm: {warm}\n");
        }
        if let Some(proxy) = &t.proxy {
            y += &format!("    proxy: \"{proxy}\"\n");
        }
    }
    y
}

/// A running `snigate <role>` process with its config and stderr log in a tempdir.
pub struct Proc {
    guard: ChildGuard,
    pub dir: TempDir,
    pub log_path: PathBuf,
    pub config_path: PathBuf,
    /// The admin endpoint's bound address, when the config has `admin:`.
    pub admin: Option<SocketAddr>,
}

impl Proc {
    /// Start `snigate <role> --config <dir>/<role>.yaml`; wait for `listeners` ready lines
    /// (and the admin's line when `opts.admin`).
    fn start(role: &str, yaml: &str, listeners: usize, opts: &Opts) -> (Proc, Vec<String>) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("snigate-{role}-"))
            .tempdir()
            .unwrap();
        let config_path = dir.path().join(format!("{role}.yaml"));
        fs::write(&config_path, yaml).unwrap();
        let log_path = dir.path().join(format!("{role}.log"));
        let child = Command::new(snigate_bin())
            .args(&opts.args_before)
            .arg(role)
            .arg("--config")
            .arg(&config_path)
            .args(&opts.args_after)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            // A developer's or CI's own proxy must not route the tests' tunnels.
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("no_proxy")
            .env_remove("NO_PROXY")
            .envs(opts.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log_path).unwrap())
            .spawn()
            .expect("spawn snigate");
        let mut proc = Proc {
            guard: ChildGuard::new(child, libc::SIGKILL),
            dir,
            log_path,
            config_path,
            admin: None,
        };
        let lines = wait_for(&format!("{role} listening lines"), READY, || {
            if let Some(st) = proc.guard.exited() {
                panic!(
                    "snigate {role} exited early ({st}); config:\n{yaml}\nlog:\n{}",
                    proc.log()
                );
            }
            let ready = proc.listening_lines(false);
            let admin = proc.listening_lines(true);
            (ready.len() >= listeners && (!opts.admin || !admin.is_empty()))
                .then_some((ready, admin))
        });
        let (lines, admin) = lines;
        if let Some(line) = admin.first() {
            let addr = field(line, "addr").and_then(|a| a.parse().ok());
            proc.admin = Some(addr.unwrap_or_else(|| panic!("no admin addr= in {line:?}")));
        }
        (proc, lines)
    }

    /// The `listening` lines of the role's listeners, or (`admin`) of the admin endpoint.
    fn listening_lines(&self, admin: bool) -> Vec<String> {
        let log = self.log();
        log.lines()
            .filter(|l| match message(l) {
                Some(m) if admin => m == "admin listening",
                Some(m) => m == "listening",
                None => false,
            })
            .filter(|l| field(l, "addr").is_some())
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

    /// Log lines containing every one of `parts`.
    pub fn lines_with(&self, parts: &[&str]) -> Vec<String> {
        let log = self.log();
        log.lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .map(String::from)
            .collect()
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

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Send `sig` without waiting.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child, not yet reaped (the guard reaps it).
        unsafe { libc::kill(self.guard.pid() as libc::pid_t, sig) };
    }

    /// Wait (bounded by `limit`) for the process to exit on its own; panics otherwise.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let guard = &mut self.guard;
        match poll(limit, || guard.exited()) {
            Some(status) => status,
            None => panic!(
                "snigate (pid {}) still running after {limit:?}; log:\n{}",
                self.pid(),
                self.log()
            ),
        }
    }

    /// Replace the config file atomically (rename), e.g. before a SIGHUP.
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.config_path.with_extension("yaml.tmp");
        fs::write(&tmp, yaml).unwrap();
        fs::rename(&tmp, &self.config_path).unwrap();
    }

    /// The admin endpoint's address (the config must have `admin:`).
    pub fn admin(&self) -> SocketAddr {
        self.admin
            .expect("this process was started without an admin endpoint")
    }

    pub fn get(&self, path: &str) -> HttpReply {
        http(self.admin(), "GET", path)
    }

    pub fn post(&self, path: &str) -> HttpReply {
        http(self.admin(), "POST", path)
    }

    /// One scrape of `/metrics`.
    pub fn metrics(&self) -> Scrape {
        scrape(self.admin())
    }
}

/// The message of a log line: text (`... target: MESSAGE key=value`) or JSON
/// (`fields.message`).
pub fn message(line: &str) -> Option<String> {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        return v["fields"]["message"].as_str().map(String::from);
    }
    // `<timestamp>  LEVEL [span{k=v ...}:]* target: message key=value ...`
    let mut rest = line.split_whitespace().skip(2);
    rest.find(|w| w.ends_with(':') && !w.contains(['{', '}', '=']))?;
    let words: Vec<&str> = rest.take_while(|w| !w.contains('=')).collect();
    Some(words.join(" "))
}

/// Value of `key=` in a log line, without quotes, trailing punctuation or span braces. JSON
/// lines: the event's field, else the current span's.
pub fn field(line: &str, key: &str) -> Option<String> {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let found = v["fields"].get(key).or_else(|| v["span"].get(key))?;
        return Some(match found {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    let pat = format!("{key}=");
    let start = line.split_whitespace().find_map(|w| w.strip_prefix(&pat))?;
    Some(
        start
            .trim_matches(|c| matches!(c, '"' | ',' | ';' | '}' | ':'))
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

    /// Like `start`, with the admin endpoint, timeouts and arguments of `opts`.
    pub fn start_with(pki: &Pki, routes: &[Route], opts: &Opts) -> Gateway {
        let files = ServerFiles::of(pki, true);
        Self::from_yaml_with(
            &gateway_yaml_with("127.0.0.1:0", &files, routes, opts),
            opts,
        )
    }

    pub fn from_yaml(yaml: &str) -> Gateway {
        Self::from_yaml_with(yaml, &Opts::default())
    }

    pub fn from_yaml_with(yaml: &str, opts: &Opts) -> Gateway {
        let (proc, lines) = Proc::start("gateway", yaml, 1, opts);
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

    /// Like `start`, with the admin endpoint, timeouts and arguments of `opts`.
    pub fn start_with(pki: &Pki, tunnels: &[Tunnel], opts: &Opts) -> Sidecar {
        let yaml = sidecar_yaml_with(&pki.ca(), Some(pki), tunnels, opts);
        Self::from_yaml_with(&yaml, tunnels.len(), opts)
    }

    pub fn from_yaml(yaml: &str, tunnels: usize) -> Sidecar {
        Self::from_yaml_with(yaml, tunnels, &Opts::default())
    }

    pub fn from_yaml_with(yaml: &str, tunnels: usize, opts: &Opts) -> Sidecar {
        let (proc, lines) = Proc::start("sidecar", yaml, tunnels, opts);
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

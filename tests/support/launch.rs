//! The binary under test as gateway or sidecar: its config (a value from `config`) written as
//! YAML into a tempdir, `--log-format json` to a log file there, started once its admin
//! endpoint answers `/startup`, its bound addresses read from the `listening` lines.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use snigate::config::{GatewayConfig, SidecarConfig};

use super::certs::tempdir;
use super::config::yaml;
use super::process::{run, ChildGuard, CMD};
use super::running::Process;

/// Path of the binary under test, built by cargo for integration tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_snigate")
}

/// A command running the binary under test, without the caller's proxy variables: a
/// developer's or CI's own proxy must not route the tests' tunnels (a test sets its own).
pub fn command() -> Command {
    let mut cmd = Command::new(bin());
    for var in ["https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"] {
        cmd.env_remove(var);
    }
    cmd
}

/// `snigate <role> --config <path> --check`, bounded.
pub fn check(role: &str, config: &Path) -> Output {
    let mut cmd = command();
    run(
        cmd.arg(role).arg("--config").arg(config).arg("--check"),
        CMD,
    )
}

/// How to run the process: its `RUST_LOG`, descriptor limit and log format.
#[derive(Clone, Debug)]
pub struct Launch {
    rust_log: String,
    env: Vec<(String, String)>,
    nofile: Option<u64>,
    text_logs: bool,
    format_after_subcommand: bool,
}

impl Default for Launch {
    fn default() -> Self {
        Launch {
            rust_log: "info".into(),
            env: Vec::new(),
            nofile: None,
            text_logs: false,
            format_after_subcommand: false,
        }
    }
}

impl Launch {
    pub fn rust_log(mut self, filter: &str) -> Launch {
        self.rust_log = filter.into();
        self
    }

    /// One more environment variable of the process.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Launch {
        self.env.push((key.into(), value.into()));
        self
    }

    /// RLIMIT_NOFILE of the process.
    pub fn nofile(mut self, n: u64) -> Launch {
        self.nofile = Some(n);
        self
    }

    /// The default text log format instead of JSON.
    pub fn text_logs(mut self) -> Launch {
        self.text_logs = true;
        self
    }

    /// `--log-format json` after `--config FILE` rather than before the subcommand.
    pub fn log_format_after_subcommand(mut self) -> Launch {
        self.format_after_subcommand = true;
        self
    }

    pub fn gateway(&self, config: &GatewayConfig) -> Gateway {
        let proc = self.spawn("gateway", &yaml(config));
        let addr = proc.listening().values().next().copied();
        let addr = addr.unwrap_or_else(|| panic!("no listening line:\n{}", proc.log_text()));
        Gateway { proc, addr }
    }

    pub fn sidecar(&self, config: &SidecarConfig) -> Sidecar {
        let proc = self.spawn("sidecar", &yaml(config));
        let addrs = proc.listening();
        assert_eq!(addrs.len(), config.tunnels.len(), "{}", proc.log_text());
        Sidecar { proc, addrs }
    }

    /// `snigate <role> --config <dir>/<role>.yaml`, stderr to `<dir>/<role>.log`; returns
    /// once started.
    fn spawn(&self, role: &str, yaml: &str) -> Process {
        let dir = tempdir(&format!("snigate-{role}-"));
        let config_path = dir.path().join(format!("{role}.yaml"));
        fs::write(&config_path, yaml).unwrap();
        let log_path = dir.path().join(format!("{role}.log"));
        let mut cmd = command();
        let json = ["--log-format", "json"];
        if !self.text_logs && !self.format_after_subcommand {
            cmd.args(json);
        }
        cmd.arg(role).arg("--config").arg(&config_path);
        if !self.text_logs && self.format_after_subcommand {
            cmd.args(json);
        }
        cmd.current_dir(dir.path()).env("RUST_LOG", &self.rust_log);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(File::create(&log_path).unwrap());
        if let Some(n) = self.nofile {
            limit_nofile(&mut cmd, n);
        }
        let child = cmd.spawn().expect("spawn snigate");
        let guard = ChildGuard::new(child, libc::SIGKILL);
        Process::started(guard, dir, config_path, log_path, yaml)
    }
}

fn limit_nofile(cmd: &mut Command, n: u64) {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit(2) is async-signal-safe; it runs in the child before exec.
    unsafe {
        cmd.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        });
    }
}

pub struct Gateway {
    pub proc: Process,
    pub addr: SocketAddr,
}

impl Gateway {
    pub fn start(config: &GatewayConfig) -> Gateway {
        Launch::default().gateway(config)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

pub struct Sidecar {
    pub proc: Process,
    pub addrs: HashMap<String, SocketAddr>,
}

impl Sidecar {
    pub fn start(config: &SidecarConfig) -> Sidecar {
        Launch::default().sidecar(config)
    }

    /// Local address of tunnel `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        match self.addrs.get(name) {
            Some(a) => *a,
            None => panic!("no tunnel {name} in {:?}", self.addrs),
        }
    }

    pub fn port(&self, name: &str) -> u16 {
        self.addr(name).port()
    }
}

macro_rules! deref_to_process {
    ($role:ty) => {
        impl Deref for $role {
            type Target = Process;
            fn deref(&self) -> &Process {
                &self.proc
            }
        }
        impl DerefMut for $role {
            fn deref_mut(&mut self) -> &mut Process {
                &mut self.proc
            }
        }
    };
}

deref_to_process!(Gateway);
deref_to_process!(Sidecar);

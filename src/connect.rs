//! `snigate connect`: one tunnel in the foreground for ad-hoc work (a `psql` import from a
//! laptop), from flags instead of a config file. It is the sidecar with one tunnel: the flags
//! become a sidecar config, validated and run by the same code, so the TLS rules, the errors
//! clients see and the defaults are the sidecar's (without an admin endpoint).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use crate::admin::Health;
use crate::config::{self, ConfigError, HostPort, Invalid, Protocol, SidecarConfig};

/// What errors name instead of a config file.
pub const ORIGIN: &str = "snigate connect";

/// How often the first probe's result is looked for.
const PROBE_POLL: Duration = Duration::from_millis(50);

/// The flags of `snigate connect`.
#[derive(Debug, Clone, clap::Args)]
pub struct Connect {
    /// The gateway, e.g. postgres-myproject.apps.example.com:443.
    #[arg(value_name = "HOST:PORT", value_parser = host_port)]
    pub target: HostPort,
    /// Local address clients connect to, e.g. 127.0.0.1:5432.
    #[arg(long)]
    pub listen: SocketAddr,
    /// The CA that signed the gateway's certificate (the only trust root).
    #[arg(long)]
    pub ca: PathBuf,
    /// Client certificate presented to the gateway.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Its private key.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// postgres, redis or tcp; by default told by the --listen port (5432, 6379).
    #[arg(long, value_parser = protocol)]
    pub protocol: Option<Protocol>,
    /// SNI sent to the gateway; defaults to the host of HOST:PORT.
    #[arg(long)]
    pub server_name: Option<String>,
    /// HTTP proxy to the gateway, http://[user:password@]host:port, or none; by default
    /// HTTPS_PROXY and NO_PROXY, as curl reads them.
    #[arg(long, value_name = "URL|none")]
    pub proxy: Option<String>,
}

fn host_port(text: &str) -> Result<HostPort, String> {
    HostPort::try_from(text.to_owned())
}

fn protocol(text: &str) -> Result<Protocol, String> {
    match text {
        "postgres" => Ok(Protocol::Postgres),
        "redis" => Ok(Protocol::Redis),
        "tcp" => Ok(Protocol::Tcp),
        _ => Err("one of postgres, redis, tcp".to_owned()),
    }
}

impl Connect {
    /// The protocol given, or the one the listen port implies.
    pub fn protocol(&self) -> Result<Protocol, ConfigError> {
        match (self.protocol, self.listen.port()) {
            (Some(protocol), _) => Ok(protocol),
            (None, 5432) => Ok(Protocol::Postgres),
            (None, 6379) => Ok(Protocol::Redis),
            (None, port) => Err(invalid(
                "--protocol",
                format!("cannot tell the protocol from port {port}"),
                "add --protocol postgres, --protocol redis or --protocol tcp",
            )),
        }
    }

    /// The sidecar config these flags mean, validated like a config file.
    pub fn config(&self) -> Result<SidecarConfig, ConfigError> {
        if self.listen.port() == 0 {
            return Err(invalid(
                "--listen",
                "port 0 would leave clients guessing the port",
                "choose the local port clients will use, e.g. 127.0.0.1:5432",
            ));
        }
        let protocol = self.protocol()?;
        // Built as YAML so that keys added to the schema keep their defaults here too.
        let mut tunnel = Mapping::new();
        tunnel.insert("name".into(), protocol.to_string().into());
        tunnel.insert("listen".into(), self.listen.to_string().into());
        tunnel.insert("protocol".into(), protocol.to_string().into());
        tunnel.insert("connect".into(), self.target.to_string().into());
        if let Some(name) = &self.server_name {
            tunnel.insert("server_name".into(), name.clone().into());
        }
        let mut tls = Mapping::new();
        for (key, path) in [("ca", Some(&self.ca)), ("cert", self.cert.as_ref())] {
            if let Some(path) = path {
                tls.insert(key.into(), path_value(path));
            }
        }
        if let Some(key) = &self.key {
            tls.insert("key".into(), path_value(key));
        }
        let mut root = Mapping::new();
        if let Some(proxy) = &self.proxy {
            root.insert("proxy".into(), proxy.clone().into());
        }
        root.insert("tls".into(), Value::Mapping(tls));
        root.insert(
            "tunnels".into(),
            Value::Sequence(vec![Value::Mapping(tunnel)]),
        );
        let text = serde_yaml::to_string(&root).map_err(|e| {
            invalid(
                "--ca",
                format!("a path is not valid UTF-8: {e}"),
                "rename it",
            )
        })?;
        config::sidecar_from_str(&text, Path::new(ORIGIN)).map_err(name_flags)
    }

    /// What to tell the user once the tunnel listens: where it goes and how to use it.
    pub fn banner(&self, protocol: Protocol, server_name: &str) -> String {
        let (ip, port) = (self.listen.ip(), self.listen.port());
        let use_it = match protocol {
            Protocol::Postgres => format!("psql \"postgresql://USER@{}/DBNAME\"", self.listen),
            Protocol::Redis => format!("redis-cli -h {ip} -p {port}"),
            Protocol::Tcp => format!("connect to {}", self.listen),
        };
        format!(
            "snigate connect: {} -> {} ({protocol}, SNI {server_name}); Ctrl-C stops\n  {use_it}",
            self.listen, self.target
        )
    }
}

fn path_value(path: &Path) -> Value {
    Value::String(path.to_string_lossy().into_owned())
}

fn invalid(flag: &str, problem: impl Into<String>, fix: &str) -> ConfigError {
    ConfigError::invalid(Path::new(ORIGIN), Invalid::new(flag, problem, fix))
}

/// Errors name the flag that was given, not the config key it became.
pub fn name_flags(error: ConfigError) -> ConfigError {
    match error {
        ConfigError::Invalid { file, mut invalid } => {
            let flag = match invalid.key.as_str() {
                "tls.ca" => "--ca",
                "tls.cert" => "--cert",
                "tls.key" => "--key",
                "tunnels[0].listen" => "--listen",
                "tunnels[0].connect" => "HOST:PORT",
                "tunnels[0].server_name" => "--server-name",
                "proxy" => "--proxy",
                _ => return ConfigError::Invalid { file, invalid },
            };
            invalid.key = flag.to_owned();
            ConfigError::Invalid { file, invalid }
        }
        other => other,
    }
}

/// Logs the first probe of the tunnel `name`: whether the gateway accepted the handshake, or
/// why not, so a wrong CA or name shows at once rather than at the first client.
pub async fn report_first_probe(health: Arc<Health>, name: String) {
    let check = format!("tunnel:{name}");
    loop {
        match health.check(&check) {
            Some((true, _)) => {
                tracing::info!(tunnel = %name, "gateway probe passed: the tunnel is ready");
                return;
            }
            Some((false, detail)) if detail != crate::sidecar::NOT_PROBED => {
                tracing::warn!(tunnel = %name, detail = %detail, "gateway probe failed; clients will get this error until it passes");
                return;
            }
            _ => tokio::time::sleep(PROBE_POLL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Connect {
        Connect {
            target: HostPort::try_from("postgres-myproject.apps.example.com:443".to_owned())
                .unwrap(),
            listen: "127.0.0.1:5432".parse().unwrap(),
            ca: "ca.crt".into(),
            cert: Some("me.crt".into()),
            key: Some("me.key".into()),
            protocol: None,
            server_name: None,
            proxy: None,
        }
    }

    #[test]
    fn flags_become_one_validated_tunnel() {
        let config = flags().config().unwrap();
        assert!(config.admin.is_none());
        let tunnel = &config.tunnels[..];
        assert_eq!(tunnel.len(), 1);
        assert_eq!(tunnel[0].name, "postgres");
        assert_eq!(tunnel[0].protocol, Protocol::Postgres);
        assert_eq!(tunnel[0].server_name, "postgres-myproject.apps.example.com");
        assert_eq!(config.tls.cert.as_deref(), Some(Path::new("me.crt")));
        let redis = Connect {
            listen: "127.0.0.1:6379".parse().unwrap(),
            ..flags()
        };
        assert_eq!(redis.protocol().unwrap(), Protocol::Redis);
        assert!(
            config.proxy.is_none(),
            "without --proxy, the environment decides"
        );
        let proxied = Connect {
            proxy: Some("none".into()),
            ..flags()
        };
        let setting = proxied.config().unwrap().proxy.unwrap().setting("proxy");
        assert!(setting.unwrap() == crate::config::ProxySetting::None);
    }

    #[test]
    fn bad_flags_are_named_in_the_error() {
        let cases = [
            (
                Connect {
                    server_name: Some("10.0.0.1".into()),
                    ..flags()
                },
                "snigate connect: --server-name: `10.0.0.1` is an IP address",
            ),
            (
                Connect {
                    listen: "0.0.0.0:5432".parse().unwrap(),
                    ..flags()
                },
                "snigate connect: --listen: 0.0.0.0:5432 is not a loopback address",
            ),
            (
                Connect {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    ..flags()
                },
                "snigate connect: --listen: port 0",
            ),
            (
                Connect {
                    listen: "127.0.0.1:15432".parse().unwrap(),
                    ..flags()
                },
                "snigate connect: --protocol: cannot tell the protocol from port 15432",
            ),
            (
                Connect {
                    key: None,
                    ..flags()
                },
                "snigate connect: --cert: tls.cert and tls.key must be given together",
            ),
        ];
        let cases = cases.into_iter().chain([(
            Connect {
                proxy: Some("https://me:Pw-1@proxy.corp:3128".into()),
                ..flags()
            },
            "snigate connect: --proxy: `https://me:***@proxy.corp:3128` is an HTTPS proxy",
        )]);
        for (connect, want) in cases {
            let got = connect.config().unwrap_err().to_string();
            assert!(got.starts_with(want), "{got}");
        }
    }

    #[test]
    fn the_banner_shows_the_command_to_use() {
        let f = flags();
        assert_eq!(
            f.banner(Protocol::Postgres, "pg.example.com"),
            "snigate connect: 127.0.0.1:5432 -> postgres-myproject.apps.example.com:443 \
             (postgres, SNI pg.example.com); Ctrl-C stops\n  \
             psql \"postgresql://USER@127.0.0.1:5432/DBNAME\""
        );
        let v6 = Connect {
            listen: "[::1]:6379".parse().unwrap(),
            ..flags()
        };
        assert!(v6
            .banner(Protocol::Redis, "r")
            .ends_with("\n  redis-cli -h ::1 -p 6379"));
    }
}

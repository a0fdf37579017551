//! Configuration files: schema, loading and validation, all before any port is bound.
//!
//! Every error names the file, the key (with line and column where the YAML parser knows them)
//! and what to change.

mod allow;
mod common;
mod gateway;
mod login;
mod proxy;
mod sidecar;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use allow::AllowRule;
pub use common::{sni_name, HostPort, Limits, NameError, Protocol, Timeouts, TlsVersion};
pub use gateway::{GatewayConfig, GatewayTls, RouteConfig};
pub use login::LoginConfig;
pub use proxy::{ProxyKey, ProxySetting, ProxyUrl, ProxyUrlError};
pub use sidecar::{SidecarConfig, SidecarTls, TunnelConfig};

/// A value that parsed but cannot work: which key, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The key as a path, e.g. `routes[1].server_names[0]`.
    pub key: String,
    /// What is wrong with its value.
    pub problem: String,
    /// What to change.
    pub fix: String,
}

impl Invalid {
    /// An invalid value at `key`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Invalid {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// Refuses an empty `routes` or `tunnels` list (`key`), which would serve nothing; the fix
/// names an `entry` and the `keys` it needs.
fn at_least_one<T>(list: &[T], key: &str, entry: &str, keys: &str) -> Result<(), Invalid> {
    if list.is_empty() {
        return Err(Invalid::new(
            key,
            format!("no {key} are configured"),
            format!("add at least one {entry} with {keys}"),
        ));
    }
    Ok(())
}

/// Refuses entry `i` of the list `key` when an earlier `entry` has its `name`; `seen` maps the
/// names so far to their index.
fn distinct_name(
    seen: &mut HashMap<String, usize>,
    key: &str,
    entry: &str,
    i: usize,
    name: &str,
) -> Result<(), Invalid> {
    match seen.insert(name.to_owned(), i) {
        Some(j) => Err(Invalid::new(
            format!("{key}[{i}].name"),
            format!("{entry} name `{name}` is also used by {key}[{j}]"),
            format!("give every {entry} a distinct name"),
        )),
        None => Ok(()),
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\n  fix: {}", self.key, self.problem, self.fix)
    }
}

/// Why a config file cannot be used; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {error}", file.display())]
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {error}\n  fix: compare the keys and value types with the example in config/{role}.yaml", file.display())]
    Syntax {
        file: PathBuf,
        role: &'static str,
        error: serde_yaml::Error,
    },
    #[error("{}: {invalid}", file.display())]
    Invalid { file: PathBuf, invalid: Invalid },
}

impl ConfigError {
    /// An invalid value in `file`.
    pub fn invalid(file: &Path, invalid: Invalid) -> Self {
        ConfigError::Invalid {
            file: file.to_owned(),
            invalid,
        }
    }
}

/// Reads, parses and validates a gateway config file.
pub fn load_gateway(file: &Path) -> Result<GatewayConfig, ConfigError> {
    gateway_from_str(&read(file)?, file)
}

/// Reads, parses and validates a sidecar config file.
pub fn load_sidecar(file: &Path) -> Result<SidecarConfig, ConfigError> {
    sidecar_from_str(&read(file)?, file)
}

/// Parses and validates gateway config text; `file` only names it in errors. Reads no
/// certificate files (fixtures and fuzzing reach the checks through here).
pub fn gateway_from_str(text: &str, file: &Path) -> Result<GatewayConfig, ConfigError> {
    let mut config: GatewayConfig = parse(text, file, "gateway")?;
    config
        .validate()
        .map_err(|e| ConfigError::invalid(file, e))?;
    Ok(config)
}

/// Parses and validates sidecar config text, as [`gateway_from_str`].
pub fn sidecar_from_str(text: &str, file: &Path) -> Result<SidecarConfig, ConfigError> {
    let mut config: SidecarConfig = parse(text, file, "sidecar")?;
    config
        .validate()
        .map_err(|e| ConfigError::invalid(file, e))?;
    Ok(config)
}

/// Parses YAML text into a schema type, without validation.
pub fn parse_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_yaml::Error> {
    serde_yaml::from_str(text)
}

fn read(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|error| ConfigError::Read {
        file: file.to_owned(),
        error,
    })
}

fn parse<T: DeserializeOwned>(
    text: &str,
    file: &Path,
    role: &'static str,
) -> Result<T, ConfigError> {
    parse_str(text).map_err(|error| ConfigError::Syntax {
        file: file.to_owned(),
        role,
        error,
    })
}

#[cfg(test)]
mod fixtures;

#[cfg(test)]
mod tests {
    use super::*;

    /// Tests write configs as Rust values; what they serialize must read back the same.
    #[test]
    fn example_configs_survive_a_serialize_round_trip() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let file = root.join("config/gateway.yaml");
        let gateway = load_gateway(&file).unwrap();
        let text = serde_yaml::to_string(&gateway).unwrap();
        let again = gateway_from_str(&text, &file).unwrap();
        assert_eq!(serde_yaml::to_string(&again).unwrap(), text);
        let file = root.join("config/sidecar.yaml");
        let sidecar = load_sidecar(&file).unwrap();
        let text = serde_yaml::to_string(&sidecar).unwrap();
        let again = sidecar_from_str(&text, &file).unwrap();
        assert_eq!(serde_yaml::to_string(&again).unwrap(), text);
    }
}

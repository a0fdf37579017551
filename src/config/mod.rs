//! Configuration files: schema, loading and validation, all before any port is bound.
//!
//! Every error names the file, the key (with line and column where the YAML parser knows them)
//! and what to change.

mod common;
mod gateway;
mod sidecar;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use common::{sni_name, HostPort, Limits, Protocol, Timeouts, TlsVersion};
pub use gateway::{GatewayConfig, GatewayTls, RouteConfig};
pub use sidecar::{SidecarConfig, SidecarTls, TunnelConfig};

/// A value that parsed but cannot work: which key, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Invalid {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\n  fix: {}", self.key, self.problem, self.fix)
    }
}

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
    pub fn invalid(file: &Path, invalid: Invalid) -> Self {
        ConfigError::Invalid {
            file: file.to_owned(),
            invalid,
        }
    }
}

pub fn load_gateway(file: &Path) -> Result<GatewayConfig, ConfigError> {
    let mut config: GatewayConfig = parse(file, "gateway")?;
    config
        .validate()
        .map_err(|e| ConfigError::invalid(file, e))?;
    Ok(config)
}

pub fn load_sidecar(file: &Path) -> Result<SidecarConfig, ConfigError> {
    let mut config: SidecarConfig = parse(file, "sidecar")?;
    config
        .validate()
        .map_err(|e| ConfigError::invalid(file, e))?;
    Ok(config)
}

/// Parses YAML text; public so that fuzzing and fixtures can reach it without a file.
pub fn parse_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_yaml::Error> {
    serde_yaml::from_str(text)
}

fn parse<T: DeserializeOwned>(file: &Path, role: &'static str) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|error| ConfigError::Read {
        file: file.to_owned(),
        error,
    })?;
    parse_str(&text).map_err(|error| ConfigError::Syntax {
        file: file.to_owned(),
        role,
        error,
    })
}

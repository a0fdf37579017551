//! Which way each tunnel's connections leave: straight to the gateway, or through an HTTP
//! proxy. The config decides (`tunnels[].proxy`, else the top-level `proxy`); where it says
//! nothing, the environment does, read as curl reads it for an https:// URL: `https_proxy`,
//! else `HTTPS_PROXY`, unless the gateway's host is in `no_proxy`, else `NO_PROXY`.
//! These are the variables OpenShift's cluster-wide proxy, and most platforms, set.
//!
//! NO_PROXY is matched by hyper-util's matcher, which follows curl: comma-separated entries;
//! a name matches itself and its subdomains (a leading dot changes nothing); `*` matches
//! every host; IP addresses and CIDR ranges match IP literals; an entry with a port matches
//! nothing.

use std::fmt;

use hyper::Uri;
use hyper_util::client::proxy::matcher::Matcher;

use crate::config::{HostPort, Invalid, ProxySetting, ProxyUrl, SidecarConfig};

/// How one tunnel reaches its gateway, and what decided it (for the log).
#[derive(Clone, Debug)]
pub enum Egress {
    /// A TCP connection straight to the gateway.
    Direct { why: String },
    /// A TCP connection to the proxy, then HTTP CONNECT to the gateway.
    Proxy { url: ProxyUrl, from: String },
}

/// The route of each of `config`'s tunnels, in order. `var` reads an environment variable;
/// the environment is read only when a tunnel leaves the choice to it, and a proxy URL
/// there that cannot be used is an error naming the variable.
pub fn resolve(
    config: &SidecarConfig,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Egress>, Invalid> {
    let mut environment = None;
    let mut routes = Vec::with_capacity(config.tunnels.len());
    for (i, tunnel) in config.tunnels.iter().enumerate() {
        let (written, key) = match (&tunnel.proxy, &config.proxy) {
            (Some(own), _) => (Some(own), format!("tunnels[{i}].proxy")),
            (None, top) => (top.as_ref(), "proxy".to_owned()),
        };
        let setting = written.map(|key_text| key_text.setting(&key)).transpose()?;
        let route = match setting.as_ref() {
            Some(ProxySetting::None) => Egress::Direct {
                why: format!("{key}: none"),
            },
            Some(ProxySetting::Http(url)) => Egress::Proxy {
                url: url.clone(),
                from: key,
            },
            None => {
                let read = match environment.take() {
                    Some(read) => read,
                    None => Environment::read(&var)?,
                };
                let route = read.route(&tunnel.connect);
                environment = Some(read);
                route
            }
        };
        routes.push(route);
    }
    Ok(routes)
}

/// The proxy the environment names, and the hosts it exempts.
struct Environment {
    proxy: Option<(ProxyUrl, &'static str)>,
    no_proxy: Matcher,
}

impl Environment {
    fn read(var: impl Fn(&str) -> Option<String>) -> Result<Environment, Invalid> {
        let first = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|name| var(name).map(|value| (name, value)))
        };
        // As curl: the lower-case variable first; a variable set but empty means no proxy.
        let proxy = match first(["https_proxy", "HTTPS_PROXY"]) {
            Some((name, value)) if !value.trim().is_empty() => {
                let url = ProxyUrl::parse(&value).map_err(|e| {
                    Invalid::new(
                        format!("environment variable {name}"),
                        e.to_string(),
                        format!(
                            "{} in the variable; or set proxy: (a URL, or none) in the config, \
                             and the environment is not read",
                            e.fix()
                        ),
                    )
                })?;
                Some((url, name))
            }
            _ => None,
        };
        let no = first(["no_proxy", "NO_PROXY"]).map(|(_, value)| value);
        let https = proxy.as_ref().map(|(url, _)| url.for_matcher());
        let no_proxy = Matcher::builder()
            .https(https.unwrap_or_default())
            .no(no.unwrap_or_default())
            .build();
        Ok(Environment { proxy, no_proxy })
    }

    fn route(&self, gateway: &HostPort) -> Egress {
        let Some((url, name)) = &self.proxy else {
            return Egress::Direct {
                why: "no proxy in the config or environment".to_owned(),
            };
        };
        // A gateway address that is no URI authority cannot be listed in NO_PROXY either.
        let exempt = format!("https://{gateway}/")
            .parse::<Uri>()
            .is_ok_and(|uri| self.no_proxy.intercept(&uri).is_none());
        match exempt {
            true => Egress::Direct {
                why: format!("{gateway} matches NO_PROXY"),
            },
            false => Egress::Proxy {
                url: url.clone(),
                from: (*name).to_owned(),
            },
        }
    }
}

impl fmt::Display for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Egress::Direct { why } => write!(f, "direct ({why})"),
            Egress::Proxy { url, from } => write!(f, "through proxy {url} ({from})"),
        }
    }
}

#[cfg(test)]
#[path = "egress_tests.rs"]
mod tests;

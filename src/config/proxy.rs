//! The `proxy` keys: an HTTP proxy through which a tunnel reaches its gateway (HTTP CONNECT),
//! or `none`. A proxy URL may carry a password, so it is shown masked everywhere except in
//! the config text it came from and the `Proxy-Authorization` header sent to the proxy.

use std::fmt;

use hyper::header::HeaderValue;
use hyper::Uri;
use hyper_util::client::proxy::matcher::Matcher;
use serde::{Deserialize, Serialize};

use super::common::HostPort;
use super::Invalid;

/// A `proxy:` value as written (password included), read with [`ProxyKey::setting`]; the
/// config's validation has read it once, so that an error names the key.
#[derive(Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct ProxyKey(String);

/// What a `proxy:` key says.
#[derive(Clone, PartialEq, Eq)]
pub enum ProxySetting {
    /// `none`: straight to the gateway, whatever the environment says.
    None,
    /// `http://[user:password@]host:port`: through this proxy.
    Http(ProxyUrl),
}

/// An HTTP proxy, checked: scheme `http` (or none, which curl reads as `http`), a host and a
/// port, nothing after them.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// Where the proxy listens.
    pub addr: HostPort,
    /// `Basic …` from the URL's `user:password@`, marked sensitive.
    pub authorization: Option<HeaderValue>,
    /// As written, password included: only ever serialized back into config text.
    text: String,
}

/// Why a proxy URL cannot be used; every message shows the URL with its password masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyUrlError {
    #[error("the proxy URL is empty")]
    Empty,
    #[error("`{0}` is an HTTPS proxy (TLS to the proxy itself), which is not supported")]
    Https(String),
    #[error("`{url}`: the scheme `{scheme}` is not supported")]
    Scheme { url: String, scheme: String },
    #[error("`{0}` has no port")]
    NoPort(String),
    #[error("`{0}` is not http://[user:password@]host:port")]
    Malformed(String),
}

impl ProxyUrlError {
    /// What to write instead.
    pub fn fix(&self) -> &'static str {
        match self {
            ProxyUrlError::Empty => "write none, or http://[user:password@]host:port",
            ProxyUrlError::Https(_) => {
                "use the proxy's http:// address: the tunnel's TLS goes end to end through \
                 the proxy all the same"
            }
            ProxyUrlError::Scheme { .. } => "write http://[user:password@]host:port",
            ProxyUrlError::NoPort(_) => {
                "write the proxy's port, e.g. http://proxy.example.com:3128"
            }
            ProxyUrlError::Malformed(_) => {
                "write http://[user:password@]host:port, with no path after it, a port from 1 \
                 to 65535, and special characters of the user and password percent-encoded"
            }
        }
    }
}

impl ProxyKey {
    /// What the value says; the error names `key` and says what to write.
    pub fn setting(&self, key: &str) -> Result<ProxySetting, Invalid> {
        ProxySetting::parse(&self.0).map_err(|e| Invalid::new(key, e.to_string(), e.fix()))
    }
}

impl From<&str> for ProxyKey {
    fn from(text: &str) -> ProxyKey {
        ProxyKey(text.to_owned())
    }
}

impl fmt::Debug for ProxyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyKey({})", mask(&self.0))
    }
}

impl ProxySetting {
    /// Reads `none` or a proxy URL.
    pub fn parse(text: &str) -> Result<ProxySetting, ProxyUrlError> {
        match text.trim() {
            "none" => Ok(ProxySetting::None),
            _ => ProxyUrl::parse(text).map(ProxySetting::Http),
        }
    }
}

impl ProxyUrl {
    /// Reads `[http://][user[:password]@]host:port[/]`.
    pub fn parse(text: &str) -> Result<ProxyUrl, ProxyUrlError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ProxyUrlError::Empty);
        }
        let masked = mask(text);
        let rest = match text.split_once("://") {
            None => text,
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(ProxyUrlError::Https(masked))
            }
            Some((scheme, _)) => {
                let scheme = scheme.to_owned();
                return Err(ProxyUrlError::Scheme {
                    url: masked,
                    scheme,
                });
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let authority = match rest.rsplit_once('@') {
            Some(("", _)) => return Err(ProxyUrlError::Malformed(masked)),
            Some((_, authority)) => authority,
            None => rest,
        };
        if rest.contains(['/', '?', '#']) {
            return Err(ProxyUrlError::Malformed(masked));
        }
        if !authority.contains(':') || authority.ends_with(']') {
            return Err(ProxyUrlError::NoPort(masked));
        }
        let addr = HostPort::try_from(authority.to_owned())
            .map_err(|_| ProxyUrlError::Malformed(masked.clone()))?;
        let authorization = credentials(rest, &addr).ok_or(ProxyUrlError::Malformed(masked))?;
        Ok(ProxyUrl {
            addr,
            authorization,
            text: text.to_owned(),
        })
    }

    /// The URL as hyper-util's proxy matcher reads it (always with its scheme).
    pub fn for_matcher(&self) -> String {
        match self.text.split_once("://") {
            Some((_, rest)) => format!("http://{rest}"),
            None => format!("http://{}", self.text),
        }
    }
}

/// The `Proxy-Authorization` value of `user:password@` in `rest` (percent-decoded, as curl
/// does), built by hyper-util's matcher, which also reads `HTTPS_PROXY`; `None` when the
/// matcher does not read `rest` as the proxy at `addr`, so both always agree on the proxy.
fn credentials(rest: &str, addr: &HostPort) -> Option<Option<HeaderValue>> {
    let matcher = Matcher::builder().https(format!("http://{rest}")).build();
    let any_target = Uri::from_static("https://gateway.invalid/");
    let intercept = matcher.intercept(&any_target)?;
    let uri = intercept.uri();
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let same = host.eq_ignore_ascii_case(&addr.host) && uri.port_u16() == Some(addr.port);
    same.then(|| intercept.basic_auth().cloned())
}

/// `text` with the password of any `user:password@` replaced by `***`; also for text that
/// is not a valid URL, so no error message can show a password.
pub fn mask(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let Some(at) = text[start..].rfind('@').map(|i| start + i) else {
        return text.to_owned();
    };
    let userinfo = &text[start..at];
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &text[..start], &text[at..]),
        None => text.to_owned(),
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(&self.text))
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

impl fmt::Display for ProxySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxySetting::None => f.write_str("none"),
            ProxySetting::Http(url) => url.fmt(f),
        }
    }
}

impl fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxySetting({self})")
    }
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;

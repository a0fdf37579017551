//! Client identities read from a verified certificate, and the per-route `allow` lists.

use std::fmt;

use serde::Deserialize;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// One entry of a route's `allow` list: `dns:NAME`, `uri:URI` (SPIFFE IDs) or `cn:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum AllowRule {
    Dns(String),
    Uri(String),
    Cn(String),
}

impl TryFrom<String> for AllowRule {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let rule = match s.split_once(':') {
            Some(("dns", v)) if !v.is_empty() => AllowRule::Dns(v.to_ascii_lowercase()),
            Some(("uri", v)) if !v.is_empty() => AllowRule::Uri(v.to_owned()),
            Some(("cn", v)) if !v.is_empty() => AllowRule::Cn(v.to_owned()),
            _ => {
                return Err(format!(
                    "`{s}` is not an identity: write dns:NAME, uri:URI or cn:NAME"
                ))
            }
        };
        Ok(rule)
    }
}

/// What a client certificate says about who holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    pub cn: Option<String>,
}

impl Identity {
    /// Reads the identity of an end-entity certificate that rustls has already verified.
    pub fn from_der(der: &[u8]) -> Option<Identity> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut id = Identity {
            cn: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            ..Identity::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => id.dns.push(d.to_ascii_lowercase()),
                    GeneralName::URI(u) => id.uris.push((*u).to_owned()),
                    _ => {}
                }
            }
        }
        Some(id)
    }

    pub fn is_allowed(&self, rules: &[AllowRule]) -> bool {
        rules.iter().any(|rule| match rule {
            AllowRule::Dns(d) => self.dns.iter().any(|x| x == d),
            AllowRule::Uri(u) => self.uris.iter().any(|x| x == u),
            AllowRule::Cn(c) => self.cn.as_deref() == Some(c.as_str()),
        })
    }
}

/// The most specific name, for logs: a URI (SPIFFE ID) first, then a DNS name, then the CN.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = self.uris.first() {
            write!(f, "uri:{}", u.escape_debug())
        } else if let Some(d) = self.dns.first() {
            write!(f, "dns:{}", d.escape_debug())
        } else if let Some(c) = &self.cn {
            write!(f, "cn:{}", c.escape_debug())
        } else {
            f.write_str("anonymous")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            dns: vec!["worker.example.test".into()],
            uris: vec!["spiffe://example.test/ns/w/sa/celery".into()],
            cn: Some("Worker".into()),
        }
    }

    #[test]
    fn rules_parse_and_match_each_kind() {
        let rule = |s: &str| AllowRule::try_from(s.to_owned()).unwrap();
        assert!(id().is_allowed(&[rule("dns:WORKER.example.test")]));
        assert!(id().is_allowed(&[rule("uri:spiffe://example.test/ns/w/sa/celery")]));
        assert!(id().is_allowed(&[rule("cn:Worker")]));
        assert!(!id().is_allowed(&[rule("cn:worker"), rule("dns:other.example.test")]));
        assert!(!id().is_allowed(&[]));
    }

    #[test]
    fn malformed_rules_are_refused() {
        for bad in ["worker", "dns:", "ip:10.0.0.1", ""] {
            assert!(AllowRule::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }
}

//! Client identities read from a verified certificate, matched against a route's `allow` list.

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::AllowRule;

/// What a client certificate says about who holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// DNS subjectAltNames, lower case.
    pub dns: Vec<String>,
    /// URI subjectAltNames (SPIFFE IDs).
    pub uris: Vec<String>,
    /// The subject's first common name.
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

    /// Whether any rule names this identity.
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
}

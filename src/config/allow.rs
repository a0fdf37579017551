//! The identities a route admits: its `allow` list.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One entry of a route's `allow` list: `dns:NAME`, `uri:URI` (SPIFFE IDs) or `cn:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum AllowRule {
    /// A DNS subjectAltName, compared case-insensitively.
    Dns(String),
    /// A URI subjectAltName such as a SPIFFE ID, compared exactly.
    Uri(String),
    /// The subject's common name, compared exactly.
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

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowRule::Dns(v) => write!(f, "dns:{v}"),
            AllowRule::Uri(v) => write!(f, "uri:{v}"),
            AllowRule::Cn(v) => write!(f, "cn:{v}"),
        }
    }
}

impl From<AllowRule> for String {
    fn from(rule: AllowRule) -> String {
        rule.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_rules_are_refused() {
        for bad in ["worker", "dns:", "ip:10.0.0.1", ""] {
            assert!(AllowRule::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_read_back_as_written() {
        for text in [
            "dns:worker.example.test",
            "uri:spiffe://t/ns/w",
            "cn:Worker",
        ] {
            let rule = AllowRule::try_from(text.to_owned()).unwrap();
            assert_eq!(String::from(rule), text);
        }
    }
}

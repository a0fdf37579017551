//! The admin endpoint from the outside: a plain HTTP/1.1 client (one request per connection,
//! read to EOF) and a parser for the OpenMetrics text of `/metrics`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Bound for one admin request.
const HTTP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// `METHOD path HTTP/1.1` with `Connection: close`; the whole reply up to EOF.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> HttpReply {
    try_http(addr, method, path)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path} failed: {e}"))
}

/// Like `http`, but an endpoint that is not there (yet, or any more) is an `Err`.
pub fn try_http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<HttpReply> {
    let mut tcp = TcpStream::connect_timeout(&addr, HTTP)?;
    tcp.set_read_timeout(Some(HTTP))?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header end in {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v == "chunked");
    Ok(HttpReply {
        status,
        content_type: header("content-type").unwrap_or_default(),
        body: if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out += &rest[..n];
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// One `/metrics` scrape.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
}

pub fn scrape(addr: SocketAddr) -> Scrape {
    let reply = http(addr, "GET", "/metrics");
    assert_eq!(reply.status, 200, "/metrics: {reply:?}");
    Scrape { text: reply.body }
}

/// `name{k="v",...} value` → (name, labels, value); comments and blank lines give `None`.
fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let mut map = BTreeMap::new();
    // Label values here never contain `",`, so a plain split is enough.
    for pair in labels.split("\",").filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once("=\"")?;
        map.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
    }
    Some((name.to_owned(), map, value))
}

impl Scrape {
    /// Samples named `name` whose labels include every pair of `labels`.
    pub fn samples(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Vec<(BTreeMap<String, String>, f64)> {
        self.text
            .lines()
            .filter_map(parse_sample)
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, l, v)| (l, v))
            .collect()
    }

    /// The value of the one sample matching `name` and `labels`, if there is one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.samples(name, labels);
        assert!(
            found.len() <= 1,
            "{name}{labels:?} matches {} samples:\n{}",
            found.len(),
            self.text
        );
        found.first().map(|(_, v)| *v)
    }

    /// Like `value`, but the sample must exist.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{}", self.text))
    }

    /// Like `value`, but a missing sample counts as 0 (counters not yet created).
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }

    /// The sum of every sample named `name` (0 when there is none).
    pub fn sum(&self, name: &str) -> f64 {
        self.samples(name, &[]).iter().map(|(_, v)| v).sum()
    }
}

use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::config::sidecar_from_str;

/// A sidecar config with one tunnel per gateway address, the top-level lines `top` and the
/// per-tunnel `proxy:` values given.
fn config(top: &str, tunnels: &[(&str, Option<&str>)]) -> SidecarConfig {
    let mut yaml = format!("{top}\ntls: {{ca: ca.crt}}\ntunnels:\n");
    for (i, (connect, proxy)) in tunnels.iter().enumerate() {
        yaml += &format!(
            "  - {{name: t{i}, listen: 127.0.0.1:0, protocol: tcp, connect: \"{connect}\", \
             server_name: gw.example.test"
        );
        if let Some(proxy) = proxy {
            yaml += &format!(", proxy: \"{proxy}\"");
        }
        yaml += "}\n";
    }
    sidecar_from_str(&yaml, Path::new("test.yaml")).unwrap()
}

fn routes(config: &SidecarConfig, env: &[(&str, &str)]) -> Vec<String> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    resolve(config, |name| env.get(name).cloned())
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_tunnel_key_beats_the_top_level_key_which_beats_the_environment() {
    let c = config(
        "proxy: http://top.corp:3128",
        &[
            ("gw.example.com:443", None),
            ("gw.example.com:443", Some("none")),
            ("gw.example.com:443", Some("http://u:pw@own.corp:8080")),
        ],
    );
    let env = [("HTTPS_PROXY", "http://env.corp:3128")];
    assert_eq!(
        routes(&c, &env),
        [
            "through proxy http://top.corp:3128 (proxy)",
            "direct (tunnels[1].proxy: none)",
            "through proxy http://u:***@own.corp:8080 (tunnels[2].proxy)",
        ]
    );
    let c = config("proxy: none", &[("gw.example.com:443", None)]);
    assert_eq!(routes(&c, &env), ["direct (proxy: none)"]);
}

#[test]
fn the_environment_is_read_as_curl_reads_it() {
    let gateways = [
        "redis.apps.example.com:443",
        "db.internal.corp:443",
        "10.1.2.3:443",
        "[fd00::7]:443",
        "localhost:443",
    ];
    let c = config("", &gateways.map(|g| (g, None)));
    let via = "through proxy http://env.corp:3128 (https_proxy)";
    let env = [
        ("https_proxy", "http://env.corp:3128"),
        ("HTTPS_PROXY", "http://other.corp:3128"),
        (
            "no_proxy",
            ".internal.corp, 10.0.0.0/8,fd00::/8, localhost:443",
        ),
        ("NO_PROXY", "*"),
    ];
    let got = routes(&c, &env);
    assert_eq!(got[0], via);
    assert_eq!(got[1], "direct (db.internal.corp:443 matches NO_PROXY)");
    assert_eq!(got[2], "direct (10.1.2.3:443 matches NO_PROXY)");
    assert_eq!(got[3], "direct ([fd00::7]:443 matches NO_PROXY)");
    assert_eq!(
        got[4], via,
        "an entry with a port matches nothing, as in curl"
    );

    let suffix = config(
        "",
        &[("notinternal.corp:443", None), ("internal.corp:443", None)],
    );
    let env = [
        ("HTTPS_PROXY", "env.corp:3128"),
        ("NO_PROXY", "internal.corp"),
    ];
    let got = routes(&suffix, &env);
    assert_eq!(got[0], "through proxy env.corp:3128 (HTTPS_PROXY)");
    assert_eq!(got[1], "direct (internal.corp:443 matches NO_PROXY)");
    let star = [("HTTPS_PROXY", "env.corp:3128"), ("NO_PROXY", "*")];
    assert!(routes(&suffix, &star)
        .iter()
        .all(|r| r.starts_with("direct")));
    let empty = [("https_proxy", ""), ("HTTPS_PROXY", "env.corp:3128")];
    assert!(routes(&suffix, &empty)
        .iter()
        .all(|r| r.starts_with("direct")));
    assert!(routes(&suffix, &[]).iter().all(|r| r.starts_with("direct")));
}

#[test]
fn a_bad_environment_proxy_is_an_error_naming_the_variable_unless_unused() {
    let c = config("", &[("gw.example.com:443", None)]);
    let bad = |_: &str| Some("https://user:pw@env.corp:3128".to_owned());
    let error = resolve(&c, bad).unwrap_err();
    assert_eq!(error.key, "environment variable https_proxy");
    assert!(error
        .problem
        .contains("https://user:***@env.corp:3128` is an HTTPS proxy"));
    assert!(!error.to_string().contains("pw@"), "{error}");
    let c = config("proxy: none", &[("gw.example.com:443", None)]);
    assert!(resolve(&c, bad).is_ok());
}

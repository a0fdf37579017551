//! Config validation over the pure parser: every file under `fixtures/<role>/valid` loads, and
//! every file under `fixtures/<role>/invalid` is refused with an error that names the file,
//! the key (and the line, where the YAML parser knows it) and what to change.

use std::path::PathBuf;

use super::*;

/// Syntax errors (serde_yaml's) carry this fix; validation errors carry their own.
const COMPARE: &str = "compare the keys and value types with the example in config/";

fn path(fixture: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/config/fixtures")
        .join(fixture)
}

fn load(fixture: &str) -> Result<(), ConfigError> {
    let file = path(fixture);
    let text = std::fs::read_to_string(&file).unwrap();
    match fixture.split('/').next() {
        Some("gateway") => gateway_from_str(&text, &file).map(drop),
        Some("sidecar") => sidecar_from_str(&text, &file).map(drop),
        _ => panic!("fixture {fixture} is under neither gateway/ nor sidecar/"),
    }
}

/// `key`: the dotted path the error names (serde_yaml: the path before its message; empty
/// for a top-level key). `names`: the offending key or value, quoted in the message.
fn assert_invalid(fixture: &str, key: &str, names: &str, line: Option<usize>, fix: &str) {
    let err = load(fixture).expect_err("accepted");
    let text = err.to_string();
    let file = path(fixture).display().to_string();
    assert!(
        text.starts_with(&format!("{file}: ")),
        "names no file: {text}"
    );
    assert!(text.contains(names), "{text:?} lacks {names:?}");
    assert!(text.contains(fix), "{text:?} lacks the fix {fix:?}");
    match &err {
        ConfigError::Syntax { error, .. } => {
            let message = error.to_string();
            let at = format!("{key}: ");
            assert!(
                key.is_empty() || message.starts_with(&at),
                "{message:?} !~ {at:?}"
            );
            assert_eq!(error.location().map(|l| l.line()), line, "{message}");
        }
        ConfigError::Invalid { invalid, .. } => {
            assert_eq!(invalid.key, key, "{text}");
            assert_eq!(line, None, "validation errors carry no line: {text}");
            assert!(invalid.fix.contains(fix), "{text}");
        }
        ConfigError::Read { .. } => panic!("{text}"),
    }
}

macro_rules! valid {
    ($($name:ident: $fixture:literal;)*) => {
        $(
            #[test]
            fn $name() {
                load($fixture).unwrap_or_else(|e| panic!("{e}"));
            }
        )*
    };
}

macro_rules! invalid {
    ($($name:ident: $fixture:literal => $key:literal, $names:literal, $line:expr, $fix:expr;)*) => {
        $(
            #[test]
            fn $name() {
                assert_invalid($fixture, $key, $names, $line, $fix);
            }
        )*
    };
}

valid! {
    gateway_minimal: "gateway/valid/minimal.yaml";
    gateway_every_key: "gateway/valid/every_key.yaml";
    gateway_without_client_ca: "gateway/valid/without_client_ca.yaml";
    sidecar_minimal: "sidecar/valid/minimal.yaml";
    sidecar_every_key: "sidecar/valid/every_key.yaml";
    sidecar_two_tunnels_on_port_zero: "sidecar/valid/two_tunnels_on_port_zero.yaml";
}

invalid! {
    gateway_unknown_top_level_key: "gateway/invalid/unknown_top_level_key.yaml"
        => "", "rootes", Some(6), COMPARE;
    gateway_unknown_tls_key: "gateway/invalid/unknown_tls_key.yaml"
        => "tls", "client_cert", Some(3), COMPARE;
    gateway_unknown_timeouts_key: "gateway/invalid/unknown_timeouts_key.yaml"
        => "timeouts", "handshak", Some(7), COMPARE;
    gateway_unknown_limits_key: "gateway/invalid/unknown_limits_key.yaml"
        => "limits", "max_conections", Some(7), COMPARE;
    gateway_unknown_limits_key_max_handshake:
        "gateway/invalid/unknown_limits_key_max_handshake.yaml"
        => "limits", "max_handshake", Some(8), COMPARE;
    gateway_unknown_runtime_key: "gateway/invalid/unknown_runtime_key.yaml"
        => "runtime", "workers", Some(7), COMPARE;
    gateway_unknown_route_key: "gateway/invalid/unknown_route_key.yaml"
        => "routes[0]", "bakend", Some(10), COMPARE;
    gateway_missing_tls: "gateway/invalid/missing_tls.yaml"
        => "", "missing field `tls`", Some(1), COMPARE;
    gateway_unclosed_flow_sequence: "gateway/invalid/unclosed_flow_sequence.yaml"
        => "", "flow sequence", Some(14), COMPARE;
    gateway_unknown_protocol: "gateway/invalid/unknown_protocol.yaml"
        => "routes[0].protocol", "mysql", Some(9), COMPARE;
    gateway_min_version_1_1: "gateway/invalid/min_version_1_1.yaml"
        => "tls.min_version", "`1.1`, expected `1.2` or `1.3`", Some(3), COMPARE;
    gateway_min_version_1_0: "gateway/invalid/min_version_1_0.yaml"
        => "tls.min_version", "`1.0`", Some(3), COMPARE;
    gateway_min_version_ssl3: "gateway/invalid/min_version_ssl3.yaml"
        => "tls.min_version", "`ssl3`", Some(3), COMPARE;
    gateway_min_version_not_a_version: "gateway/invalid/min_version_not_a_version.yaml"
        => "tls.min_version", "`1.2.0`", Some(3), COMPARE;
    gateway_bad_duration: "gateway/invalid/bad_duration.yaml"
        => "timeouts.drain", "30 parsecs", Some(7), COMPARE;
    gateway_allow_rule_without_kind: "gateway/invalid/allow_rule_without_kind.yaml"
        => "routes[0].allow", "write dns:NAME, uri:URI or cn:NAME", Some(11), COMPARE;
    // The key and line are the route's, not its `backend:` line's.
    gateway_backend_without_port: "gateway/invalid/backend_without_port.yaml"
        => "routes[1]", "`postgresql` is not host:port", Some(12), COMPARE;
    gateway_backend_port_zero: "gateway/invalid/backend_port_zero.yaml"
        => "routes[1]", "`postgresql:0` is not host:port", Some(12), COMPARE;
    gateway_no_routes: "gateway/invalid/no_routes.yaml"
        => "routes", "no routes are configured", None, "add at least one route";
    gateway_empty_server_names: "gateway/invalid/empty_server_names.yaml"
        => "routes[1].server_names", "the list is empty", None, "list the SNI names";
    gateway_duplicate_route_name: "gateway/invalid/duplicate_route_name.yaml"
        => "routes[1].name", "`redis` is also used by routes[0]", None,
        "give every route a distinct name";
    gateway_duplicate_server_name: "gateway/invalid/duplicate_server_name.yaml"
        => "routes[1].server_names[0]", "`redis.snigate.test` is already served by route `redis`",
        None, "a server name may select one route only";
    // Names are case-insensitive: another spelling is the same name.
    gateway_duplicate_server_name_other_case:
        "gateway/invalid/duplicate_server_name_other_case.yaml"
        => "routes[1].server_names[0]", "`redis.snigate.test` is already served", None,
        "a server name may select one route only";
    gateway_ip_literal_server_name: "gateway/invalid/ip_literal_server_name.yaml"
        => "routes[1].server_names[0]", "`10.0.0.7` is an IP address", None,
        "use the DNS name clients send as SNI";
    gateway_wildcard_server_name: "gateway/invalid/wildcard_server_name.yaml"
        => "routes[1].server_names[0]", "`*.snigate.test` is not a valid DNS name", None,
        "use the DNS name clients send as SNI";
    gateway_allow_without_client_ca: "gateway/invalid/allow_without_client_ca.yaml"
        => "routes[0].allow", "tls.client_ca is not set", None, "set tls.client_ca";
    gateway_crl_without_client_ca: "gateway/invalid/crl_without_client_ca.yaml"
        => "tls.crl", "tls.client_ca is not set", None, "set tls.client_ca, or remove tls.crl";
    gateway_zero_worker_threads: "gateway/invalid/zero_worker_threads.yaml"
        => "runtime.worker_threads", "0 threads", None, "set it to 1 or more";
    gateway_login_without_client_ca: "gateway/invalid/login_without_client_ca.yaml"
        => "routes[1].login", "anonymous clients could borrow its credentials", None,
        "set tls.client_ca";
    gateway_postgres_login_without_user: "gateway/invalid/postgres_login_without_user.yaml"
        => "routes[1].login.user", "PostgreSQL needs the role", None, "set login.user";
    gateway_login_on_a_tcp_route: "gateway/invalid/login_on_a_tcp_route.yaml"
        => "routes[1].login", "a tcp route carries a protocol", None, "remove login";

    sidecar_unknown_top_level_key: "sidecar/invalid/unknown_top_level_key.yaml"
        => "", "insecure", Some(5), COMPARE;
    sidecar_unknown_tls_key: "sidecar/invalid/unknown_tls_key.yaml"
        => "tls", "verify", Some(2), COMPARE;
    sidecar_unknown_runtime_key: "sidecar/invalid/unknown_runtime_key.yaml"
        => "runtime", "workers", Some(6), COMPARE;
    sidecar_unknown_tunnel_key: "sidecar/invalid/unknown_tunnel_key.yaml"
        => "tunnels[0]", "sni", Some(9), COMPARE;
    sidecar_unknown_protocol: "sidecar/invalid/unknown_protocol.yaml"
        => "tunnels[0].protocol", "memcached", Some(8), COMPARE;
    sidecar_min_version_1_1: "sidecar/invalid/min_version_1_1.yaml"
        => "tls.min_version", "`1.1`", Some(2), COMPARE;
    sidecar_listen_not_an_address: "sidecar/invalid/listen_not_an_address.yaml"
        => "tunnels[0].listen", "invalid socket address syntax", Some(7), COMPARE;
    // The key and line are the tunnel's, not its `connect:` line's.
    sidecar_connect_without_port: "sidecar/invalid/connect_without_port.yaml"
        => "tunnels[0]", "`redis.apps.example.com` is not host:port", Some(6), COMPARE;
    sidecar_no_tunnels: "sidecar/invalid/no_tunnels.yaml"
        => "tunnels", "no tunnels are configured", None, "add at least one tunnel";
    sidecar_cert_without_key: "sidecar/invalid/cert_without_key.yaml"
        => "tls.cert", "tls.cert and tls.key must be given together", None, "set both";
    sidecar_key_without_cert: "sidecar/invalid/key_without_cert.yaml"
        => "tls.cert", "tls.cert and tls.key must be given together", None, "set both";
    sidecar_duplicate_tunnel_name: "sidecar/invalid/duplicate_tunnel_name.yaml"
        => "tunnels[1].name", "`redis` is also used by tunnels[0]", None,
        "give every tunnel a distinct name";
    sidecar_duplicate_listen: "sidecar/invalid/duplicate_listen.yaml"
        => "tunnels[1].listen", "127.0.0.1:6379 is also the listen address of tunnels[0]", None,
        "give every tunnel its own port";
    sidecar_non_loopback_listen: "sidecar/invalid/non_loopback_listen.yaml"
        => "tunnels[0].listen", "0.0.0.0:6379 is not a loopback address", None,
        "set allow_non_loopback: true";
    sidecar_ip_literal_server_name: "sidecar/invalid/ip_literal_server_name.yaml"
        => "tunnels[0].server_name", "`192.0.2.1` is an IP address", None,
        "set server_name to the gateway route's DNS name";
    // Without server_name, SNI is the host part of `connect`: here an IP literal.
    sidecar_ip_literal_connect_without_server_name:
        "sidecar/invalid/ip_literal_connect_without_server_name.yaml"
        => "tunnels[1].connect", "`192.0.2.1` is an IP address", None,
        "set server_name to the gateway route's DNS name";
    sidecar_zero_worker_threads: "sidecar/invalid/zero_worker_threads.yaml"
        => "runtime.worker_threads", "0 threads", None, "set it to 1 or more";
    sidecar_too_many_warm: "sidecar/invalid/too_many_warm.yaml"
        => "tunnels[0].warm", "1000 warm connections is more than 64", None, "a few at most";
    sidecar_negative_warm: "sidecar/invalid/negative_warm.yaml"
        => "tunnels[0].warm", "-1", Some(9), COMPARE;
    sidecar_warm_max_age_too_short: "sidecar/invalid/warm_max_age_too_short.yaml"
        => "tunnels[0].warm_max_age", "0ns is shorter than 1s", None, "e.g. 10m";
}

/// Server names are compared in lower case without a trailing dot; a tunnel's SNI defaults to
/// the host it connects to.
#[test]
fn names_are_normalised_and_sni_defaults_to_the_connect_host() {
    let file = path("gateway/valid/every_key.yaml");
    let gateway = gateway_from_str(&std::fs::read_to_string(&file).unwrap(), &file).unwrap();
    let names = &gateway.routes[0].server_names;
    assert_eq!(names, &["redis.snigate.test", "redis.example.test"]);
    let file = path("sidecar/valid/every_key.yaml");
    let sidecar = sidecar_from_str(&std::fs::read_to_string(&file).unwrap(), &file).unwrap();
    let sni: Vec<&str> = sidecar
        .tunnels
        .iter()
        .map(|t| t.server_name.as_str())
        .collect();
    assert_eq!(
        sni,
        [
            "redis.snigate.test",
            "postgres.snigate.test",
            "amqp.apps.example.com"
        ]
    );
}

/// A fixture file no case names would be a check that never runs.
#[test]
fn every_fixture_file_has_a_case() {
    let cases = include_str!("fixtures.rs");
    for role in ["gateway", "sidecar"] {
        for kind in ["valid", "invalid"] {
            let dir = path(&format!("{role}/{kind}"));
            for entry in std::fs::read_dir(&dir).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let fixture = format!("\"{role}/{kind}/{name}\"");
                assert!(cases.contains(&fixture), "no case for {fixture}");
            }
        }
    }
}

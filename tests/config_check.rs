//! `--check`: valid configs exit 0 and bind nothing; a bad config exits 2 before binding,
//! and stderr names the file and the key (dotted path, as serde_yaml reports keys).

mod support;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::pki::{p, CLIENT_NAME, PG_SNI, REDIS_SNI};
use support::snigate::{check, gateway_yaml, sidecar_yaml};
use support::*;
use tempfile::TempDir;

/// A config file in its own tempdir, plus a port the test holds so that a `--check`
/// which tried to bind it would fail.
struct Case {
    dir: TempDir,
    held: TcpListener,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
            held: TcpListener::bind("127.0.0.1:0").unwrap(),
        }
    }

    fn listen(&self) -> String {
        self.held.local_addr().unwrap().to_string()
    }

    fn write(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, yaml).unwrap();
        path
    }
}

fn routes() -> Vec<Route> {
    let ok = format!("dns:{CLIENT_NAME}");
    vec![
        Route::new("redis", REDIS_SNI, "redis", "127.0.0.1:6379").allow(&[&ok]),
        Route::new("postgres", PG_SNI, "postgres", "127.0.0.1:5432").allow(&[&ok]),
    ]
}

fn gateway(case: &Case, pki: &Pki) -> String {
    gateway_yaml(&case.listen(), pki, true, &routes())
}

fn sidecar(case: &Case, pki: &Pki) -> String {
    let mut t = Tunnel::new("redis", "redis", "127.0.0.1:8443", REDIS_SNI);
    t.listen = case.listen();
    sidecar_yaml(&pki.ca(), Some(pki), &[t])
}

fn assert_valid(role: &str, yaml: &str) {
    let case = Case::new();
    let path = case.write("ok.yaml", yaml);
    let out = check(role, &path);
    let (o, e) = texts(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{role} --check rejected:\n{yaml}\n{o}{e}"
    );
    assert!(!e.contains("listening"), "--check must bind nothing: {e}");
}

/// `--check`, and a plain start, exit 2; stderr names the config path and contains
/// every needle.
fn assert_invalid(role: &str, yaml: &str, needles: &[&str]) {
    let case = Case::new();
    let path = case.write("bad.yaml", yaml);
    assert_rejected(role, yaml, &path, check(role, &path), needles);
    let mut start = Command::new(snigate_bin());
    let out = run(start.arg(role).arg("--config").arg(&path), CMD);
    assert_rejected(role, yaml, &path, out, needles);
}

fn assert_rejected(role: &str, yaml: &str, path: &Path, out: Output, needles: &[&str]) {
    let (o, e) = texts(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{role} accepted a bad config:\n{yaml}\n{o}{e}"
    );
    assert!(
        e.contains(&p(path)),
        "stderr does not name {}: {e}",
        path.display()
    );
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}:\n{e}\nconfig:\n{yaml}");
    }
    assert!(!e.contains("listening"), "{e}");
}

#[test]
fn valid_gateway_and_sidecar_pass_without_binding() {
    let pki = Pki::new();
    let case = Case::new();
    // The listen ports are held by this test: a check that bound them would fail.
    assert_valid("gateway", &gateway(&case, &pki));
    assert_valid("sidecar", &sidecar(&case, &pki));
    let no_mtls = gateway_yaml(
        &case.listen(),
        &pki,
        false,
        &[Route::new("r", REDIS_SNI, "tcp", "127.0.0.1:1")],
    );
    assert_valid("gateway", &no_mtls);
}

#[test]
fn several_tunnels_may_each_listen_on_port_zero() {
    // Port 0 means "any free port": two such tunnels never collide.
    let pki = Pki::new();
    let tunnels = [
        Tunnel::new("redis", "redis", "127.0.0.1:8443", REDIS_SNI),
        Tunnel::new("postgres", "postgres", "127.0.0.1:8443", PG_SNI),
    ];
    assert_valid("sidecar", &sidecar_yaml(&pki.ca(), Some(&pki), &tunnels));
    let sc = Sidecar::start(&pki, &tunnels);
    assert_ne!(sc.port("redis"), sc.port("postgres"));
}

#[test]
fn unknown_keys_are_errors() {
    let (pki, case) = (Pki::new(), Case::new());
    let y = gateway(&case, &pki).replace(
        "    protocol: redis\n",
        "    protocol: redis\n    bakend: x\n",
    );
    assert_invalid("gateway", &y, &["bakend"]);
    let y =
        sidecar(&case, &pki).replace("    protocol: redis\n", "    protocol: redis\n    sni: x\n");
    assert_invalid("sidecar", &y, &["sni"]);
}

#[test]
fn duplicate_server_name_across_routes() {
    let (pki, case) = (Pki::new(), Case::new());
    let y = gateway(&case, &pki).replace(&format!("[{PG_SNI}]"), &format!("[{REDIS_SNI}]"));
    assert_invalid("gateway", &y, &["server_names", REDIS_SNI]);
    // Names are case-insensitive, so a different spelling is the same name.
    let upper = format!("[{}]", REDIS_SNI.to_uppercase());
    let y = gateway(&case, &pki).replace(&format!("[{PG_SNI}]"), &upper);
    assert_invalid("gateway", &y, &["server_names"]);
}

#[test]
fn ip_literal_server_names_are_rejected() {
    let (pki, case) = (Pki::new(), Case::new());
    let y = gateway(&case, &pki).replace(&format!("[{PG_SNI}]"), "[10.0.0.7]");
    assert_invalid("gateway", &y, &["routes[1].server_names", "10.0.0.7"]);
    let y = sidecar(&case, &pki).replace(
        &format!("server_name: {REDIS_SNI}"),
        "server_name: 192.0.2.1",
    );
    assert_invalid("sidecar", &y, &["tunnels[0].server_name", "192.0.2.1"]);
    // No server_name: it defaults to the host part of `connect`, here an IP literal.
    let y = sidecar(&case, &pki).replace(&format!("    server_name: {REDIS_SNI}\n"), "");
    assert_invalid("sidecar", &y, &["server_name", "127.0.0.1"]);
}

#[test]
fn missing_cert_file() {
    let (pki, case) = (Pki::new(), Case::new());
    let missing = case.dir.path().join("nope/server.crt");
    let y = gateway(&case, &pki).replace(&p(&pki.server_cert()), &p(&missing));
    assert_invalid("gateway", &y, &["tls.cert", &p(&missing)]);
}

#[test]
fn key_not_matching_cert() {
    let (pki, other, case) = (Pki::new(), Pki::new(), Case::new());
    let y = gateway(&case, &pki).replace(&p(&pki.server_key()), &p(&other.server_key()));
    assert_invalid("gateway", &y, &["tls.key"]);
}

#[test]
fn allow_without_client_ca() {
    let (pki, case) = (Pki::new(), Case::new());
    let y = gateway_yaml(&case.listen(), &pki, false, &routes());
    assert_invalid("gateway", &y, &["routes[0].allow", "client_ca"]);
}

#[test]
fn non_loopback_sidecar_listen_needs_allow_non_loopback() {
    let (pki, case) = (Pki::new(), Case::new());
    let port = case.held.local_addr().unwrap().port();
    let y = sidecar(&case, &pki).replace(&case.listen(), &format!("0.0.0.0:{port}"));
    assert_invalid("sidecar", &y, &["tunnels[0].listen", "allow_non_loopback"]);
}

#[test]
fn warm_settings_out_of_range() {
    let (pki, case) = (Pki::new(), Case::new());
    let with = |extra: &str| {
        sidecar(&case, &pki).replace(
            "    protocol: redis\n",
            &format!("    protocol: redis\n{extra}"),
        )
    };
    assert_valid("sidecar", &with("    warm: 4\n    warm_max_age: 30m\n"));
    assert_invalid(
        "sidecar",
        &with("    warm: 1000\n"),
        &["tunnels[0].warm", "1000"],
    );
    assert_invalid("sidecar", &with("    warm: -1\n"), &["warm"]);
    let y = with("    warm_max_age: 0s\n");
    assert_invalid("sidecar", &y, &["tunnels[0].warm_max_age", "10m"]);
}

#[test]
fn bad_protocol_value() {
    let (pki, case) = (Pki::new(), Case::new());
    let y = gateway(&case, &pki).replacen("protocol: redis", "protocol: mysql", 1);
    assert_invalid("gateway", &y, &["protocol", "mysql"]);
    let y = sidecar(&case, &pki).replace("protocol: redis", "protocol: memcached");
    assert_invalid("sidecar", &y, &["protocol", "memcached"]);
}

#[test]
fn unknown_keys_at_every_level_are_errors() {
    let (pki, case) = (Pki::new(), Case::new());
    let g = gateway(&case, &pki);
    for (from, to, key) in [
        ("routes:\n", "rootes: []\nroutes:\n", "rootes"),
        ("tls:\n", "tls:\n  client_cert: x\n", "client_cert"),
        ("timeouts: {", "timeouts: {handshak: 2s, ", "handshak"),
        (
            "routes:\n",
            "limits: {max_conections: 5}\nroutes:\n",
            "max_conections",
        ),
        (
            "routes:\n",
            "limits: {max_connections: 5, max_handshake: 1}\nroutes:\n",
            "max_handshake",
        ),
    ] {
        assert_invalid("gateway", &g.replacen(from, to, 1), &[key]);
    }
    let s = sidecar(&case, &pki);
    assert_invalid(
        "sidecar",
        &s.replacen("tls:\n", "tls:\n  verify: false\n", 1),
        &["verify"],
    );
    assert_invalid(
        "sidecar",
        &s.replacen("tunnels:\n", "insecure: true\ntunnels:\n", 1),
        &["insecure"],
    );
}

#[test]
fn duplicate_route_and_tunnel_names() {
    let (pki, case) = (Pki::new(), Case::new());
    let y = gateway(&case, &pki).replace("name: postgres", "name: redis");
    assert_invalid("gateway", &y, &["routes[1].name", "redis", "routes[0]"]);
    let mut a = Tunnel::new("redis", "redis", "127.0.0.1:8443", REDIS_SNI);
    a.listen = case.listen();
    let b = Tunnel::new("redis", "postgres", "127.0.0.1:8443", PG_SNI);
    let y = sidecar_yaml(&pki.ca(), Some(&pki), &[a, b]);
    assert_invalid("sidecar", &y, &["tunnels[1].name", "redis"]);
    // Two tunnels on one fixed port.
    let mut a = Tunnel::new("a", "redis", "127.0.0.1:8443", REDIS_SNI);
    let mut b = Tunnel::new("b", "redis", "127.0.0.1:8443", REDIS_SNI);
    a.listen = case.listen();
    b.listen = case.listen();
    let y = sidecar_yaml(&pki.ca(), Some(&pki), &[a, b]);
    assert_invalid("sidecar", &y, &["tunnels[1].listen"]);
}

#[test]
fn missing_key_and_ca_files() {
    let (pki, case) = (Pki::new(), Case::new());
    let missing = case.dir.path().join("gone.key");
    let y = gateway(&case, &pki).replace(&p(&pki.server_key()), &p(&missing));
    assert_invalid("gateway", &y, &["tls.key", &p(&missing)]);
    let missing = case.dir.path().join("gone-ca.crt");
    let y = gateway(&case, &pki).replace(&p(&pki.ca()), &p(&missing));
    assert_invalid("gateway", &y, &["tls.client_ca", &p(&missing)]);
    let y = sidecar(&case, &pki).replace(&p(&pki.ca()), &p(&missing));
    assert_invalid("sidecar", &y, &["tls.ca", &p(&missing)]);
    let missing = case.dir.path().join("gone-client.key");
    let y = sidecar(&case, &pki).replace(&p(&pki.client_key()), &p(&missing));
    assert_invalid("sidecar", &y, &["tls.key", &p(&missing)]);
    // cert without key
    let y = sidecar(&case, &pki).replace(&format!("  key: {}\n", p(&pki.client_key())), "");
    assert_invalid("sidecar", &y, &["tls.cert", "tls.key"]);
}

#[test]
fn mismatched_key_and_cert_files() {
    let (pki, other, case) = (Pki::new(), Pki::new(), Case::new());
    // A certificate where the key belongs, and a key where the certificate belongs.
    let y = gateway(&case, &pki).replace(&p(&pki.server_key()), &p(&pki.server_cert()));
    assert_invalid("gateway", &y, &["tls.key"]);
    let y = gateway(&case, &pki).replace(&p(&pki.server_cert()), &p(&pki.server_key()));
    assert_invalid("gateway", &y, &["tls.cert"]);
    // The sidecar's client key from another PKI.
    let y = sidecar(&case, &pki).replace(&p(&pki.client_key()), &p(&other.client_key()));
    assert_invalid("sidecar", &y, &["tls.key"]);
    // A server certificate that does not cover a route's name.
    let y = gateway(&case, &pki).replace(&format!("[{PG_SNI}]"), "[postgres.other.test]");
    assert_invalid(
        "gateway",
        &y,
        &["routes[1].server_names[0]", "postgres.other.test"],
    );
}

#[test]
fn bad_min_version_is_an_error() {
    let (pki, case) = (Pki::new(), Case::new());
    for v in ["\"1.1\"", "\"1.0\"", "\"ssl3\"", "1.2.0"] {
        let y = gateway(&case, &pki).replacen("tls:\n", &format!("tls:\n  min_version: {v}\n"), 1);
        assert_invalid("gateway", &y, &["min_version"]);
    }
    let y = sidecar(&case, &pki).replacen("tls:\n", "tls:\n  min_version: \"1.1\"\n", 1);
    assert_invalid("sidecar", &y, &["min_version"]);
}

#[test]
fn worker_threads_must_be_at_least_one() {
    let (case, pki) = (Case::new(), Pki::new());
    for (role, yaml) in [
        ("gateway", gateway(&case, &pki)),
        ("sidecar", sidecar(&case, &pki)),
    ] {
        assert_valid(role, &format!("runtime:\n  worker_threads: 2\n{yaml}"));
        let zero = format!("runtime:\n  worker_threads: 0\n{yaml}");
        assert_invalid(
            role,
            &zero,
            &["runtime.worker_threads", "set it to 1 or more"],
        );
        let typo = format!("runtime:\n  workers: 1\n{yaml}");
        assert_invalid(role, &typo, &["workers"]);
    }
}

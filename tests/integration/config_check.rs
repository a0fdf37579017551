//! `--check` and start-up with a bad config: the exit codes, and the checks that need files
//! (certificates, keys, CRLs). A valid config exits 0 and binds nothing; a bad one exits 2
//! before binding, and stderr names the file and the key. (What the parser alone decides is
//! tested over fixtures in src/config.)

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;

use snigate::config::{GatewayConfig, SidecarConfig};
use tempfile::TempDir;

use crate::support::certs::{crl, write};
use crate::support::config::yaml;
use crate::support::launch::{check, command};
use crate::support::*;

/// A tempdir for config files, and a port the test holds so that a `--check` (or a start)
/// that tried to bind it would fail.
struct Case {
    dir: TempDir,
    held: TcpListener,
    pki: Pki,
    /// Another CA's files, for keys that belong elsewhere.
    other: Pki,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
            held: TcpListener::bind("127.0.0.1:0").unwrap(),
            pki: Pki::new(),
            other: Pki::new(),
        }
    }

    /// Mutual TLS, redis and postgres routes allowing the default client, on the held port.
    fn gateway(&self) -> GatewayConfig {
        let routes = vec![
            worker_route("redis", REDIS_SNI, Protocol::Redis, "127.0.0.1:6379"),
            worker_route("postgres", PG_SNI, Protocol::Postgres, "127.0.0.1:5432"),
        ];
        let mut config = gateway(&self.pki, routes);
        config.listen = self.held.local_addr().unwrap();
        config
    }

    /// One redis tunnel on the held port.
    fn sidecar(&self) -> SidecarConfig {
        let mut t = tunnel("redis", Protocol::Redis, "127.0.0.1:8443", REDIS_SNI);
        t.listen = self.held.local_addr().unwrap();
        sidecar(&self.pki, vec![t])
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn assert_valid(&self, role: &str, config: &impl serde::Serialize) {
        let path = write(self.dir.path(), "ok.yaml", &yaml(config));
        let out = check(role, &path);
        let (o, e) = texts(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{role} --check rejected it:\n{o}{e}"
        );
        assert!(o.contains(": ok ("), "{o}");
        assert!(!e.contains("listening"), "--check must bind nothing: {e}");
    }

    /// `--check`, and a plain start, exit 2; stderr names the config file and has `needles`.
    fn assert_invalid(&self, role: &str, config: &impl serde::Serialize, needles: &[&str]) {
        let text = yaml(config);
        let path = write(self.dir.path(), "bad.yaml", &text);
        assert_rejected(&path, check(role, &path), needles);
        let mut start = command();
        let out = run(start.arg(role).arg("--config").arg(&path), CMD);
        assert_rejected(&path, out, needles);
    }
}

fn assert_rejected(path: &Path, out: Output, needles: &[&str]) {
    let (o, e) = texts(&out);
    let config = fs::read_to_string(path).unwrap();
    assert_eq!(out.status.code(), Some(2), "accepted:\n{config}\n{o}{e}");
    assert!(
        e.contains(&path.display().to_string()),
        "stderr names no file: {e}"
    );
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}:\n{e}\nconfig:\n{config}");
    }
    assert!(!e.contains("listening"), "{e}");
}

#[test]
fn valid_configs_pass_without_binding() {
    // The listen ports are held by this test: a check that bound them would fail.
    let case = Case::new();
    case.assert_valid("gateway", &case.gateway());
    case.assert_valid("sidecar", &case.sidecar());
    let mut no_mtls = case.gateway();
    no_mtls.tls.client_ca = None;
    no_mtls.routes = vec![route("r", REDIS_SNI, Protocol::Tcp, "127.0.0.1:1")];
    case.assert_valid("gateway", &no_mtls);
}

#[test]
fn a_config_the_parser_refuses_exits_2_before_binding() {
    let case = Case::new();
    let mut gateway = case.gateway();
    gateway.routes[1].name = "redis".into();
    case.assert_invalid(
        "gateway",
        &gateway,
        &["routes[1].name", "redis", "routes[0]"],
    );
    let mut sidecar = case.sidecar();
    sidecar.tunnels[0].listen.set_ip([0, 0, 0, 0].into());
    case.assert_invalid(
        "sidecar",
        &sidecar,
        &["tunnels[0].listen", "allow_non_loopback"],
    );
    let path = write(
        case.dir.path(),
        "bad.yaml",
        &yaml(&gateway).replace("routes:", "rootes:"),
    );
    assert_rejected(&path, check("gateway", &path), &["rootes"]);
}

/// A change to a config, and what stderr must then name.
type Edit<C> = (fn(&Case, &mut C), &'static [&'static str]);

/// Each edit of the case's gateway config, then of its sidecar config, must be refused.
fn assert_each_refused(
    case: &Case,
    gateway: &[Edit<GatewayConfig>],
    sidecar: &[Edit<SidecarConfig>],
) {
    for (edit, needles) in gateway {
        let mut config = case.gateway();
        edit(case, &mut config);
        case.assert_invalid("gateway", &config, needles);
    }
    for (edit, needles) in sidecar {
        let mut config = case.sidecar();
        edit(case, &mut config);
        case.assert_invalid("sidecar", &config, needles);
    }
}

#[test]
fn missing_certificate_key_and_ca_files() {
    let gateway: [Edit<GatewayConfig>; 3] = [
        (
            |c, g| g.tls.cert = c.file("nope/server.crt"),
            &["tls.cert", "nope/server.crt"],
        ),
        (
            |c, g| g.tls.key = c.file("gone.key"),
            &["tls.key", "gone.key"],
        ),
        (
            |c, g| g.tls.client_ca = Some(c.file("gone-ca.crt")),
            &["tls.client_ca", "gone-ca.crt"],
        ),
    ];
    let sidecar: [Edit<SidecarConfig>; 2] = [
        (
            |c, s| s.tls.ca = c.file("gone-ca.crt"),
            &["tls.ca", "gone-ca.crt"],
        ),
        (
            |c, s| s.tls.key = Some(c.file("gone-client.key")),
            &["tls.key", "gone-client.key"],
        ),
    ];
    assert_each_refused(&Case::new(), &gateway, &sidecar);
}

#[test]
fn keys_and_certificates_that_do_not_belong_together() {
    let gateway: [Edit<GatewayConfig>; 3] = [
        (|c, g| g.tls.key = c.other.server_key(), &["tls.key"]),
        // A certificate where the key belongs, and a key where the certificate belongs.
        (|c, g| g.tls.key = c.pki.server_cert(), &["tls.key"]),
        (|c, g| g.tls.cert = c.pki.server_key(), &["tls.cert"]),
    ];
    // The sidecar's client key from another PKI.
    let sidecar: [Edit<SidecarConfig>; 1] =
        [(|c, s| s.tls.key = Some(c.other.client_key()), &["tls.key"])];
    assert_each_refused(&Case::new(), &gateway, &sidecar);
}

#[test]
fn a_server_certificate_must_cover_every_route_name() {
    let case = Case::new();
    let mut config = case.gateway();
    config.routes[1].server_names = vec!["postgres.other.test".into()];
    let needles = ["routes[1].server_names[0]", "postgres.other.test"];
    case.assert_invalid("gateway", &config, &needles);
}

/// The gateway exits 2 naming `tls.crl` when the CRL is expired, missing, not a CRL, or set
/// without `client_ca`.
#[test]
fn crl_problems_refuse_to_start() {
    let case = Case::new();
    let expired = crl(&case.pki, &[], -time::Duration::days(1));
    let expired = write(case.dir.path(), "expired.crl", &expired);
    let not_crl = case.pki.server_cert();
    let missing = case.file("missing.crl");
    for (crl_path, with_ca, needle) in [
        (&expired, true, "expired"),
        (&missing, true, "missing.crl"),
        (&not_crl, true, "no X509 CRL"),
        (&expired, false, "client_ca"),
    ] {
        let mut config = case.gateway();
        config.tls.crl = Some(crl_path.clone());
        if !with_ca {
            config.tls.client_ca = None;
            config.routes.iter_mut().for_each(|r| r.allow.clear());
        }
        case.assert_invalid("gateway", &config, &["tls.crl", needle]);
    }
}

#[test]
fn several_tunnels_listening_on_port_zero_get_ports_of_their_own() {
    let pki = Pki::new();
    let tunnels = vec![
        tunnel("redis", Protocol::Redis, "127.0.0.1:8443", REDIS_SNI),
        tunnel("postgres", Protocol::Postgres, "127.0.0.1:8443", PG_SNI),
    ];
    let sc = Sidecar::start(&sidecar(&pki, tunnels));
    assert_ne!(sc.port("redis"), sc.port("postgres"));
}

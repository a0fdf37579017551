//! Routing by the SNI of the current handshake: case-insensitive names, no session
//! resumption across routes (checked with `openssl s_client`, which will offer any saved
//! session under any name), and `protocol: tcp` carrying an arbitrary protocol.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::pki::{p, CLIENT_NAME, REDIS_SNI, TCP_SNI};
use support::*;

/// Two independent backends, so counters show which route a connection took.
struct Fx {
    a: RedisServer,
    b: RedisServer,
    pki: Pki,
    gw: Gateway,
}

fn fixture() -> Fx {
    let (a, b, pki) = (RedisServer::start(), RedisServer::start(), Pki::new());
    let ok = format!("dns:{CLIENT_NAME}");
    let gw = Gateway::start(
        &pki,
        &[
            Route::new("redis", REDIS_SNI, "redis", a.addr()).allow(&[&ok]),
            Route::new("plain", TCP_SNI, "tcp", b.addr()).allow(&[&ok]),
        ],
    );
    Fx { a, b, pki, gw }
}

impl Fx {
    /// `openssl s_client` with SNI `sni`, sending `QUIT` (redis answers `+OK` and closes).
    /// Returns stdout, which says `New, TLSv1.3` or `Reused, TLSv1.3`.
    fn s_client(&self, sni: &str, sess_out: Option<&Path>, sess_in: Option<&Path>) -> String {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-ign_eof", "-servername", sni]);
        cmd.args(["-connect", &self.gw.addr.to_string()]);
        cmd.args(["-CAfile", &p(&self.pki.ca()), "-verify_return_error"]);
        cmd.args(["-verify_hostname", sni]);
        cmd.args(["-cert", &p(&self.pki.client_cert())]);
        cmd.args(["-key", &p(&self.pki.client_key())]);
        if let Some(f) = sess_out {
            cmd.arg("-sess_out").arg(f);
        }
        if let Some(f) = sess_in {
            cmd.arg("-sess_in").arg(f);
        }
        let out = run_with_input(&mut cmd, Some(b"QUIT\r\n"), CMD);
        let (o, e) = texts(&out);
        assert!(out.status.success(), "s_client {sni}: {o}\n{e}");
        assert!(o.contains("\n+OK\r\n"), "no +OK from the backend: {o}");
        o
    }
}

#[test]
fn session_from_one_route_is_never_resumed_on_another() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let sess = dir.path().join("redis-route.session");
    let (a0, b0) = (fx.a.total_connections(), fx.b.total_connections());
    let first = fx.s_client(REDIS_SNI, Some(&sess), None);
    assert!(first.contains("New, TLSv1.3"), "{first}");
    assert!(sess.is_file(), "no session ticket saved");
    // Control: the same route resumes, so the check below can see a resumption.
    let again = fx.s_client(REDIS_SNI, None, Some(&sess));
    assert!(again.contains("Reused, TLSv1.3"), "{again}");
    assert_eq!(fx.a.total_connections(), a0 + 2);
    // The redis route's session offered with the other route's SNI: full handshake,
    // and the connection goes where the *current* SNI says.
    let other = fx.s_client(TCP_SNI, None, Some(&sess));
    assert!(other.contains("New, TLSv1.3"), "{other}");
    assert!(!other.contains("Reused"), "{other}");
    assert_eq!(
        fx.a.total_connections(),
        a0 + 2,
        "went to the resumed session's route"
    );
    assert_eq!(fx.b.total_connections(), b0 + 1);
}

#[test]
fn server_names_match_case_insensitively() {
    let fx = fixture();
    let (a0, b0) = (fx.a.total_connections(), fx.b.total_connections());
    fx.s_client("REDIS.Snigate.TEST", None, None);
    assert_eq!(fx.a.total_connections(), a0 + 1);
    fx.s_client("Tcp.Snigate.Test", None, None);
    assert_eq!(fx.b.total_connections(), b0 + 1);
}

#[test]
fn tcp_tunnel_carries_an_arbitrary_protocol() {
    let fx = fixture();
    let sc = Sidecar::start(&fx.pki, &[Tunnel::new("plain", "tcp", fx.gw.addr, TCP_SNI)]);
    let url = format!("redis://127.0.0.1:{}/", sc.port("plain"));
    let mut con = redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(10))
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("over tcp")
        .query(&mut con)
        .unwrap();
    let got: String = redis::cmd("GET")
        .arg("k")
        .query(&mut fx.b.direct())
        .unwrap();
    assert_eq!(got, "over tcp");
    let missing: Option<String> = redis::cmd("GET")
        .arg("k")
        .query(&mut fx.a.direct())
        .unwrap();
    assert_eq!(missing, None);
}

//! Routing by the SNI of the current handshake: case-insensitive names, no session
//! resumption across routes (checked with `openssl s_client`, which will offer any saved
//! session under any name), and `protocol: tcp` carrying an arbitrary protocol.

use std::time::Duration;

use crate::support::clients::tools::s_client;
use crate::support::*;

/// Two independent backends, so counters show which route a connection took.
struct Fx {
    a: RedisServer,
    b: RedisServer,
    pki: Pki,
    gw: Gateway,
}

fn fixture() -> Fx {
    let (a, b, pki) = (RedisServer::start(), RedisServer::start(), Pki::new());
    let routes = vec![
        worker_route("redis", REDIS_SNI, Protocol::Redis, a.addr()),
        worker_route("plain", TCP_SNI, Protocol::Tcp, b.addr()),
    ];
    let gw = Gateway::start(&gateway(&pki, routes));
    Fx { a, b, pki, gw }
}

impl Fx {
    /// `openssl s_client` with SNI `sni` (verified) and `session` arguments, sending `QUIT`
    /// (redis answers `+OK` and closes). Returns stdout, which says `New, TLSv1.3` or
    /// `Reused, TLSv1.3`.
    fn s_client(&self, sni: &str, session: &[&str]) -> String {
        let mut args = vec!["-verify_return_error", "-verify_hostname", sni];
        args.extend(session);
        let (ok, o, e) = s_client(self.gw.addr, sni, &self.pki, &args, b"QUIT\r\n");
        assert!(ok, "s_client {sni}: {o}\n{e}");
        assert!(o.contains("\n+OK\r\n"), "no +OK from the backend: {o}");
        o
    }
}

#[test]
fn session_from_one_route_is_never_resumed_on_another() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let sess = dir.path().join("redis-route.session");
    let file = sess.to_str().unwrap();
    let (a0, b0) = (fx.a.total_connections(), fx.b.total_connections());
    let first = fx.s_client(REDIS_SNI, &["-sess_out", file]);
    assert!(first.contains("New, TLSv1.3"), "{first}");
    assert!(sess.is_file(), "no session ticket saved");
    // Control: the same route resumes, so the check below can see a resumption.
    let again = fx.s_client(REDIS_SNI, &["-sess_in", file]);
    assert!(again.contains("Reused, TLSv1.3"), "{again}");
    assert_eq!(fx.a.total_connections(), a0 + 2);
    // The redis route's session offered with the other route's SNI: full handshake,
    // and the connection goes where the *current* SNI says.
    let other = fx.s_client(TCP_SNI, &["-sess_in", file]);
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
    fx.s_client("REDIS.Snigate.TEST", &[]);
    assert_eq!(fx.a.total_connections(), a0 + 1);
    fx.s_client("Tcp.Snigate.Test", &[]);
    assert_eq!(fx.b.total_connections(), b0 + 1);
}

#[test]
fn tcp_tunnel_carries_an_arbitrary_protocol() {
    let fx = fixture();
    let t = tunnel("plain", Protocol::Tcp, fx.gw.addr, TCP_SNI);
    let sc = Sidecar::start(&sidecar(&fx.pki, vec![t]));
    let url = format!("redis://{}/", sc.addr("plain"));
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

//! The sidecar facing a gateway it must not trust: a certificate for another name (what the
//! OpenShift router serves for a host it has no Route for), from another CA, expired, or a
//! peer below `tls.min_version`. The local client gets its protocol's error
//! `snigate: <tunnel>: TLS handshake with gateway <connect> failed: <detail>`, the sidecar logs
//! one `refused` line, no backend connection is opened, and a good tunnel keeps working.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use support::pki::{p, CLIENT_NAME, PG_SNI, REDIS_SNI};
use support::security::*;
use support::snigate::{Gateway, Sidecar};
use support::{run, texts, Pki, Postgres, RedisServer, CMD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A TLS server standing in for "the gateway": presents `pki`'s server.crt, speaks only
/// `versions`, and records every connection's outcome (and any application byte it got).
struct StandIn {
    addr: SocketAddr,
    outcomes: Arc<Mutex<Vec<String>>>,
}

impl StandIn {
    async fn start(pki: &Pki, versions: &[&'static rustls::SupportedProtocolVersion]) -> StandIn {
        let chain: Vec<_> = CertificateDer::pem_file_iter(pki.server_cert())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(pki.server_key()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let record = outcomes.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let outcome = match acceptor.accept(tcp).await {
                    Err(e) => format!("handshake failed: {e}"),
                    Ok(mut tls) => {
                        let mut buf = [0u8; 64];
                        match tls.read(&mut buf).await {
                            Ok(n) => format!("handshake done, then {n} bytes"),
                            Err(e) => format!("handshake done, then {e}"),
                        }
                    }
                };
                record.lock().unwrap().push(outcome);
            }
        });
        StandIn { addr, outcomes }
    }

    fn outcomes(&self) -> Vec<String> {
        self.outcomes.lock().unwrap().clone()
    }
}

/// Sidecar YAML: trust `ca`, present `client`'s certificate, optional `min_version`.
fn sidecar_yaml(
    ca: &Pki,
    client: &Pki,
    min_version: Option<&str>,
    tunnels: &[(&str, &str, SocketAddr, &str)],
) -> String {
    let mut y = format!(
        "timeouts: {{probe_interval: 0s}}\ntls:\n  ca: {}\n  cert: {}\n  key: {}\n",
        p(&ca.ca()),
        p(&client.client_cert()),
        p(&client.client_key())
    );
    if let Some(v) = min_version {
        y += &format!("  min_version: \"{v}\"\n");
    }
    y += "tunnels:\n";
    for (name, protocol, connect, sni) in tunnels {
        y += &format!(
            "  - {{name: {name}, listen: 127.0.0.1:0, protocol: {protocol}, connect: {connect}, server_name: {sni}}}\n"
        );
    }
    y
}

/// What a Redis client of tunnel `name` gets for its PING: the one reply line, or the bytes
/// before the close.
async fn redis_through(sc: &Sidecar, name: &str) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", sc.port(name)))
        .await
        .unwrap();
    tcp.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n") {
        let read = tokio::time::timeout(IO, tcp.read(&mut byte))
            .await
            .expect("no reply");
        match read {
            Ok(1) => got.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The reply must be the tunnel's TLS failure naming `connect`, with a detail.
fn assert_tls_failure(reply: &str, tunnel: &str, connect: SocketAddr, detail: &str) {
    println!("{tunnel}: {reply:?}");
    let prefix = format!("-ERR snigate: {tunnel}: TLS handshake with gateway {connect} failed: ");
    assert!(reply.starts_with(&prefix), "{reply:?} lacks {prefix:?}");
    let lower = reply.to_lowercase();
    assert!(
        lower.contains(&detail.to_lowercase()),
        "{reply:?} lacks {detail:?}"
    );
}

struct World {
    redis: RedisServer,
    pg: Postgres,
    pki: Pki,
    /// The real gateway (good certificate).
    good: Gateway,
    /// A real gateway whose certificate (same CA, right names) expired yesterday.
    expired: Gateway,
    /// The expired certificate's files.
    _stale: Pki,
}

fn world() -> World {
    let redis = RedisServer::start();
    let pg = Postgres::start();
    let pki = Pki::new();
    let ok = format!("dns:{CLIENT_NAME}");
    let routes = || {
        vec![
            RouteConf::new("redis", REDIS_SNI, "redis", redis.addr()).allow(&[&ok]),
            RouteConf::new(
                "postgres",
                PG_SNI,
                "postgres",
                format!("127.0.0.1:{}", pg.port),
            )
            .allow(&[&ok]),
        ]
    };
    let good = Gateway::from_yaml(&GwConf::new(&pki, routes()).yaml());
    let stale = bundle(&pki, &pki, &Leaf::server(&[REDIS_SNI, PG_SNI]).expired());
    let mut conf = GwConf::new(&pki, routes());
    conf.cert = stale.server_cert();
    conf.key = stale.server_key();
    let expired = Gateway::from_yaml(&conf.yaml());
    World {
        redis,
        pg,
        pki,
        good,
        expired,
        _stale: stale,
    }
}

#[tokio::test]
async fn sidecar_refuses_a_gateway_with_the_wrong_name_ca_or_expiry() {
    let w = world();
    // The router's default certificate: right CA, another name.
    let router = bundle(&w.pki, &w.pki, &Leaf::server(&["*.apps.example.test"]));
    let stand_in = StandIn::start(&router, &[&rustls::version::TLS13]).await;
    let sc = Sidecar::from_yaml(
        &sidecar_yaml(
            &w.pki,
            &w.pki,
            None,
            &[
                ("wrong-name", "redis", stand_in.addr, REDIS_SNI),
                ("expired", "redis", w.expired.addr, REDIS_SNI),
                ("expired-pg", "postgres", w.expired.addr, PG_SNI),
                ("good", "redis", w.good.addr, REDIS_SNI),
            ],
        ),
        4,
    );
    let stranger = Pki::new();
    let wrong_ca = Sidecar::from_yaml(
        &sidecar_yaml(
            &stranger,
            &w.pki,
            None,
            &[("wrong-ca", "redis", w.good.addr, REDIS_SNI)],
        ),
        1,
    );
    let redis_before = w.redis.total_connections();
    let pg_before = w.pg.connections_received();

    // Wrong name: the sidecar aborts; the stand-in never completes a handshake.
    let before = refused_lines(&sc.proc).len();
    let reply = redis_through(&sc, "wrong-name").await;
    assert_tls_failure(
        &reply,
        "wrong-name",
        stand_in.addr,
        "certificate not valid for name \"redis.snigate.test\"",
    );
    expect_refusal(&sc.proc, before, "gateway_handshake_failed");
    let seen = stand_in.outcomes();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with("handshake failed"), "{seen:?}");

    // Expired gateway certificate: the sidecar refuses it, the gateway logs the abort.
    let before = refused_lines(&sc.proc).len();
    let gw_before = refused_lines(&w.expired.proc).len();
    let reply = redis_through(&sc, "expired").await;
    assert_tls_failure(&reply, "expired", w.expired.addr, "expired");
    expect_refusal(&sc.proc, before, "gateway_handshake_failed");
    expect_refusal(&w.expired.proc, gw_before, "certificate_rejected_by_peer");

    // The same for psql through a postgres tunnel: FATAL with the same text.
    let before = refused_lines(&sc.proc).len();
    let gw_before = refused_lines(&w.expired.proc).len();
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=20",
        sc.port("expired-pg")
    );
    let out = run(
        Command::new("psql")
            .arg(conninfo)
            .args(["-XAtc", "select 1"]),
        CMD,
    );
    let (_, e) = texts(&out);
    let fatal = format!(
        "FATAL:  snigate: expired-pg: TLS handshake with gateway {} failed: ",
        w.expired.addr
    );
    assert!(!out.status.success() && e.contains(&fatal), "{e}");
    expect_refusal(&sc.proc, before, "gateway_handshake_failed");
    expect_refusal(&w.expired.proc, gw_before, "certificate_rejected_by_peer");

    // Another CA: the gateway's real certificate is not trusted.
    let before = refused_lines(&wrong_ca.proc).len();
    let gw_before = refused_lines(&w.good.proc).len();
    let reply = redis_through(&wrong_ca, "wrong-ca").await;
    assert_tls_failure(&reply, "wrong-ca", w.good.addr, "invalid peer certificate");
    expect_refusal(&wrong_ca.proc, before, "gateway_handshake_failed");
    expect_refusal(&w.good.proc, gw_before, "handshake_failed");

    // No backend saw any of it; the good tunnel works, once.
    assert_eq!(w.redis.total_connections(), redis_before);
    assert_eq!(w.pg.connections_received(), pg_before, "{}", w.pg.log());
    assert_eq!(redis_through(&sc, "good").await, "+PONG\r\n");
    assert_eq!(w.redis.total_connections(), redis_before + 1);
}

/// `tls.min_version: "1.3"` on the sidecar: a far side that speaks only TLS 1.2 is refused.
#[tokio::test]
async fn sidecar_min_version_1_3_refuses_a_tls12_gateway() {
    let pki = Pki::new();
    let stand_in = StandIn::start(&pki, &[&rustls::version::TLS12]).await;
    let yaml = sidecar_yaml(
        &pki,
        &pki,
        Some("1.3"),
        &[("redis", "redis", stand_in.addr, REDIS_SNI)],
    );
    let sc = Sidecar::from_yaml(&yaml, 1);
    let reply = redis_through(&sc, "redis").await;
    assert_tls_failure(&reply, "redis", stand_in.addr, "ProtocolVersion");
    expect_refusal(&sc.proc, 0, "gateway_handshake_failed");
    let seen = stand_in.outcomes();
    assert!(
        seen.len() == 1 && seen[0].starts_with("handshake failed"),
        "{seen:?}"
    );
}

//! The sidecar facing a gateway it must not trust: a certificate for another name (what the
//! OpenShift router serves for a host it has no Route for), from another CA, expired, or a
//! peer below `tls.min_version`. The local client gets its protocol's error
//! `snigate: <tunnel>: TLS handshake with gateway <connect> failed: <detail>`, the sidecar logs
//! one `refused` line, no backend connection is opened, and a good tunnel keeps working.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use snigate::config::{SidecarConfig, TlsVersion};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::support::certs::{bundle, Leaf};
use crate::support::clients::postgres::{local, psql};
use crate::support::clients::tls::resp_line;
use crate::support::fixtures::{expect_refusal, standard_routes};
use crate::support::*;

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

/// A sidecar trusting `ca`'s CA, presenting `client`'s certificate, with `tunnels`
/// (name, protocol, connect, server name).
fn sidecar_of(
    ca: &Pki,
    client: &Pki,
    tunnels: &[(&str, Protocol, SocketAddr, &str)],
) -> SidecarConfig {
    let tunnels = tunnels
        .iter()
        .map(|(name, protocol, connect, sni)| tunnel(name, *protocol, connect, sni));
    let mut config = sidecar(client, tunnels.collect());
    config.tls.ca = ca.ca();
    config
}

/// What a Redis client of tunnel `name` gets for its PING: the one reply line, or the bytes
/// before the close.
async fn redis_through(sc: &Sidecar, name: &str) -> String {
    let mut tcp = TcpStream::connect(sc.addr(name)).await.unwrap();
    resp_line(&mut tcp, &["PING"]).await
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
    let config = gateway(&pki, standard_routes(Some(&redis), Some(&pg)));
    let good = Gateway::start(&config);
    let stale = bundle(&pki, &pki, &Leaf::server(&[REDIS_SNI, PG_SNI]).expired());
    let mut config = config;
    config.tls.cert = stale.server_cert();
    config.tls.key = stale.server_key();
    let expired = Gateway::start(&config);
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
    let sc = Sidecar::start(&sidecar_of(
        &w.pki,
        &w.pki,
        &[
            ("wrong-name", Protocol::Redis, stand_in.addr, REDIS_SNI),
            ("expired", Protocol::Redis, w.expired.addr, REDIS_SNI),
            ("expired-pg", Protocol::Postgres, w.expired.addr, PG_SNI),
            ("good", Protocol::Redis, w.good.addr, REDIS_SNI),
        ],
    ));
    let wrong_tunnel = [("wrong-ca", Protocol::Redis, w.good.addr, REDIS_SNI)];
    let wrong_ca = Sidecar::start(&sidecar_of(&Pki::new(), &w.pki, &wrong_tunnel));
    let redis_before = w.redis.total_connections();
    let pg_before = w.pg.connections_received();
    let refused = |proc: &Sidecar| proc.lines("refused").len();
    let gw_refused = |gw: &Gateway| gw.lines("refused").len();

    // Wrong name: the sidecar aborts; the stand-in never completes a handshake.
    let before = refused(&sc);
    let reply = redis_through(&sc, "wrong-name").await;
    let detail = "certificate not valid for name \"redis.snigate.test\"";
    assert_tls_failure(&reply, "wrong-name", stand_in.addr, detail);
    expect_refusal(&sc, before, "gateway_handshake_failed");
    let seen = stand_in.outcomes();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with("handshake failed"), "{seen:?}");

    // Expired gateway certificate: the sidecar refuses it, the gateway logs the abort.
    let (before, gw_before) = (refused(&sc), gw_refused(&w.expired));
    let reply = redis_through(&sc, "expired").await;
    assert_tls_failure(&reply, "expired", w.expired.addr, "expired");
    expect_refusal(&sc, before, "gateway_handshake_failed");
    expect_refusal(&w.expired, gw_before, "certificate_rejected_by_peer");

    // The same for psql through a postgres tunnel: FATAL with the same text.
    let (before, gw_before) = (refused(&sc), gw_refused(&w.expired));
    let out = psql(&local(sc.port("expired-pg")), "select 1");
    let (_, e) = texts(&out);
    let failed = format!("TLS handshake with gateway {} failed: ", w.expired.addr);
    let fatal = format!("FATAL:  snigate: expired-pg: {failed}");
    assert!(!out.status.success() && e.contains(&fatal), "{e}");
    expect_refusal(&sc, before, "gateway_handshake_failed");
    expect_refusal(&w.expired, gw_before, "certificate_rejected_by_peer");

    // Another CA: the gateway's real certificate is not trusted.
    let (before, gw_before) = (refused(&wrong_ca), gw_refused(&w.good));
    let reply = redis_through(&wrong_ca, "wrong-ca").await;
    assert_tls_failure(&reply, "wrong-ca", w.good.addr, "invalid peer certificate");
    expect_refusal(&wrong_ca, before, "gateway_handshake_failed");
    expect_refusal(&w.good, gw_before, "handshake_failed");

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
    let mut config = sidecar_of(
        &pki,
        &pki,
        &[("redis", Protocol::Redis, stand_in.addr, REDIS_SNI)],
    );
    config.tls.min_version = TlsVersion::Tls13;
    let sc = Sidecar::start(&config);
    let reply = redis_through(&sc, "redis").await;
    assert_tls_failure(&reply, "redis", stand_in.addr, "ProtocolVersion");
    expect_refusal(&sc, 0, "gateway_handshake_failed");
    let seen = stand_in.outcomes();
    assert!(
        seen.len() == 1 && seen[0].starts_with("handshake failed"),
        "{seen:?}"
    );
}

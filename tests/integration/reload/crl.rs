//! CRL updates in the gateway's Secret apply to new handshakes; connections already
//! carrying traffic are not cut, and an expired CRL leaves the previous one in force.

use rustls::AlertDescription::CertificateRevoked;
use time::Duration;

use super::{rejection, relayed};
use crate::support::certs::{bundle, crl, serial_of, Leaf};
use crate::support::clients::resp::Traffic;
use crate::support::config::ms;
use crate::support::secret::{gateway_files, Files, Secret};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_updates_apply_to_new_handshakes_while_traffic_flows() {
    let pki = Pki::new();
    let keeper_name = "keeper.snigate.test";
    let keeper = bundle(&pki, &pki, &Leaf::client().dns(keeper_name).cn(keeper_name));
    let redis = RedisServer::start();
    let files = |crl_pem: String| -> Files {
        let mut f = gateway_files(&pki);
        f.push(("crl.pem", crl_pem.into_bytes()));
        f
    };
    let mut secret = Secret::new(&files(crl(&pki, &[], Duration::days(7))));
    let mut config = redis_gateway(&pki, redis.addr());
    config.tls.cert = secret.path("server.crt");
    config.tls.key = secret.path("server.key");
    config.tls.client_ca = Some(secret.path("ca.crt"));
    config.tls.crl = Some(secret.path("crl.pem"));
    config.timeouts.watch_interval = ms(100);
    let gw = Gateway::start(&config);
    let sc = Sidecar::start(&redis_sidecar(&pki, gw.addr));
    assert_eq!(rejection(&pki, gw.addr).await, None);
    assert_eq!(rejection(&keeper, gw.addr).await, None);
    let t = Traffic::start(sc.addr("redis"), "crl").await;
    t.wait_progress(5);

    // A new CRL revoking the sidecar's certificate: new handshakes with it are refused;
    // the connection already carrying traffic is not cut.
    let sidecar_cert = serial_of(&pki.client_cert());
    secret.update(&files(crl(&pki, &[sidecar_cert], Duration::days(7))));
    gw.wait_reloads("certificates", "success", 1.0);
    assert_eq!(rejection(&pki, gw.addr).await, Some(CertificateRevoked));
    assert_eq!(rejection(&keeper, gw.addr).await, None);
    t.wait_progress(5);

    // An expired CRL is refused; the previous one stays in force (fail closed).
    secret.update(&files(crl(&pki, &[], -Duration::days(1))));
    gw.wait_reloads("certificates", "failure", 1.0);
    assert_eq!(rejection(&pki, gw.addr).await, Some(CertificateRevoked));
    assert_eq!(rejection(&keeper, gw.addr).await, None);
    t.wait_progress(5);

    let r = t.finish().await;
    assert_eq!(r.sha_set, r.sha_got, "checksums");
    let want = (r.sent as f64, r.received as f64);
    assert_eq!(relayed(&sc, "redis", 1.0), want);
}

//! Client certificates and identities against a running gateway: no certificate, another
//! CA, expired, revoked (CRL, failing closed), and valid certificates whose identity (DNS or
//! URI SAN, SPIFFE ID, CN) is outside a route's `allow` list. Each refusal: what the client
//! sees, one `refused` line with its reason, no backend connection, good clients unaffected.

use std::time::{Duration, SystemTime};

use rcgen::SerialNumber;
use rustls::AlertDescription;

use crate::support::certs::{bundle, crl, foreign_crl, write, Leaf};
use crate::support::clients::tls::{resp_line, ClientOpts};
use crate::support::fixtures::{expect_refusal, route_like, Guarded};
use crate::support::*;

const SPIFFE: &str = "spiffe://snigate.test/ns/workers/sa/celery";

/// The alert a handshake as `client` on route `sni` ends with.
async fn refused_alert(g: &Guarded, client: Option<&Pki>, sni: &str) -> AlertDescription {
    let opts = ClientOpts {
        client,
        ..ClientOpts::new(&g.pki)
    };
    opts.refused_alert(g.gw.addr, sni).await
}

/// The reply a Redis client with `client`'s certificate gets on route `sni` to its PING.
async fn redis_reply(g: &Guarded, client: &Pki, sni: &str) -> String {
    let mut tls = ClientOpts::new(client)
        .connect(g.gw.addr, sni)
        .await
        .expect("handshake");
    resp_line(&mut tls, &["PING"]).await
}

/// A client certificate for `leaf`, issued by the fixture's CA.
fn client(g: &Guarded, leaf: Leaf) -> Pki {
    bundle(&g.pki, &g.pki, &leaf)
}

#[tokio::test]
async fn no_client_certificate_is_refused() {
    let mut g = Guarded::start(false, |_| {});
    let before = g.refused();
    let got = refused_alert(&g, None, REDIS_SNI).await;
    assert_eq!(got, AlertDescription::CertificateRequired);
    let line = g.assert_refused(before, "certificate_required").await;
    assert!(line.raw.contains("certificate"), "{}", line.raw);
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let mut g = Guarded::start(false, |_| {});
    let stranger = Pki::new();
    let before = g.refused();
    // Every `snigate certs` CA has the same subject, so rustls finds an issuer by name and
    // then fails the signature (decrypt_error); a differently named CA gives unknown_ca.
    let got = refused_alert(&g, Some(&stranger), REDIS_SNI).await;
    assert!(
        matches!(
            got,
            AlertDescription::UnknownCA | AlertDescription::DecryptError
        ),
        "{got:?}"
    );
    g.assert_refused(before, "certificate_bad_signature").await;
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let mut g = Guarded::start(false, |_| {});
    let expired = client(
        &g,
        Leaf::client().dns(CLIENT_NAME).cn(CLIENT_NAME).expired(),
    );
    let before = g.refused();
    let got = refused_alert(&g, Some(&expired), REDIS_SNI).await;
    assert_eq!(got, AlertDescription::CertificateExpired);
    g.assert_refused(before, "certificate_expired").await;
}

/// A certificate on the CRL is refused; the others, including one issued after the CRL,
/// still work.
#[tokio::test]
async fn revoked_client_certificate_is_refused() {
    let pki = Pki::new();
    let crl_file = write(
        pki.path(),
        "clients.crl",
        &crl(
            &pki,
            &[SerialNumber::from(0x5eed_0001u64)],
            time::Duration::days(7),
        ),
    );
    let mut g = Guarded::with_pki(pki, false, |c| c.tls.crl = Some(crl_file));
    let revoked = client(&g, Leaf::client().dns(CLIENT_NAME).serial(0x5eed_0001));
    let before = g.refused();
    let got = refused_alert(&g, Some(&revoked), REDIS_SNI).await;
    assert_eq!(got, AlertDescription::CertificateRevoked);
    g.assert_refused(before, "certificate_revoked").await;
    // Not on the list: served (the CRL says "good", not "unknown").
    let fine = client(&g, Leaf::client().dns(CLIENT_NAME).serial(0x5eed_0002));
    assert_eq!(redis_reply(&g, &fine, REDIS_SNI).await, "+PONG\r\n");
    g.redis_conns += 1;
    assert_eq!(g.redis.total_connections(), g.redis_conns);
}

/// A CRL that expires while the gateway runs: from then on every client is refused (an
/// out-of-date list might miss a revocation), none is let through unchecked.
#[tokio::test]
async fn crl_expiring_while_running_fails_closed() {
    let pki = Pki::new();
    let valid = Duration::from_secs(2);
    let expiry = SystemTime::now() + valid;
    let crl_pem = crl(&pki, &[], time::Duration::try_from(valid).unwrap());
    let crl_file = write(pki.path(), "clients.crl", &crl_pem);
    let g = Guarded::with_pki(pki, false, |c| c.tls.crl = Some(crl_file));
    assert_eq!(redis_reply(&g, &g.pki, REDIS_SNI).await, "+PONG\r\n");
    let conns = g.redis.total_connections();
    // The list's nextUpdate has whole seconds: one more and it has passed for certain.
    let expired = expiry + Duration::from_secs(1);
    wait_for("the CRL to expire", || {
        (SystemTime::now() >= expired).then_some(())
    });
    let before = g.refused();
    let got = refused_alert(&g, Some(&g.pki), REDIS_SNI).await;
    println!("client after the CRL expired: {got:?}");
    let line = expect_refusal(&g.gw, before, "certificate_crl_expired");
    let error = line.field("error").unwrap_or_default().to_lowercase();
    assert!(error.contains("revocation"), "{}", line.raw);
    assert_eq!(g.redis.total_connections(), conns);
}

/// A CRL file whose CRLs are not from our CA fails closed: one from an impostor CA with the
/// same name fails its signature check, one from a differently named CA leaves our clients'
/// revocation status unknown, and unknown is refused.
#[tokio::test]
async fn crl_from_another_ca_refuses_every_client() {
    let impostor = crl(&Pki::new(), &[], time::Duration::days(7));
    for (pem, detail, reason) in [
        (impostor, "BadSignature", "certificate_crl_bad_signature"),
        (
            foreign_crl(),
            "UnknownRevocationStatus",
            "certificate_revocation_unknown",
        ),
    ] {
        let pki = Pki::new();
        let crl_file = write(pki.path(), "clients.crl", &pem);
        let g = Guarded::with_pki(pki, false, |c| c.tls.crl = Some(crl_file));
        let before = g.refused();
        let got = refused_alert(&g, Some(&g.pki), REDIS_SNI).await;
        let line = expect_refusal(&g.gw, before, reason);
        assert!(line.raw.contains(detail), "{}", line.raw);
        println!("CRL {detail}: client saw {got:?}");
        g.assert_no_backend_connection();
    }
}

/// Identities come from DNS SANs (case-insensitive), URI SANs (SPIFFE IDs, exact) and the
/// CN (exact). Certificates from the right CA whose identity is not listed get Redis' native
/// error after the handshake; a listed one is served.
#[tokio::test]
async fn identity_outside_allow_gets_a_redis_error() {
    let spiffe = format!("uri:{SPIFFE}");
    let ids = [spiffe.as_str(), "cn:Worker"];
    let mut g = Guarded::start(false, |c| route_like(c, 0, "spiffe", LOCKED_SNI, &ids));
    let refused = [
        // route redis: allow dns:worker.snigate.test
        (REDIS_SNI, "redis", Leaf::client().dns("other.snigate.test")),
        (REDIS_SNI, "redis", Leaf::client().cn(CLIENT_NAME)), // a CN is no DNS SAN
        (
            REDIS_SNI,
            "redis",
            Leaf::client().dns("worker.snigate.test.evil"),
        ),
        (
            REDIS_SNI,
            "redis",
            Leaf::client().dns("evil.worker.snigate.test"),
        ),
        (
            REDIS_SNI,
            "redis",
            Leaf::client().uri("dns:worker.snigate.test"),
        ),
        // route spiffe: allow uri:<SPIFFE>, cn:Worker
        (
            LOCKED_SNI,
            "spiffe",
            Leaf::client().uri("spiffe://snigate.test/ns/workers/sa/celery-x"),
        ),
        (
            LOCKED_SNI,
            "spiffe",
            Leaf::client().uri(&format!("{SPIFFE}/extra")),
        ),
        (
            LOCKED_SNI,
            "spiffe",
            Leaf::client().uri("spiffe://evil.test/ns/workers/sa/celery"),
        ),
        (
            LOCKED_SNI,
            "spiffe",
            Leaf::client().uri(&SPIFFE.to_uppercase()),
        ),
        (LOCKED_SNI, "spiffe", Leaf::client().cn("worker")),
        (LOCKED_SNI, "spiffe", Leaf::client().cn("Worker ")),
        (LOCKED_SNI, "spiffe", Leaf::client().dns("worker")),
        (LOCKED_SNI, "spiffe", Leaf::client().dns(CLIENT_NAME)),
    ];
    for (sni, route, leaf) in refused {
        let what = format!("{leaf:?} on {route}");
        let before = g.refused();
        let reply = redis_reply(&g, &client(&g, leaf), sni).await;
        assert_eq!(
            reply,
            format!("-ERR snigate: {route}: client identity not allowed\r\n"),
            "{what}"
        );
        let line = g.assert_refused(before, "identity_not_allowed").await;
        line.assert_field("route", route);
    }
    let allowed = [
        (REDIS_SNI, Leaf::client().dns("WORKER.Snigate.Test")),
        (
            REDIS_SNI,
            Leaf::client().dns("other.snigate.test").dns(CLIENT_NAME),
        ),
        (LOCKED_SNI, Leaf::client().uri(SPIFFE)),
        (LOCKED_SNI, Leaf::client().cn("Worker")),
        (
            LOCKED_SNI,
            Leaf::client()
                .dns("x.snigate.test")
                .uri(SPIFFE)
                .cn("nobody"),
        ),
    ];
    for (sni, leaf) in allowed {
        let what = format!("{leaf:?}");
        let before = g.refused();
        assert_eq!(
            redis_reply(&g, &client(&g, leaf), sni).await,
            "+PONG\r\n",
            "{what}"
        );
        g.redis_conns += 1;
        assert_eq!(g.redis.total_connections(), g.redis_conns, "{what}");
        assert_eq!(g.refused(), before, "{what}");
    }
}

/// The same for PostgreSQL: psql with a certificate whose SPIFFE ID is not listed gets
/// FATAL `client identity not allowed`; PostgreSQL never sees the connection.
#[tokio::test]
async fn identity_outside_allow_gets_a_postgres_fatal() {
    let spiffe = format!("uri:{SPIFFE}");
    let ids = [spiffe.as_str()];
    let mut g = Guarded::start(true, |c| route_like(c, 1, "pg-spiffe", LOCKED_PG_SNI, &ids));
    let before = g.refused();
    let stranger = client(
        &g,
        Leaf::client().uri("spiffe://snigate.test/ns/workers/sa/other"),
    );
    let out = g.psql(LOCKED_PG_SNI, &stranger);
    let (_, e) = texts(&out);
    assert!(!out.status.success());
    assert!(
        e.contains("FATAL:  snigate: pg-spiffe: client identity not allowed"),
        "{e}"
    );
    g.assert_refused(before, "identity_not_allowed").await;
    let worker = client(&g, Leaf::client().uri(SPIFFE));
    let out = g.psql(LOCKED_PG_SNI, &worker);
    assert_eq!(texts(&out).0, "1\n", "{:?}", texts(&out));
}

//! Certificate revocation lists: loaded from PEM, refused when already expired.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateRevocationListDer;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::config::Invalid;

/// Reads every CRL in a PEM file; `key` names it in errors.
pub fn load(key: &str, path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, Invalid> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            Invalid::new(
                key,
                format!("cannot load {}: {e}", path.display()),
                "point it at a PEM file of X509 CRL blocks issued by tls.client_ca",
            )
        })?;
    if crls.is_empty() {
        return Err(Invalid::new(
            key,
            format!("{} holds no X509 CRL block", path.display()),
            "point it at a PEM file of X509 CRL blocks issued by tls.client_ca",
        ));
    }
    let now = time_now();
    for crl in &crls {
        check_current(key, path, crl, now)?;
    }
    Ok(crls)
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A CRL's nextUpdate as seconds since the Unix epoch, for the metric the CRL alert reads.
pub fn next_update(crl: &[u8]) -> Option<i64> {
    let (_, parsed) = CertificateRevocationList::from_der(crl).ok()?;
    parsed.next_update().map(|t| t.timestamp())
}

/// An expired CRL might miss recent revocations; trusting it would fail open.
fn check_current(key: &str, path: &Path, crl: &[u8], now: i64) -> Result<(), Invalid> {
    let parsed = CertificateRevocationList::from_der(crl).map_err(|e| {
        Invalid::new(
            key,
            format!("{} holds a CRL that cannot be parsed: {e}", path.display()),
            "regenerate the CRL with your CA tooling",
        )
    })?;
    match parsed.1.next_update() {
        Some(next) if next.timestamp() < now => Err(Invalid::new(
            key,
            format!("the CRL in {} expired at {next}", path.display()),
            "publish a fresh CRL from the CA (its nextUpdate must be in the future)",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, IsCa, Issuer,
        KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
    };
    use time::{Duration, OffsetDateTime};

    /// A PEM CRL from a fresh CA whose nextUpdate is `next_update_in` from now.
    pub(crate) fn crl_pem(next_update_in: Duration) -> String {
        let key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = Issuer::from_params(&ca, &key);
        let now = OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now - Duration::days(30),
            next_update: now + next_update_in,
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap()
        .pem()
        .unwrap()
    }

    #[test]
    fn current_crls_load_and_expired_ones_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.pem");
        std::fs::write(&good, crl_pem(Duration::days(7))).unwrap();
        assert_eq!(load("tls.crl", &good).unwrap().len(), 1);

        let expired = dir.path().join("expired.pem");
        std::fs::write(&expired, crl_pem(-Duration::days(1))).unwrap();
        let err = load("tls.crl", &expired).unwrap_err();
        assert!(err.problem.contains("expired"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(load("tls.crl", &empty)
            .unwrap_err()
            .problem
            .contains("no X509 CRL"));
        assert!(load("tls.crl", &dir.path().join("missing.pem")).is_err());
    }
}

//! What the expiry alerts read: the notAfter of every certificate in each file the process
//! presents or trusts (a chain or a CA bundle, not only its first block, since an intermediate
//! or a second CA can expire first), and the nextUpdate of the CRLs it checks clients against.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::metrics::{CertLabel, FileLabel, Metrics};

/// Why the process holds a certificate file; the `role` label of its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The gateway's own chain, shown to every client.
    Served,
    /// The sidecar's own chain, shown to the gateway.
    Client,
    /// CA certificates the peer's chain must lead to.
    Trusted,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Served => "served",
            Role::Client => "client",
            Role::Trusted => "trusted",
        }
    }
}

/// Replaces the expiry series with those of `files` and `crl`: a file that lost a
/// certificate, or is no longer configured, loses its series. Files that cannot be read or
/// parsed are skipped: loading them has already failed with a clear error.
pub fn record(metrics: &Metrics, files: &[(&Path, Role)], crl: Option<&Path>) {
    metrics.cert_expiry.clear();
    for (file, role) in files {
        for (index, (subject, not_after)) in certificates(file).into_iter().enumerate() {
            let label = CertLabel {
                file: file.display().to_string(),
                index: index.to_string(),
                role: role.label(),
                subject,
            };
            metrics
                .cert_expiry
                .get_or_create(&label)
                .set(not_after as f64);
        }
    }
    metrics.crl_next_update.clear();
    if let Some(next) = crl.and_then(earliest_next_update) {
        let label = FileLabel {
            file: crl.map(|f| f.display().to_string()).unwrap_or_default(),
        };
        metrics
            .crl_next_update
            .get_or_create(&label)
            .set(next as f64);
    }
}

/// (subject, notAfter) of each certificate in a PEM file, in file order.
fn certificates(file: &Path) -> Vec<(String, i64)> {
    let Ok(blocks) = CertificateDer::pem_file_iter(file) else {
        return Vec::new();
    };
    blocks
        .filter_map(Result::ok)
        .filter_map(|der| {
            let (_, cert) = X509Certificate::from_der(&der).ok()?;
            Some((
                cert.subject().to_string(),
                cert.validity().not_after.timestamp(),
            ))
        })
        .collect()
}

/// The CRL that runs out first decides when revocation checks start failing closed.
fn earliest_next_update(file: &Path) -> Option<i64> {
    CertificateRevocationListDer::pem_file_iter(file)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|der| super::crl::next_update(&der))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::crl::tests::crl_pem;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    use std::collections::BTreeSet;
    use time::{Duration, OffsetDateTime};

    fn ca(name: &str, days: i64) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(days);
        params.self_signed(&key).unwrap().pem()
    }

    fn expiry_lines(metrics: &Metrics) -> BTreeSet<String> {
        let text = metrics.encode();
        text.lines()
            .filter(|l| l.starts_with("snigate_certificate_expiry") || l.starts_with("snigate_crl"))
            .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
            .collect()
    }

    #[test]
    fn every_certificate_of_a_bundle_and_the_earliest_crl_are_exported() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (ca("old CA", 10), ca("new CA", 400));
        let bundle = dir.path().join("bundle.crt");
        std::fs::write(&bundle, format!("{new}{old}")).unwrap();
        let crls = dir.path().join("clients.crl");
        let (soon, later) = (crl_pem(Duration::days(3)), crl_pem(Duration::days(30)));
        std::fs::write(&crls, format!("{later}{soon}")).unwrap();

        let metrics = Metrics::new("gateway");
        record(&metrics, &[(&bundle, Role::Trusted)], Some(&crls));
        let file = bundle.display();
        let cert = |index: u8, role: &str, cn: &str| {
            format!(
                "snigate_certificate_expiry_timestamp_seconds\
                 {{file=\"{file}\",index=\"{index}\",role=\"{role}\",subject=\"CN={cn}\"}}"
            )
        };
        let crl_line = format!(
            "snigate_crl_next_update_timestamp_seconds{{file=\"{}\"}}",
            crls.display()
        );
        assert_eq!(
            expiry_lines(&metrics),
            BTreeSet::from([
                cert(0, "trusted", "new CA"),
                cert(1, "trusted", "old CA"),
                crl_line
            ])
        );
        let value = |prefix: &str| -> f64 {
            let text = metrics.encode();
            let mut samples = text.lines().filter(|l| !l.starts_with('#'));
            let line = samples.find(|l| l.contains(prefix)).unwrap();
            line.rsplit_once(' ').unwrap().1.parse().unwrap()
        };
        let now = OffsetDateTime::now_utc().unix_timestamp() as f64;
        let days = |t: f64| ((t - now) / 86400.0).round();
        assert_eq!(days(value("subject=\"CN=old CA\"")), 10.0);
        assert_eq!(days(value("subject=\"CN=new CA\"")), 400.0);
        assert_eq!(days(value("snigate_crl_next_update")), 3.0);

        // A reload with one certificate and no CRL leaves no stale series behind.
        std::fs::write(&bundle, new).unwrap();
        record(&metrics, &[(&bundle, Role::Served)], None);
        assert_eq!(
            expiry_lines(&metrics),
            BTreeSet::from([cert(0, "served", "new CA")])
        );
    }
}

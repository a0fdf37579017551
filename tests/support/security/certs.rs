//! Certificates and CRLs from a Pki's development CA (same subject and key as `snigate certs`).

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::support::pki::Pki;

/// What goes into a leaf certificate.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    pub cn: Option<String>,
    pub serial: Option<u64>,
    /// Validity relative to now.
    pub not_before: time::Duration,
    pub not_after: time::Duration,
    pub server: bool,
}

impl Leaf {
    /// A client certificate valid from an hour ago for a day, no names yet.
    pub fn client() -> Leaf {
        Leaf {
            dns: Vec::new(),
            uris: Vec::new(),
            cn: None,
            serial: None,
            not_before: -time::Duration::hours(1),
            not_after: time::Duration::days(1),
            server: false,
        }
    }

    /// A server certificate for `names`.
    pub fn server(names: &[&str]) -> Leaf {
        Leaf {
            dns: names.iter().map(|s| s.to_string()).collect(),
            server: true,
            ..Leaf::client()
        }
    }

    pub fn dns(mut self, name: &str) -> Leaf {
        self.dns.push(name.into());
        self
    }

    pub fn uri(mut self, uri: &str) -> Leaf {
        self.uris.push(uri.into());
        self
    }

    pub fn cn(mut self, cn: &str) -> Leaf {
        self.cn = Some(cn.into());
        self
    }

    pub fn serial(mut self, serial: u64) -> Leaf {
        self.serial = Some(serial);
        self
    }

    /// Valid from two days ago until yesterday.
    pub fn expired(mut self) -> Leaf {
        self.not_before = -time::Duration::days(2);
        self.not_after = -time::Duration::days(1);
        self
    }
}

/// `pki`'s CA as an rcgen issuer: the subject and key usages `snigate certs` gives it.
fn ca_params(pki: &Pki) -> (CertificateParams, KeyPair) {
    let key = KeyPair::from_pem(&fs::read_to_string(pki.path().join("ca.key")).unwrap()).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "snigate development CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params, key)
}

/// Signs `leaf` with `pki`'s CA; returns (certificate PEM, key PEM).
pub fn issue(pki: &Pki, leaf: &Leaf) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    if let Some(cn) = &leaf.cn {
        params
            .distinguished_name
            .push(DnType::CommonName, cn.as_str());
    }
    for d in &leaf.dns {
        params
            .subject_alt_names
            .push(SanType::DnsName(d.as_str().try_into().unwrap()));
    }
    for u in &leaf.uris {
        params
            .subject_alt_names
            .push(SanType::URI(u.as_str().try_into().unwrap()));
    }
    if let Some(s) = leaf.serial {
        params.serial_number = Some(SerialNumber::from(s));
    }
    let now = OffsetDateTime::now_utc();
    params.not_before = now + leaf.not_before;
    params.not_after = now + leaf.not_after;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if leaf.server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.use_authority_key_identifier_extension = true;
    let (ca, ca_key) = ca_params(pki);
    let issuer = Issuer::from_params(&ca, &ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A directory shaped like a Pki: `trust`'s CA as ca.crt, and `leaf` (issued by `issuer`'s
/// CA) as client.crt/client.key and server.crt/server.key. Usable wherever a Pki is.
pub fn bundle(trust: &Pki, issuer: &Pki, leaf: &Leaf) -> Pki {
    let dir = tempfile::Builder::new()
        .prefix("snigate-pki-")
        .tempdir()
        .unwrap();
    fs::copy(trust.ca(), dir.path().join("ca.crt")).unwrap();
    let (cert, key) = issue(issuer, leaf);
    for (c, k) in [("client.crt", "client.key"), ("server.crt", "server.key")] {
        fs::write(dir.path().join(c), &cert).unwrap();
        fs::write(dir.path().join(k), &key).unwrap();
        // libpq refuses a key file others may read.
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        fs::set_permissions(dir.path().join(k), private).unwrap();
    }
    Pki { dir }
}

/// A PEM CRL from `pki`'s CA revoking `serials`, current until `now + next_update` (negative:
/// already expired).
pub fn crl(pki: &Pki, serials: &[u64], next_update: time::Duration) -> String {
    let now = OffsetDateTime::now_utc();
    let revoked_certs = serials
        .iter()
        .map(|&s| RevokedCertParams {
            serial_number: SerialNumber::from(s),
            revocation_time: now - time::Duration::minutes(5),
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        })
        .collect();
    let (ca, ca_key) = ca_params(pki);
    let params = CertificateRevocationListParams {
        this_update: now - time::Duration::days(30),
        next_update: now + next_update,
        crl_number: SerialNumber::from(now.unix_timestamp() as u64),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let issuer = Issuer::from_params(&ca, &ca_key);
    params.signed_by(&issuer).unwrap().pem().unwrap()
}

/// A current PEM CRL from a CA that is not `snigate development CA` (another name, another
/// key): it says nothing about the certificates of any Pki.
pub fn foreign_crl() -> String {
    let key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "another CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now - time::Duration::days(1),
        next_update: now + time::Duration::days(7),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    params
        .signed_by(&Issuer::from_params(&ca, &key))
        .unwrap()
        .pem()
        .unwrap()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

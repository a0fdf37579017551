//! Certificates: the development PKI that `snigate certs` writes (made in-process by the same
//! library function), leaf certificates and CRLs signed by its CA, and a CA of nobody's.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

pub const REDIS_SNI: &str = "redis.snigate.test";
pub const PG_SNI: &str = "postgres.snigate.test";
/// Names for routes whose `allow` list excludes the default client identity.
pub const LOCKED_SNI: &str = "locked.snigate.test";
pub const LOCKED_PG_SNI: &str = "locked-pg.snigate.test";
pub const TCP_SNI: &str = "tcp.snigate.test";
/// Identity carried by the default client certificate.
pub const CLIENT_NAME: &str = "worker.snigate.test";

/// A directory with `ca.crt ca.key server.crt server.key client.crt client.key`: the server
/// certificate covers every name above. Each `Pki::new()` is an independent CA (same subject
/// name, another key), so a second one serves the "signed by another CA" cases.
pub struct Pki {
    pub dir: TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempdir("snigate-pki-");
        let names = [REDIS_SNI, PG_SNI, LOCKED_SNI, LOCKED_PG_SNI, TCP_SNI].map(String::from);
        snigate::certs::write_dev_pki(dir.path(), &names, CLIENT_NAME).expect("dev PKI");
        Pki { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn ca(&self) -> PathBuf {
        self.path().join("ca.crt")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.path().join("server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.path().join("server.key")
    }
    pub fn client_cert(&self) -> PathBuf {
        self.path().join("client.crt")
    }
    pub fn client_key(&self) -> PathBuf {
        self.path().join("client.key")
    }
}

/// What goes into a leaf certificate.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    pub cn: Option<String>,
    pub serial: Option<u64>,
    /// Validity relative to now.
    pub not_before: Duration,
    pub not_after: Duration,
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
            not_before: -Duration::hours(1),
            not_after: Duration::days(1),
            server: false,
        }
    }

    /// A server certificate for `names`.
    pub fn server(names: &[&str]) -> Leaf {
        let dns = names.iter().map(|s| s.to_string()).collect();
        Leaf {
            dns,
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
        self.not_before = -Duration::days(2);
        self.not_after = -Duration::days(1);
        self
    }

    fn params(&self) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        if let Some(cn) = &self.cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        for d in &self.dns {
            let name = d.as_str().try_into().unwrap();
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        for u in &self.uris {
            let uri = u.as_str().try_into().unwrap();
            params.subject_alt_names.push(SanType::URI(uri));
        }
        params.serial_number = self.serial.map(SerialNumber::from);
        let now = OffsetDateTime::now_utc();
        params.not_before = now + self.not_before;
        params.not_after = now + self.not_after;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match self.server {
            true => ExtendedKeyUsagePurpose::ServerAuth,
            false => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        params
    }
}

/// `pki`'s CA as an rcgen issuer: the subject and key usages `snigate certs` gives it.
fn ca_issuer(pki: &Pki) -> Issuer<'static, KeyPair> {
    let key = KeyPair::from_pem(&fs::read_to_string(pki.path().join("ca.key")).unwrap()).unwrap();
    Issuer::new(ca_params("snigate development CA"), key)
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// A directory shaped like a Pki: `trust`'s CA as ca.crt, and `leaf` (issued by `issuer`'s
/// CA) as client.crt/client.key and server.crt/server.key. Usable wherever a Pki is.
pub fn bundle(trust: &Pki, issuer: &Pki, leaf: &Leaf) -> Pki {
    let dir = tempdir("snigate-pki-");
    fs::copy(trust.ca(), dir.path().join("ca.crt")).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = leaf.params().signed_by(&key, &ca_issuer(issuer)).unwrap();
    for (c, k) in [("client.crt", "client.key"), ("server.crt", "server.key")] {
        fs::write(dir.path().join(c), cert.pem()).unwrap();
        fs::write(dir.path().join(k), key.serialize_pem()).unwrap();
        // libpq refuses a key file others may read.
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        fs::set_permissions(dir.path().join(k), private).unwrap();
    }
    Pki { dir }
}

/// The serial number of the first certificate in a PEM file.
pub fn serial_of(cert: &Path) -> SerialNumber {
    let pem = fs::read(cert).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    SerialNumber::from_slice(pem.parse_x509().unwrap().raw_serial())
}

/// A PEM CRL from `pki`'s CA revoking `serials`, current until `now + next_update` (negative:
/// already expired).
pub fn crl(pki: &Pki, serials: &[SerialNumber], next_update: Duration) -> String {
    let now = OffsetDateTime::now_utc();
    let revoked_certs = serials
        .iter()
        .map(|serial| RevokedCertParams {
            serial_number: serial.clone(),
            revocation_time: now - Duration::minutes(5),
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        })
        .collect();
    crl_params(now, next_update, revoked_certs)
        .signed_by(&ca_issuer(pki))
        .unwrap()
        .pem()
        .unwrap()
}

/// A current PEM CRL from a CA that is not `snigate development CA` (another name, another
/// key): it says nothing about the certificates of any Pki.
pub fn foreign_crl() -> String {
    let issuer = Issuer::new(ca_params("another CA"), KeyPair::generate().unwrap());
    let params = crl_params(OffsetDateTime::now_utc(), Duration::days(7), Vec::new());
    params.signed_by(&issuer).unwrap().pem().unwrap()
}

fn crl_params(
    now: OffsetDateTime,
    next_update: Duration,
    revoked_certs: Vec<RevokedCertParams>,
) -> CertificateRevocationListParams {
    CertificateRevocationListParams {
        this_update: now - Duration::days(30),
        next_update: now + next_update,
        crl_number: SerialNumber::from(now.unix_timestamp() as u64),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

pub fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

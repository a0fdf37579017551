//! `snigate certs`: a throwaway development PKI (CA, server and client certificates).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Why `snigate certs` could not write the development PKI.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("cannot generate the development PKI: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: std::io::Error },
    #[error("--server-name {0}: {1}")]
    Name(String, crate::config::NameError),
}

/// Writes `ca.crt ca.key server.crt server.key client.crt client.key` into `out`.
pub fn write_dev_pki(
    out: &Path,
    server_names: &[String],
    client_name: &str,
) -> Result<(), CertsError> {
    for name in server_names {
        crate::config::sni_name(name).map_err(|e| CertsError::Name(name.clone(), e))?;
    }
    fs::create_dir_all(out).map_err(|error| CertsError::Write {
        path: out.display().to_string(),
        error,
    })?;
    let ca_key = KeyPair::generate()?;
    let ca_params = ca_params()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let server_key = KeyPair::generate()?;
    let server = leaf_params(server_names, ExtendedKeyUsagePurpose::ServerAuth)?;
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let client = leaf_params(
        &[client_name.to_owned()],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let client_cert = client.signed_by(&client_key, &issuer)?;

    write(out, "ca.crt", &ca_cert.pem(), 0o644)?;
    write(out, "ca.key", &ca_key.serialize_pem(), 0o600)?;
    write(out, "server.crt", &server_cert.pem(), 0o644)?;
    write(out, "server.key", &server_key.serialize_pem(), 0o600)?;
    write(out, "client.crt", &client_cert.pem(), 0o644)?;
    write(out, "client.key", &client_key.serialize_pem(), 0o600)
}

/// Development certificates expire like real ones, so expiry handling is exercised too.
const CA_DAYS: i64 = 3650;
const LEAF_DAYS: i64 = 365;

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks that run slightly behind ours.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    validity(&mut params, CA_DAYS);
    params.distinguished_name = name("snigate development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// A leaf whose SANs are `names` and whose CN is the first of them.
fn leaf_params(
    names: &[String],
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(names.to_vec())?;
    validity(&mut params, LEAF_DAYS);
    params.distinguished_name = name(names.first().map_or("snigate", String::as_str));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn write(dir: &Path, file: &str, pem: &str, mode: u32) -> Result<(), CertsError> {
    let path = dir.join(file);
    let wrap = |error| CertsError::Write {
        path: path.display().to_string(),
        error,
    };
    // Remove first so a key file never keeps an older, wider mode.
    let _ = fs::remove_file(&path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .map_err(wrap)?;
    f.write_all(pem.as_bytes()).map_err(wrap)
}

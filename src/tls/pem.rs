//! Reading PEM files into rustls types; every error names the config key and the file.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Invalid;

/// Every certificate in a PEM file, at least one; `key` names it in errors.
pub fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Invalid> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| unreadable(key, path, e))?;
    if certs.is_empty() {
        return Err(Invalid::new(
            key,
            format!("{} holds no CERTIFICATE block", path.display()),
            "point it at a PEM file with the certificate chain, leaf first",
        ));
    }
    Ok(certs)
}

/// The private key in a PEM file; `key` names it in errors.
pub fn private_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, Invalid> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| unreadable(key, path, e))
}

/// A trust store holding exactly the CA certificates in `path`.
pub fn roots(key: &str, path: &Path) -> Result<Arc<RootCertStore>, Invalid> {
    let mut store = RootCertStore::empty();
    for cert in certificates(key, path)? {
        store.add(cert).map_err(|e| {
            Invalid::new(
                key,
                format!("{} is not a usable CA certificate: {e}", path.display()),
                "use the PEM certificate of the issuing CA",
            )
        })?;
    }
    Ok(Arc::new(store))
}

fn unreadable(key: &str, path: &Path, e: rustls_pki_types::pem::Error) -> Invalid {
    // The pem error never carries file contents, so it is safe to show for key files too.
    Invalid::new(
        key,
        format!("cannot load {}: {e}", path.display()),
        "check the path (relative paths start from the working directory) and that it is PEM",
    )
}

//! The gateway's TLS side: one certificate, an optional client-certificate verifier, and one
//! `ServerConfig` per route.
//!
//! A config per route gives each route its own session cache, so a session established for
//! one route can never be resumed on another (the route always follows the current SNI).
//! Each route has a second config, sharing that cache, for sidecars that offer `snigate/1`.

use std::sync::Arc;

use rustls::client::verify_server_name;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::ServerConfig;

use super::{crl, pem, provider};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName};

use crate::config::{GatewayTls, Invalid, Protocol, RouteConfig, TlsVersion};
use crate::protocol::snigate;

/// ALPN protocol id libpq ≥ 17 offers, and requires for `sslnegotiation=direct`.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// The gateway's TLS server settings, from which each route's config is made.
pub struct ServerTls {
    provider: Arc<CryptoProvider>,
    min_version: TlsVersion,
    leaf: CertificateDer<'static>,
    certified: Arc<SingleCertAndKey>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl ServerTls {
    /// Loads and cross-checks the certificate, key and client CA named in `tls`.
    pub fn load(tls: &GatewayTls) -> Result<ServerTls, Invalid> {
        let provider = provider();
        let chain = pem::certificates("tls.cert", &tls.cert)?;
        let key = pem::private_key("tls.key", &tls.key)?;
        let leaf = chain[0].clone();
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
            Invalid::new(
                "tls.key",
                format!(
                    "{} does not fit the certificate in {}: {e}",
                    tls.key.display(),
                    tls.cert.display()
                ),
                "use the private key that was issued with this certificate",
            )
        })?;
        let client_verifier = match &tls.client_ca {
            Some(path) => {
                let crls = match &tls.crl {
                    Some(crl) => crl::load("tls.crl", crl)?,
                    None => Vec::new(),
                };
                Some(client_verifier(
                    pem::roots("tls.client_ca", path)?,
                    crls,
                    &provider,
                )?)
            }
            None => None,
        };
        Ok(ServerTls {
            provider,
            min_version: tls.min_version,
            leaf,
            certified: Arc::new(SingleCertAndKey::from(certified)),
            client_verifier,
        })
    }

    /// Fails unless the certificate is valid for every server name of every route, which is
    /// what each client will check.
    pub fn check_names(&self, routes: &[RouteConfig]) -> Result<(), Invalid> {
        let parsed = ParsedCertificate::try_from(&self.leaf).map_err(|e| {
            Invalid::new(
                "tls.cert",
                format!("cannot parse the certificate: {e}"),
                "use a PEM X.509 certificate",
            )
        })?;
        for (i, route) in routes.iter().enumerate() {
            for (k, name) in route.server_names.iter().enumerate() {
                let covered = ServerName::try_from(name.as_str())
                    .map_err(|e| e.to_string())
                    .and_then(|sn| verify_server_name(&parsed, &sn).map_err(|e| e.to_string()));
                if let Err(e) = covered {
                    return Err(Invalid::new(
                        format!("routes[{i}].server_names[{k}]"),
                        format!("the certificate in tls.cert is not valid for `{name}`: {e}"),
                        "issue the server certificate with this name as a DNS SAN",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Fresh configs (and so a fresh session cache) for one route.
    pub fn route_configs(&self, protocol: Protocol) -> RouteTls {
        RouteTls::new(self.route_config(protocol))
    }

    fn route_config(&self, protocol: Protocol) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(super::versions(self.min_version))
            .expect("the ring provider supports TLS 1.2 and 1.3");
        let builder = match &self.client_verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.certified.clone());
        if protocol == Protocol::Postgres {
            config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        }
        Arc::new(config)
    }
}

/// A route's two TLS configs: with `snigate/1` first in the ALPN list for clients that offer
/// it, and the list as it always was for everyone else. One list for all would not do:
/// rustls refuses a client whose ALPN offer shares nothing with a non-empty server list, so
/// a Redis client offering some other protocol, served today, would be refused.
pub struct RouteTls {
    direct: Arc<ServerConfig>,
    sidecar: Arc<ServerConfig>,
}

impl RouteTls {
    /// `direct` as it is, and a copy (sharing its session cache) that prefers `snigate/1`.
    pub fn new(direct: Arc<ServerConfig>) -> RouteTls {
        let mut sidecar = (*direct).clone();
        sidecar.alpn_protocols.insert(0, snigate::ALPN.to_vec());
        RouteTls {
            direct,
            sidecar: Arc::new(sidecar),
        }
    }

    /// The config for a client that offered the ALPN ids `offered` (none: `None`).
    pub fn for_client<'a>(
        &self,
        offered: Option<impl Iterator<Item = &'a [u8]>>,
    ) -> Arc<ServerConfig> {
        let mut offered = offered.into_iter().flatten();
        if offered.any(|id| id == snigate::ALPN) {
            self.sidecar.clone()
        } else {
            self.direct.clone()
        }
    }
}

/// With CRLs, revocation is checked for the whole chain, an unknown status is a failure, and
/// a CRL past its nextUpdate refuses clients: every doubt fails closed.
fn client_verifier(
    roots: Arc<rustls::RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, Invalid> {
    WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .with_crls(crls)
        .enforce_revocation_expiration()
        .build()
        .map_err(|e| {
            Invalid::new(
                "tls.client_ca",
                format!("cannot verify client certificates with it: {e}"),
                "use the PEM certificate of the CA that issues client certificates",
            )
        })
}

//! Which certificate problem ended a handshake, as the `certificate_*` reason of the refusal
//! metrics and log lines: the alert on refusals rising above their baseline tells an expired
//! client certificate from a revoked one or from a client that rejects ours.

use std::io;

use rustls::{AlertDescription, CertRevocationListError, CertificateError, Error};

/// The `certificate_*` reason of a failed handshake, or `None` when no certificate decided it.
pub fn certificate_reason(error: &io::Error) -> Option<&'static str> {
    let tls = error.get_ref()?.downcast_ref::<Error>()?;
    Some(match tls {
        Error::NoCertificatesPresented => "certificate_required",
        Error::InvalidCertificate(e) => invalid_certificate(e),
        Error::InvalidCertRevocationList(e) => invalid_crl(e),
        Error::AlertReceived(alert) if rejects_our_certificate(*alert) => {
            "certificate_rejected_by_peer"
        }
        _ => return None,
    })
}

fn invalid_certificate(e: &CertificateError) -> &'static str {
    use CertificateError as C;
    match e {
        C::Expired | C::ExpiredContext { .. } => "certificate_expired",
        C::NotValidYet | C::NotValidYetContext { .. } => "certificate_not_yet_valid",
        C::Revoked => "certificate_revoked",
        C::UnknownIssuer => "certificate_unknown_issuer",
        C::BadSignature => "certificate_bad_signature",
        C::UnknownRevocationStatus => "certificate_revocation_unknown",
        C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
            "certificate_crl_expired"
        }
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => "certificate_wrong_purpose",
        C::NotValidForName | C::NotValidForNameContext { .. } => "certificate_wrong_name",
        _ => "certificate_invalid",
    }
}

fn invalid_crl(e: &CertRevocationListError) -> &'static str {
    match e {
        CertRevocationListError::BadSignature => "certificate_crl_bad_signature",
        _ => "certificate_crl_invalid",
    }
}

/// Alerts a peer sends when it does not accept the certificate we showed it.
fn rejects_our_certificate(alert: AlertDescription) -> bool {
    use AlertDescription as A;
    matches!(
        alert,
        A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(e: Error) -> io::Error {
        // How tokio-rustls hands rustls errors to its callers.
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn certificate_errors_get_their_own_reason_and_others_none() {
        let cases = [
            (Error::NoCertificatesPresented, Some("certificate_required")),
            (
                Error::InvalidCertificate(CertificateError::Expired),
                Some("certificate_expired"),
            ),
            (
                Error::InvalidCertificate(CertificateError::Revoked),
                Some("certificate_revoked"),
            ),
            (
                Error::InvalidCertificate(CertificateError::UnknownIssuer),
                Some("certificate_unknown_issuer"),
            ),
            (
                Error::InvalidCertificate(CertificateError::UnhandledCriticalExtension),
                Some("certificate_invalid"),
            ),
            (
                Error::InvalidCertRevocationList(CertRevocationListError::BadSignature),
                Some("certificate_crl_bad_signature"),
            ),
            (
                Error::AlertReceived(AlertDescription::UnknownCA),
                Some("certificate_rejected_by_peer"),
            ),
            (
                Error::AlertReceived(AlertDescription::HandshakeFailure),
                None,
            ),
            (Error::DecryptError, None),
        ];
        for (error, want) in cases {
            let shown = format!("{error:?}");
            assert_eq!(certificate_reason(&wrapped(error)), want, "{shown}");
        }
        let plain = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(certificate_reason(&plain), None);
    }
}

//! Health probes of backends in their own protocol, run in the background (never per request
//! of a Kubernetes probe, so a slow backend cannot make `/readyz` slow).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{HostPort, Protocol};
use crate::dial::dial;

/// A Redis PING, inline form: valid before AUTH, answered `+PONG` or `-NOAUTH …`.
const REDIS_PING: &[u8] = b"PING\r\n";
/// A PostgreSQL SSLRequest: any PostgreSQL answers `S` or `N` without a login.
const PG_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Whether a reply is what a healthy server of the protocol answers.
type Validator = fn(&[u8]) -> bool;

/// Probes one backend; `Ok` means it answered like the server it should be.
pub async fn backend(
    protocol: Protocol,
    addr: &HostPort,
    deadline: Duration,
) -> Result<(), String> {
    let check = async {
        let mut stream = dial(addr, deadline).await.map_err(|e| e.to_string())?;
        let (request, valid): (&[u8], Validator) = match protocol {
            Protocol::Redis => (REDIS_PING, |r| {
                r.starts_with(b"+PONG") || r.starts_with(b"-NOAUTH")
            }),
            Protocol::Postgres => (&PG_SSL_REQUEST, |r| r == b"S" || r == b"N"),
            Protocol::Tcp => return Ok(()),
        };
        stream.write_all(request).await.map_err(|e| e.to_string())?;
        let mut reply = [0u8; 64];
        let want = if protocol == Protocol::Postgres {
            1
        } else {
            reply.len()
        };
        let n = stream
            .read(&mut reply[..want])
            .await
            .map_err(|e| e.to_string())?;
        if valid(&reply[..n]) {
            Ok(())
        } else {
            Err(format!(
                "unexpected answer {:?}",
                String::from_utf8_lossy(&reply[..n])
            ))
        }
    };
    tokio::time::timeout(deadline, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {deadline:?}")))
}

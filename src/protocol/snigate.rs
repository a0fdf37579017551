//! `snigate/1`: what a sidecar and a gateway say to each other inside TLS before relaying.
//!
//! The sidecar offers the ALPN id on every tunnel. When the gateway selects it, nothing is
//! relayed until the sidecar sends [`START`], normally in the same write as the client's
//! first bytes; the gateway answers [`STARTED`] at once, then dials the backend. Before
//! START the connection is warm (kept ready) or a probe, and costs the backend nothing; the
//! gateway may close it, and then first sends [`GOAWAY`], so the sidecar knows that nothing
//! it sent was relayed and can send the same bytes on another connection.
//!
//! Clients that do not offer the id (libpq, redis-cli, redis-py, older sidecars) never see
//! any of this.

/// The ALPN protocol id; offered first by sidecars, preferred by gateways.
pub const ALPN: &[u8] = b"snigate/1";

/// Sidecar → gateway: a client arrived; the bytes after it are the client's.
pub const START: u8 = 0x01;

/// Gateway → sidecar: START was read; whatever follows comes from the backend.
pub const STARTED: u8 = 0x01;

/// Gateway → sidecar, instead of STARTED: closing without having relayed anything.
pub const GOAWAY: u8 = 0x00;

/// Whether a TLS connection negotiated `snigate/1`.
pub fn negotiated(alpn: Option<&[u8]>) -> bool {
    alpn == Some(ALPN)
}

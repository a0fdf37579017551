//! Every bad input before TLS or in the ClientHello, against a running gateway with real
//! backends (`fixtures::Guarded`). Each case proves (a) what the client sees, (b) exactly one
//! sanitised `refused` log line with its reason, (c) no backend connection (redis-server's
//! total_connections_received, PostgreSQL's log_connections lines), (d) good clients still
//! served afterwards. Certificates and identities are in `identity`, TLS versions in
//! `tls_policy`.

mod client_hello;
mod preamble;
mod sni;

use crate::support::clients::hello::{client_hello, TLS12, TLS13};

/// A TLS 1.3 ClientHello for `sni` (raw bytes).
fn hello(sni: &[u8]) -> Vec<u8> {
    client_hello(Some(sni), TLS12, &[TLS13, TLS12])
}

//! The gateway's pre-TLS preamble: what `read_packet` makes of whatever a client sends first
//! (up to the two packets the gateway reads before a ClientHello).
//!
//! Properties: no panic; reading from a byte slice never waits; a packet is never longer than
//! PostgreSQL's own startup limit, never longer than the input, and its length prefix is what
//! the client declared; a bad length is refused before anything is allocated for it.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use snigate::protocol::postgres::{read_packet, Packet, PacketError};

const MAX_STARTUP_LEN: usize = 10_000;

/// Polls once: a reader over a byte slice is always ready, so anything else is a bug.
fn now<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("read_packet waited on a byte slice"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    for _ in 0..2 {
        let before = rest.len();
        let declared = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
        match now(read_packet(&mut rest)) {
            Ok(packet) => {
                let len = declared.expect("a packet without a length prefix");
                assert!(
                    (8..=MAX_STARTUP_LEN).contains(&len),
                    "accepted length {len}"
                );
                assert_eq!(
                    before - rest.len(),
                    len,
                    "consumed other than the declared length"
                );
                match &packet {
                    Packet::SslRequest | Packet::GssEncRequest => assert_eq!(len, 8),
                    Packet::Cancel(bytes) | Packet::Startup(bytes) => {
                        assert_eq!(bytes.len(), len);
                        assert_eq!(&bytes[..4], &(len as u32).to_be_bytes());
                    }
                }
                if !matches!(packet, Packet::GssEncRequest) {
                    return;
                }
            }
            Err(PacketError::BadLength(len)) => {
                assert!(
                    !(8..=MAX_STARTUP_LEN).contains(&len),
                    "refused length {len}"
                );
                return;
            }
            Err(PacketError::Io(_)) => return,
        }
    }
});

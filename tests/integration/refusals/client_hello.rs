//! ClientHellos that are cut short, oversized or malformed.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::hello;
use crate::support::clients::hello::*;
use crate::support::config::ms;
use crate::support::fixtures::Guarded;
use crate::support::process::rss_kib;
use crate::support::*;

/// A ClientHello cut short, then silence: dropped at the handshake deadline, which the
/// refused line's duration shows was waited out. A client that connects and never sends
/// anything meets the same deadline.
#[tokio::test]
async fn truncated_client_hello_then_silence_meets_the_handshake_deadline() {
    let deadline = ms(300);
    let mut g = Guarded::start(false, |c| c.timeouts.handshake = deadline);
    let full = hello(REDIS_SNI.as_bytes());
    for sent in [&full[..full.len() / 2], &full[..3], &[][..]] {
        let before = g.refused();
        let mut tcp = TcpStream::connect(g.gw.addr).await.unwrap();
        tcp.write_all(sent).await.unwrap();
        let got = read_to_close(&mut tcp).await;
        assert_eq!(got, b"", "{} bytes sent", sent.len());
        let line = g.assert_refused(before, "handshake_timeout").await;
        let lasted = line
            .get("duration_ms")
            .and_then(|d| d.as_u64())
            .unwrap_or(0);
        assert!(lasted >= deadline.as_millis() as u64, "{}", line.raw);
    }
}

/// A ClientHello cut short, then EOF: refused at once as a failed handshake; EOF before any
/// byte is `silent`.
#[tokio::test]
async fn truncated_client_hello_then_eof_is_refused() {
    let mut g = Guarded::start(false, |_| {});
    let full = hello(REDIS_SNI.as_bytes());
    for (sent, reason) in [
        (&full[..full.len() - 1], "handshake_failed"),
        (&full[..5], "handshake_failed"),
        (&full[..1], "handshake_failed"),
        (&[][..], "silent"),
    ] {
        let before = g.refused();
        let got = raw_exchange(g.gw.addr, sent, true).await;
        assert!(got.is_empty() || plain_alert(&got).is_some(), "{got:?}");
        g.assert_refused(before, reason).await;
    }
}

/// A ClientHello whose handshake header claims 16 MiB, streamed in full-size records:
/// refused long before that much is read, and the gateway's memory stays flat.
#[tokio::test]
async fn oversized_client_hello_is_refused_with_bounded_memory() {
    let mut g = Guarded::start(false, |_| {});
    let pid = g.gw.pid();
    let rss_before = rss_kib(pid);
    let before = g.refused();
    let mut tcp = TcpStream::connect(g.gw.addr).await.unwrap();
    let mut first = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
    first.extend(vec![0x41; 0x4000 - 4]);
    tcp.write_all(&first).await.unwrap();
    let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    record.extend(vec![0x41; 0x4000]);
    // Up to 16 MiB more; the gateway closes long before, failing a write.
    for _ in 0..1024 {
        if tcp.write_all(&record).await.is_err() {
            break;
        }
    }
    let got = read_to_close(&mut tcp).await;
    let desc = plain_alert(&got);
    assert!(desc.is_some() || got.is_empty(), "{got:?}");
    g.assert_refused(before, "handshake_failed").await;
    let grown = rss_kib(pid).saturating_sub(rss_before);
    assert!(grown < 8 * 1024, "gateway RSS grew by {grown} KiB");
    println!("oversized ClientHello: alert {desc:?}, RSS +{grown} KiB");
}

/// A well-framed record whose ClientHello body is nonsense: decode_error.
#[tokio::test]
async fn malformed_client_hello_gets_a_decode_alert() {
    let mut g = Guarded::start(false, |_| {});
    let mut bad = hello(REDIS_SNI.as_bytes());
    // Claim a session id of 200 bytes inside a hello that has 32.
    bad[5 + 4 + 2 + 32] = 200;
    let before = g.refused();
    let got = raw_exchange(g.gw.addr, &bad, false).await;
    let desc = plain_alert(&got);
    assert!(
        matches!(desc, Some(DECODE_ERROR | ILLEGAL_PARAMETER)),
        "{got:?}"
    );
    g.assert_refused(before, "handshake_failed").await;
}

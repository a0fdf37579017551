//! Hand-made TLS records: ClientHellos no client library would send, and alerts.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::IO;

pub const TLS13: u16 = 0x0304;
pub const TLS12: u16 = 0x0303;
pub const TLS11: u16 = 0x0302;
pub const TLS10: u16 = 0x0301;
pub const SSL3: u16 = 0x0300;

/// A ClientHello record. `sni`: the raw host_name bytes (any bytes: the point is to send what
/// a normal client library would refuse to). `versions` non-empty: a supported_versions
/// extension (TLS 1.3 style, with an X25519 key share); empty: a pre-1.3 hello whose
/// `legacy` version is the only one offered.
pub fn client_hello(sni: Option<&[u8]>, legacy: u16, versions: &[u16]) -> Vec<u8> {
    let mut ext = Vec::new();
    if let Some(name) = sni {
        let mut list = vec![0u8];
        list.extend(u16_be(name.len()));
        list.extend_from_slice(name);
        ext.extend(extension(0x0000, &vec16(&list)));
    }
    // supported_groups: x25519, secp256r1; signature_algorithms: ecdsa_p256_sha256, rsa_pss_sha256.
    ext.extend(extension(0x000a, &vec16(&[0x00, 0x1d, 0x00, 0x17])));
    ext.extend(extension(0x000d, &vec16(&[0x04, 0x03, 0x08, 0x04])));
    ext.extend(extension(0x000b, &[1, 0])); // ec_point_formats: uncompressed
    if !versions.is_empty() {
        let v: Vec<u8> = versions.iter().flat_map(|v| v.to_be_bytes()).collect();
        let mut sv = vec![v.len() as u8];
        sv.extend(v);
        ext.extend(extension(0x002b, &sv));
        let mut share = vec![0x00, 0x1d, 0x00, 0x20];
        share.extend([0x42; 32]);
        ext.extend(extension(0x0033, &vec16(&share)));
    }
    let mut body = legacy.clamp(SSL3, TLS12).to_be_bytes().to_vec();
    body.extend([0x5a; 32]); // random
    body.push(32);
    body.extend([0x11; 32]); // legacy session id
                             // TLS 1.3 AES-128-GCM, ECDHE-ECDSA-AES128-GCM, ECDHE-RSA-AES128-GCM, and for pre-1.2
                             // hellos the CBC suites those versions know.
    let suites = [
        0x13, 0x01, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x2f,
    ];
    body.extend(vec16(&suites));
    body.extend([1, 0]); // compression: null
    body.extend(vec16(&ext));
    let mut hs = vec![1u8];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut rec = vec![0x16];
    rec.extend(legacy.clamp(SSL3, TLS10).to_be_bytes());
    rec.extend(u16_be(hs.len()));
    rec.extend(hs);
    rec
}

fn u16_be(n: usize) -> [u8; 2] {
    (n as u16).to_be_bytes()
}

fn vec16(bytes: &[u8]) -> Vec<u8> {
    let mut v = u16_be(bytes.len()).to_vec();
    v.extend_from_slice(bytes);
    v
}

fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut v = kind.to_be_bytes().to_vec();
    v.extend(vec16(data));
    v
}

/// The description of a plaintext fatal alert record at the start of `bytes`, if it is one.
pub fn plain_alert(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [0x15, 0x03, _, 0x00, 0x02, 2, desc, ..] => Some(*desc),
        _ => None,
    }
}

/// Alert descriptions by number (RFC 8446 §6).
pub const UNRECOGNIZED_NAME: u8 = 112;
pub const PROTOCOL_VERSION: u8 = 70;
pub const DECODE_ERROR: u8 = 50;
pub const ILLEGAL_PARAMETER: u8 = 47;

/// Connects, writes `bytes`, optionally half-closes, and reads until the gateway closes.
/// Returns what it sent back.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], half_close: bool) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    if half_close {
        tcp.shutdown().await.unwrap();
    }
    read_to_close(&mut tcp).await
}

/// Reads until EOF or a reset; panics if the peer neither closes nor errors within IO.
pub async fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(IO, read)
        .await
        .expect("the gateway neither answered nor closed");
    got
}

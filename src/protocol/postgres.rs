//! PostgreSQL's pre-TLS packets and the FATAL ErrorResponse a client sees when snigate
//! cannot reach the far side.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// PostgreSQL's own limit on a startup packet (MAX_STARTUP_PACKET_LENGTH).
const MAX_STARTUP_LEN: usize = 10_000;
const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;
const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// SQLSTATE connection_failure: libpq reports it like any server-side connection failure.
const SQLSTATE_CONNECTION_FAILURE: &str = "08006";

/// The untyped, length-prefixed packet a PostgreSQL client sends first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    SslRequest,
    GssEncRequest,
    /// Raw bytes, length prefix included, to forward unchanged.
    Cancel(Vec<u8>),
    Startup(Vec<u8>),
}

impl Packet {
    /// The bytes to forward: empty for the preambles, which are answered, never forwarded.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Packet::Cancel(bytes) | Packet::Startup(bytes) => bytes,
            Packet::SslRequest | Packet::GssEncRequest => &[],
        }
    }
}

/// Why a startup-phase packet could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("startup packet length {0} is outside 8..=10000")]
    BadLength(usize),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The first byte of a PostgreSQL client's first packet: the high byte of a length ≤ 10000.
pub fn may_start_packet(first: u8) -> bool {
    first == 0
}

/// Reads one startup-phase packet, refusing lengths PostgreSQL itself would refuse.
pub async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> Result<Packet, PacketError> {
    let len = r.read_u32().await? as usize;
    if !(8..=MAX_STARTUP_LEN).contains(&len) {
        return Err(PacketError::BadLength(len));
    }
    let mut bytes = vec![0u8; len];
    bytes[..4].copy_from_slice(&(len as u32).to_be_bytes());
    r.read_exact(&mut bytes[4..]).await?;
    Ok(classify(bytes))
}

fn classify(bytes: Vec<u8>) -> Packet {
    let code = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    match (bytes.len(), code) {
        (8, SSL_REQUEST_CODE) => Packet::SslRequest,
        (8, GSSENC_REQUEST_CODE) => Packet::GssEncRequest,
        (16, CANCEL_REQUEST_CODE) => Packet::Cancel(bytes),
        _ => Packet::Startup(bytes),
    }
}

/// Whether `bytes` are exactly one StartupMessage (protocol 3.x), which a server answers.
pub fn is_startup(bytes: &[u8]) -> bool {
    let [a, b, c, d, major_hi, major_lo, ..] = *bytes else {
        return false;
    };
    u32::from_be_bytes([a, b, c, d]) as usize == bytes.len() && (major_hi, major_lo) == (0, 3)
}

/// Whether a server's first answer is an ErrorResponse with SQLSTATE 57P03
/// (cannot_connect_now): "the database system is starting up", "is shutting down"...
pub fn cannot_connect_now(answer: &[u8]) -> bool {
    let Some((b'E', rest)) = answer.split_first() else {
        return false;
    };
    let Some(fields) = rest.get(4..) else {
        return false;
    };
    fields.split(|&b| b == 0).any(|field| field == b"C57P03")
}

/// An ErrorResponse with severity FATAL and SQLSTATE 08006; psql prints it as `FATAL:  <message>`.
pub fn error_response(message: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(message.len() + 32);
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', SQLSTATE_CONNECTION_FAILURE),
        (b'M', message),
    ] {
        body.push(tag);
        body.extend(value.bytes().filter(|&b| b != 0));
        body.push(0);
    }
    body.push(0);
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(b'E');
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Answers a client that is waiting to start a session: an ErrorResponse to a StartupMessage,
/// nothing to a CancelRequest (PostgreSQL never answers those either). `greeting` holds the
/// bytes of the first packet already read, if any.
pub async fn refuse<S>(stream: &mut S, greeting: &[u8], message: &str) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = read_packet(&mut greeting.chain(&mut *stream)).await.ok();
    if let Some(Packet::Startup(_)) = first {
        stream.write_all(&error_response(message)).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use postgres_protocol::message::frontend;

    async fn parse(bytes: &[u8]) -> Result<Packet, PacketError> {
        read_packet(&mut &bytes[..]).await
    }

    #[tokio::test]
    async fn preambles_are_recognised_as_libpq_writes_them() {
        let mut buf = BytesMut::new();
        frontend::ssl_request(&mut buf);
        assert_eq!(parse(&buf).await.unwrap(), Packet::SslRequest);
        assert_eq!(
            parse(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x30]).await.unwrap(),
            Packet::GssEncRequest
        );
        let mut buf = BytesMut::new();
        frontend::cancel_request(42, 7, &mut buf);
        assert_eq!(parse(&buf).await.unwrap(), Packet::Cancel(buf.to_vec()));
        let mut buf = BytesMut::new();
        frontend::startup_message([("user", "u")], &mut buf).unwrap();
        assert_eq!(parse(&buf).await.unwrap(), Packet::Startup(buf.to_vec()));
    }

    #[tokio::test]
    async fn lengths_postgres_would_refuse_are_refused_at_every_prefix() {
        for bad in [&[0u8, 0, 0, 7][..], &[0, 1, 0, 0], &[0x16, 3, 1, 0]] {
            assert!(matches!(parse(bad).await, Err(PacketError::BadLength(_))));
        }
        let ssl = [0u8, 0, 0, 8, 4, 0xd2, 0x16, 0x2f];
        for cut in 0..ssl.len() {
            assert!(matches!(parse(&ssl[..cut]).await, Err(PacketError::Io(_))));
        }
    }

    #[test]
    fn a_startup_message_and_a_restarting_servers_refusal_are_recognised() {
        let mut buf = BytesMut::new();
        frontend::startup_message([("user", "u")], &mut buf).unwrap();
        assert!(is_startup(&buf));
        assert!(!is_startup(&buf[..buf.len() - 1]));
        let mut cancel = BytesMut::new();
        frontend::cancel_request(42, 7, &mut cancel);
        assert!(!is_startup(&cancel));
        // The fields PostgreSQL sends while it shuts down.
        let fields = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is shutting down\0\
            Fpostmaster.c\0L2460\0RProcessStartupPacket\0\0";
        let mut shutting_down = vec![b'E'];
        shutting_down.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
        shutting_down.extend_from_slice(fields);
        assert!(cannot_connect_now(&shutting_down));
        assert!(!cannot_connect_now(&error_response("snigate: down")));
        assert!(!cannot_connect_now(b"R\0\0\0\x08\0\0\0\0"));
    }

    #[test]
    fn error_response_is_a_well_formed_fatal_08006() {
        let bytes = error_response("snigate: pg: backend down");
        let body = b"SFATAL\0VFATAL\0C08006\0Msnigate: pg: backend down\0\0";
        assert_eq!(bytes[0], b'E');
        assert_eq!(&bytes[1..5], &(body.len() as u32 + 4).to_be_bytes());
        assert_eq!(&bytes[5..], body);
    }
}

//! The Redis error reply a client sees when snigate cannot reach the far side.

use bytes::BytesMut;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::extend_encode_borrowed;
use redis_protocol::resp2::types::BorrowedFrame;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Enough for any first command a client sends on connect (AUTH, HELLO, CLIENT SETINFO, PING).
const MAX_FIRST_COMMAND: usize = 64 * 1024;

/// `-LOADING <message>\r\n` for a condition that will pass, `-ERR <message>\r\n` for one that
/// will not; line breaks are replaced so the reply stays one RESP line.
///
/// The prefix decides what clients do next: redis-py (and so kombu/Celery) turns `LOADING`
/// into BusyLoadingError, a ConnectionError that is retried exactly like a Redis restart,
/// while `ERR` becomes ResponseError, which a Celery worker treats as fatal. Redis itself
/// answers `LOADING` while it cannot serve yet.
pub fn error_reply(message: &str, transient: bool) -> BytesMut {
    let line: String = message
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    let mut out = BytesMut::with_capacity(line.len() + 8);
    // Encoding a simple error into a growable buffer cannot fail.
    let code = if transient { "LOADING" } else { "ERR" };
    let _ = extend_encode_borrowed(
        &mut out,
        &BorrowedFrame::Error(&format!("{code} {line}")),
        false,
    );
    out
}

/// Waits for the client's first command (a client reads a reply only after it has written one),
/// answers it with the error and closes.
pub async fn refuse<S>(
    stream: &mut S,
    greeting: &[u8],
    message: &str,
    transient: bool,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    read_first_command(stream, greeting).await?;
    stream.write_all(&error_reply(message, transient)).await?;
    stream.shutdown().await
}

/// Reads until one whole command (RESP array or inline line) has arrived, EOF, or the cap.
async fn read_first_command<S: AsyncRead + Unpin>(
    stream: &mut S,
    greeting: &[u8],
) -> std::io::Result<()> {
    let mut buf = BytesMut::from(greeting);
    while buf.len() < MAX_FIRST_COMMAND && !is_complete(&buf) {
        if stream.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    Ok(())
}

/// Whether `buf` holds at least one whole command (a RESP array, or an inline line).
pub fn is_complete(buf: &[u8]) -> bool {
    if buf.first() != Some(&b'*') {
        return buf.contains(&b'\n');
    }
    !matches!(decode(buf), Ok(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_is_one_resp_error_line() {
        assert_eq!(
            &error_reply("snigate: redis: backend 10.0.0.1:6379 unreachable", true)[..],
            b"-LOADING snigate: redis: backend 10.0.0.1:6379 unreachable\r\n"
        );
        assert_eq!(&error_reply("a\r\nb", false)[..], b"-ERR a  b\r\n");
    }

    #[test]
    fn a_command_is_complete_only_once_every_byte_is_there() {
        let cmd = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        for cut in 0..cmd.len() {
            assert!(!is_complete(&cmd[..cut]), "prefix of {cut} bytes");
        }
        assert!(is_complete(cmd));
        assert!(is_complete(b"PING\r\n"));
        assert!(!is_complete(b"PI"));
    }

    #[tokio::test]
    async fn refuse_answers_the_first_command_then_closes() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"\r\n$4\r\nPING\r\n").await.unwrap();
        refuse(&mut server, b"*1", "snigate: r: down", true)
            .await
            .unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"-LOADING snigate: r: down\r\n");
    }
}

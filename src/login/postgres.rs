//! PostgreSQL login: the gateway reads the client's StartupMessage, sends it to the server
//! with `user` replaced by the route's role, authenticates itself, and answers the client
//! with AuthenticationOk followed by the server's own ParameterStatus, BackendKeyData and
//! ReadyForQuery. The client is never asked for a password, so it never sends one.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pg_auth::{authenticate, Conn};
use super::{bounded, with_passwords, Backend, LoggedIn, Login, LoginError, Target};
use crate::tls::ServerStream;
use std::sync::Arc;

/// PostgreSQL's own limit on a startup packet (MAX_STARTUP_LENGTH).
const MAX_STARTUP_LEN: usize = 10_000;
const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// AuthenticationOk: type `R`, length 8, status 0.
const AUTHENTICATION_OK: [u8; 9] = [b'R', 0, 0, 0, 8, 0, 0, 0, 0];
/// Startup parameters never forwarded: `user` is replaced, and a `password` parameter (no
/// client needs one) would otherwise reach the server as a setting.
const DROPPED: [&[u8]; 2] = [b"user", b"password"];

/// Logs in for the client whose first packet starts `greeting`. A CancelRequest is left for
/// the caller to forward unchanged: it needs no login.
pub async fn log_in(
    target: &Target<'_>,
    login: &Arc<Login>,
    tls: &mut ServerStream,
    backend: TcpStream,
    greeting: &mut Vec<u8>,
) -> Result<LoggedIn, LoginError> {
    let len = read_packet(tls, greeting).await?;
    if code(&greeting[..len]) == CANCEL_REQUEST_CODE {
        return Ok(LoggedIn {
            backend: Backend::Plain(backend),
            issued: None,
            consumed: 0,
        });
    }
    let user = login.user.as_deref().unwrap_or_default();
    let startup = startup_for(&greeting[..len], user)?;
    let (mut conn, mut reply) = with_passwords(target, login, backend, |tcp, password| {
        let startup = &startup;
        async move {
            let mut conn = Conn::new(tcp);
            let exchange = async {
                authenticate(&mut conn, startup, user, &password)
                    .await
                    .map_err(|e| e.into_login(|e| target.failed(e)))
            };
            let negotiated = bounded(target, exchange).await?;
            Ok((conn, negotiated))
        }
    })
    .await?;
    reply.extend_from_slice(&AUTHENTICATION_OK);
    let start = async {
        session_start(&mut conn, &mut reply)
            .await
            .map_err(|e| target.failed(e))
    };
    let key = bounded(target, start).await?;
    let issued = match (key, conn.tcp.peer_addr()) {
        (Some(key), Ok(server)) => Some(target.cancels.issue(&key, server)),
        _ => None,
    };
    tls.write_all(&reply)
        .await
        .map_err(LoginError::ClientGone)?;
    tls.flush().await.map_err(LoginError::ClientGone)?;
    Ok(LoggedIn {
        backend: Backend::Plain(conn.tcp),
        issued,
        consumed: len,
    })
}

/// Reads until `greeting` holds the client's whole first packet; returns its length.
async fn read_packet(tls: &mut ServerStream, greeting: &mut Vec<u8>) -> Result<usize, LoginError> {
    let mut len = None;
    loop {
        if len.is_none() && greeting.len() >= 4 {
            let n =
                u32::from_be_bytes([greeting[0], greeting[1], greeting[2], greeting[3]]) as usize;
            if !(8..=MAX_STARTUP_LEN).contains(&n) {
                return Err(LoginError::Client(format!(
                    "length {n} is outside 8..=10000"
                )));
            }
            len = Some(n);
        }
        match len {
            Some(n) if greeting.len() >= n => return Ok(n),
            _ => {}
        }
        if tls
            .read_buf(greeting)
            .await
            .map_err(LoginError::ClientGone)?
            == 0
        {
            return Err(LoginError::Client(
                "closed within the startup packet".into(),
            ));
        }
    }
}

fn code(packet: &[u8]) -> u32 {
    u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]])
}

/// The client's StartupMessage with `user` replaced and every other parameter kept (an absent
/// `database` stays absent: the server then uses the role's name, as it always does).
fn startup_for(packet: &[u8], user: &str) -> Result<Vec<u8>, LoginError> {
    let version = code(packet);
    if version >> 16 != 3 {
        let what = format!(
            "protocol version {}.{} (or a request code)",
            version >> 16,
            version & 0xffff
        );
        return Err(LoginError::Client(what));
    }
    let mut out = Vec::with_capacity(packet.len() + user.len());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&packet[4..8]);
    push_param(&mut out, b"user", user.as_bytes());
    for (name, value) in params(&packet[8..])? {
        if !DROPPED.contains(&name) {
            push_param(&mut out, name, value);
        }
    }
    out.push(0);
    let len = out.len() as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

fn push_param(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for part in [name, value] {
        out.extend_from_slice(part);
        out.push(0);
    }
}

/// A startup parameter: name and value.
type Param<'a> = (&'a [u8], &'a [u8]);

/// The name/value pairs of a StartupMessage body, which ends with an empty name.
fn params(mut body: &[u8]) -> Result<Vec<Param<'_>>, LoginError> {
    let malformed = || LoginError::Client("startup parameters are not NUL-terminated pairs".into());
    let mut pairs = Vec::new();
    loop {
        let (name, rest) = cstr(body).ok_or_else(malformed)?;
        if name.is_empty() {
            return if rest.is_empty() {
                Ok(pairs)
            } else {
                Err(malformed())
            };
        }
        let (value, rest) = cstr(rest).ok_or_else(malformed)?;
        pairs.push((name, value));
        body = rest;
    }
}

fn cstr(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = bytes.iter().position(|&b| b == 0)?;
    Some((&bytes[..end], &bytes[end + 1..]))
}

/// Appends the server's messages after AuthenticationOk to `reply`, through ReadyForQuery
/// (or the ErrorResponse that ends the session, e.g. a missing database). Returns the
/// BackendKeyData body (process id and secret, any length) if the server sent one.
async fn session_start(conn: &mut Conn, reply: &mut Vec<u8>) -> std::io::Result<Option<Vec<u8>>> {
    let mut key = None;
    loop {
        let raw = conn.next().await?;
        reply.extend_from_slice(&raw.bytes);
        match raw.tag {
            b'K' => key = Some(raw.body().to_vec()),
            b'Z' | b'E' => return Ok(key),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use postgres_protocol::message::frontend;

    fn startup(params: &[(&str, &str)]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        frontend::startup_message(params.iter().copied(), &mut buf).unwrap();
        buf.to_vec()
    }

    #[test]
    fn user_is_replaced_password_dropped_and_the_rest_kept_in_order() {
        let client = startup(&[
            ("user", "intruder"),
            ("database", "celery"),
            ("password", "hunter2"),
            ("application_name", "psql"),
        ]);
        let to_server = startup_for(&client, "celery").unwrap();
        let expected = startup(&[
            ("user", "celery"),
            ("database", "celery"),
            ("application_name", "psql"),
        ]);
        assert_eq!(to_server, expected);
    }

    #[test]
    fn malformed_startup_packets_are_refused() {
        let mut bad = startup(&[("user", "u")]);
        bad.pop();
        assert!(startup_for(&bad, "celery").is_err());
        let mut v2 = startup(&[("user", "u")]);
        v2[4..8].copy_from_slice(&0x0002_0000u32.to_be_bytes());
        assert!(startup_for(&v2, "celery").is_err());
    }
}

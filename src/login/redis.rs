//! Redis login: the gateway authenticates the connection before the client's first command
//! reaches Redis, then relays through a [`Session`] that keeps the client's own credentials
//! from Redis.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::redis_commands::{push_command, Commands, Step};
use super::redis_policy::Policy;
use super::redis_replies::Replies;
use super::{bounded, with_passwords, Login, LoginError, Password, Target};
use crate::protocol::redis::error_reply;

/// Longer replies to AUTH are not what Redis sends.
const MAX_AUTH_REPLY: usize = 4096;

/// Authenticates `backend` as the route's user and wraps it for the relay.
pub async fn log_in(
    target: &Target<'_>,
    login: &Arc<Login>,
    backend: TcpStream,
) -> Result<Session<TcpStream>, LoginError> {
    let user = login.user.as_deref();
    let (tcp, password) = with_passwords(target, login, backend, |mut tcp, password| async move {
        let auth = authenticate(&mut tcp, user, &password);
        bounded(target, async { auth.await.map_err(|e| target.failed(e))? }).await?;
        Ok((tcp, password))
    })
    .await?;
    let message = format!("snigate: {}: AUTH is managed by the gateway", target.route);
    let (placeholder, replies) = Replies::new(&nonce(), error_reply(&message, false).to_vec());
    let policy = Policy::new(login.user.clone(), password, placeholder);
    Ok(Session::new(tcp, Commands::new(policy), replies))
}

/// 32 hex digits from the system's CSPRNG.
fn nonce() -> Vec<u8> {
    let mut bytes = [0u8; 16];
    // The system RNG fails only where nothing in TLS could work either; the nonce then is
    // all zeros, still unknown to clients, who never see a placeholder reply.
    let _ = SystemRandom::new().fill(&mut bytes);
    bytes
        .iter()
        .flat_map(|b| format!("{b:02x}").into_bytes())
        .collect()
}

/// Sends `AUTH [user] password` and reads the reply: `Ok(Ok(()))` for `+OK`,
/// `Ok(Err(refusal))` for Redis' error.
pub async fn authenticate(
    tcp: &mut TcpStream,
    user: Option<&str>,
    password: &Password,
) -> io::Result<Result<(), LoginError>> {
    let mut command = BytesMut::new();
    match user {
        Some(user) => push_command(&mut command, &[b"AUTH", user.as_bytes(), password.expose()]),
        None => push_command(&mut command, &[b"AUTH", password.expose()]),
    }
    tcp.write_all(&command).await?;
    let mut reply = BytesMut::new();
    loop {
        if tcp.read_buf(&mut reply).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match decode(&reply) {
            Ok(Some((frame, _))) => return Ok(outcome(frame)),
            Ok(None) if reply.len() < MAX_AUTH_REPLY => continue,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a RESP reply",
                ))
            }
        }
    }
}

fn outcome(frame: OwnedFrame) -> Result<(), LoginError> {
    match frame {
        OwnedFrame::SimpleString(ok) if ok == b"OK" => Ok(()),
        OwnedFrame::Error(message) => Err(LoginError::Refused {
            wrong_password: message.starts_with("WRONGPASS"),
            message,
        }),
        other => Err(LoginError::Refused {
            message: format!("unexpected reply to AUTH: {other:?}"),
            wrong_password: false,
        }),
    }
}

/// The backend side of a relayed Redis login connection.
pub struct Session<B> {
    backend: B,
    commands: Commands,
    /// Rewritten client bytes not yet written to the server.
    to_server: BytesMut,
    replies: Replies,
}

impl<B> Session<B> {
    fn new(backend: B, commands: Commands, replies: Replies) -> Session<B> {
        Session {
            backend,
            commands,
            to_server: BytesMut::new(),
            replies,
        }
    }
}

impl<B: AsyncWrite + Unpin> Session<B> {
    fn poll_to_server(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.to_server.is_empty() {
            let n = ready!(Pin::new(&mut self.backend).poll_write(cx, &self.to_server))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.to_server.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<B: AsyncWrite + Unpin> AsyncWrite for Session<B> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_to_server(cx))?;
        let step = this
            .commands
            .scan(buf, &mut this.to_server)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        this.replies.expect(this.commands.take_refused());
        match step {
            Step::Pass(n) => {
                let written = ready!(Pin::new(&mut this.backend).poll_write(cx, &buf[..n]))?;
                this.commands.passed(written);
                Poll::Ready(Ok(written))
            }
            Step::Took(n) => Poll::Ready(Ok(n)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_to_server(cx))?;
        Pin::new(&mut this.backend).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_to_server(cx))?;
        Pin::new(&mut this.backend).poll_shutdown(cx)
    }
}

impl<B: AsyncRead + Unpin> AsyncRead for Session<B> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.replies.active() {
            return Pin::new(&mut this.backend).poll_read(cx, buf);
        }
        loop {
            if !this.replies.ready.is_empty() {
                let n = this.replies.ready.len().min(buf.remaining());
                buf.put_slice(&this.replies.ready.split_to(n));
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 4096];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.backend).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.replies.finish();
                if this.replies.ready.is_empty() {
                    return Poll::Ready(Ok(()));
                }
            } else {
                this.replies.feed(read.filled());
            }
        }
    }
}

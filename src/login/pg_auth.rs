//! The gateway as a PostgreSQL client: reading backend messages and authenticating with
//! SCRAM-SHA-256 (no channel binding: the backend leg is in-cluster TCP), MD5, cleartext or
//! trust, whichever the server asks for.

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{ErrorResponseBody, Header, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{LoginError, Password};

/// Larger messages are not what a server sends while a session starts.
const MAX_MESSAGE: usize = 1 << 20;
/// SQLSTATE invalid_password: what a wrong password (any method) is refused with.
const INVALID_PASSWORD: &[u8] = b"28P01";

/// A backend connection read one whole message at a time.
pub struct Conn {
    /// The connection to the server.
    pub tcp: TcpStream,
    buf: BytesMut,
}

/// One whole backend message, header included.
pub struct Raw {
    /// The message type byte.
    pub tag: u8,
    /// The whole message as it arrived.
    pub bytes: BytesMut,
}

impl Raw {
    /// The body, after type and length.
    pub fn body(&self) -> &[u8] {
        &self.bytes[5..]
    }
}

impl Conn {
    /// Wraps a connected stream.
    pub fn new(tcp: TcpStream) -> Conn {
        Conn {
            tcp,
            buf: BytesMut::with_capacity(1024),
        }
    }

    /// The next whole message; an I/O error on EOF or an oversized message.
    pub async fn next(&mut self) -> std::io::Result<Raw> {
        loop {
            if let Some(header) = Header::parse(&self.buf)? {
                let len = header.len() as usize + 1;
                if len > MAX_MESSAGE {
                    return Err(invalid("message too large during startup"));
                }
                if self.buf.len() >= len {
                    let bytes = self.buf.split_to(len);
                    return Ok(Raw {
                        tag: header.tag(),
                        bytes,
                    });
                }
            }
            if self.tcp.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    async fn send(
        &mut self,
        write: impl FnOnce(&mut BytesMut) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        write(&mut out)?;
        self.tcp.write_all(&out).await
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

/// Sends `startup` and authenticates as `user`. Returns the NegotiateProtocolVersion message
/// if the server sent one (the client must see it). On success the server has just sent
/// AuthenticationOk; what follows is still unread.
pub async fn authenticate(
    conn: &mut Conn,
    startup: &[u8],
    user: &str,
    password: &Password,
) -> Result<Vec<u8>, AuthError> {
    conn.tcp.write_all(startup).await?;
    let mut negotiated = Vec::new();
    let mut scram: Option<ScramSha256> = None;
    loop {
        let raw = conn.next().await?;
        match raw.tag {
            b'v' => negotiated.extend_from_slice(&raw.bytes),
            b'N' => {}
            b'R' | b'E' => match Message::parse(&mut raw.bytes.clone())? {
                Some(Message::AuthenticationOk) => return Ok(negotiated),
                Some(Message::ErrorResponse(body)) => return Err(refused(&body)),
                Some(message) => step(conn, message, user, password, &mut scram).await?,
                None => return Err(invalid("truncated message").into()),
            },
            other => {
                let what = format!(
                    "unexpected message {:?} before AuthenticationOk",
                    other as char
                );
                return Err(invalid(&what).into());
            }
        }
    }
}

/// Answers one authentication request.
async fn step(
    conn: &mut Conn,
    request: Message,
    user: &str,
    password: &Password,
    scram: &mut Option<ScramSha256>,
) -> Result<(), AuthError> {
    let secret = password.expose();
    match request {
        Message::AuthenticationCleartextPassword => {
            conn.send(|out| frontend::password_message(secret, out))
                .await?
        }
        Message::AuthenticationMd5Password(body) => {
            let hash = md5_hash(user.as_bytes(), secret, body.salt());
            conn.send(|out| frontend::password_message(hash.as_bytes(), out))
                .await?
        }
        Message::AuthenticationSasl(body) => {
            let mut offered = body.mechanisms();
            let mut scram_offered = false;
            while let Some(mechanism) = offered.next()? {
                scram_offered |= mechanism == SCRAM_SHA_256;
            }
            if !scram_offered {
                return Err(AuthError::Unsupported(
                    "a SASL mechanism other than SCRAM-SHA-256",
                ));
            }
            let client = ScramSha256::new(secret, ChannelBinding::unsupported());
            conn.send(|out| frontend::sasl_initial_response(SCRAM_SHA_256, client.message(), out))
                .await?;
            *scram = Some(client);
        }
        Message::AuthenticationSaslContinue(body) => {
            let client = scram
                .as_mut()
                .ok_or_else(|| invalid("SASLContinue before SASL"))?;
            client.update(body.data())?;
            conn.send(|out| frontend::sasl_response(client.message(), out))
                .await?;
        }
        Message::AuthenticationSaslFinal(body) => {
            let client = scram
                .as_mut()
                .ok_or_else(|| invalid("SASLFinal before SASL"))?;
            // Verifies the server's signature: it proves the server knows the password too.
            client.finish(body.data())?;
        }
        Message::AuthenticationKerberosV5 => return Err(AuthError::Unsupported("Kerberos")),
        Message::AuthenticationGss | Message::AuthenticationGssContinue(_) => {
            return Err(AuthError::Unsupported("GSSAPI"))
        }
        Message::AuthenticationSspi => return Err(AuthError::Unsupported("SSPI")),
        _ => return Err(invalid("unexpected authentication request").into()),
    }
    Ok(())
}

/// How the gateway's own authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{message}")]
    Refused {
        message: String,
        wrong_password: bool,
    },
    #[error("{0}")]
    Unsupported(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl AuthError {
    /// As a login error, with `io` for the connection's failures.
    pub fn into_login(self, io: impl FnOnce(std::io::Error) -> LoginError) -> LoginError {
        match self {
            AuthError::Refused {
                message,
                wrong_password,
            } => LoginError::Refused {
                message,
                wrong_password,
            },
            AuthError::Unsupported(what) => LoginError::Unsupported(what.to_owned()),
            AuthError::Io(e) => io(e),
        }
    }
}

/// The server's message (`M`) and whether its SQLSTATE (`C`) says the password was wrong.
pub fn refused(body: &ErrorResponseBody) -> AuthError {
    let (mut message, mut wrong_password) = (String::new(), false);
    let mut fields = body.fields();
    while let Ok(Some(field)) = fields.next() {
        match field.type_() {
            b'M' => message = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            b'C' => wrong_password = field.value_bytes() == INVALID_PASSWORD,
            _ => {}
        }
    }
    AuthError::Refused {
        message,
        wrong_password,
    }
}

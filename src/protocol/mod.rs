//! Protocol knowledge snigate needs: PostgreSQL preambles, each protocol's native error, and
//! `snigate/1` between sidecar and gateway.

pub mod postgres;
pub mod redis;
pub mod snigate;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::config::Protocol;

/// Tells a client why it will not be served, in its own protocol, then closes. `greeting` is
/// what the caller already read from the client (possibly nothing); `transient` says whether
/// retrying later may succeed (far side down) or not (refused identity). A plain `tcp` route
/// has no error message format, so it is simply closed.
pub async fn refuse<S>(
    protocol: Protocol,
    stream: &mut S,
    greeting: &[u8],
    message: &str,
    transient: bool,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match protocol {
        Protocol::Redis => redis::refuse(stream, greeting, message, transient).await,
        Protocol::Postgres => postgres::refuse(stream, greeting, message).await,
        Protocol::Tcp => stream.shutdown().await,
    }
}

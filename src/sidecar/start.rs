//! The sidecar's side of `snigate/1`: a connection to the gateway that has carried nothing
//! yet, and the exchange that hands it a client's first bytes.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::failure::Failure;
use crate::config::HostPort;
use crate::dial::timed_out;
use crate::protocol::snigate::{self, GOAWAY, START, STARTED};
use crate::tls::ClientStream;

/// A TLS connection to the gateway on which no client's byte has been sent.
pub struct Fresh {
    /// The connection.
    pub stream: Box<ClientStream>,
    /// The gateway selected `snigate/1`; an older one speaks no START framing.
    pub framed: bool,
}

impl Fresh {
    /// Wraps a connection that has just finished its handshake.
    pub fn new(stream: Box<ClientStream>) -> Fresh {
        let framed = snigate::negotiated(stream.get_ref().1.alpn_protocol());
        Fresh { stream, framed }
    }

    /// Sends START and the client's first bytes in one write, then waits up to `deadline`
    /// for STARTED. GOAWAY or a failed write prove that nothing reached the backend (the
    /// client's bytes may go on another connection); a connection that ends after START
    /// without an answer may have delivered them, so that failure is never retried.
    pub async fn start(
        mut self,
        first: &[u8],
        addr: &HostPort,
        deadline: Duration,
    ) -> Result<Box<ClientStream>, Failure> {
        let mut out = Vec::with_capacity(first.len() + 1);
        if self.framed {
            out.push(START);
        }
        out.extend_from_slice(first);
        let unsent = |source| Failure::Unsent {
            addr: addr.clone(),
            source,
        };
        self.stream.write_all(&out).await.map_err(unsent)?;
        self.stream.flush().await.map_err(unsent)?;
        if !self.framed {
            return Ok(self.stream);
        }
        let lost = |source| Failure::Lost {
            addr: addr.clone(),
            source,
        };
        let mut answer = [0u8; 1];
        let read = tokio::time::timeout(deadline, self.stream.read(&mut answer))
            .await
            .map_err(|_| lost(timed_out(deadline)))?;
        match (read.map_err(lost)?, answer[0]) {
            (1, STARTED) => Ok(self.stream),
            (1, GOAWAY) => Err(Failure::GoAway { addr: addr.clone() }),
            (0, _) => Err(lost(io::ErrorKind::UnexpectedEof.into())),
            (_, other) => Err(lost(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the gateway answered START with {other:#04x}"),
            ))),
        }
    }
}

//! Cancel keys issued on login routes, so that a plaintext CancelRequest (libpq ≤ 16, and
//! psql's Ctrl-C up to now, send it without TLS, hence without SNI) reaches the PostgreSQL
//! server that issued the key. Only an exact key of a connection open on this gateway process
//! is forwarded: a guess never reaches a backend, and a key carries no more authority here
//! than PostgreSQL itself grants it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::dial::timed_out;

/// Offset of the process id in a CancelRequest (after length and request code).
const KEY_OFFSET: usize = 8;

/// The keys of the open login connections of this process: BackendKeyData body → server.
#[derive(Default)]
pub struct CancelKeys(Mutex<HashMap<Vec<u8>, SocketAddr>>);

/// Keeps a key issued while its connection lives.
pub struct Issued {
    keys: Arc<CancelKeys>,
    key: Vec<u8>,
}

impl Drop for Issued {
    fn drop(&mut self) {
        self.keys.map().remove(&self.key);
    }
}

impl CancelKeys {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, SocketAddr>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers that `server` issued `key` (process id and secret, as in BackendKeyData).
    pub fn issue(self: &Arc<Self>, key: &[u8], server: SocketAddr) -> Issued {
        self.map().insert(key.to_vec(), server);
        Issued {
            keys: self.clone(),
            key: key.to_vec(),
        }
    }

    /// The server that issued the key of `request` (a whole CancelRequest), if it is open here.
    pub fn server_for(&self, request: &[u8]) -> Option<SocketAddr> {
        let key = request.get(KEY_OFFSET..)?;
        self.map().get(key).copied()
    }

    /// Sends `request` to the server that issued its key; PostgreSQL answers nothing.
    pub async fn forward(&self, request: &[u8], deadline: Duration) -> io::Result<SocketAddr> {
        let server = self.server_for(request).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "no open connection has this key")
        })?;
        let send = async {
            let mut tcp = TcpStream::connect(server).await?;
            tcp.write_all(request).await?;
            tcp.shutdown().await
        };
        tokio::time::timeout(deadline, send)
            .await
            .map_err(|_| timed_out(deadline))??;
        Ok(server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_known_exactly_while_its_connection_lives() {
        let keys = Arc::new(CancelKeys::default());
        let server: SocketAddr = "127.0.0.1:5432".parse().unwrap();
        let request = [0, 0, 0, 16, 4, 0xd2, 0x16, 0x2e, 0, 0, 0, 42, 1, 2, 3, 4];
        let issued = keys.issue(&[0, 0, 0, 42, 1, 2, 3, 4], server);
        assert_eq!(keys.server_for(&request), Some(server));
        let mut guess = request;
        guess[15] ^= 1;
        assert_eq!(keys.server_for(&guess), None);
        drop(issued);
        assert_eq!(keys.server_for(&request), None);
    }
}

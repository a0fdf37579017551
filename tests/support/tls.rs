//! A tokio-rustls client with the knobs the refusal tests need: SNI on/off/any name,
//! optional client certificate, ALPN list. Plus raw-TCP helpers.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::Pki;

/// Bound for one network exchange in a test.
pub const IO: Duration = Duration::from_secs(20);

pub struct ClientOpts<'a> {
    /// CA to verify the gateway with.
    pub ca: PathBuf,
    /// Client certificate + key to present (from this Pki), if any.
    pub client: Option<&'a Pki>,
    pub alpn: Vec<Vec<u8>>,
    /// Send SNI (false: the ClientHello carries no server_name extension at all).
    pub sni: bool,
}

impl<'a> ClientOpts<'a> {
    /// Trust `pki`'s CA and present its client certificate; SNI on; no ALPN.
    pub fn new(pki: &'a Pki) -> Self {
        ClientOpts {
            ca: pki.ca(),
            client: Some(pki),
            alpn: Vec::new(),
            sni: true,
        }
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).expect("read CA") {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut cfg = match self.client {
            Some(pki) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_file_iter(pki.client_cert())
                        .unwrap()
                        .map(|c| c.unwrap())
                        .collect();
                let key = PrivateKeyDer::from_pem_file(pki.client_key()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = self.alpn.clone();
        cfg.enable_sni = self.sni;
        Arc::new(cfg)
    }

    /// TCP connect to `addr`, TLS handshake for `name` (verified against the CA).
    pub async fn connect(&self, addr: SocketAddr, name: &str) -> io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        self.handshake(tcp, name).await
    }

    pub async fn handshake(&self, tcp: TcpStream, name: &str) -> io::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from(name.to_owned()).expect("server name");
        let fut = TlsConnector::from(self.config()).connect(name, tcp);
        tokio::time::timeout(IO, fut)
            .await
            .expect("TLS handshake hung")
    }
}

/// The TLS alert the peer sent, if `err` is rustls' AlertReceived.
pub fn alert(err: &io::Error) -> Option<AlertDescription> {
    match err.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(a) => Some(*a),
        _ => None,
    }
}

/// Write `req`, then read until EOF (or error). Returns the bytes and the error, if any.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    req: &[u8],
) -> (Vec<u8>, Option<io::Error>) {
    let mut buf = Vec::new();
    let fut = async {
        if let Err(e) = s.write_all(req).await {
            return Some(e);
        }
        if let Err(e) = s.flush().await {
            return Some(e);
        }
        s.read_to_end(&mut buf).await.err()
    };
    let err = tokio::time::timeout(IO, fut)
        .await
        .expect("peer neither replied nor closed");
    (buf, err)
}

/// Send one RESP command and read exactly one reply line (`+...`/`-...`), keeping the
/// connection open.
pub async fn resp_line<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, args: &[&str]) -> String {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req += &format!("${}\r\n{a}\r\n", a.len());
    }
    s.write_all(req.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    let mut line = Vec::new();
    let fut = async {
        while !line.ends_with(b"\r\n") {
            let mut b = [0u8; 1];
            let n = s.read(&mut b).await.expect("read reply");
            assert_eq!(n, 1, "EOF after {:?}", String::from_utf8_lossy(&line));
            line.push(b[0]);
        }
    };
    tokio::time::timeout(IO, fut).await.expect("no RESP reply");
    String::from_utf8(line).unwrap()
}

pub const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
pub const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];

/// Write `req` and read exactly one byte back (the answer to an SSL/GSSENC request).
pub async fn one_byte_answer<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, req: &[u8]) -> u8 {
    s.write_all(req).await.unwrap();
    let mut b = [0u8; 1];
    let fut = s.read_exact(&mut b);
    tokio::time::timeout(IO, fut)
        .await
        .expect("no answer")
        .expect("read answer");
    b[0]
}

/// A tokio-postgres session (user/db postgres) over an already negotiated stream.
pub async fn pg_session<S>(stream: S) -> tokio_postgres::Client
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut cfg = tokio_postgres::Config::new();
    cfg.user("postgres").dbname("postgres");
    cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let fut = cfg.connect_raw(stream, tokio_postgres::NoTls);
    let (client, conn) = tokio::time::timeout(IO, fut)
        .await
        .expect("startup hung")
        .unwrap();
    tokio::spawn(conn);
    client
}

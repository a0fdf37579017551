//! A tokio-rustls client with the knobs the refusal tests need: SNI on/off/any name, client
//! certificate or none, ALPN list, TLS 1.2 only; plus raw exchanges over any stream.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{AlertDescription, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::support::{Pki, IO};

pub struct ClientOpts<'a> {
    /// CA to verify the gateway with.
    pub ca: PathBuf,
    /// Client certificate + key to present (from this Pki), if any.
    pub client: Option<&'a Pki>,
    pub alpn: Vec<Vec<u8>>,
    /// Send SNI (false: the ClientHello carries no server_name extension at all).
    pub sni: bool,
    /// Offer TLS 1.2 only.
    pub tls12_only: bool,
}

impl<'a> ClientOpts<'a> {
    /// Trust `pki`'s CA and present its client certificate; SNI on; no ALPN.
    pub fn new(pki: &'a Pki) -> Self {
        ClientOpts {
            ca: pki.ca(),
            client: Some(pki),
            alpn: Vec::new(),
            sni: true,
            tls12_only: false,
        }
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).expect("read CA") {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider);
        let builder = match self.tls12_only {
            true => builder.with_protocol_versions(&[&rustls::version::TLS12]),
            false => builder.with_safe_default_protocol_versions(),
        };
        let builder = builder.unwrap().with_root_certificates(roots);
        let mut cfg = match self.client {
            Some(pki) => {
                let chain = CertificateDer::pem_file_iter(pki.client_cert()).unwrap();
                let chain = chain.map(|c| c.unwrap()).collect();
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

    /// A handshake (and, if it completes, a PING) that the gateway must refuse: the alert it
    /// sent. With TLS 1.3 a client finishes its side first and reads the alert afterwards.
    pub async fn refused_alert(&self, addr: SocketAddr, name: &str) -> AlertDescription {
        let err = match self.connect(addr, name).await {
            Err(e) => e,
            Ok(mut tls) => {
                let (bytes, err) = exchange(&mut tls, b"*1\r\n$4\r\nPING\r\n").await;
                assert_eq!(bytes, b"", "refused client got application data");
                err.expect("a client-certificate failure must arrive as an alert")
            }
        };
        alert(&err).unwrap_or_else(|| panic!("expected a TLS alert, got {err:?}"))
    }
}

/// The TLS alert the peer sent, if `err` is rustls' AlertReceived.
pub fn alert(err: &io::Error) -> Option<AlertDescription> {
    match err.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(a) => Some(*a),
        _ => None,
    }
}

/// Writes `req`, then reads until EOF (or error). Returns the bytes and the error, if any.
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

/// Sends one RESP command and reads exactly one reply line (`+…`/`-…`), keeping the
/// connection open; an EOF first gives what came before it.
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
            match s.read(&mut b).await {
                Ok(1) => line.push(b[0]),
                _ => return,
            }
        }
    };
    tokio::time::timeout(IO, fut).await.expect("no RESP reply");
    String::from_utf8_lossy(&line).into_owned()
}

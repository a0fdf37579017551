//! Hot reload while connections carry traffic: certificates swapped the way Kubernetes
//! updates a mounted Secret (`..data` symlink swap), SIGHUP with routes and tunnels added,
//! removed and changed, and broken certificates and configs refused (counted once) while
//! the running version keeps serving. Every byte in flight must arrive. Files are watched
//! every 100 ms here; tests wait on the reload counters, never on the clock.

mod crl;
mod traffic;

use std::io;
use std::net::SocketAddr;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::AlertDescription;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::support::clients::resp::{Reply, Resp};
use crate::support::clients::tls::{alert, ClientOpts};
use crate::support::running::Process;
use crate::support::*;

fn leaf(path: &Path) -> Vec<u8> {
    let first = CertificateDer::pem_file_iter(path).unwrap().next().unwrap();
    first.unwrap().to_vec()
}

/// A new direct TLS client (with `pki`'s client certificate) of route `sni`; returns the
/// connection and the leaf certificate the gateway served.
async fn direct(
    pki: &Pki,
    gw: SocketAddr,
    sni: &str,
) -> io::Result<(Resp<TlsStream<TcpStream>>, Vec<u8>)> {
    let tls = ClientOpts::new(pki).connect(gw, sni).await?;
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    Ok((Resp::new(tls), served))
}

/// A new connection on route `sni` answers PING with PONG, served with `pki`'s certificate.
async fn assert_serves(pki: &Pki, gw: SocketAddr, sni: &str) {
    let (mut c, served) = direct(pki, gw, sni)
        .await
        .unwrap_or_else(|e| panic!("new connection to {sni}: {e}"));
    assert_eq!(served, leaf(&pki.server_cert()), "served certificate");
    c.ping().await;
    c.close().await.unwrap();
}

/// The TLS alert a new connection with `pki`'s client certificate ends with, if any. With
/// TLS 1.3 the client finishes its handshake first and reads the alert afterwards.
async fn rejection(pki: &Pki, gw: SocketAddr) -> Option<AlertDescription> {
    match direct(pki, gw, REDIS_SNI).await {
        Err(e) => alert(&e),
        Ok((mut c, _)) => match c.cmd(&[b"PING"]).await {
            Ok(reply) => {
                assert_eq!(reply, Reply::Status("PONG".into()));
                None
            }
            Err(e) => Some(alert(&e).unwrap_or_else(|| panic!("no alert: {e}"))),
        },
    }
}

/// Relayed bytes of `route` (from the client, to the client), once `n` connections have
/// ended on it.
fn relayed(proc: &Process, route: &str, n: f64) -> (f64, f64) {
    let ended = format!("{n} connections ended on {route}");
    let m = proc.wait_metrics(&ended, |m| {
        m.count(
            "snigate_connection_duration_seconds_count",
            &[("route", route)],
        ) >= n
    });
    let bytes = |d| m.get("snigate_bytes_total", &[("route", route), ("direction", d)]);
    (bytes("from_client"), bytes("to_client"))
}

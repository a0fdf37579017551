//! Pieces shared by the stop tests (drain, lifecycle): a Redis chain through sidecar and
//! gateway, a PING check, and the check that a stopped listener refuses.

use std::io::ErrorKind;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::pki::REDIS_SNI;
use super::resp::{Reply, Resp};
use super::{Gateway, Opts, Pki, RedisServer, Route, Sidecar, Tunnel};

/// Sidecar tunnel `redis` → gateway route `redis` → `redis`.
pub fn chain(pki: &Pki, redis: &RedisServer, gw_opts: &Opts, sc_opts: &Opts) -> (Gateway, Sidecar) {
    let gw = Gateway::start_with(
        pki,
        &[Route::new("redis", REDIS_SNI, "redis", redis.addr())],
        gw_opts,
    );
    let sc = Sidecar::start_with(
        pki,
        &[Tunnel::new("redis", "redis", gw.addr, REDIS_SNI)],
        sc_opts,
    );
    (gw, sc)
}

/// A new TCP connection to `addr` is refused (nothing listens any more).
pub async fn assert_refused(addr: SocketAddr) {
    let err = TcpStream::connect(addr)
        .await
        .expect_err("still accepting after the stop");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

pub async fn ping(c: &mut Resp<impl AsyncRead + AsyncWrite + Unpin>) {
    assert_eq!(
        c.cmd(&[b"PING"]).await.unwrap(),
        Reply::Status("PONG".into())
    );
}

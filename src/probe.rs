//! Health probes of the far side, run in the background on both roles (never per request of
//! a Kubernetes probe, so a slow far side cannot make `/readyz` slow): the gateway probes its
//! backends in their own protocol, the sidecar its gateway with a TLS handshake.

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::admin::Health;
use crate::config::{HostPort, Protocol};
use crate::dial::{dial, timed_out};
use crate::metrics::{Metrics, RouteLabel};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// A Redis PING, inline form: valid before AUTH, answered `+PONG` or `-NOAUTH …`.
const REDIS_PING: &[u8] = b"PING\r\n";
/// A PostgreSQL SSLRequest: any PostgreSQL answers `S` or `N` without a login.
const PG_SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// How a backend probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("unexpected answer {0:?}")]
    Unexpected(String),
}

/// Where a role's probe results go: `/readyz` checks named `<kind>:<name>` and a gauge per
/// route or tunnel (`far_side_up`, `login_up`).
pub struct Reporter<'a> {
    /// The admin endpoint's state.
    pub health: &'a Health,
    /// The gauge set to 1 or 0 after each probe.
    pub gauge: &'a Family<RouteLabel, Gauge>,
    /// `backend` (gateway) or `tunnel` (sidecar).
    pub kind: &'static str,
    /// Whether a failing probe makes the process unready.
    pub gating: bool,
}

impl Reporter<'_> {
    /// Probes every target each round until `stop`. `round` gives the interval and the probes
    /// of the targets configured now; checks of targets no longer configured are dropped.
    pub async fn run<F, P, E>(&self, stop: CancellationToken, mut round: F)
    where
        F: FnMut() -> (Duration, Vec<(String, P)>),
        P: Future<Output = Result<(), E>>,
        E: Display,
    {
        loop {
            let (interval, probes) = round();
            let mut names = Vec::with_capacity(probes.len());
            for (name, probe) in probes {
                let result = probe.await;
                let detail = result.as_ref().err().map(ToString::to_string);
                let check = format!("{}:{name}", self.kind);
                let ok = result.is_ok();
                self.health
                    .report(&check, ok, self.gating, detail.unwrap_or_default());
                let label = Metrics::route(&name);
                self.gauge.get_or_create(&label).set(i64::from(ok));
                names.push(check);
            }
            self.health.retain(|check| {
                !check.starts_with(&format!("{}:", self.kind)) || names.iter().any(|n| n == check)
            });
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// Probes one backend; `Ok` means it answered like the server it should be.
pub async fn backend(
    protocol: Protocol,
    addr: &HostPort,
    deadline: Duration,
) -> Result<(), ProbeError> {
    tokio::time::timeout(deadline, answer(protocol, addr, deadline))
        .await
        .unwrap_or_else(|_| Err(timed_out(deadline).into()))
}

async fn answer(protocol: Protocol, addr: &HostPort, deadline: Duration) -> Result<(), ProbeError> {
    let mut stream = dial(addr, deadline).await?;
    let (request, want): (&[u8], usize) = match protocol {
        Protocol::Redis => (REDIS_PING, 64),
        Protocol::Postgres => (&PG_SSL_REQUEST, 1),
        Protocol::Tcp => return Ok(()),
    };
    stream.write_all(request).await?;
    let mut reply = [0u8; 64];
    let n = stream.read(&mut reply[..want]).await?;
    let reply = &reply[..n];
    let healthy = match protocol {
        Protocol::Redis => reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH"),
        _ => reply == b"S" || reply == b"N",
    };
    if healthy {
        Ok(())
    } else {
        Err(ProbeError::Unexpected(
            String::from_utf8_lossy(reply).into_owned(),
        ))
    }
}

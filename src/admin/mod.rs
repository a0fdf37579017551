//! The admin endpoint: `/livez`, `/startup`, `/readyz`, `/metrics`, and `POST /quitquitquit`.

pub mod health;

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
pub use health::Health;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the admin endpoint serves.
pub struct Admin {
    /// Encoded for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Answers `/livez`, `/startup` and `/readyz`.
    pub health: Arc<Health>,
    /// Cancelled by `POST /quitquitquit`, which then stops the process like SIGTERM.
    pub quit: CancellationToken,
}

/// Serves HTTP/1 on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, shutdown: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(addr = %addr, "admin listening");
    }
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    continue;
                }
            },
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(respond(&admin, &req)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(admin: &Admin, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/livez") => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/startup") => {
            let started = admin.health.started();
            reply(
                status(started),
                "text/plain",
                if started { "started\n" } else { "starting\n" }.into(),
            )
        }
        (&Method::GET, "/readyz") => {
            let (ready, text) = admin.health.readiness();
            reply(status(ready), "text/plain", text)
        }
        (&Method::GET, "/metrics") => reply(StatusCode::OK, OPENMETRICS, admin.metrics.encode()),
        (&Method::POST, "/quitquitquit") => {
            tracing::info!("stop requested through /quitquitquit");
            admin.quit.cancel();
            reply(StatusCode::OK, "text/plain", "stopping\n".into())
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn status(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn reply(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

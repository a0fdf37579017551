//! wanlink: an emulated WAN link for bench/wan.sh (this kernel has no netem). Every
//! connection accepted on a route's listen address is relayed to its target with RTT/2 added
//! in each direction, the order kept, FIN and RST passed on after the same delay, the TCP
//! handshake charged, and at most a window of bytes in flight per direction.
//!
//! Prints `wanlink: ready` on stderr once every listener is bound.

mod args;
mod conn;
mod pipe;
mod timer;
mod trace;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::conn::Link;

fn main() -> ExitCode {
    let cfg = match args::parse(std::env::args().skip(1)) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("wanlink: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cfg.threads {
        runtime.worker_threads(n);
    }
    let result = runtime
        .enable_all()
        .build()
        .and_then(|rt| rt.block_on(serve(cfg)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wanlink: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: args::Config) -> std::io::Result<()> {
    let link = Arc::new(Link {
        half: cfg.rtt / 2,
        handshake: if cfg.handshake {
            cfg.rtt
        } else {
            Duration::ZERO
        },
        window: cfg.window,
        trace: cfg.trace.as_deref().map(trace::Trace::create).transpose()?,
    });
    let mut listeners = Vec::new();
    for route in &cfg.routes {
        let listener = TcpListener::bind(route.listen).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("listen on {}: {e}", route.listen))
        })?;
        listeners.push((listener, route.target));
    }
    let window = cfg.window.map_or("no cap".into(), |w| format!("{w} bytes"));
    eprintln!(
        "wanlink: ready: rtt {:?}, window {window} per direction, TCP handshake {}, {} route(s)",
        cfg.rtt,
        if cfg.handshake { "charged" } else { "free" },
        cfg.routes.len()
    );
    let mut loops = JoinSet::new();
    for (listener, target) in listeners {
        loops.spawn(accept_loop(listener, target, link.clone()));
    }
    while loops.join_next().await.is_some() {}
    Ok(())
}

async fn accept_loop(listener: TcpListener, target: std::net::SocketAddr, link: Arc<Link>) {
    static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                let accepted = Instant::now();
                let n = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                let link = link.clone();
                tokio::spawn(async move { conn::relay(client, target, accepted, n, &link).await });
            }
            Err(e) => {
                // e.g. out of descriptors: keep serving the connections already open
                eprintln!("wanlink: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

//! The `snigate` binary: argument parsing, logging and the runtime; the work is in the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use snigate::config::{self, ConfigError};
use snigate::gateway::Gateway;
use snigate::shutdown::{self, DRAIN_GRACE};
use snigate::sidecar::{self, Sidecar};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Parser)]
#[command(
    version,
    about = "TLS/SNI gateway and sidecar for Redis, PostgreSQL and TCP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Terminate TLS, route by SNI, relay to backends (runs beside Redis/PostgreSQL).
    Gateway {
        #[arg(long)]
        config: PathBuf,
        /// Validate the config, certificates and keys, bind nothing, exit.
        #[arg(long)]
        check: bool,
    },
    /// Plaintext on loopback for the worker, TLS with SNI to the gateway.
    Sidecar {
        #[arg(long)]
        config: PathBuf,
        /// Validate the config, certificates and keys, bind nothing, exit.
        #[arg(long)]
        check: bool,
    },
    /// Write a development PKI: ca.crt ca.key server.crt server.key client.crt client.key.
    Certs {
        #[arg(long)]
        out: PathBuf,
        /// A DNS name for the server certificate (repeat for several routes).
        #[arg(long = "server-name", required = true)]
        server_names: Vec<String>,
        /// The client certificate's DNS SAN and CN (its identity in `allow: [dns:…]`).
        #[arg(long, default_value = "worker.snigate.test")]
        client_name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Gateway { config, check } => run_gateway(&config, check),
        Command::Sidecar { config, check } => run_sidecar(&config, check),
        Command::Certs {
            out,
            server_names,
            client_name,
        } => snigate::certs::write_dev_pki(&out, &server_names, &client_name)
            .map(|()| println!("wrote the development PKI to {}", out.display()))
            .map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A distinct code lets scripts tell "fix the config" from "could not run".
            if e.downcast_ref::<ConfigError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run_gateway(file: &Path, check: bool) -> anyhow::Result<()> {
    let config = config::load_gateway(file)?;
    let gateway = Arc::new(Gateway::new(&config, file)?);
    if check {
        println!("{}: ok ({} routes)", file.display(), config.routes.len());
        return Ok(());
    }
    runtime()?.block_on(async {
        let listener = TcpListener::bind(config.listen).await.with_context(|| {
            format!("{}: listen: cannot bind {}", file.display(), config.listen)
        })?;
        let (token, tracker) = (CancellationToken::new(), TaskTracker::new());
        shutdown::cancel_on_signal(token.clone())?;
        gateway.serve(listener, token, tracker.clone()).await;
        shutdown::drain(tracker, DRAIN_GRACE).await;
        Ok(())
    })
}

fn run_sidecar(file: &Path, check: bool) -> anyhow::Result<()> {
    let config = config::load_sidecar(file)?;
    let sidecar = Sidecar::new(&config, file)?;
    if check {
        println!("{}: ok ({} tunnels)", file.display(), config.tunnels.len());
        return Ok(());
    }
    runtime()?.block_on(async {
        let bound = sidecar
            .bind()
            .await
            .map_err(|(what, e)| anyhow::anyhow!("{}: {what}: cannot bind: {e}", file.display()))?;
        let (token, tracker) = (CancellationToken::new(), TaskTracker::new());
        shutdown::cancel_on_signal(token.clone())?;
        sidecar::serve(bound, token, tracker.clone()).await;
        shutdown::drain(tracker, DRAIN_GRACE).await;
        Ok(())
    })
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

//! The `snigate` binary: argument parsing, logging and the runtime; the work is in the library.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use snigate::admin::{self, Admin};
use snigate::config::{ConfigError, Limits};
use snigate::connect::{self, Connect};
use snigate::gateway::Gateway;
use snigate::notify;
use snigate::reload;
use snigate::shutdown::{self, Serving, WhileDraining};
use snigate::sidecar::Sidecar;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    version,
    about = "TLS/SNI gateway and sidecar for Redis, PostgreSQL and TCP"
)]
struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    /// One tunnel in the foreground, no config file: the sidecar with one tunnel.
    Connect(Connect),
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
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Gateway { config, check } => run_gateway(&config, check),
        Command::Sidecar { config, check } => run_sidecar(&config, check),
        Command::Connect(flags) => run_connect(flags),
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

fn run_gateway(file: &Path, check: bool) -> anyhow::Result<()> {
    let gateway = Arc::new(Gateway::load(file)?);
    let config = gateway.snapshot().config.clone();
    if check {
        println!("{}: ok ({} routes)", file.display(), config.routes.len());
        return Ok(());
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    runtime(config.runtime.threads(cpus))?.block_on(async {
        let listener = bind(file, "listen", config.listen).await?;
        let admin = bind_admin(file, config.admin).await?;
        let serving = Serving::new(config.limits, WhileDraining::StopAccepting);
        let requested = CancellationToken::new();
        start_common(
            admin,
            &gateway.metrics,
            &gateway.health,
            &requested,
            &serving,
        )?;
        reload::spawn(gateway.clone(), serving.accept.clone())?;
        serving
            .listeners
            .spawn(gateway.clone().serve(listener, serving.clone()));
        shutdown::stop_when(requested, &gateway.health, config.timeouts, serving).await;
        Ok(())
    })
}

fn run_sidecar(file: &Path, check: bool) -> anyhow::Result<()> {
    let sidecar = Arc::new(Sidecar::load(file)?);
    let config = sidecar.snapshot().config.clone();
    if check {
        println!("{}: ok ({} tunnels)", file.display(), config.tunnels.len());
        return Ok(());
    }
    runtime(config.runtime.threads(1))?.block_on(async {
        let admin = bind_admin(file, config.admin).await?;
        let serving = Serving::new(config.limits, WhileDraining::KeepAccepting);
        let requested = CancellationToken::new();
        sidecar
            .start(serving.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        start_common(
            admin,
            &sidecar.metrics,
            &sidecar.health,
            &requested,
            &serving,
        )?;
        reload::spawn(Arc::new(sidecar.clone()), serving.accept.clone())?;
        shutdown::stop_when(requested, &sidecar.health, config.timeouts, serving).await;
        Ok(())
    })
}

fn run_connect(flags: Connect) -> anyhow::Result<()> {
    let config = flags.config()?;
    let (protocol, tunnel) = (flags.protocol()?, config.tunnels[0].clone());
    let origin = Path::new(connect::ORIGIN);
    let sidecar = Arc::new(Sidecar::from_config(config, origin).map_err(connect::name_flags)?);
    let timeouts = sidecar.snapshot().config.timeouts;
    runtime(1)?.block_on(async {
        let serving = Serving::new(Limits::default(), WhileDraining::KeepAccepting);
        let requested = CancellationToken::new();
        sidecar
            .start(serving.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{}: --listen: {e}", connect::ORIGIN))?;
        start_common(
            None,
            &sidecar.metrics,
            &sidecar.health,
            &requested,
            &serving,
        )?;
        println!("{}", flags.banner(protocol, &tunnel.server_name));
        tokio::spawn(connect::report_first_probe(
            sidecar.health.clone(),
            tunnel.name,
        ));
        shutdown::stop_when(requested, &sidecar.health, timeouts, serving).await;
        Ok(())
    })
}

/// What both roles run beside their listeners: stop signals, the admin endpoint, and
/// readiness reports to systemd.
fn start_common(
    admin: Option<TcpListener>,
    metrics: &Arc<snigate::metrics::Metrics>,
    health: &Arc<admin::Health>,
    requested: &CancellationToken,
    serving: &Serving,
) -> anyhow::Result<()> {
    shutdown::cancel_on_signal(requested.clone())?;
    let notifier = notify::Notifier::from_env();
    tokio::spawn(notify::follow(
        notifier,
        health.clone(),
        serving.accept.clone(),
    ));
    if let Some(listener) = admin {
        let admin = Arc::new(Admin {
            metrics: metrics.clone(),
            health: health.clone(),
            quit: requested.clone(),
        });
        // The admin endpoint outlives the drain so probes see readiness turn off.
        tokio::spawn(admin::serve(listener, admin, CancellationToken::new()));
    }
    Ok(())
}

async fn bind(file: &Path, key: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{}: {key}: cannot bind {addr}", file.display()))
}

async fn bind_admin(file: &Path, addr: Option<SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    match addr {
        Some(addr) => Ok(Some(bind(file, "admin", addr).await?)),
        None => Ok(None),
    }
}

/// One thread gets a current-thread runtime: no work stealing, no cross-thread wakeups.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all().build()
}

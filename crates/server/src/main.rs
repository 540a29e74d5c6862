//! `callgate`: a WCS-compatible signaling server whose every action your backend controls.

use std::path::PathBuf;

use anyhow::Context;
use callgate_server::config::{Config, DEFAULT_CONFIG};
use clap::Parser;

/// The binary's allocator (the library crates don't choose one): callgate allocates a lot of
/// small, short-lived objects per call and per hook (JSON maps, HTTP buffers, task frames), and
/// glibc malloc/free showed as ~17 % of its CPU under call load (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "callgate", version, about = "WCS-compatible signaling server with REST hooks", long_about = None)]
struct Cli {
    /// TOML config file, merged over the embedded defaults (see --print-default-config).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// WebSocket listen address (overrides server.ws_bind).
    #[arg(long, value_name = "ADDR")]
    ws_bind: Option<std::net::SocketAddr>,
    /// HTTP listen address for the REST API, EchoApp and /metrics (overrides server.http_bind).
    #[arg(long, value_name = "ADDR")]
    http_bind: Option<std::net::SocketAddr>,
    /// Print the embedded default configuration, with comments, and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Load and validate the configuration, then exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return Ok(());
    }
    let mut cfg = Config::load(cli.config.as_deref(), "CALLGATE_")?;
    if let Some(a) = cli.ws_bind {
        cfg.server.ws_bind = a;
    }
    if let Some(a) = cli.http_bind {
        cfg.server.http_bind = a;
    }
    cfg.validate()?;
    if cli.check_config {
        println!("configuration is valid");
        return Ok(());
    }
    init_tracing(&cfg);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if cfg.server.worker_threads > 0 {
        builder.worker_threads(cfg.server.worker_threads);
    }
    let rt = builder.enable_all().build().context("cannot start the runtime")?;
    rt.block_on(async move {
        let server = callgate_server::start(cfg).await?;
        shutdown_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        Ok(())
    })
}

fn init_tracing(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log.filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if cfg.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

//! `callgate`: a WCS-compatible signaling server whose every action your backend controls.

use std::path::PathBuf;

use anyhow::Context;
use callgate_server::config::{Config, DEFAULT_CONFIG};
use callgate_server::supervise;
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
    let failure = rt.block_on(async move {
        let server = callgate_server::start(cfg).await?;
        #[cfg(debug_assertions)]
        debug_hooks(&server);
        // A part that must never stop (the SIP driver, the media task) panicked: shut down as
        // on SIGTERM (calls hung up while the SIP driver still runs, clients told), then exit
        // non-zero so that the process supervisor starts a fresh callgate (supervise.rs).
        let failure = tokio::select! {
            () = shutdown_signal() => None,
            f = server.failed() => Some(f),
        };
        match &failure {
            None => tracing::info!("shutting down"),
            Some(f) => tracing::error!(
                component = f.component,
                "shutting down after a fatal failure ({f}); exiting with code {}",
                supervise::EXIT_CODE
            ),
        }
        server.shutdown().await;
        anyhow::Ok(failure)
    })?;
    if failure.is_some() {
        rt.shutdown_timeout(std::time::Duration::from_secs(1));
        std::process::exit(supervise::EXIT_CODE);
    }
    Ok(())
}

/// Debug builds only, for tests of the binary: `CALLGATE_DEBUG_PANIC_SIP_DRIVER=1` makes the
/// SIP user agent panic once the server runs (tests/supervise.rs checks the exit code).
#[cfg(debug_assertions)]
fn debug_hooks(server: &callgate_server::RunningServer) {
    if std::env::var_os("CALLGATE_DEBUG_PANIC_SIP_DRIVER").is_some() {
        let shared = server.shared.clone();
        tokio::spawn(async move {
            if let Ok(ua) = shared.calls.endpoint().await {
                let _ = ua.with(|_, _| -> () { panic!("CALLGATE_DEBUG_PANIC_SIP_DRIVER") }).await;
            }
        });
    }
    // `CALLGATE_DEBUG_PANIC_MEDIA_TASK=1`: the media task panics once the server runs
    // (tests/exit_on_media_panic.rs).
    if std::env::var_os("CALLGATE_DEBUG_PANIC_MEDIA_TASK").is_some() {
        let media = server.shared.streams.media.clone();
        tokio::spawn(async move { media.panic_for_test().await });
    }
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

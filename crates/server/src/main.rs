//! `callgate`: a WCS-compatible signaling server whose every action your backend controls.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use callgate_server::config::{Config, DEFAULT_CONFIG};
use callgate_server::supervise;
use clap::Parser;

/// The binary's allocator (the library crates don't choose one): callgate allocates a lot of
/// small, short-lived objects per call and per hook (JSON maps, HTTP buffers, task frames), and
/// glibc malloc/free showed as ~17 % of its CPU under call load (docs/benchmarks.md).
/// `--features system-allocator` keeps the system's malloc, for heap profilers that interpose
/// it (heaptrack, valgrind); never for production.
#[cfg(not(feature = "system-allocator"))]
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
    #[command(subcommand)]
    command: Option<Command>,
}

/// Tools besides the server (without one, callgate runs the server).
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// For backend authors: the hook bodies' JSON Schemas, and a contract test of a backend.
    #[command(subcommand)]
    Hooks(callgate_server::hooks_cli::HooksCommand),
    /// Hook events: `events replay FILE` sends a dead-letter file's events again.
    #[command(subcommand)]
    Events(EventsCommand),
}

#[derive(clap::Subcommand, Debug)]
enum EventsCommand {
    /// Sends the events of a dead-letter file ([hooks] dead_letter_file) to their backends again,
    /// in order, once each; prints how many were delivered and failed; exits 1 if any failed.
    Replay {
        /// The dead-letter file (JSON lines).
        file: PathBuf,
        /// Config whose [apps] (URL, credentials) and [hooks] (timeout, signing) are used.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// Raises the open-file soft limit to the hard one (as nginx's `worker_rlimit_nofile` or
/// systemd's `LimitNOFILE` would): each session and each call's RTP leg holds a file. Warns when
/// `[limits]` admits more than fit: past the file limit, new sockets fail ("Too many open
/// files") instead of being refused cleanly.
fn open_files(limits: &callgate_server::config::LimitsSection) {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            return;
        }
    };
    // Each session: its socket; each call: its RTP socket and a share of hook connections;
    // plus a reserve for listeners, hooks, logs and the runtime.
    let need = limits.max_sessions as u64 + 2 * limits.max_calls as u64 + 1024;
    if soft < need {
        tracing::warn!(
            open_file_limit = soft,
            needed = need,
            "the open-file limit is below limits.max_sessions + 2 x limits.max_calls + 1024: under full load \
             new sockets fail before the limits refuse cleanly; raise the hard limit (ulimit -Hn, LimitNOFILE) \
             or lower [limits]"
        );
    } else {
        tracing::debug!(open_file_limit = soft, "open-file limit");
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Events(EventsCommand::Replay { file, config })) = &cli.command {
        return replay_events(file, config.as_deref().or(cli.config.as_deref()));
    }
    if let Some(Command::Hooks(cmd)) = cli.command {
        std::process::exit(callgate_server::hooks_cli::run(cmd, cli.config.as_deref())?);
    }
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
    callgate_server::validate(&cfg)?;
    if cli.check_config {
        println!("configuration is valid");
        return Ok(());
    }
    let node_id = callgate_server::new_node_id(&cfg);
    init_tracing(&cfg, &node_id);
    open_files(&cfg.limits);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if cfg.server.worker_threads > 0 {
        builder.worker_threads(cfg.server.worker_threads);
    }
    let rt = builder.enable_all().build().context("cannot start the runtime")?;
    let shutdown_timeout = Duration::from_millis(cfg.server.shutdown_timeout_ms);
    let (failure, complete) = rt.block_on(async move {
        // Registered before the ports open: a SIGHUP from then on never finds its default action.
        let hup = Hangups::register();
        let server = callgate_server::start_as(cfg, node_id).await?;
        #[cfg(debug_assertions)]
        debug_hooks(&server);
        // A part that must never stop (the SIP driver, the media task) panicked: shut down as
        // on SIGTERM (calls hung up while the SIP driver still runs, clients told), then exit
        // non-zero so that the process supervisor starts a fresh callgate (supervise.rs).
        // SIGHUP re-reads the [tls] certificate; it never ends the process (without a handler
        // its default action would), also when TLS is off.
        let failure = tokio::select! {
            () = shutdown_signal() => None,
            f = server.failed() => Some(f),
            () = reload_on_sighup(hup, &server) => unreachable!("the SIGHUP loop never ends"),
        };
        match &failure {
            None => tracing::info!("shutting down"),
            Some(f) => tracing::error!(
                component = f.component,
                "shutting down after a fatal failure ({f}); exiting with code {}",
                supervise::EXIT_CODE
            ),
        }
        let complete = shut_down(server, shutdown_timeout).await;
        anyhow::Ok((failure, complete))
    })?;
    // Tasks still running (a hook waiting on its backend) are not waited for.
    rt.shutdown_timeout(Duration::from_millis(100));
    if failure.is_some() {
        std::process::exit(supervise::EXIT_CODE);
    }
    if !complete {
        std::process::exit(EXIT_SHUTDOWN_INCOMPLETE);
    }
    Ok(())
}

/// `callgate events replay FILE`: exits 1 when an event was not delivered.
fn replay_events(file: &std::path::Path, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let cfg = Config::load(config, "CALLGATE_")?;
    callgate_server::validate(&cfg)?;
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter("warn").init();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    let report = rt.block_on(async {
        let apps = callgate_hooks::AppRegistry::new(cfg.build_apps(cfg.server.http_bind)?);
        let dispatcher =
            callgate_hooks::Dispatcher::new(cfg.dispatcher_config()).context("cannot build the hook HTTP client")?;
        callgate_hooks::dead_letter::replay(file, &dispatcher, &apps)
            .await
            .with_context(|| format!("cannot read {}", file.display()))
    })?;
    for (id, why) in &report.failed {
        eprintln!("not delivered: {id}: {why}");
    }
    println!("{}: {} delivered, {} failed", file.display(), report.delivered, report.failed.len());
    if !report.failed.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

/// The exit code after a shutdown that did not finish within `[server] shutdown_timeout_ms`
/// (or was cut short by a second signal); 0 after a complete one.
const EXIT_SHUTDOWN_INCOMPLETE: i32 = 1;

/// The server's graceful shutdown, logged; cut short by a second SIGTERM/SIGINT, and by a hard
/// bound a little after `timeout` should it ever overrun its own deadline. True when complete.
async fn shut_down(server: callgate_server::RunningServer, timeout: Duration) -> bool {
    // Steps 4-6 of the shutdown get up to 4 x STOP_GRACE after the deadline.
    let hard = timeout + callgate_server::shutdown::STOP_GRACE * 6;
    let outcome = tokio::select! {
        r = tokio::time::timeout(hard, server.shutdown()) => r.ok(),
        () = shutdown_signal() => {
            tracing::warn!("second signal during the shutdown: exiting now with code {EXIT_SHUTDOWN_INCOMPLETE}");
            return false;
        }
    };
    match outcome {
        Some(o) if o.complete() => {
            tracing::info!(elapsed_ms = o.elapsed.as_millis() as u64, "shutdown complete");
            true
        }
        Some(o) => {
            tracing::error!(
                elapsed_ms = o.elapsed.as_millis() as u64,
                "shutdown {o} (server.shutdown_timeout_ms = {}); exiting anyway with code {EXIT_SHUTDOWN_INCOMPLETE}",
                timeout.as_millis()
            );
            false
        }
        None => {
            tracing::error!(
                "shutdown did not finish within {} ms; exiting anyway with code {EXIT_SHUTDOWN_INCOMPLETE}",
                hard.as_millis()
            );
            false
        }
    }
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
    // (tests/exit_on_failure.rs).
    if std::env::var_os("CALLGATE_DEBUG_PANIC_MEDIA_TASK").is_some() {
        let media = server.shared.streams.media.clone();
        tokio::spawn(async move { media.panic_for_test().await });
    }
}

/// The log: `[log] filter` (or `RUST_LOG`), text or JSON (`[log] format`). A cluster node
/// (`[cluster] nats_url`) names itself in every line: `node=<nodeId> ` before a text line, a
/// `"node"` field first in a JSON one, so that the lines of several nodes can be told apart
/// once collected together.
fn init_tracing(cfg: &Config, node_id: &str) {
    use tracing_subscriber::fmt::format::Format;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log.filter));
    let node = cfg.cluster.enabled().then(|| node_id.to_string());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // Whatever the filter: no raw client frames in the log (README "Security", "Secrets").
    let raw = callgate_server::secrets::no_raw_payloads();
    if cfg.log.format == "json" {
        let format = WithNode { inner: Format::default().json(), node, json: true };
        builder.json().event_format(format).finish().with(raw).init();
    } else {
        let format = WithNode { inner: Format::default(), node, json: false };
        builder.event_format(format).finish().with(raw).init();
    }
}

/// A log line format with the node's id added (see [`init_tracing`]); `node: None` adds nothing.
struct WithNode<F> {
    inner: F,
    node: Option<String>,
    json: bool,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithNode<F>
where
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(node) = &self.node else { return self.inner.format_event(ctx, writer, event) };
        if !self.json {
            write!(writer, "node={node} ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        // The JSON formatter writes one object: the field goes in after its `{`.
        let mut line = String::new();
        self.inner.format_event(ctx, tracing_subscriber::fmt::format::Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"node\":{},{rest}", serde_json::Value::from(node.as_str())),
            None => writer.write_str(&line),
        }
    }
}

/// SIGHUP, caught (unix only).
struct Hangups(#[cfg(unix)] tokio::signal::unix::Signal);

impl Hangups {
    fn register() -> Hangups {
        #[cfg(unix)]
        return Hangups(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).expect("SIGHUP handler"),
        );
        #[cfg(not(unix))]
        Hangups()
    }
}

/// Reloads the TLS certificate on every SIGHUP (`RunningServer::reload_tls` logs the outcome).
async fn reload_on_sighup(hup: Hangups, server: &callgate_server::RunningServer) {
    #[cfg(unix)]
    {
        let mut hup = hup;
        while hup.0.recv().await.is_some() {
            server.reload_tls();
        }
    }
    #[cfg(not(unix))]
    let _ = (hup, server);
    std::future::pending::<()>().await;
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

//! callgate-server: the `callgate` binary as a library, so tests can run the real server in
//! process on `127.0.0.1:0`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let cfg = callgate_server::config::Config::from_toml("[server]\nws_bind = \"127.0.0.1:0\"\nhttp_bind = \"127.0.0.1:0\"")?;
//! let server = callgate_server::start(cfg).await?;
//! println!("ws on {}, http on {}", server.ws_addr, server.http_addr);
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod calls;
pub mod config;
pub mod echo_app;
pub mod handlers;
pub mod listen;
pub mod metrics_http;
pub mod registry;
pub mod rest_api;
pub mod secrets;
pub mod session;
pub mod shutdown;
pub mod sip_side;
pub mod streams;
pub mod supervise;
pub mod xcap;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::Router;
use callgate_hooks::{AppRegistry, Dispatcher, HookEngine};
use rand::distr::{Alphanumeric, SampleString};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::registry::Registry;
use crate::session::ConnAddrs;

/// What every session and handler shares.
pub struct Shared {
    pub cfg: Config,
    pub engine: HookEngine,
    pub apps: AppRegistry,
    pub sessions: Registry,
    /// `<32 random chars>@<node ip>` (WCS nodeId shape).
    pub node_id: Arc<str>,
    /// Published and played streams, and the WebRTC media endpoint.
    pub streams: streams::Streams,
    /// The SIP user agent and the clients' registrations.
    pub calls: calls::Calls,
    /// Where the SIP driver and the media task report a panic (`supervise.rs`): the server
    /// must then stop and the process exit non-zero.
    pub supervisor: supervise::Supervisor,
    /// Whether the node is shutting down, and its live session tasks (`shutdown.rs`).
    pub lifecycle: shutdown::Lifecycle,
}

/// A running server.
pub struct RunningServer {
    pub ws_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Graceful shutdown, bounded by `[server] shutdown_timeout_ms`: stop accepting, close
    /// every session, hang up every call, stop the SIP driver and the media task, deliver the
    /// last events, release the node ([`shutdown`] has the steps). The outcome says what was
    /// left undone, if anything.
    pub async fn shutdown(self) -> shutdown::Outcome {
        shutdown::run(self.shared, self.tasks).await
    }

    /// Resolves, with the reason, when a part of the server that must never stop (the SIP
    /// driver, the media task) has panicked: the caller should then
    /// [`RunningServer::shutdown`] (calls are hung up while the SIP driver still runs) and
    /// exit non-zero; the binary exits with [`supervise::EXIT_CODE`].
    pub async fn failed(&self) -> supervise::Failure {
        self.shared.supervisor.failed().await
    }

    /// Waits until the server stops (it stops only through [`RunningServer::shutdown`]).
    pub async fn wait(&mut self) {
        for t in self.tasks.iter_mut() {
            let _ = t.await;
        }
    }
}

/// Binds the ports and starts serving. Configuration must already be validated.
pub async fn start(cfg: Config) -> anyhow::Result<RunningServer> {
    metrics_http::install_recorder();
    metrics_http::spawn_upkeep();
    let ws_listener = TcpListener::bind(cfg.server.ws_bind)
        .await
        .with_context(|| format!("cannot bind WebSocket port {}", cfg.server.ws_bind))?;
    let http_listener = TcpListener::bind(cfg.server.http_bind)
        .await
        .with_context(|| format!("cannot bind HTTP port {}", cfg.server.http_bind))?;
    let ws_addr = ws_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let media = callgate_media::MediaEndpoint::start(cfg.media.media_config()?)
        .await
        .with_context(|| format!("cannot bind the media UDP port {}", cfg.media.bind))?;
    let keep_alive = cfg.media.keep_alive();
    let apps = AppRegistry::new(cfg.build_apps(http_addr)?);
    let dispatcher = Dispatcher::new(cfg.dispatcher_config()).context("cannot build the hook HTTP client")?;
    let engine = HookEngine::new(dispatcher, cfg.hooks.disable_rest_requests);
    let node_ip = if !cfg.server.node_ip.is_empty() {
        cfg.server.node_ip.clone()
    } else if ws_addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        ws_addr.ip().to_string()
    };
    let node_id: Arc<str> = format!("{}@{}", Alphanumeric.sample_string(&mut rand::rng(), 32), node_ip).into();
    let streams = streams::Streams::new(media);
    let supervisor = supervise::Supervisor::default();
    supervisor.watch_media(streams.media.panicked.clone());
    let calls = calls::Calls::new(cfg.sip.clone()).supervised(supervisor.clone());
    let lifecycle = shutdown::Lifecycle::default();
    let shared = Arc::new(Shared {
        cfg,
        engine,
        apps,
        sessions: Registry::default(),
        node_id,
        streams,
        calls,
        supervisor,
        lifecycle,
    });
    if let Some(ka) = keep_alive {
        streams::spawn_keep_alive(Arc::downgrade(&shared), ka);
    }

    let ws_router = Router::new().fallback(ws_upgrade).with_state(shared.clone());
    let http_router =
        Router::new().merge(rest_api::router(shared.clone())).merge(echo_app::router()).merge(metrics_http::router());
    // No CORS layer at all unless origins are configured: no page may read the REST API.
    let http_router = match rest_api::cors_layer(&shared.cfg.rest_api.cors_allow_origin) {
        Some(cors) => http_router.layer(cors),
        None => http_router,
    };

    // Each session closes itself when the shutdown begins (session.rs).
    let ws_task = {
        let mut rx = shared.lifecycle.stopping();
        let header_timeout = Duration::from_millis(shared.cfg.server.header_read_timeout_ms);
        tokio::spawn(async move {
            let graceful = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            listen::serve(ws_listener, ws_router, header_timeout, graceful).await;
        })
    };
    let http_task = {
        let mut rx = shared.lifecycle.stopping();
        let header_timeout = Duration::from_millis(shared.cfg.server.header_read_timeout_ms);
        tokio::spawn(async move {
            let graceful = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            listen::serve(http_listener, http_router, header_timeout, graceful).await;
        })
    };
    tracing::info!(%ws_addr, %http_addr, media_addr = %shared.streams.media.advertised_addr, apps = ?shared.apps.keys().collect::<Vec<_>>(), node_id = &*shared.node_id, "callgate started");
    Ok(RunningServer { ws_addr, http_addr, shared, tasks: vec![ws_task, http_task] })
}

async fn ws_upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(addrs): ConnectInfo<ConnAddrs>,
    ws: WebSocketUpgrade,
) -> Response {
    let max = shared.cfg.server.max_client_frame_bytes;
    // Counted from here: a shutdown waits for the session this upgrade starts.
    let live = shared.lifecycle.session_started();
    // Signalling frames are small: tungstenite's default 128 KiB read buffer per connection was
    // most of an idle session's memory (docs/benchmarks.md). Larger frames still arrive whole;
    // the buffer grows for them. Writes go out at once instead of being batched.
    ws.max_message_size(max).max_frame_size(max).read_buffer_size(4096).write_buffer_size(0).on_upgrade(
        move |socket| async move {
            session::run(shared, socket, addrs).await;
            drop(live);
        },
    )
}

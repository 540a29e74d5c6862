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

pub mod admission;
pub mod calls;
pub mod cluster;
pub mod config;
pub mod console;
pub mod echo_app;
pub mod handlers;
pub mod hooks_cli;
pub mod listen;
pub mod metrics_http;
pub mod netguard;
pub mod node;
pub mod openapi;
pub mod party;
pub mod registry;
pub mod rest_api;
pub mod rest_types;
pub mod rooms;
pub mod secrets;
pub mod session;
pub mod shutdown;
pub mod sip_side;
pub mod streams;
pub mod supervise;
pub mod tls;
pub mod wire;
pub mod xcap;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use callgate_hooks::{AppRegistry, Dispatcher, HookEngine};
use rand::distr::{Alphanumeric, SampleString};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::party::NodeInfo;
use crate::registry::Registry;
use crate::wire::ConnAddrs;

pub use node::Shared;

/// A running server.
pub struct RunningServer {
    pub ws_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// `[tls] wss_bind`, bound; `None` when not configured.
    pub wss_addr: Option<SocketAddr>,
    /// `[tls] https_bind`, bound; `None` when not configured.
    pub https_addr: Option<SocketAddr>,
    /// The TLS listeners' certificate; `None` when `[tls]` is off.
    pub tls: Option<Arc<tls::CertStore>>,
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

    /// SIGHUP: re-reads `[tls] cert` and `key`. Logs the outcome (once); on an error the old
    /// certificate stays in use. Returns false when the reload failed; true also when TLS is off.
    pub fn reload_tls(&self) -> bool {
        let Some(store) = &self.tls else {
            tracing::info!("SIGHUP: no [tls] listener configured, nothing to reload");
            return true;
        };
        match store.reload() {
            Ok(()) => {
                tracing::info!(cert = %self.shared.cfg.tls.cert, "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "TLS certificate reload failed; the previous certificate stays in use"
                );
                false
            }
        }
    }

    /// Waits until the server stops (it stops only through [`RunningServer::shutdown`]).
    pub async fn wait(&mut self) {
        for t in self.tasks.iter_mut() {
            let _ = t.await;
        }
    }
}

/// Checks everything in `cfg` that can be checked before binding ports: [`Config::validate`]
/// (the sections' own keys) and what only the modules that use a section can check
/// (`[sip] trusted_networks`/`allowed_destinations` as a [`calls::SipPolicy`], `[xcap]
/// allowed_base_urls` as [`xcap::Base`]s). `config.rs` is a leaf and cannot name them.
pub fn validate(cfg: &Config) -> anyhow::Result<()> {
    cfg.validate()?;
    calls::SipPolicy::from_config(&cfg.sip)?;
    xcap::bases(&cfg.xcap)?;
    netguard::Guard::new(&cfg.security.allowed_private_ranges)?;
    Ok(())
}

/// The IP a node names itself by: `[server] node_ip`, else the WebSocket bind's (loopback for
/// an unspecified bind).
fn node_ip(cfg: &Config) -> String {
    if !cfg.server.node_ip.is_empty() {
        cfg.server.node_ip.clone()
    } else if cfg.server.ws_bind.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        cfg.server.ws_bind.ip().to_string()
    }
}

/// A fresh node id, `<32 random chars>@<node ip>` (WCS's `nodeId` shape): one per start.
pub fn new_node_id(cfg: &Config) -> Arc<str> {
    format!("{}@{}", Alphanumeric.sample_string(&mut rand::rng(), 32), node_ip(cfg)).into()
}

/// Binds the ports and starts serving; `cfg` is [`validate`]d first (nothing is bound when it
/// is invalid).
pub async fn start(cfg: Config) -> anyhow::Result<RunningServer> {
    let node_id = new_node_id(&cfg);
    start_as(cfg, node_id).await
}

/// [`start`] with the node id chosen by the caller ([`new_node_id`]): the binary makes it
/// first, to put it in every log line of a cluster node.
pub async fn start_as(cfg: Config, node_id: Arc<str>) -> anyhow::Result<RunningServer> {
    validate(&cfg)?;
    let node_ip = node_ip(&cfg);
    // `[cluster]`: joined before any port is bound, so a NATS server that cannot be reached
    // stops the start with the reason and leaves nothing behind (docs/cluster.md).
    let cluster =
        if cfg.cluster.enabled() { Some(cluster::Cluster::join(&cfg.cluster, node_id.clone()).await?) } else { None };
    metrics_http::install_recorder();
    metrics_http::spawn_upkeep();
    // The certificate first: a file that does not load stops the start before any port is bound.
    let (wss_bind, https_bind) = cfg.tls.binds()?;
    let cert_store =
        if cfg.tls.enabled() { Some(tls::CertStore::load(cfg.tls.cert.as_ref(), cfg.tls.key.as_ref())?) } else { None };
    let acceptor = match &cert_store {
        Some(store) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(store.server_config()?))),
        None => None,
    };
    let ws_listener = TcpListener::bind(cfg.server.ws_bind)
        .await
        .with_context(|| format!("cannot bind WebSocket port {}", cfg.server.ws_bind))?;
    let http_listener = TcpListener::bind(cfg.server.http_bind)
        .await
        .with_context(|| format!("cannot bind HTTP port {}", cfg.server.http_bind))?;
    let ws_addr = ws_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let bind_tls = |addr: Option<SocketAddr>, what: &'static str| async move {
        match addr {
            Some(a) => TcpListener::bind(a).await.map(Some).with_context(|| format!("cannot bind {what} port {a}")),
            None => Ok(None),
        }
    };
    let wss_listener = bind_tls(wss_bind, "the wss (tls.wss_bind)").await?;
    let https_listener = bind_tls(https_bind, "the https (tls.https_bind)").await?;
    let wss_addr = wss_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let https_addr = https_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let media = callgate_media::MediaEndpoint::start(cfg.media.media_config()?)
        .await
        .with_context(|| format!("cannot bind the media UDP port {}", cfg.media.bind))?;
    let keep_alive = streams::KeepAlive::from_config(&cfg.media);
    let apps = AppRegistry::new(cfg.build_apps(http_addr)?);
    let dispatcher = Dispatcher::new(cfg.dispatcher_config()).context("cannot build the hook HTTP client")?;
    let dead_letter = match cfg.hooks.dead_letter_file.trim() {
        "" => None,
        path => Some(
            callgate_hooks::DeadLetter::open(std::path::Path::new(path), cfg.hooks.dead_letter_max_bytes)
                .with_context(|| format!("cannot open hooks.dead_letter_file {path:?}"))?,
        ),
    };
    let engine =
        HookEngine::new(dispatcher, cfg.hooks.disable_rest_requests).with_delivery(cfg.delivery_config(), dead_letter);
    // The console's hook log: records are built only while someone listens (callgate_hooks::feed).
    let feed = callgate_hooks::HookFeed::new(cfg.console.feed_capacity);
    let engine = if cfg.console.enabled { engine.with_feed(feed.clone()) } else { engine };
    let sessions = Arc::new(Registry::default());
    let rooms = rooms::Rooms::start(cfg.rooms.app_keys.clone(), cfg.rooms.max_members, sessions.clone());
    let streams = Arc::new(
        streams::Streams::new(media.clone(), sessions.clone())
            .pull_guard(netguard::Guard::new(&cfg.security.allowed_private_ranges)?)
            .limited(cfg.limits.max_streams)
            .recording(&cfg.recording)
            .with_rooms(rooms.clone())
            .clustered(cluster.clone()),
    );
    let supervisor = supervise::Supervisor::default();
    supervisor.watch_media(streams.media.panicked.clone());
    let registrar = calls::EmbeddedRegistrar::start(&cfg.registrar).await;
    let calls = Arc::new(
        calls::Calls::new(cfg.sip.clone(), media, sessions.clone())
            .limited(&cfg.limits)
            .supervised(supervisor.clone())
            .with_registrar(registrar),
    );
    let lifecycle = node::Lifecycle::default();
    let node = Arc::new(NodeInfo { id: node_id.clone(), engine: engine.clone(), hooks: cfg.hooks.clone() });
    let shared = Arc::new(Shared {
        xcap: Arc::new(xcap::Xcap::new(&cfg.xcap, &cfg.security)?),
        admission: Arc::new(admission::Admission::new(&cfg.limits)),
        cfg,
        engine,
        apps,
        node,
        node_id,
        sessions,
        streams,
        calls,
        rooms,
        supervisor,
        lifecycle,
        cluster,
        kept: dashmap::DashMap::new(),
    });
    if let Some(c) = &shared.cluster {
        // Answers REST requests for this node's objects that other nodes forward (before the
        // first heartbeat announces them).
        let router = rest_api::forwarded_router(shared.clone());
        let limit = cfg_limit_bytes(&shared);
        c.serve_rest(move |path, body| rest_api::answer_forwarded(router.clone(), path, body, limit)).await?;
        streams::relay::serve(&shared.streams).await?;
        start_heartbeat(c, &shared, &node_ip, ws_addr, http_addr);
    }
    if let Some(ka) = keep_alive {
        streams::spawn_keep_alive(Arc::downgrade(&shared.streams), ka);
    }

    let hls = streams::hls::Hls::from_config(
        &shared.cfg.hls,
        shared.streams.clone(),
        shared.node.clone(),
        shared.apps.get(&shared.cfg.hls.app_key).cloned(),
    );
    let ws_router = Router::new().fallback(ws_upgrade).with_state(shared.clone());
    let http_router = Router::new()
        .merge(rest_api::router(shared.clone()))
        .merge(openapi::router())
        .merge(echo_app::router())
        .merge(streams::recording::router(shared.streams.clone()))
        .merge(streams::hls::router(hls))
        .merge(metrics_http::router(shared.clone()))
        .merge(console::router(
            &shared.cfg,
            console::ConsoleParts { feed, ws_addr, wss_addr, stopping: shared.lifecycle.stopping() },
        ));
    // No CORS layer at all unless origins are configured: no page may read the REST API.
    let http_router = match rest_api::cors_layer(&shared.cfg.rest_api.cors_allow_origin) {
        Some(cors) => http_router.layer(cors),
        None => http_router,
    };

    // Each session closes itself when the shutdown begins (session.rs).
    let header_timeout = Duration::from_millis(shared.cfg.server.header_read_timeout_ms);
    let spawn_listener = |listener: TcpListener, router: Router, tls: Option<tokio_rustls::TlsAcceptor>| {
        let mut rx = shared.lifecycle.stopping();
        tokio::spawn(async move {
            let graceful = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            listen::serve(listener, router, header_timeout, tls, graceful).await;
        })
    };
    let mut tasks = vec![
        spawn_listener(ws_listener, ws_router.clone(), None),
        spawn_listener(http_listener, http_router.clone(), None),
    ];
    if let Some(l) = wss_listener {
        tasks.push(spawn_listener(l, ws_router, acceptor.clone()));
    }
    if let Some(l) = https_listener {
        tasks.push(spawn_listener(l, http_router, acceptor));
    }
    // The TLS addresses as plain text ("" when off), as the plain ones are: tests read them.
    let shown = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(%ws_addr, %http_addr, wss_addr = shown(wss_addr), https_addr = shown(https_addr), media_addr = %shared.streams.media.advertised_addr, apps = ?shared.apps.keys().collect::<Vec<_>>(), node_id = &*shared.node_id, "callgate started");
    Ok(RunningServer { ws_addr, http_addr, wss_addr, https_addr, tls: cert_store, shared, tasks })
}

/// The largest answer a forwarded REST request may carry back: a `find` list can be long.
fn cfg_limit_bytes(shared: &Shared) -> usize {
    shared.cfg.limits.max_rest_body_bytes.max(16 << 20)
}

/// `[cluster]`: the node's heartbeat, reading its sessions, calls and streams through their own
/// `Arc`s (never `Shared`, which the heartbeat task must not keep alive), and reporting the
/// end of the objects of the nodes this node finds lost ([`report_lost`]) and of the streams
/// it pulls from them ([`streams::origin_lost`]).
fn start_heartbeat(c: &Arc<cluster::Cluster>, shared: &Shared, node_ip: &str, ws: SocketAddr, http: SocketAddr) {
    let shown = |a: SocketAddr| {
        if a.ip().is_unspecified() {
            SocketAddr::new(node_ip.parse().unwrap_or(a.ip()), a.port()).to_string()
        } else {
            a.to_string()
        }
    };
    let facts = cluster::NodeFacts {
        rest_url: format!("http://{}", shown(http)),
        ws_url: format!("ws://{}", shown(ws)),
        started_at: cluster::now_ms(),
    };
    let (sessions, calls, streams) = (shared.sessions.clone(), shared.calls.clone(), shared.streams.clone());
    let (engine, apps) = (shared.engine.clone(), shared.apps.clone());
    let pulling = shared.streams.clone();
    c.start_heartbeat(
        facts,
        move || cluster::Snapshot {
            sessions: sessions.select(|p| Some(p.data_ref())),
            calls: calls.find(&serde_json::Map::new()),
            streams: streams::find(&streams, serde_json::Map::new()),
        },
        move |node| streams::origin_lost(&pulling, node),
        move |lost| report_lost(&engine, &apps, lost),
    );
}

/// The end events of a lost node's objects (docs/cluster.md "Lost nodes"), to each object's
/// app: per session, its streams' `StreamStatusEvent` and calls' `CallStatusEvent`, then its
/// `ConnectionStatusEvent`, each `FAILED` with info "Node lost" and the lost node's `nodeId`,
/// in that order, through one event queue per session (retried as any event). An object of a
/// session that was not in the directory goes alone; one whose app this node does not know is
/// logged and skipped.
fn report_lost(engine: &HookEngine, apps: &AppRegistry, lost: cluster::Lost) {
    use callgate_hooks::{EventJob, EventQueue, HookMethod, Origin, RestClientConfig};
    use callgate_proto::{info, status};
    use serde_json::{Map, Value};
    let field = |o: &Map<String, Value>, k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let app_of: std::collections::HashMap<String, String> =
        lost.sessions.iter().map(|s| (field(s, "sessionId"), field(s, "appKey"))).collect();
    // Grouped by session: (session id) -> its events in order.
    type Events = Vec<(HookMethod, Map<String, Value>)>;
    let mut by_session: std::collections::BTreeMap<String, Events> = Default::default();
    let ended = [
        (HookMethod::StreamStatusEvent, status::stream::FAILED, &lost.streams),
        (HookMethod::CallStatusEvent, status::call::FAILED, &lost.calls),
        (HookMethod::ConnectionStatusEvent, status::connection::FAILED, &lost.sessions),
    ];
    for (method, st, objs) in ended {
        for o in objs {
            let mut ev = o.clone();
            ev.insert("status".into(), st.into());
            ev.insert("info".into(), info::NODE_LOST.into());
            ev.insert("nodeId".into(), lost.node_id.clone().into());
            by_session.entry(field(o, "sessionId")).or_default().push((method, ev));
        }
    }
    for (session, events) in by_session {
        let app_key = app_of.get(&session).cloned().unwrap_or_else(|| field(&events[0].1, "appKey"));
        let Some(app) = apps.get(&app_key) else {
            tracing::warn!(
                session,
                app = app_key,
                node = lost.node_id,
                "cluster: a lost node's session names an app this node does not have; its end events are not sent"
            );
            continue;
        };
        let name: Arc<str> = format!("node-lost:{session}").into();
        let queue = EventQueue::spawn(engine.clone(), app.clone(), Arc::new(RestClientConfig::default()), name);
        for (method, data) in events {
            queue.push(EventJob { method, origin: Origin::Client, data, then: Box::new(|_| {}) });
        }
    }
}

async fn ws_upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(addrs): ConnectInfo<ConnAddrs>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let allowed = &shared.cfg.server.allowed_origins;
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        if !allowed.is_empty() && !allowed.iter().any(|a| a.as_bytes() == origin.as_bytes()) {
            tracing::info!(?origin, remote = %addrs.remote, "WebSocket handshake from an origin not in server.allowed_origins refused");
            return (axum::http::StatusCode::FORBIDDEN, "origin not allowed").into_response();
        }
    }
    let max = shared.cfg.server.max_client_frame_bytes;
    // Counted from here: a shutdown waits for the session this upgrade starts.
    let live = shared.lifecycle.session_started();
    // `[limits]`: past max_sessions (or per address), the client still gets its WebSocket, to
    // read why: `fail` with the limit as `info`, then close code 1013 (try again later).
    let slot = match shared.admission.session(addrs.remote.ip()) {
        Ok(slot) => slot,
        Err(refused) => {
            refused.record();
            return ws
                .max_message_size(max)
                .max_frame_size(max)
                .read_buffer_size(4096)
                .write_buffer_size(0)
                .on_upgrade(move |socket| async move {
                    session::refuse(socket, &refused.info()).await;
                    drop(live);
                });
        }
    };
    // Signalling frames are small: tungstenite's default 128 KiB read buffer per connection was
    // most of an idle session's memory (docs/benchmarks.md). Larger frames still arrive whole;
    // the buffer grows for them. Writes go out at once instead of being batched.
    ws.max_message_size(max).max_frame_size(max).read_buffer_size(4096).write_buffer_size(0).on_upgrade(
        move |socket| async move {
            // A session kept alive (`keepAlive`) keeps its slot, and the shutdown waits for it.
            session::run(shared, socket, addrs, (slot, live)).await;
        },
    )
}

/// The configuration tests that need the modules using a section (config.rs is a leaf).
#[cfg(test)]
mod config_tests {
    use std::time::Duration;

    use super::*;

    /// `Config::from_toml` and [`validate`], as a server start sees it.
    fn checked(text: &str) -> anyhow::Result<Config> {
        let c = Config::from_toml(text)?;
        validate(&c)?;
        Ok(c)
    }

    #[test]
    fn media_defaults_and_overrides() {
        let c = checked("").unwrap();
        assert_eq!(c.media.bind.port(), 31000);
        assert!(streams::KeepAlive::from_config(&c.media).is_none());
        let m = c.media.media_config().unwrap();
        assert_eq!((m.candidate_ip, m.public_ip), (None, None));
        let c = checked(
            "[media]\nbind = \"127.0.0.1:0\"\npublic_ip = \"203.0.113.9\"\nkeep_alive_enabled = true\nkeep_alive_interval_ms = 500\nkeep_alive_app_keys = [\"a\"]",
        )
        .unwrap();
        let m = c.media.media_config().unwrap();
        assert_eq!(m.public_ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(m.advertised_addr("127.0.0.1:4242".parse().unwrap()), "203.0.113.9:4242".parse().unwrap());
        let ka = streams::KeepAlive::from_config(&c.media).unwrap();
        assert_eq!((ka.interval, ka.app_keys), (Duration::from_millis(500), vec!["a".to_string()]));
    }

    #[test]
    fn sip_sources_destinations_ring_and_dtmf_limits() {
        let c = checked("").unwrap();
        assert!(c.sip.trusted_networks.is_empty());
        assert_eq!(c.sip.allowed_destinations, ["127.0.0.0/8", "::1"]);
        assert_eq!((c.sip.ring_timeout_ms, c.sip.max_dtmf_digits), (90_000, 32));
        let p = calls::SipPolicy::from_config(&c.sip).unwrap();
        assert!(p.destination_allowed(&[], "127.0.0.1", "127.0.0.1:5060".parse().unwrap()));
        assert!(!p.destination_allowed(&[], "192.0.2.1", "192.0.2.1:5060".parse().unwrap()));
        assert!(checked("[sip]\ntrusted_networks = [\"10.0.0.0/8\", \"192.0.2.1\"]").is_ok());
        assert!(checked("[sip]\ntrusted_networks = [\"pbx.example.com\"]").is_err());
        assert!(checked("[sip]\nallowed_destinations = [\"a b\"]").is_err());
        assert!(checked("[sip]\nring_timeout_ms = 0").is_err());
        assert_eq!(c.sip.outgoing_ring_timeout_ms, 180_000);
        assert!(checked("[sip]\noutgoing_ring_timeout_ms = 999").is_err());
        assert!(checked("[sip]\nmax_dtmf_digits = 0").is_err());
        // One comma-separated string, as an environment variable gives it.
        let c = checked("[sip]\nallowed_destinations = \"pbx.example.com:5060, 10.0.0.0/8\"").unwrap();
        assert_eq!(c.sip.allowed_destinations, ["pbx.example.com:5060", "10.0.0.0/8"]);
        assert!(c.sip.digest_realms.is_empty() && c.sip.endpoint_config().unwrap().digest_realms.is_empty());
        let c = checked("[sip]\ndigest_realms = \"asterisk, pbx realm\"").unwrap();
        assert_eq!(c.sip.endpoint_config().unwrap().digest_realms, ["asterisk", "pbx realm"]);
        let c = checked("[sip]\ndigest_realms = [\"asterisk\"]").unwrap();
        assert_eq!(c.sip.endpoint_config().unwrap().digest_realms, ["asterisk"]);
    }

    #[test]
    fn xcap_defaults_and_checks() {
        let c = checked("").unwrap();
        assert!(c.xcap.allowed_base_urls.is_empty(), "no XCAP host is allowed by default");
        assert_eq!(c.xcap.timeout_ms, 10000);
        let c = checked("[xcap]\nallowed_base_urls = [\"http://127.0.0.1:8080/xcap-root/\"]").unwrap();
        assert_eq!(xcap::bases(&c.xcap).unwrap().len(), 1);
        assert!(checked("[xcap]\nallowed_base_urls = [\"ftp://h/\"]").is_err());
        assert!(checked("[xcap]\nallowed_base_urls = [\"http://user:pw@h/\"]").is_err());
        assert!(checked("[xcap]\nallowed_base_urls = [\"not a url\"]").is_err());
        assert!(checked("[xcap]\ntimeout_ms = 0").is_err());
    }
}

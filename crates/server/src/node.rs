//! The node: its parts, built once by `start` (lib.rs) and shared by the WebSocket sessions and
//! the REST API.
//!
//! The parts below this floor never see [`Shared`]: each gets what it uses (the call tables,
//! the stream directory and media endpoint, the registry, a party's [`NodeInfo`]), as `Arc`s
//! where a spawned task needs an owned handle. Nothing below holds the node, so no table entry
//! can keep it alive.

use std::sync::Arc;

use callgate_hooks::{AppRegistry, HookEngine};
use tokio::sync::watch;

use crate::calls::Calls;
use crate::config::Config;
use crate::party::{NodeInfo, Party};
use crate::registry::Registry;
use crate::rooms::Rooms;
use crate::streams::Streams;
use crate::supervise::Supervisor;

/// What every session and handler shares.
pub struct Shared {
    pub cfg: Config,
    pub engine: HookEngine,
    pub apps: AppRegistry,
    /// The node id, the hook engine and `[hooks]`: what a party needs of the node.
    pub node: Arc<NodeInfo>,
    /// `<32 random chars>@<node ip>` (WCS nodeId shape); the same as `node.id`.
    pub node_id: Arc<str>,
    pub sessions: Arc<Registry<Party>>,
    /// Published and played streams, and the WebRTC media endpoint.
    pub streams: Arc<Streams>,
    /// The SIP user agent and the clients' registrations and calls.
    pub calls: Arc<Calls>,
    /// The room app (`[rooms]`): rooms, their members and streams.
    pub rooms: Arc<Rooms>,
    /// `[xcap]` and its guarded HTTP client, for `sendXcapRequest`.
    pub xcap: Arc<crate::xcap::Xcap>,
    /// Where the SIP driver and the media task report a panic (`supervise.rs`): the server
    /// must then stop and the process exit non-zero.
    pub supervisor: Supervisor,
    /// Whether the node is shutting down, and its live session tasks (`shutdown.rs`).
    pub lifecycle: Lifecycle,
    /// `[limits]` on sessions (`admission.rs`).
    pub admission: Arc<crate::admission::Admission>,
    /// `[cluster]`: the directory of the cluster's nodes and objects; `None` on a single node.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Sessions kept alive after their socket went (`keepAlive`), by `authToken`, until a new
    /// connection resumes them or their grace ends (`session.rs`). Whoever removes an entry
    /// owns what happens next: the resuming connection, or the keeper that ends the session.
    pub kept: dashmap::DashMap<String, KeptSession>,
}

/// A session waiting to be resumed (see [`Shared::kept`]).
pub struct KeptSession {
    pub party: Arc<Party>,
    /// Which keeper put it there (a session resumed and kept again has a new keeper, and the
    /// old one must not take the new entry).
    pub keeper: u64,
    /// Tells the session's keeper that a connection resumed it.
    pub resumed: tokio::sync::oneshot::Sender<()>,
}

/// Whether the node is stopping, and which sessions still run. Part of [`Shared`].
pub struct Lifecycle {
    stopping: watch::Sender<bool>,
    /// Each session's task holds a receiver ([`SessionLive`]) for its whole life.
    sessions: watch::Sender<()>,
}

/// Held by a session's task while it runs (see [`Lifecycle::session_started`]).
pub struct SessionLive(#[allow(dead_code)] watch::Receiver<()>);

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle { stopping: watch::channel(false).0, sessions: watch::channel(()).0 }
    }
}

impl Lifecycle {
    /// Changes to `true` when the shutdown begins.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// A session's task starts (or a WebSocket upgrade that will start one is answered).
    pub fn session_started(&self) -> SessionLive {
        SessionLive(self.sessions.subscribe())
    }

    /// Session tasks still running.
    pub fn sessions(&self) -> usize {
        self.sessions.receiver_count()
    }

    pub(crate) fn begin(&self) {
        self.stopping.send_replace(true);
    }
}

/// The stream directory as a REST call's `toStream` sees it (`calls::CallStreams`: `calls` and
/// `streams` are modules of one floor and name each other through the node only).
pub struct CallStreamPort(pub Arc<Streams>);

impl crate::calls::CallStreams for CallStreamPort {
    fn reserve(
        &self,
        ctx: &Arc<Party>,
        call_id: &str,
        name: &str,
        source: callgate_media::PeerId,
    ) -> Result<(), crate::calls::RestCallError> {
        use crate::calls::RestCallError;
        use crate::streams::call_audio::{self, Refused};
        call_audio::reserve(&self.0, ctx, call_id, name, source).map_err(|r| match r {
            Refused::InUse(info) => RestCallError::Conflict(format!("toStream {name}: {info}")),
            Refused::Full(info) => RestCallError::Overloaded(info),
        })
    }

    fn live(&self, call_id: &str, source: callgate_media::PeerId) {
        crate::streams::call_audio::live(&self.0, call_id, source);
    }

    fn ended(&self, call_id: &str, source: callgate_media::PeerId, info: &str) {
        crate::streams::call_audio::ended(&self.0, call_id, source, info);
    }
}

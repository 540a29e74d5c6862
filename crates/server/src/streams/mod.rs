//! Streams: `publishStream`, `playStream`, `unPublishStream`, `stopStream`, `availableStream`,
//! `sendStreamEvent`, `snapshot` (+ the `playHLS`, `playRTSP` messages, refused; HLS is served
//! over HTTP by `hls`), their hooks and
//! events, the keep-alive hook, and the REST API's view (`/stream/find`, `/find_all`, `/terminate`).
//! `playStream` of an `rtsp://` name runs the `playRTSP` hook and plays a pulled camera
//! (`rtsp`).
//!
//! | client message | hook | what the client gets |
//! |---|---|---|
//! | `publishStream` | `publishStream` (direct; OVERWRITE may rewrite `name`) | `setRemoteSDP [id, answer, true]`, then `PUBLISHING` once ICE+DTLS are up; or `FAILED` + info |
//! | `playStream` | `playStream` (direct) | `setRemoteSDP`, then `PLAYING`; or `FAILED` (`Stream not found`, the backend's reason, …) |
//! | `playStream` of `rtsp://…` | `playRTSP` (direct; OVERWRITE may rewrite `name`; it sees the URL's credentials masked) | as `playStream`, once the camera is pulled; or `FAILED` (401, unreachable, no supported codec, …) |
//! | `unPublishStream` / `stopStream` | `unPublishStream` / `stopStream` (direct) | `UNPUBLISHED` / `STOPPED` (`Stopped by user`); players of a publisher get `STOPPED` `Stopped by publisher stop` |
//! | `availableStream` | — | `availableStream {id, mediaSessionId, name, status:"true"\|"false", info}` |
//! | `sendStreamEvent` | `sendStreamEvent` (event) | each player: `notifyStreamEvent` under its own `mediaSessionId` (+ `StreamEvent` hook on the player's session) |
//! | `snapshot` | `snapshot` (direct) | `notifyStreamEvent` `snapshotCompleted {snapshot: <base64 PNG>}` of the publisher's next VP8 keyframe, or `snapshotFailed {info}` |
//!
//! Every status goes to the backend as `StreamStatusEvent` (PENDING only there) and to the client
//! as `notifyStreamStatusEvent`, through [`Party::raise_event`].
//!
//! Layout: `lifecycle` (publish, play, stop, the media-event watcher), `rtsp` (pulled cameras),
//! `events` (availability,
//! stream events, snapshot), `keep_alive`, `rest` (the REST views), `directory` (pure); this
//! file has the entry points, the status reporting and the one way a stream ends ([`end_stream`]).
//!
//! Ownership: the [`directory::Directory`] (one short lock, never held across `.await`) knows
//! the streams; the media task owns the str0m peers; a small task per stream turns the media
//! events of its peer into statuses.

pub mod call_audio;
pub mod directory;
mod events;
pub mod hls;
mod keep_alive;
mod lifecycle;
pub mod recording;
pub mod relay;
mod rest;
mod rtsp;

pub use keep_alive::spawn_keep_alive;
pub use relay::origin_lost;
pub use rest::{find, find_filter, terminate};

use std::sync::Arc;
use std::time::Duration;

use callgate_hooks::{HookMethod, Origin};
use callgate_media::{FailReason, MediaEndpoint, MediaError, PeerId};
use callgate_proto::info as proto_info;
use callgate_proto::messages::{AVAILABLE_STREAM, NOTIFY_STREAM_EVENT, NOTIFY_STREAM_STATUS_EVENT, SET_REMOTE_SDP};
use callgate_proto::status::stream;
use parking_lot::Mutex;
use serde_json::{Map, Value};

use crate::config::MediaSection;
use crate::party::Party;
use crate::registry::Registry;
use crate::rooms::Rooms;
use directory::{Directory, Kind, Refusal, Removed};

/// The streams' `info` strings (spec/client-protocol.md §7.5), from `callgate_proto::info`.
pub mod info {
    pub use callgate_proto::info::{
        AVAILABLE, FAILED_BY_DTLS_ERROR, FAILED_BY_ERROR, FAILED_BY_ICE_TIMEOUT, FAILED_BY_KEEP_ALIVE,
        MEDIASESSION_ID_ALREADY_IN_USE, MEDIASESSION_ID_NULL, NO_COMMON_CODECS, NO_SDP, NO_STREAM_NAME as NO_NAME,
        PUBLISH_STREAM_IS_NOT_READY, PULL_NOT_SUPPORTED, STOPPED_BY_USER, TERMINATED_BY_KEEP_ALIVE,
    };
}

/// Keep-alive settings (`[media]` in the config).
#[derive(Debug, Clone)]
pub struct KeepAlive {
    pub interval: Duration,
    /// Apps whose streams get `StreamKeepAliveEvent`; empty = every app.
    pub app_keys: Vec<String>,
}

impl KeepAlive {
    /// `Some` when stream keep-alives are on (`[media] keep_alive_*`).
    pub fn from_config(m: &MediaSection) -> Option<KeepAlive> {
        m.keep_alive_enabled.then(|| KeepAlive {
            interval: Duration::from_millis(m.keep_alive_interval_ms),
            app_keys: m.keep_alive_app_keys.clone(),
        })
    }
}

/// The node's streams: the directory and the media endpoint.
pub struct Streams {
    dir: Mutex<Directory<Arc<Party>>>,
    pub media: MediaEndpoint,
    /// The live sessions: a stream is added only while its owner is one of them.
    sessions: Arc<Registry<Party>>,
    /// `[limits] max_streams`: a stream past it is not added (checked under `dir`'s lock).
    max: usize,
    /// `[recording]`; `None`: `record: true` is refused as disabled.
    pub recordings: Option<Arc<recording::Recordings>>,
    /// Snapshots in progress on the node, at most [`SNAPSHOTS_AT_ONCE`]: each may cost one
    /// decode, and a flood of `snapshot` messages must not make a flood of decodes.
    snapshots: Arc<tokio::sync::Semaphore>,
    /// The room app, told of published streams that start and end (from under `dir`'s lock,
    /// so in the directory's order).
    rooms: Option<Arc<Rooms>>,
    /// `[cluster]`: streams pulled from and served to other nodes; `None` on a single node.
    relays: Option<Arc<relay::Relays>>,
    /// Cameras pulled for `playStream` of `rtsp://` names, one per URL.
    pulls: rtsp::Pulls,
}

impl Streams {
    pub fn new(media: MediaEndpoint, sessions: Arc<Registry<Party>>) -> Streams {
        Streams {
            dir: Mutex::new(Directory::default()),
            media,
            sessions,
            max: usize::MAX,
            recordings: None,
            snapshots: Arc::new(tokio::sync::Semaphore::new(SNAPSHOTS_AT_ONCE)),
            rooms: None,
            relays: None,
            pulls: rtsp::Pulls::default(),
        }
    }

    /// The room app to tell of published streams (`custom.name` = a room).
    pub fn with_rooms(mut self, rooms: Arc<Rooms>) -> Streams {
        self.rooms = Some(rooms);
        self
    }

    /// A published stream ended (called under `dir`'s lock): its room and the other nodes
    /// are told.
    fn tell_ended(&self, r: &Removed<Arc<Party>>, ending: &Ending<'_>) {
        if r.entry.kind != Kind::Publish {
            return;
        }
        if let Some(rooms) = &self.rooms {
            rooms.stream_ended(&r.entry.session_id, &r.entry.obj, matches!(ending, Ending::MediaFailed(_)));
        }
        self.announce_soon();
    }

    /// A stream published here began or ended: in a cluster, the directory is written now, not
    /// at the next heartbeat (a no-op on a single node).
    fn announce_soon(&self) {
        if let Some(r) = &self.relays {
            r.announce_soon();
        }
    }

    /// `[cluster]`: a `playStream` of a name published on another node pulls it from there
    /// (see [`relay`]).
    pub fn clustered(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Streams {
        self.relays = cluster.map(|c| Arc::new(relay::Relays::new(c)));
        self
    }

    /// (streams this node pulls from others, relay players it serves to others); (0, 0) on a
    /// single node.
    pub fn relay_counts(&self) -> (usize, usize) {
        self.relays.as_ref().map_or((0, 0), |r| r.counts())
    }

    /// The media peers fed by the local publisher of `name` (its players here and the relay
    /// players of other nodes), as the media task counts them; `None`: not published here.
    pub async fn media_players_of(&self, name: &str) -> Option<usize> {
        let peer = self.dir.lock().publisher(name).map(|e| e.peer)?;
        self.media.stats(peer).await.map(|s| s.players)
    }

    /// `[security] allowed_private_ranges`: the private addresses cameras may have (by default
    /// a camera must have a public address, as every URL a client chooses).
    pub fn pull_guard(mut self, guard: crate::netguard::Guard) -> Streams {
        self.pulls = rtsp::Pulls::new(guard);
        self
    }

    /// RTSP cameras being pulled (one per URL, whatever the number of its players).
    pub fn pulls(&self) -> usize {
        self.pulls.len()
    }

    /// `[recording]`: where and how `record: true` streams are recorded.
    pub fn recording(mut self, cfg: &crate::config::RecordingSection) -> Streams {
        self.recordings = Some(Arc::new(recording::Recordings::from_config(cfg)));
        self
    }

    /// `[limits] max_streams` (the default is no limit).
    pub fn limited(mut self, max_streams: usize) -> Streams {
        self.max = max_streams;
        self
    }

    /// `Err` when `max_streams` streams are live; `dir` is the locked directory.
    fn room(&self, dir: &Directory<Arc<Party>>) -> Result<(), crate::admission::Refused> {
        if dir.len() >= self.max {
            let r = crate::admission::Refused::Streams { limit: self.max };
            r.record();
            return Err(r);
        }
        Ok(())
    }

    /// Number of live streams.
    pub fn len(&self) -> usize {
        self.dir.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.dir.lock().is_empty()
    }

    /// Server shutdown, after the sessions ended (each removed its own streams): forgets what is
    /// left (and the parties that own it). Returns how many streams there were.
    pub fn clear(&self) -> usize {
        self.pulls.stop_all();
        let old = std::mem::take(&mut *self.dir.lock());
        old.len()
    }
}

/// `publishStream`: hook, directory, media answer, watcher (in a task).
pub fn publish(streams: &Arc<Streams>, ctx: Arc<Party>, obj: Map<String, Value>) {
    tokio::spawn(lifecycle::publish(streams.clone(), ctx, obj));
}

/// `playStream` (in a task).
pub fn play(streams: &Arc<Streams>, ctx: Arc<Party>, obj: Map<String, Value>) {
    tokio::spawn(lifecycle::play(streams.clone(), ctx, obj));
}

/// `unPublishStream` / `stopStream` (`method` = its hook), in a task.
pub fn stop(streams: &Arc<Streams>, ctx: Arc<Party>, obj: Map<String, Value>, method: HookMethod) {
    tokio::spawn(lifecycle::stop(streams.clone(), ctx, obj, method));
}

/// `availableStream`.
pub fn available(streams: &Streams, ctx: &Arc<Party>, obj: &Map<String, Value>) {
    events::available(streams, ctx, obj);
}

/// `sendStreamEvent`.
pub fn send_stream_event(streams: &Streams, ctx: &Arc<Party>, obj: Map<String, Value>) {
    events::send_stream_event(streams, ctx, obj);
}

/// How long a snapshot waits for the publisher's next complete keyframe after asking for it
/// (a browser answers a PLI within a frame or two; a lossy uplink may need a few tries).
pub const SNAPSHOT_WAIT: Duration = callgate_media::snapshot::DEFAULT_WAIT;

/// Snapshots in progress at once on the node; one more gets `snapshotFailed`
/// [`callgate_proto::info::SNAPSHOT_BUSY`] at once.
pub const SNAPSHOTS_AT_ONCE: usize = 16;

/// `snapshot` (in a task): a PNG of the publisher's next keyframe, see [`events::snapshot`].
pub fn snapshot(streams: &Arc<Streams>, ctx: Arc<Party>, obj: Map<String, Value>) {
    tokio::spawn(events::snapshot(streams.clone(), ctx, obj));
}

/// `/rest-api/stream/snapshot`: a PNG of the next keyframe of the stream published as `name` on
/// this node, or why not (the same infos as `snapshotFailed`). No hook: the backend asked.
pub async fn snapshot_png(streams: &Streams, name: &str) -> Result<Vec<u8>, String> {
    events::take_snapshot(streams, Some(name)).await
}

/// The `playHLS` message: refused, its info naming the HTTP URL (the SDK never sends it; HLS
/// players fetch `/<stream>/index.m3u8` from the HTTP port, see [`hls`]).
pub fn play_hls_refused(ctx: &Arc<Party>, obj: Map<String, Value>) {
    let data = ctx.with_context(obj);
    raise_status(ctx, stream_object(data), stream::FAILED, proto_info::PLAY_HLS_OVER_HTTP, true, Origin::Client);
}

/// The `playRTSP` message: refused (the SDK plays an RTSP camera with `playStream` of its
/// `rtsp://` URL, which is supported).
pub fn pull_refused(ctx: &Arc<Party>, obj: Map<String, Value>) {
    let data = ctx.with_context(obj);
    raise_status(ctx, stream_object(data), stream::FAILED, info::PULL_NOT_SUPPORTED, true, Origin::Client);
}

/// A client message's `name` with the credentials of a camera URL masked (`rtsp://***@cam/…`):
/// the SDK sends a stream's name as it was created in `stopStream`, `snapshot`…, and hooks and
/// logs must not get them (docs/hooks.md §10).
fn mask_name(obj: &mut Map<String, Value>) {
    if let Some(Value::String(n)) = obj.get_mut("name") {
        if let std::borrow::Cow::Owned(m) = crate::secrets::mask_url_credentials(n) {
            *n = m;
        }
    }
}

fn media_session_id(obj: &Map<String, Value>) -> Option<Arc<str>> {
    match obj.get("mediaSessionId") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.as_str().into()),
        _ => None,
    }
}

/// The stream object events and the REST API show: the data without the SDP.
fn stream_object(mut data: Map<String, Value>) -> Map<String, Value> {
    data.remove("sdp");
    data
}

/// `StreamStatusEvent {status, info}` to the backend, and `notifyStreamStatusEvent` to the
/// client when `to_client` (not for PENDING, nor once the client's socket is gone).
fn raise_status(
    ctx: &Arc<Party>,
    mut obj: Map<String, Value>,
    status: &str,
    info_text: &str,
    to_client: bool,
    origin: Origin,
) {
    obj.insert("status".into(), status.into());
    obj.insert("info".into(), info_text.into());
    tracing::info!(session = &*ctx.id, stream = ?obj.get("mediaSessionId"), name = ?obj.get("name"), status, info = info_text, "stream status");
    metrics::counter!("callgate_stream_statuses_total", "status" => status.to_string()).increment(1);
    ctx.raise_event(HookMethod::StreamStatusEvent, origin, obj, to_client.then_some(NOTIFY_STREAM_STATUS_EVENT));
}

/// The session is still registered (checked under the directory lock, so a stream is either
/// added before the session's cleanup runs, or not at all).
fn session_alive(streams: &Streams, ctx: &Arc<Party>) -> bool {
    streams.sessions.holds(&ctx.id, ctx)
}

fn refusal_info(r: Refusal) -> &'static str {
    match r {
        Refusal::NameInUse => proto_info::STREAM_NAME_ALREADY_IN_USE,
        Refusal::IdInUse => info::MEDIASESSION_ID_ALREADY_IN_USE,
        Refusal::StreamNotFound => proto_info::STREAM_NOT_FOUND,
    }
}

fn media_error_info(e: &MediaError) -> &'static str {
    match e {
        MediaError::NoCommonCodecs => info::NO_COMMON_CODECS,
        MediaError::SourceNotFound => proto_info::STREAM_NOT_FOUND,
        MediaError::BadOffer(_)
        | MediaError::Negotiation(_)
        | MediaError::DuplicatePeer(_)
        | MediaError::NotFound(_)
        | MediaError::TranscodingRequired
        | MediaError::Stopped => info::FAILED_BY_ERROR,
    }
}

fn fail_info(r: &FailReason) -> &'static str {
    match r {
        FailReason::IceTimeout => info::FAILED_BY_ICE_TIMEOUT,
        FailReason::DtlsTimeout | FailReason::Dtls(_) => info::FAILED_BY_DTLS_ERROR,
        FailReason::IceKeepAlive => info::FAILED_BY_KEEP_ALIVE,
        FailReason::Error(_) => info::FAILED_BY_ERROR,
    }
}

/// How a stream ends.
#[derive(Debug, Clone)]
pub enum Ending<'a> {
    /// The client's `unPublishStream`/`stopStream`; `rejected` when its hook refused (the
    /// stream ends anyway: the SDK has already closed its peer connection).
    ByClient { rejected: Option<String> },
    /// ICE, DTLS or the offer failed: `FAILED` with this info.
    MediaFailed(&'a str),
    /// Ended by the server (REST `/terminate`, keep-alive 403): `UNPUBLISHED`/`STOPPED` + info.
    Terminated(&'a str),
    /// The owner's socket is gone: the backend hears `Stopped by session disconnect`.
    SessionClosed,
}

/// Removes stream `id` (only if it still has `peer`, when given) and reports it.
pub fn end_stream(streams: &Streams, id: &str, peer: Option<PeerId>, ending: Ending<'_>, origin: Origin) -> bool {
    let removed = {
        let mut dir = streams.dir.lock();
        let removed = match dir.get(id) {
            Some(e) if peer.is_none_or(|p| p == e.peer) => dir.remove(id),
            _ => None,
        };
        if let Some(r) = &removed {
            streams.tell_ended(r, &ending);
        }
        removed
    };
    match removed {
        Some(r) => {
            report_removed(streams, r, &ending, origin);
            true
        }
        None => false,
    }
}

fn report_removed(streams: &Streams, r: Removed<Arc<Party>>, ending: &Ending<'_>, origin: Origin) {
    let media = &streams.media;
    let e = r.entry;
    media.close(e.peer);
    match (e.kind, &e.source) {
        (Kind::Publish, _) => relay::publisher_ended(streams, &e.name),
        // A player with no local source is fed by a relay (a stream pulled from another node)
        // or by a pulled camera: the last one stops the pull.
        (Kind::Play, None) => {
            relay::player_left(streams, &e.name, &e.id);
            streams.pulls.leave(e.peer);
        }
        (Kind::Play, Some(_)) => {}
    }
    let stopped = if e.kind == Kind::Publish { stream::UNPUBLISHED } else { stream::STOPPED };
    let (status, info_text, to_client) = match ending {
        Ending::ByClient { rejected: None } => (stopped, info::STOPPED_BY_USER, true),
        Ending::ByClient { rejected: Some(why) } => (stream::FAILED, why.as_str(), true),
        Ending::MediaFailed(i) => (stream::FAILED, *i, true),
        Ending::Terminated(i) => (stopped, *i, true),
        Ending::SessionClosed => (stopped, proto_info::STOPPED_BY_SESSION_DISCONNECT, false),
    };
    raise_status(&e.owner, e.obj, status, info_text, to_client, origin);
    for o in r.orphans {
        media.close(o.peer);
        raise_status(&o.owner, o.obj, stream::STOPPED, proto_info::STOPPED_BY_PUBLISHER_STOP, true, origin);
    }
}

/// The session's socket is gone: its streams end (the backend hears `Stopped by session
/// disconnect`, before the session's `ConnectionStatusEvent DISCONNECTED`), players of its
/// publishers elsewhere get `STOPPED` `Stopped by publisher stop`.
pub fn session_closed(streams: &Streams, ctx: &Arc<Party>) {
    let removed = {
        let mut dir = streams.dir.lock();
        let removed = dir.remove_session(&ctx.id);
        for r in &removed {
            streams.tell_ended(r, &Ending::SessionClosed);
        }
        removed
    };
    for r in removed {
        report_removed(streams, r, &Ending::SessionClosed, Origin::Client);
    }
}

//! Streams: `publishStream`, `playStream`, `unPublishStream`, `stopStream`, `availableStream`,
//! `sendStreamEvent` (+ `snapshot`, `playHLS`, `playRTSP`, refused), their hooks and events, the
//! keep-alive hook, and the REST API's view (`/stream/find`, `/find_all`, `/terminate`).
//!
//! | client message | hook | what the client gets |
//! |---|---|---|
//! | `publishStream` | `publishStream` (direct; OVERWRITE may rewrite `name`) | `setRemoteSDP [id, answer, true]`, then `PUBLISHING` once ICE+DTLS are up; or `FAILED` + info |
//! | `playStream` | `playStream` (direct) | `setRemoteSDP`, then `PLAYING`; or `FAILED` (`Stream not found`, the backend's reason, …) |
//! | `unPublishStream` / `stopStream` | `unPublishStream` / `stopStream` (direct) | `UNPUBLISHED` / `STOPPED` (`Stopped by user`); players of a publisher get `STOPPED` `Stopped by publisher stop` |
//! | `availableStream` | — | `availableStream {id, mediaSessionId, name, status:"true"\|"false", info}` |
//! | `sendStreamEvent` | `sendStreamEvent` (event) | each player: `notifyStreamEvent` under its own `mediaSessionId` (+ `StreamEvent` hook on the player's session) |
//!
//! Every status goes to the backend as `StreamStatusEvent` (PENDING only there) and to the client
//! as `notifyStreamStatusEvent`, through [`SessionCtx::raise_event`].
//!
//! Ownership: the [`directory::Directory`] (one short lock, never held across `.await`) knows
//! the streams; the media task owns the str0m peers; a small task per stream turns the media
//! events of its peer into statuses.

pub mod directory;

use std::sync::{Arc, Weak};
use std::time::Duration;

use callgate_hooks::{EventJob, HookMethod, InteractionError, Origin, Verdict};
use callgate_media::{FailReason, MediaEndpoint, MediaError, MediaEvent, PeerId};
use callgate_proto::{info as proto_info, ServerFrame};
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::session::SessionCtx;
use crate::Shared;
use directory::{Directory, Entry, Kind, Refusal, Removed, Status};

/// `info` strings (spec/client-protocol.md §7.5) beyond those in `callgate_proto::info`.
pub mod info {
    pub const FAILED_BY_ICE_TIMEOUT: &str = "Failed by ICE timeout";
    pub const FAILED_BY_DTLS_ERROR: &str = "Failed by DTLS error";
    pub const FAILED_BY_KEEP_ALIVE: &str = "Failed by ICE keep alive";
    pub const FAILED_BY_ERROR: &str = "Failed by error";
    pub const NO_COMMON_CODECS: &str = "No common codecs";
    pub const MEDIASESSION_ID_NULL: &str = "MediaSessionId is null";
    pub const MEDIASESSION_ID_ALREADY_IN_USE: &str = "MediaSessionId is already in use";
    pub const STOPPED_BY_USER: &str = "Stopped by user";
    pub const TERMINATED_BY_KEEP_ALIVE: &str = "Terminated by keep-alive";
    pub const PUBLISH_STREAM_IS_NOT_READY: &str = "Publish stream is not ready";
    pub const AVAILABLE: &str = "Available";
    pub const NO_SDP: &str = "Failed by error: no SDP offer";
    pub const NO_NAME: &str = "Failed by error: no stream name";
    /// `playHLS`, `playRTSP` and URL stream names (RTSP/RTMP/HTTP pull) are not implemented.
    pub const PULL_NOT_SUPPORTED: &str = "Playing RTSP, RTMP or HLS sources is not supported by this server";
    pub const SNAPSHOT_NOT_SUPPORTED: &str = "Snapshots are not supported by this server";
}

const NOTIFY_STREAM_STATUS_EVENT: &str = "notifyStreamStatusEvent";
const NOTIFY_STREAM_EVENT: &str = "notifyStreamEvent";
const SET_REMOTE_SDP: &str = "setRemoteSDP";
const AVAILABLE_STREAM: &str = "availableStream";

/// Keep-alive settings (`[media]` in the config).
#[derive(Debug, Clone)]
pub struct KeepAlive {
    pub interval: Duration,
    /// Apps whose streams get `StreamKeepAliveEvent`; empty = every app.
    pub app_keys: Vec<String>,
}

/// The node's streams: the directory and the media endpoint.
pub struct Streams {
    dir: Mutex<Directory<Arc<SessionCtx>>>,
    pub media: MediaEndpoint,
}

impl Streams {
    pub fn new(media: MediaEndpoint) -> Streams {
        Streams { dir: Mutex::new(Directory::default()), media }
    }

    /// Number of live streams.
    pub fn len(&self) -> usize {
        self.dir.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.dir.lock().is_empty()
    }
}

/// True for the client messages this module handles.
pub fn handles(message: &str) -> bool {
    matches!(
        message,
        "publishStream"
            | "playStream"
            | "unPublishStream"
            | "stopStream"
            | "availableStream"
            | "sendStreamEvent"
            | "snapshot"
            | "playHLS"
            | "playRTSP"
    )
}

/// Handles one stream message of an established session. Hook waits run in their own tasks.
pub fn dispatch(ctx: Arc<SessionCtx>, message: &str, obj: Map<String, Value>) {
    match message {
        "publishStream" => drop(tokio::spawn(publish(ctx, obj))),
        "playStream" => drop(tokio::spawn(play(ctx, obj))),
        "unPublishStream" => drop(tokio::spawn(stop(ctx, obj, HookMethod::UnPublishStream))),
        "stopStream" => drop(tokio::spawn(stop(ctx, obj, HookMethod::StopStream))),
        "availableStream" => available(&ctx, &obj),
        "sendStreamEvent" => send_stream_event(&ctx, obj),
        "snapshot" => snapshot_refused(&ctx, &obj),
        "playHLS" | "playRTSP" => {
            let data = with_context(&ctx, obj);
            raise_status(&ctx, stream_object(data), "FAILED", info::PULL_NOT_SUPPORTED, true, Origin::Client);
        }
        _ => {}
    }
}

fn with_context(ctx: &SessionCtx, mut obj: Map<String, Value>) -> Map<String, Value> {
    obj.insert("nodeId".into(), Value::from(&*ctx.shared.node_id));
    obj.insert("appKey".into(), Value::from(&*ctx.app.key));
    obj.insert("sessionId".into(), Value::from(&*ctx.id));
    obj
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
    ctx: &Arc<SessionCtx>,
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
fn session_alive(ctx: &SessionCtx) -> bool {
    ctx.shared.sessions.get(&ctx.id).is_some_and(|h| Arc::ptr_eq(&h, &ctx.handle))
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

/// What the hook, the checks and the client's data give before a stream is added.
struct Prepared {
    id: Arc<str>,
    name: String,
    offer: String,
    obj: Map<String, Value>,
}

/// The common front of publish and play: id check, the direct hook (which may rewrite `name`
/// under OVERWRITE), SDP and name checks. `Err` has been reported to the client already.
async fn prepare(ctx: &Arc<SessionCtx>, obj: Map<String, Value>, kind: Kind) -> Option<Prepared> {
    let (method, published) = match kind {
        Kind::Publish => (HookMethod::PublishStream, true),
        Kind::Play => (HookMethod::PlayStream, false),
    };
    let mut data = with_context(ctx, obj);
    data.entry("published").or_insert(Value::Bool(published));
    let Some(id) = media_session_id(&data) else {
        raise_status(ctx, stream_object(data), "FAILED", info::MEDIASESSION_ID_NULL, true, Origin::Client);
        return None;
    };
    let is_url = |d: &Map<String, Value>| {
        d.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| ["rtsp://", "rtmp://", "http://", "https://"].iter().any(|p| n.starts_with(p)))
    };
    if kind == Kind::Play && is_url(&data) {
        raise_status(ctx, stream_object(data), "FAILED", info::PULL_NOT_SUPPORTED, true, Origin::Client);
        return None;
    }
    if let Err(why) = ctx.direct(method, &mut data).await {
        tracing::info!(session = &*ctx.id, stream = &*id, method = method.url_name(), reason = %why, "stream refused by the backend");
        raise_status(ctx, stream_object(data), "FAILED", &why, true, Origin::Client);
        return None;
    }
    // The backend may rewrite fields, but not move the stream to another id or direction.
    data.insert("mediaSessionId".into(), Value::from(&*id));
    data.insert("published".into(), Value::Bool(published));
    let offer = match data.remove("sdp") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => {
            raise_status(ctx, data, "FAILED", info::NO_SDP, true, Origin::Client);
            return None;
        }
    };
    let name = match data.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => {
            raise_status(ctx, data, "FAILED", info::NO_NAME, true, Origin::Client);
            return None;
        }
    };
    if kind == Kind::Play && is_url(&data) {
        raise_status(ctx, data, "FAILED", info::PULL_NOT_SUPPORTED, true, Origin::Client);
        return None;
    }
    data.insert("status".into(), Status::Pending.as_str().into());
    data.insert("info".into(), "".into());
    Some(Prepared { id, name, offer, obj: data })
}

fn new_entry(ctx: &Arc<SessionCtx>, p: &Prepared, kind: Kind, peer: PeerId) -> Entry<Arc<SessionCtx>> {
    Entry {
        id: p.id.clone(),
        name: p.name.clone(),
        kind,
        status: Status::Pending,
        owner: ctx.clone(),
        session_id: ctx.id.clone(),
        peer,
        source: None,
        players: Vec::new(),
        obj: p.obj.clone(),
    }
}

/// `publishStream`: hook, reserve the name, answer the offer, then wait for the media events.
async fn publish(ctx: Arc<SessionCtx>, obj: Map<String, Value>) {
    let Some(p) = prepare(&ctx, obj, Kind::Publish).await else { return };
    let streams = &ctx.shared.streams;
    let peer = streams.media.next_peer_id();
    let added = {
        let mut dir = streams.dir.lock();
        if !session_alive(&ctx) {
            return;
        }
        dir.add_publisher(new_entry(&ctx, &p, Kind::Publish, peer))
    };
    if let Err(r) = added {
        raise_status(&ctx, p.obj, "FAILED", refusal_info(r), true, Origin::Client);
        return;
    }
    raise_status(&ctx, p.obj.clone(), Status::Pending.as_str(), "", false, Origin::Client);
    let (tx, rx) = mpsc::unbounded_channel();
    let answer = streams.media.publish(peer, p.offer, tx).await;
    answered(&ctx, &p.id, peer, answer, rx);
}

/// `playStream`: hook, find the publisher, answer the offer, then wait for the media events.
async fn play(ctx: Arc<SessionCtx>, obj: Map<String, Value>) {
    let Some(p) = prepare(&ctx, obj, Kind::Play).await else { return };
    let streams = &ctx.shared.streams;
    let peer = streams.media.next_peer_id();
    let added = {
        let mut dir = streams.dir.lock();
        if !session_alive(&ctx) {
            return;
        }
        dir.add_player(new_entry(&ctx, &p, Kind::Play, peer))
    };
    let source = match added {
        Ok(source) => source,
        Err(r) => {
            raise_status(&ctx, p.obj, "FAILED", refusal_info(r), true, Origin::Client);
            return;
        }
    };
    raise_status(&ctx, p.obj.clone(), Status::Pending.as_str(), "", false, Origin::Client);
    let (tx, rx) = mpsc::unbounded_channel();
    let answer = streams.media.play(peer, source, p.offer, tx).await;
    answered(&ctx, &p.id, peer, answer, rx);
}

/// After the media endpoint answered: `setRemoteSDP` and a watcher for the peer's events, or
/// `FAILED`. A stream that ended meanwhile (session closed, publisher gone) only closes its peer.
fn answered(
    ctx: &Arc<SessionCtx>,
    id: &Arc<str>,
    peer: PeerId,
    answer: Result<String, MediaError>,
    rx: mpsc::UnboundedReceiver<MediaEvent>,
) {
    let shared = &ctx.shared;
    match answer {
        Err(e) => {
            tracing::info!(session = &*ctx.id, stream = &**id, error = %e, "offer not answered");
            end_stream(shared, id, Some(peer), Ending::MediaFailed(media_error_info(&e)), Origin::Client);
        }
        Ok(sdp) => {
            let live = shared.streams.dir.lock().get(id).is_some_and(|e| e.peer == peer);
            if !live {
                shared.streams.media.close(peer);
                return;
            }
            ctx.out.send(&ServerFrame::new(SET_REMOTE_SDP, vec![Value::from(&**id), sdp.into(), Value::Bool(true)]));
            tokio::spawn(watch(Arc::downgrade(shared), id.clone(), peer, rx));
        }
    }
}

/// Turns the media events of one peer into statuses, until the peer is gone.
async fn watch(shared: Weak<Shared>, id: Arc<str>, peer: PeerId, mut rx: mpsc::UnboundedReceiver<MediaEvent>) {
    while let Some(ev) = rx.recv().await {
        let Some(shared) = shared.upgrade() else { return };
        match ev {
            MediaEvent::Connected => {
                let up = {
                    let mut dir = shared.streams.dir.lock();
                    match dir.get(&id) {
                        Some(e) if e.peer == peer => {
                            let st = if e.kind == Kind::Publish { Status::Publishing } else { Status::Playing };
                            dir.set_status(&id, st).map(|e| (e.owner.clone(), e.obj.clone()))
                        }
                        _ => None,
                    }
                };
                if let Some((ctx, obj)) = up {
                    let status = obj["status"].as_str().unwrap_or_default().to_string();
                    raise_status(&ctx, obj, &status, "", true, Origin::Client);
                }
            }
            MediaEvent::Failed(reason) => {
                end_stream(&shared, &id, Some(peer), Ending::MediaFailed(fail_info(&reason)), Origin::Client);
                return;
            }
        }
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
pub fn end_stream(shared: &Shared, id: &str, peer: Option<PeerId>, ending: Ending<'_>, origin: Origin) -> bool {
    let removed = {
        let mut dir = shared.streams.dir.lock();
        match dir.get(id) {
            Some(e) if peer.is_none_or(|p| p == e.peer) => dir.remove(id),
            _ => None,
        }
    };
    match removed {
        Some(r) => {
            report_removed(&shared.streams.media, r, &ending, origin);
            true
        }
        None => false,
    }
}

fn report_removed(media: &MediaEndpoint, r: Removed<Arc<SessionCtx>>, ending: &Ending<'_>, origin: Origin) {
    let e = r.entry;
    media.close(e.peer);
    let stopped = if e.kind == Kind::Publish { "UNPUBLISHED" } else { "STOPPED" };
    let (status, info_text, to_client) = match ending {
        Ending::ByClient { rejected: None } => (stopped, info::STOPPED_BY_USER, true),
        Ending::ByClient { rejected: Some(why) } => ("FAILED", why.as_str(), true),
        Ending::MediaFailed(i) => ("FAILED", *i, true),
        Ending::Terminated(i) => (stopped, *i, true),
        Ending::SessionClosed => (stopped, proto_info::STOPPED_BY_SESSION_DISCONNECT, false),
    };
    raise_status(&e.owner, e.obj, status, info_text, to_client, origin);
    for o in r.orphans {
        media.close(o.peer);
        raise_status(&o.owner, o.obj, "STOPPED", proto_info::STOPPED_BY_PUBLISHER_STOP, true, origin);
    }
}

/// `unPublishStream` / `stopStream`: the hook, then the stream ends (see [`Ending::ByClient`]).
async fn stop(ctx: Arc<SessionCtx>, obj: Map<String, Value>, method: HookMethod) {
    let id = media_session_id(&obj);
    let mut data = with_context(&ctx, obj);
    let verdict = ctx.direct(method, &mut data).await;
    let Some(id) = id else { return };
    let removed = {
        let mut dir = ctx.shared.streams.dir.lock();
        match dir.get(&id) {
            // A session can only stop its own streams.
            Some(e) if e.session_id == ctx.id => dir.remove(&id),
            _ => None,
        }
    };
    match removed {
        Some(r) => {
            report_removed(&ctx.shared.streams.media, r, &Ending::ByClient { rejected: verdict.err() }, Origin::Client)
        }
        None => {
            // Unknown here (it ended already): still give the SDK a terminal status for the id.
            let mut st = stream_object(data);
            let stopped = if method == HookMethod::UnPublishStream { "UNPUBLISHED" } else { "STOPPED" };
            st.insert("status".into(), stopped.into());
            st.insert("info".into(), proto_info::STREAM_NOT_FOUND.into());
            ctx.out.send(&ServerFrame::object(NOTIFY_STREAM_STATUS_EVENT, st));
        }
    }
}

/// `availableStream`: whether `name` is being published. `status` is the string "true"/"false"
/// (the SDK compares with `== "true"`).
fn available(ctx: &Arc<SessionCtx>, obj: &Map<String, Value>) {
    let id = obj.get("mediaSessionId").cloned().unwrap_or(Value::Null);
    let name = obj.get("name").cloned().unwrap_or(Value::Null);
    let (status, info_text) =
        match name.as_str().and_then(|n| ctx.shared.streams.dir.lock().publisher(n).map(|e| e.status)) {
            Some(Status::Publishing) => ("true", info::AVAILABLE),
            Some(_) => ("false", info::PUBLISH_STREAM_IS_NOT_READY),
            None => ("false", proto_info::STREAM_NOT_FOUND),
        };
    let mut m = Map::new();
    m.insert("id".into(), id.clone());
    m.insert("mediaSessionId".into(), id);
    m.insert("name".into(), name);
    m.insert("status".into(), status.into());
    m.insert("info".into(), info_text.into());
    ctx.out.send(&ServerFrame::object(AVAILABLE_STREAM, m));
}

/// `sendStreamEvent {mediaSessionId:<publisher>, type, payload?}`: the `sendStreamEvent` hook,
/// then `notifyStreamEvent` to every player under **its own** id (+ `StreamEvent` hook on the
/// player's session). Events on a play id (the SDK sends mute events for players too) go to the
/// backend only.
fn send_stream_event(ctx: &Arc<SessionCtx>, obj: Map<String, Value>) {
    let id = media_session_id(&obj);
    let kind = obj.get("type").cloned().unwrap_or(Value::Null);
    let payload = obj.get("payload").cloned();
    ctx.raise_event(HookMethod::SendStreamEvent, Origin::Client, with_context(ctx, obj), None);
    let Some(id) = id else { return };
    let (name, players) = {
        let mut dir = ctx.shared.streams.dir.lock();
        let name = match dir.get(&id) {
            Some(e) if e.kind == Kind::Publish && e.session_id == ctx.id => e.name.clone(),
            _ => return,
        };
        let players: Vec<(Arc<SessionCtx>, Arc<str>)> =
            dir.players_of(&id).into_iter().map(|p| (p.owner.clone(), p.id.clone())).collect();
        // Keep the mute state in the stream object (WCS's audioState/videoState).
        if let Some((field, muted)) = match kind.as_str() {
            Some("audioMuted") => Some(("audioState", true)),
            Some("audioUnmuted") => Some(("audioState", false)),
            Some("videoMuted") => Some(("videoState", true)),
            Some("videoUnmuted") => Some(("videoState", false)),
            _ => None,
        } {
            if let Some(e) = dir.obj_mut(&id) {
                e.insert(field.into(), serde_json::json!({ "muted": muted }));
            }
        }
        (name, players)
    };
    for (pctx, pid) in players {
        let mut ev = with_context(&pctx, Map::new());
        ev.insert("mediaSessionId".into(), Value::from(&*pid));
        ev.insert("name".into(), Value::from(name.as_str()));
        ev.insert("type".into(), kind.clone());
        if let Some(p) = &payload {
            ev.insert("payload".into(), p.clone());
        }
        pctx.raise_event(HookMethod::StreamEvent, Origin::Client, ev, Some(NOTIFY_STREAM_EVENT));
    }
}

/// `snapshot`: not implemented; the SDK gets `snapshotFailed` (what it handles), never a fake image.
fn snapshot_refused(ctx: &Arc<SessionCtx>, obj: &Map<String, Value>) {
    let mut m = Map::new();
    m.insert("mediaSessionId".into(), obj.get("mediaSessionId").cloned().unwrap_or(Value::Null));
    m.insert("name".into(), obj.get("name").cloned().unwrap_or(Value::Null));
    m.insert("type".into(), "snapshotFailed".into());
    m.insert("payload".into(), serde_json::json!({ "info": info::SNAPSHOT_NOT_SUPPORTED }));
    ctx.out.send(&ServerFrame::object(NOTIFY_STREAM_EVENT, m));
}

/// The session's socket is gone: its streams end (the backend hears `Stopped by session
/// disconnect`, before the session's `ConnectionStatusEvent DISCONNECTED`), players of its
/// publishers elsewhere get `STOPPED` `Stopped by publisher stop`.
pub fn session_closed(ctx: &Arc<SessionCtx>) {
    let removed = ctx.shared.streams.dir.lock().remove_session(&ctx.id);
    for r in removed {
        report_removed(&ctx.shared.streams.media, r, &Ending::SessionClosed, Origin::Client);
    }
}

/// One keep-alive to send: the owner, the stream id, its peer, its object.
type KeepAliveDue = (Arc<SessionCtx>, Arc<str>, PeerId, Map<String, Value>);

/// Sends `StreamKeepAliveEvent` for every connected stream each `interval`; a `403` answer ends
/// that stream (`Terminated by keep-alive`). Stops when the server is gone.
pub fn spawn_keep_alive(shared: Weak<Shared>, ka: KeepAlive) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + ka.interval, ka.interval);
        loop {
            tick.tick().await;
            let Some(shared) = shared.upgrade() else { return };
            let due: Vec<KeepAliveDue> = shared
                .streams
                .dir
                .lock()
                .all()
                .filter(|e| e.status != Status::Pending)
                .filter(|e| ka.app_keys.is_empty() || ka.app_keys.iter().any(|k| **k == *e.owner.app.key))
                .map(|e| (e.owner.clone(), e.id.clone(), e.peer, e.obj.clone()))
                .collect();
            for (ctx, id, peer, obj) in due {
                let job_ctx = ctx.clone();
                ctx.events.push(EventJob {
                    method: HookMethod::StreamKeepAliveEvent,
                    origin: Origin::Client,
                    data: obj,
                    then: Box::new(move |done| {
                        let forbidden =
                            matches!(done.invocation.error, Some(InteractionError::Status { code: 403, .. }));
                        if forbidden {
                            tracing::info!(
                                session = &*job_ctx.id,
                                stream = &*id,
                                "keep-alive answered 403; stream ends"
                            );
                            end_stream(
                                &job_ctx.shared,
                                &id,
                                Some(peer),
                                Ending::Terminated(info::TERMINATED_BY_KEEP_ALIVE),
                                Origin::Client,
                            );
                        } else if done.invocation.verdict == Verdict::ProceedWithErrorEvent {
                            job_ctx.error_event(
                                &format!("StreamKeepAliveEvent: {}", done.invocation.client_info()),
                                Origin::Client,
                            );
                        }
                    }),
                });
            }
        }
    });
}

/// WCS examples pass JSON values as strings (`"published":"false"`): accept both.
fn normalize_filter(filter: &mut Map<String, Value>) {
    for k in ["published", "hasAudio", "hasVideo", "record"] {
        if let Some(Value::String(s)) = filter.get(k) {
            let b = match s.as_str() {
                "true" => true,
                "false" => false,
                _ => continue,
            };
            filter.insert(k.into(), Value::Bool(b));
        }
    }
}

/// REST `/stream/find` and `/find_all`: the stream objects matching `filter` (every field equal;
/// `display` is ignored).
pub fn find(shared: &Shared, mut filter: Map<String, Value>) -> Vec<Map<String, Value>> {
    filter.remove("display");
    normalize_filter(&mut filter);
    shared.streams.dir.lock().find(&filter).into_iter().map(|e| e.obj.clone()).collect()
}

/// REST `/stream/terminate`: ends every stream matching `filter` (`{}` = all; `mediaSessionIds`
/// = any of these ids; other fields must be equal) with `Stopped by rest /terminate`. Returns
/// how many matched.
pub fn terminate(shared: &Shared, mut filter: Map<String, Value>) -> usize {
    normalize_filter(&mut filter);
    let ids_filter: Option<Vec<String>> = filter.remove("mediaSessionIds").map(|v| match v {
        Value::Array(a) => a.into_iter().filter_map(|x| x.as_str().map(String::from)).collect(),
        Value::String(s) => vec![s],
        _ => vec![],
    });
    let mut matched: Vec<(Kind, Arc<str>)> = shared
        .streams
        .dir
        .lock()
        .find(&filter)
        .into_iter()
        .filter(|e| ids_filter.as_ref().is_none_or(|l| l.iter().any(|x| **x == *e.id)))
        .map(|e| (e.kind, e.id.clone()))
        .collect();
    // Players first: a matched player hears the REST reason, not "Stopped by publisher stop".
    matched.sort_by_key(|(k, _)| *k == Kind::Publish);
    for (_, id) in &matched {
        end_stream(shared, id, None, Ending::Terminated(proto_info::STOPPED_BY_REST_TERMINATE), Origin::RestApi);
    }
    matched.len()
}

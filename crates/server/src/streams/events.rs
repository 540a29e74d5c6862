//! `availableStream`, `sendStreamEvent` (relayed to players) and `snapshot` (a PNG of a
//! published stream's next keyframe).

use std::sync::Arc;

use callgate_hooks::{HookMethod, Origin};
use callgate_proto::{info as proto_info, ServerFrame};
use serde_json::{Map, Value};

use super::directory::{Kind, Status};
use super::*;
use crate::party::Party;

/// `availableStream`: whether `name` is being published. `status` is the string "true"/"false"
/// (the SDK compares with `== "true"`).
pub(super) fn available(streams: &Streams, ctx: &Arc<Party>, obj: &Map<String, Value>) {
    let id = obj.get("mediaSessionId").cloned().unwrap_or(Value::Null);
    let name = obj.get("name").cloned().unwrap_or(Value::Null);
    let (status, info_text) = match name.as_str().and_then(|n| streams.dir.lock().publisher(n).map(|e| e.status)) {
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
    ctx.send(&ServerFrame::object(AVAILABLE_STREAM, m));
}

/// `sendStreamEvent {mediaSessionId:<publisher>, type, payload?}`: the `sendStreamEvent` hook,
/// then `notifyStreamEvent` to every player under **its own** id (+ `StreamEvent` hook on the
/// player's session). Events on a play id (the SDK sends mute events for players too) go to the
/// backend only.
pub(super) fn send_stream_event(streams: &Streams, ctx: &Arc<Party>, mut obj: Map<String, Value>) {
    mask_name(&mut obj);
    let id = media_session_id(&obj);
    let kind = obj.get("type").cloned().unwrap_or(Value::Null);
    let payload = obj.get("payload").cloned();
    ctx.raise_event(HookMethod::SendStreamEvent, Origin::Client, ctx.with_context(obj), None);
    let Some(id) = id else { return };
    let (name, players) = {
        let mut dir = streams.dir.lock();
        let name = match dir.get(&id) {
            Some(e) if e.kind == Kind::Publish && e.session_id == ctx.id => e.name.clone(),
            _ => return,
        };
        let players: Vec<(Arc<Party>, Arc<str>)> =
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
        let mut ev = pctx.with_context(Map::new());
        ev.insert("mediaSessionId".into(), Value::from(&*pid));
        ev.insert("name".into(), Value::from(name.as_str()));
        ev.insert("type".into(), kind.clone());
        if let Some(p) = &payload {
            ev.insert("payload".into(), p.clone());
        }
        pctx.raise_event(HookMethod::StreamEvent, Origin::Client, ev, Some(NOTIFY_STREAM_EVENT));
    }
}

/// `snapshot {name, mediaSessionId}`: the `snapshot` hook (direct; the backend may refuse, or
/// rewrite `name` under OVERWRITE), then the publisher of `name` on this node is asked for its
/// next keyframe (`callgate_media::snapshot`): `notifyStreamEvent {mediaSessionId, name,
/// type:"snapshotCompleted", payload:{snapshot:<base64 PNG>}}`, or `type:"snapshotFailed",
/// payload:{info}`. The requester may be any stream object (a never-played `NEW` one too): the
/// answer goes to the `mediaSessionId` it sent.
pub(super) async fn snapshot(streams: Arc<Streams>, ctx: Arc<Party>, obj: Map<String, Value>) {
    let id = obj.get("mediaSessionId").cloned().unwrap_or(Value::Null);
    let mut data = ctx.with_context(obj);
    mask_name(&mut data);
    let taken = match ctx.direct(HookMethod::Snapshot, &mut data).await {
        Err(why) => Err(why),
        Ok(()) => take_snapshot(&streams, data.get("name").and_then(Value::as_str)).await,
    };
    let name = data.get("name").cloned().unwrap_or(Value::Null);
    let mut m = Map::new();
    m.insert("mediaSessionId".into(), id);
    m.insert("name".into(), name.clone());
    let result = match taken {
        Ok(png) => {
            use base64::Engine as _;
            tracing::info!(session = &*ctx.id, name = ?name, bytes = png.len(), "snapshot taken");
            m.insert("type".into(), "snapshotCompleted".into());
            let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
            m.insert("payload".into(), serde_json::json!({ "snapshot": b64 }));
            "completed"
        }
        Err(why) => {
            tracing::info!(session = &*ctx.id, name = ?name, reason = %why, "snapshot failed");
            m.insert("type".into(), "snapshotFailed".into());
            m.insert("payload".into(), serde_json::json!({ "info": why }));
            "failed"
        }
    };
    metrics::counter!("callgate_snapshots_total", "result" => result).increment(1);
    ctx.send(&ServerFrame::object(NOTIFY_STREAM_EVENT, m));
}

/// The PNG of the next keyframe of the stream published as `name` on this node, or the info.
pub(super) async fn take_snapshot(streams: &Streams, name: Option<&str>) -> Result<Vec<u8>, String> {
    let Ok(_permit) = streams.snapshots.clone().try_acquire_owned() else {
        return Err(proto_info::SNAPSHOT_BUSY.into());
    };
    let peer = {
        let dir = streams.dir.lock();
        match name.and_then(|n| dir.publisher(n)) {
            None => return Err(proto_info::STREAM_NOT_FOUND.into()),
            Some(e) if e.status != Status::Publishing => return Err(info::PUBLISH_STREAM_IS_NOT_READY.into()),
            Some(e) => e.peer,
        }
    };
    streams.media.snapshot(peer, SNAPSHOT_WAIT).await.map(|s| s.png).map_err(proto_info::snapshot_failed)
}

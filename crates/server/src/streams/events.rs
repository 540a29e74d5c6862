//! `availableStream`, `sendStreamEvent` (relayed to players) and `snapshot` (refused).

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
pub(super) fn send_stream_event(streams: &Streams, ctx: &Arc<Party>, obj: Map<String, Value>) {
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

/// `snapshot`: not implemented; the SDK gets `snapshotFailed` (what it handles), never a fake image.
pub(super) fn snapshot_refused(ctx: &Arc<Party>, obj: &Map<String, Value>) {
    let mut m = Map::new();
    m.insert("mediaSessionId".into(), obj.get("mediaSessionId").cloned().unwrap_or(Value::Null));
    m.insert("name".into(), obj.get("name").cloned().unwrap_or(Value::Null));
    m.insert("type".into(), "snapshotFailed".into());
    m.insert("payload".into(), serde_json::json!({ "info": info::SNAPSHOT_NOT_SUPPORTED }));
    ctx.send(&ServerFrame::object(NOTIFY_STREAM_EVENT, m));
}

//! A SIP call's audio as a stream: `toStream` on `/rest-api/call/startup` (WCS's "SIP as
//! RTMP" family; docs/hooks.md §12, docs/media.md "Call audio as a stream").
//!
//! The call's party (`rest-api:<callId>`, no client) owns a publisher entry named `toStream`,
//! its `mediaSessionId` the `callId`, its media peer a source of the media core fed by the
//! call's RTP-only leg (what the SIP side sends; G.711 passed through to players that take it).
//! Players find it like any published stream: `playStream` and its hook, `/stream/find`,
//! StreamStatusEvents. The calls module drives it through `calls::CallStreams` (implemented by
//! the node): reserve (PENDING), live (PUBLISHING), ended (UNPUBLISHED `Stopped by call end`,
//! players STOPPED `Stopped by publisher stop`).

use std::sync::Arc;

use callgate_hooks::Origin;
use callgate_media::PeerId;
use callgate_proto::status::stream;
use serde_json::Map;

use super::directory::{Entry, Kind, Status};
use super::{end_stream, raise_status, refusal_info, Ending, Streams};
use crate::party::Party;

/// Why a call's stream was not reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The name (or the `callId` as a `mediaSessionId`) is in use.
    InUse(&'static str),
    /// `[limits] max_streams` streams are live.
    Full(String),
}

/// Reserves the publisher `name` for the call `call_id` of `ctx`, fed by `source` (a media
/// source made afterwards); the backend hears `PENDING`.
pub fn reserve(streams: &Streams, ctx: &Arc<Party>, call_id: &str, name: &str, source: PeerId) -> Result<(), Refused> {
    let mut obj = Map::new();
    obj.insert("mediaSessionId".into(), call_id.into());
    obj.insert("name".into(), name.into());
    obj.insert("published".into(), true.into());
    obj.insert("hasAudio".into(), true.into());
    obj.insert("hasVideo".into(), false.into());
    obj.insert("record".into(), false.into());
    obj.insert("callId".into(), call_id.into());
    obj.insert("status".into(), Status::Pending.as_str().into());
    obj.insert("info".into(), "".into());
    let obj = ctx.with_context(obj);
    let entry = Entry {
        id: call_id.into(),
        name: name.to_string(),
        kind: Kind::Publish,
        status: Status::Pending,
        owner: ctx.clone(),
        session_id: ctx.id.clone(),
        peer: source,
        source: None,
        players: Vec::new(),
        obj: obj.clone(),
    };
    {
        let mut dir = streams.dir.lock();
        streams.room(&dir).map_err(|r| Refused::Full(r.info()))?;
        dir.add_publisher(entry).map_err(|r| Refused::InUse(refusal_info(r)))?;
    }
    raise_status(ctx, obj, stream::PENDING, "", false, Origin::RestApi);
    Ok(())
}

/// The source exists and the call's audio feeds it: `PUBLISHING` (if the stream is still the
/// one of `source`). A stream that ended while its source was being made (the call ended,
/// `/stream/terminate`) closed a media peer that did not exist yet: its source is closed now.
pub fn live(streams: &Streams, id: &str, source: PeerId) {
    let up = {
        let mut dir = streams.dir.lock();
        match dir.get(id) {
            Some(e) if e.peer == source => {
                dir.set_status(id, Status::Publishing).map(|e| (e.owner.clone(), e.obj.clone()))
            }
            _ => None,
        }
    };
    match up {
        Some((ctx, obj)) => raise_status(&ctx, obj, stream::PUBLISHING, "", true, Origin::RestApi),
        None => streams.media.close(source),
    }
}

/// The call is over: its stream ends (`UNPUBLISHED` with `info`, players `STOPPED`), unless it
/// ended before (`/stream/terminate`).
pub fn ended(streams: &Streams, id: &str, source: PeerId, info: &str) {
    end_stream(streams, id, Some(source), Ending::Terminated(info), Origin::RestApi);
}

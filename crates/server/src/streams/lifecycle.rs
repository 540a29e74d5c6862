//! Publish, play and stop: the hook, the directory, the media endpoint's answer, and the
//! watcher that turns a peer's media events into statuses.

use std::sync::{Arc, Weak};

use callgate_hooks::{HookMethod, Origin};
use callgate_media::{MediaError, MediaEvent, PeerId};
use callgate_proto::status::stream;
use callgate_proto::{info as proto_info, ServerFrame};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::directory::{Entry, Kind, Refusal, Status};
use super::*;
use crate::party::Party;

/// What the hook, the checks and the client's data give before a stream is added.
struct Prepared {
    id: Arc<str>,
    name: String,
    offer: String,
    obj: Map<String, Value>,
    /// Play of an `rtsp://` name: the camera to pull (`name` and `obj` have it masked).
    pull: Option<rtsp::RtspUrl>,
}

/// The common front of publish and play: id check, the direct hook (which may rewrite `name`
/// under OVERWRITE), SDP and name checks. `Err` has been reported to the client already.
async fn prepare(ctx: &Arc<Party>, obj: Map<String, Value>, kind: Kind) -> Option<Prepared> {
    let (mut method, published) = match kind {
        Kind::Publish => (HookMethod::PublishStream, true),
        Kind::Play => (HookMethod::PlayStream, false),
    };
    let mut data = ctx.with_context(obj);
    data.entry("published").or_insert(Value::Bool(published));
    let Some(id) = media_session_id(&data) else {
        raise_status(ctx, stream_object(data), stream::FAILED, info::MEDIASESSION_ID_NULL, true, Origin::Client);
        return None;
    };
    let is_url = |d: &Map<String, Value>| {
        d.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| ["rtsp://", "rtmp://", "http://", "https://"].iter().any(|p| n.starts_with(p)))
    };
    // An rtsp:// name is pulled (`rtsp`): its hook is `playRTSP`, and nobody but the pull sees
    // the URL's credentials (the hook, the client and the log get it masked).
    let mut pull = None;
    let rtsp_name = data.get("name").and_then(Value::as_str).filter(|n| rtsp::is_rtsp(n)).map(str::to_string);
    if kind == Kind::Play {
        if let Some(n) = rtsp_name {
            let Some(u) = rtsp::parse(&n) else {
                data.insert("name".into(), rtsp::mask(&n).into());
                raise_status(ctx, stream_object(data), stream::FAILED, proto_info::RTSP_BAD_URL, true, Origin::Client);
                return None;
            };
            data.insert("name".into(), u.masked.clone().into());
            method = HookMethod::PlayRtsp;
            pull = Some(u);
        } else if is_url(&data) {
            raise_status(ctx, stream_object(data), stream::FAILED, info::PULL_NOT_SUPPORTED, true, Origin::Client);
            return None;
        }
    }
    if let Err(why) = ctx.direct(method, &mut data).await {
        tracing::info!(session = &*ctx.id, stream = &*id, method = method.url_name(), reason = %why, "stream refused by the backend");
        raise_status(ctx, stream_object(data), stream::FAILED, &why, true, Origin::Client);
        return None;
    }
    // The backend may rewrite fields, but not move the stream to another id or direction.
    data.insert("mediaSessionId".into(), Value::from(&*id));
    data.insert("published".into(), Value::Bool(published));
    let offer = match data.remove("sdp") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => {
            raise_status(ctx, data, stream::FAILED, info::NO_SDP, true, Origin::Client);
            return None;
        }
    };
    let mut name = match data.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => {
            raise_status(ctx, data, stream::FAILED, info::NO_NAME, true, Origin::Client);
            return None;
        }
    };
    if kind == Kind::Play && rtsp::is_rtsp(&name) {
        // The backend kept the (masked) name, or gave another camera under OVERWRITE.
        if pull.as_ref().is_none_or(|u| u.masked != name) {
            let Some(u) = rtsp::parse(&name) else {
                data.insert("name".into(), rtsp::mask(&name).into());
                raise_status(ctx, data, stream::FAILED, proto_info::RTSP_BAD_URL, true, Origin::Client);
                return None;
            };
            pull = Some(u);
        }
        if let Some(u) = &pull {
            name = u.masked.clone();
            data.insert("name".into(), name.clone().into());
        }
    } else if kind == Kind::Play && is_url(&data) {
        raise_status(ctx, data, stream::FAILED, info::PULL_NOT_SUPPORTED, true, Origin::Client);
        return None;
    } else {
        // The backend renamed an rtsp:// play to a stream of this node: a plain play.
        pull = None;
    }
    data.insert("status".into(), Status::Pending.as_str().into());
    data.insert("info".into(), "".into());
    Some(Prepared { id, name, offer, obj: data, pull })
}

fn new_entry(ctx: &Arc<Party>, p: &Prepared, kind: Kind, peer: PeerId) -> Entry<Arc<Party>> {
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
/// With `record: true`, the recording's file is created before the answer (a directory that
/// cannot be written fails the publish), `recordName` goes into the stream object, and the
/// media task starts writing once the peer exists.
pub(super) async fn publish(streams: Arc<Streams>, ctx: Arc<Party>, obj: Map<String, Value>) {
    let Some(mut p) = prepare(&ctx, obj, Kind::Publish).await else { return };
    let record = p.obj.get("record").and_then(Value::as_bool).unwrap_or(false);
    let recordings = streams.recordings.clone().filter(|r| r.enabled);
    if record && recordings.is_none() {
        tracing::info!(session = &*ctx.id, stream = &*p.id, "record: true refused: [recording] enabled = false");
        return raise_status(&ctx, p.obj, stream::FAILED, recording::RECORDING_DISABLED, true, Origin::Client);
    }
    let peer = streams.media.next_peer_id();
    let added = {
        let mut dir = streams.dir.lock();
        if !session_alive(&streams, &ctx) {
            return;
        }
        if let Err(r) = streams.room(&dir) {
            drop(dir);
            return raise_status(&ctx, p.obj, stream::FAILED, &r.info(), true, Origin::Client);
        }
        dir.add_publisher(new_entry(&ctx, &p, Kind::Publish, peer))
    };
    if let Err(r) = added {
        raise_status(&ctx, p.obj, stream::FAILED, refusal_info(r), true, Origin::Client);
        return;
    }
    let mut rec = None;
    if let Some(recordings) = recordings.filter(|_| record) {
        let name = p.name.clone();
        let created = tokio::task::spawn_blocking(move || recordings.create(&name))
            .await
            .unwrap_or_else(|e| Err(format!("Recording failed: {e}")));
        match created {
            Ok(r) => {
                let rn = Value::from(r.record_name.as_str());
                if let Some(o) = streams.dir.lock().obj_mut(&p.id) {
                    o.insert("recordName".into(), rn.clone());
                }
                p.obj.insert("recordName".into(), rn);
                rec = Some(r);
            }
            Err(info) => {
                end_stream(&streams, &p.id, Some(peer), Ending::MediaFailed(&info), Origin::Client);
                return;
            }
        }
    }
    raise_status(&ctx, p.obj.clone(), Status::Pending.as_str(), "", false, Origin::Client);
    let (tx, rx) = mpsc::unbounded_channel();
    let answer = streams.media.publish(peer, p.offer, tx).await;
    if let Some(r) = rec {
        if answer.is_ok() {
            if let Err(info) = recording::start(&streams, ctx.clone(), p.id.clone(), p.name.clone(), peer, r).await {
                end_stream(&streams, &p.id, Some(peer), Ending::MediaFailed(&info), Origin::Client);
                return;
            }
        } else {
            recording::abandon(&streams, r);
        }
    }
    answered(&streams, &ctx, &p.id, peer, answer, rx);
}

/// `playStream`: hook, find the publisher, answer the offer, then wait for the media events.
pub(super) async fn play(streams: Arc<Streams>, ctx: Arc<Party>, obj: Map<String, Value>) {
    let Some(mut p) = prepare(&ctx, obj, Kind::Play).await else { return };
    if let Some(u) = p.pull.take() {
        return play_pulled(streams, ctx, p, u).await;
    }
    let peer = streams.media.next_peer_id();
    let added = {
        let mut dir = streams.dir.lock();
        if !session_alive(&streams, &ctx) {
            return;
        }
        if let Err(r) = streams.room(&dir) {
            drop(dir);
            return raise_status(&ctx, p.obj, stream::FAILED, &r.info(), true, Origin::Client);
        }
        dir.add_player(new_entry(&ctx, &p, Kind::Play, peer))
    };
    let source = match added {
        Ok(source) => source,
        // Not published here: in a cluster, maybe on another node (see `relay`).
        Err(Refusal::StreamNotFound) if streams.relays.is_some() => {
            match play_relayed(&streams, &ctx, &p, peer).await {
                Some(source) => source,
                None => return,
            }
        }
        Err(r) => {
            raise_status(&ctx, p.obj, stream::FAILED, refusal_info(r), true, Origin::Client);
            return;
        }
    };
    raise_status(&ctx, p.obj.clone(), Status::Pending.as_str(), "", false, Origin::Client);
    let (tx, rx) = mpsc::unbounded_channel();
    let answer = streams.media.play(peer, source, p.offer, tx).await;
    answered(&streams, &ctx, &p.id, peer, answer, rx);
}

/// A player of a stream published on another node: the relay publisher that pulls it here
/// (made by the first such player), and the player's entry with no local source. `None`: the
/// client was told why (or its session is gone).
async fn play_relayed(streams: &Arc<Streams>, ctx: &Arc<Party>, p: &Prepared, peer: PeerId) -> Option<PeerId> {
    // Twice at most: a pull whose last player left just now is made again.
    for _ in 0..2 {
        let source = match relay::source(streams, &p.name).await {
            Ok(s) => s,
            Err(info) => {
                raise_status(ctx, p.obj.clone(), stream::FAILED, info, true, Origin::Client);
                return None;
            }
        };
        let added = {
            let mut dir = streams.dir.lock();
            if !session_alive(streams, ctx) {
                None
            } else if let Err(r) = streams.room(&dir) {
                Some(Err(r.info()))
            } else if dir.get(&p.id).is_some() {
                Some(Err(info::MEDIASESSION_ID_ALREADY_IN_USE.to_string()))
            } else if relay::joined(streams, &p.name, source, &p.id) {
                // The id was checked just above, under the same lock.
                Some(
                    dir.add_detached_player(new_entry(ctx, p, Kind::Play, peer))
                        .map_err(|_| info::MEDIASESSION_ID_ALREADY_IN_USE.to_string()),
                )
            } else {
                continue;
            }
        };
        return match added {
            Some(Ok(())) => Some(source),
            Some(Err(info)) => {
                relay::player_left(streams, &p.name, &p.id);
                raise_status(ctx, p.obj.clone(), stream::FAILED, &info, true, Origin::Client);
                None
            }
            None => {
                relay::player_left(streams, &p.name, &p.id);
                None
            }
        };
    }
    raise_status(ctx, p.obj.clone(), stream::FAILED, proto_info::STREAM_NOT_FOUND, true, Origin::Client);
    None
}

/// `playStream` of an `rtsp://` name, after its hook: join (or start) the camera's pull, wait
/// until it has media (or failed: `FAILED` with why), then play its media source as a
/// publisher's.
async fn play_pulled(streams: Arc<Streams>, ctx: Arc<Party>, p: Prepared, u: rtsp::RtspUrl) {
    let peer = streams.media.next_peer_id();
    let (source, mut state) = rtsp::join(&streams, &u, peer, ctx.id.clone(), p.id.clone());
    raise_status(&ctx, p.obj.clone(), Status::Pending.as_str(), "", false, Origin::Client);
    if let Err(info) = rtsp::ready(&mut state).await {
        streams.pulls.leave(peer);
        if streams.pulls.take_cancelled(peer) {
            return; // the client stopped it meanwhile and got its STOPPED
        }
        return raise_status(&ctx, p.obj, stream::FAILED, &info, true, Origin::Client);
    }
    let added: Result<(), Option<String>> = {
        let mut dir = streams.dir.lock();
        if !streams.pulls.holds(peer) {
            // Stopped by the client while the camera was being reached (it got its STOPPED),
            // or the pull gave up (the camera was lost) just as it got ready.
            let cancelled = streams.pulls.take_cancelled(peer);
            Err((!cancelled).then(|| proto_info::RTSP_SOURCE_LOST.to_string()))
        } else if !session_alive(&streams, &ctx) {
            // The session went: nobody to tell.
            Err(None)
        } else if let Err(r) = streams.room(&dir) {
            Err(Some(r.info()))
        } else {
            dir.add_detached_player(new_entry(&ctx, &p, Kind::Play, peer))
                .map_err(|r| Some(refusal_info(r).to_string()))
        }
    };
    match added {
        Ok(()) => {}
        Err(None) => return streams.pulls.leave(peer),
        Err(Some(info)) => {
            streams.pulls.leave(peer);
            return raise_status(&ctx, p.obj, stream::FAILED, &info, true, Origin::Client);
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let answer = streams.media.play(peer, source, p.offer, tx).await;
    answered(&streams, &ctx, &p.id, peer, answer, rx);
}

/// After the media endpoint answered: `setRemoteSDP` and a watcher for the peer's events, or
/// `FAILED`. A stream that ended meanwhile (session closed, publisher gone) only closes its peer.
fn answered(
    streams: &Arc<Streams>,
    ctx: &Arc<Party>,
    id: &Arc<str>,
    peer: PeerId,
    answer: Result<String, MediaError>,
    rx: mpsc::UnboundedReceiver<MediaEvent>,
) {
    match answer {
        Err(e) => {
            tracing::info!(session = &*ctx.id, stream = &**id, error = %e, "offer not answered");
            end_stream(streams, id, Some(peer), Ending::MediaFailed(media_error_info(&e)), Origin::Client);
        }
        Ok(sdp) => {
            let live = streams.dir.lock().get(id).is_some_and(|e| e.peer == peer);
            if !live {
                streams.media.close(peer);
                return;
            }
            ctx.send(&ServerFrame::new(SET_REMOTE_SDP, vec![Value::from(&**id), sdp.into(), Value::Bool(true)]));
            tokio::spawn(watch(Arc::downgrade(streams), id.clone(), peer, rx));
        }
    }
}

/// Turns the media events of one peer into statuses, until the peer is gone.
async fn watch(streams: Weak<Streams>, id: Arc<str>, peer: PeerId, mut rx: mpsc::UnboundedReceiver<MediaEvent>) {
    while let Some(ev) = rx.recv().await {
        let Some(streams) = streams.upgrade() else { return };
        match ev {
            MediaEvent::Connected => {
                let up = {
                    let mut dir = streams.dir.lock();
                    match dir.get(&id) {
                        Some(e) if e.peer == peer => {
                            let st = if e.kind == Kind::Publish { Status::Publishing } else { Status::Playing };
                            let up = dir.set_status(&id, st).map(|e| (e.owner.clone(), e.obj.clone()));
                            if let (Some((owner, obj)), Status::Publishing) = (&up, st) {
                                if let Some(rooms) = &streams.rooms {
                                    rooms.stream_published(&owner.id, obj);
                                }
                                streams.announce_soon();
                            }
                            up
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
                end_stream(&streams, &id, Some(peer), Ending::MediaFailed(fail_info(&reason)), Origin::Client);
                return;
            }
        }
    }
}

/// `unPublishStream` / `stopStream`: the hook, then the stream ends (see [`Ending::ByClient`]).
pub(super) async fn stop(streams: Arc<Streams>, ctx: Arc<Party>, obj: Map<String, Value>, method: HookMethod) {
    let id = media_session_id(&obj);
    let mut data = ctx.with_context(obj);
    mask_name(&mut data);
    let verdict = ctx.direct(method, &mut data).await;
    let Some(id) = id else { return };
    let ending = Ending::ByClient { rejected: verdict.err() };
    let removed = {
        let mut dir = streams.dir.lock();
        let removed = match dir.get(&id) {
            // A session can only stop its own streams.
            Some(e) if e.session_id == ctx.id => dir.remove(&id),
            _ => None,
        };
        if let Some(r) = &removed {
            streams.tell_ended(r, &ending);
        }
        removed
    };
    match removed {
        Some(r) => report_removed(&streams, r, &ending, Origin::Client),
        None => {
            // A player still waiting for its RTSP camera is not in the directory yet.
            if streams.pulls.cancel_waiting(&ctx.id, &id) {
                let st = stream_object(data);
                return raise_status(&ctx, st, stream::STOPPED, info::STOPPED_BY_USER, true, Origin::Client);
            }
            // Unknown here (it ended already): still give the SDK a terminal status for the id.
            let mut st = stream_object(data);
            let stopped = if method == HookMethod::UnPublishStream { stream::UNPUBLISHED } else { stream::STOPPED };
            st.insert("status".into(), stopped.into());
            st.insert("info".into(), proto_info::STREAM_NOT_FOUND.into());
            ctx.send(&ServerFrame::object(NOTIFY_STREAM_STATUS_EVENT, st));
        }
    }
}

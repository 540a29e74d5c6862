//! Incoming calls: INVITE -> `OnCallEvent` hook -> media leg with a server-made WebRTC offer
//! -> `180 Ringing` -> `setRemoteSDP [callId, offer, false]`, `notifyIncomingCall`, `ring` (in
//! exactly that order, spec/client-protocol.md §6.3) -> `answer` hook -> `200 OK` -> ACK ->
//! `talk ESTABLISHED`.

use std::sync::Arc;

use callgate_hooks::{HookMethod, Origin};
use callgate_media::{MediaError, PeerId};
use callgate_proto::ServerFrame;
use callgate_sip::transport::UaHandle;
use callgate_sip::ua::IncomingCall;
use serde_json::{Map, Value};

use super::call::{end, media_info, raise, set_status, watch_media, with_context, CallEntry, FAILED, RING};
use super::Calls;
use crate::party::Party;

pub use callgate_proto::info::{CALL_NOT_RINGING as NOT_RINGING, LATE_OFFER, NOT_ANSWERED};

/// The user part of a SIP URI (`sip:alice@host;transport=udp` -> `alice`), or the URI itself.
fn user_of(uri: &str) -> &str {
    let rest = uri.strip_prefix("sips:").or_else(|| uri.strip_prefix("sip:")).unwrap_or(uri);
    match rest.split_once('@') {
        Some((user, _)) => user.split(';').next().unwrap_or(user),
        None => uri,
    }
}

/// `CallStatusEvent` to the backend only: for a call the client was never offered.
fn tell_backend(ctx: &Arc<Party>, obj: &Map<String, Value>, info: &str) {
    let mut ev = obj.clone();
    ev.insert("status".into(), FAILED.into());
    ev.insert("info".into(), info.into());
    ctx.raise_event(HookMethod::CallStatusEvent, Origin::Sip, ev, None);
}

pub(super) async fn reject(handle: &UaHandle, c: &IncomingCall, status: u16, reason: &'static str) {
    let call = c.call;
    tracing::info!(from = %c.from_uri, to = %c.request_uri, status, "incoming SIP call rejected");
    let _ = handle.with(move |ua, now| ua.reject(now, call, status, Some(reason))).await;
}

/// An incoming INVITE. Without a registered session: `480 Temporarily Unavailable`. The
/// session's `OnCallEvent` hook decides first: a refusal (FAIL and a non-200) gets the caller
/// `403 Forbidden` and the client a `fail {apiMethod:"CallStatusEvent"}`.
pub(super) async fn incoming(calls: Arc<Calls>, ctx: Option<Arc<Party>>, c: IncomingCall, handle: UaHandle) {
    let Some(ctx) = ctx else { return reject(&handle, &c, 480, "Temporarily Unavailable").await };
    let calls = &calls;
    // The SIP Call-ID is the client's callId (as WCS does); a second INVITE with the same
    // Call-ID for this node (a loop, a fork) gets its own id.
    let call_id: Arc<str> = if calls.table.calls.contains_key(c.sip_call_id.as_str()) {
        format!("{}-{}", c.sip_call_id, c.call.0).into()
    } else {
        c.sip_call_id.as_str().into()
    };
    let caller = user_of(&c.from_uri).to_string();
    let mut data = with_context(&ctx, Map::new());
    data.insert("callId".into(), Value::from(&*call_id));
    data.insert("incoming".into(), true.into());
    data.insert("status".into(), callgate_proto::status::call::PENDING.into());
    data.insert("caller".into(), caller.clone().into());
    data.insert("callee".into(), user_of(&c.request_uri).into());
    data.insert("visibleName".into(), c.display_name.clone().unwrap_or(caller).into());
    data.insert("hasAudio".into(), true.into());
    data.insert("hasVideo".into(), false.into());
    data.insert("mediaProvider".into(), "WebRTC".into());
    data.insert("sipMessageRaw".into(), String::from_utf8_lossy(&c.raw).into_owned().into());
    let inv =
        ctx.node.engine.invoke(&ctx.app, &ctx.rcc, HookMethod::OnCallEvent, Origin::Sip, &mut data, &ctx.id).await;
    // Ours, whatever the backend answered.
    data.insert("callId".into(), Value::from(&*call_id));
    data.insert("incoming".into(), true.into());
    data.remove("sipMessageRaw");
    if inv.verdict.aborts() {
        let why = inv.client_info();
        ctx.send(&ServerFrame::fail(
            "CallStatusEvent",
            &callgate_proto::info::incoming_call_refused(&c.from_uri, &why),
            Some(&call_id),
        ));
        return reject(&handle, &c, 403, "Forbidden").await;
    }
    let Some(sip_offer) = c.sdp.as_ref().filter(|b| !b.is_empty()) else {
        tell_backend(&ctx, &data, LATE_OFFER);
        return reject(&handle, &c, 488, "Not Acceptable Here").await;
    };
    let peer = calls.media.next_peer_id();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let sip_offer = String::from_utf8_lossy(sip_offer).into_owned();
    let leg = match calls.media.incoming_bridge(peer, sip_offer, tx).await {
        Ok(leg) => leg,
        Err(e) => {
            tracing::info!(session = &*ctx.id, call = &*call_id, error = %e, "incoming call: no media leg");
            tell_backend(&ctx, &data, media_info(&e));
            return match e {
                MediaError::TranscodingRequired | MediaError::NoCommonCodecs | MediaError::Negotiation(_) => {
                    reject(&handle, &c, 488, "Not Acceptable Here").await
                }
                _ => reject(&handle, &c, 500, "Server Internal Error").await,
            };
        }
    };
    data.insert("status".into(), RING.into());
    // Recorded only while the session lives (see `call::outgoing`): one that closed during the
    // hook or the media setup must not be rung; the caller hears 480.
    let admitted = {
        let _admission = calls.table.admission.lock();
        let alive = super::register::session_alive(calls, &ctx);
        if alive {
            calls.table.calls.insert(
                call_id.clone(),
                CallEntry {
                    ctx: ctx.clone(),
                    obj: data.clone(),
                    sip: Some(c.call),
                    peer,
                    hangup_refused: None,
                    sip_sdp: bytes::Bytes::from(leg.sip_answer),
                    ringing_in: true,
                    dtmf: Default::default(),
                    holds: Default::default(),
                },
            );
            calls.table.by_sip.insert(c.call, call_id.clone());
        }
        alive
    };
    if !admitted {
        tracing::info!(session = &*ctx.id, call = &*call_id, "incoming call dropped: the session closed");
        calls.media.close(peer);
        return reject(&handle, &c, 480, "Temporarily Unavailable").await;
    }
    watch_media(calls, &call_id, rx);
    let sip = c.call;
    let ringing = handle.with(move |ua, now| ua.provisional(now, sip, 180, None)).await;
    if !matches!(ringing, Ok(Ok(()))) {
        // The caller cancelled before we got here (its CANCEL found no call of ours yet).
        tracing::info!(session = &*ctx.id, call = &*call_id, "incoming call gone before ringing");
        if let Some((_, e)) = calls.table.calls.remove(&*call_id) {
            calls.table.by_sip.remove(&sip);
            calls.media.close(e.peer);
        }
        return tell_backend(&ctx, &data, super::call::NORMAL_CALL_CLEARING);
    }
    tracing::info!(session = &*ctx.id, call = &*call_id, from = %c.from_uri, "incoming call offered to the client");
    ctx.send(&ServerFrame::new(
        callgate_proto::messages::SET_REMOTE_SDP,
        vec![Value::from(&*call_id), Value::from(leg.webrtc_offer), Value::Bool(false)],
    ));
    let exclude = &ctx.rcc.method(HookMethod::OnCallEvent).client_exclude;
    ctx.send_object(callgate_proto::messages::NOTIFY_INCOMING_CALL, &data, exclude);
    raise(&ctx, &data, RING, "", None);
    ring_timeout(calls, &ctx, call_id, sip, peer, handle);
}

/// An incoming call still ringing after `[sip] ring_timeout_ms` is rejected with `480` and
/// ends `FINISH` [`NOT_ANSWERED`] for client and backend: its WebRTC leg and SIP transaction
/// are not held for the media layer's 10-minute limit.
fn ring_timeout(
    calls: &Arc<Calls>,
    ctx: &Arc<Party>,
    call_id: Arc<str>,
    sip: callgate_sip::ua::CallId,
    peer: PeerId,
    handle: UaHandle,
) {
    let (calls, ctx) = (calls.clone(), ctx.clone());
    let after = std::time::Duration::from_millis(calls.cfg.ring_timeout_ms);
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let table = &calls.table;
        // Claimed under the entry's lock: an `answer` at the same moment either came first
        // (the call is no longer ringing) or finds it gone.
        let claimed = table.calls.get_mut(&*call_id).filter(|e| e.ringing_in && e.peer == peer).map(|mut e| {
            e.ringing_in = false;
        });
        if claimed.is_none() {
            return;
        }
        tracing::info!(session = &*ctx.id, call = &*call_id, ?after, "incoming call not answered: 480");
        let _ = handle.with(move |ua, now| ua.reject(now, sip, 480, Some("Temporarily Unavailable"))).await;
        let info = format!("{NOT_ANSWERED} within {} s", after.as_secs());
        end(&calls, &call_id, super::call::FINISH, &info, None);
    });
}

/// `answer {callId, sdp}`: the `answer` hook (a refusal tells the client with `fail` and the
/// call keeps ringing: the caller may give up, the user may hang up), then the browser's answer
/// goes to the media leg and the caller gets `200 OK`; its ACK makes the call ESTABLISHED.
pub(super) async fn answer(calls: Arc<Calls>, ctx: Arc<Party>, obj: Map<String, Value>) {
    let calls = &calls;
    let call_id = obj.get("callId").and_then(Value::as_str).unwrap_or("").to_string();
    let fail = |info: &str| ctx.send(&ServerFrame::fail("CallStatusEvent", info, Some(&call_id)));
    let mut data = with_context(&ctx, obj);
    if let Err(why) = ctx.direct(HookMethod::Answer, &mut data).await {
        return fail(&why);
    }
    let sdp = match data.get("sdp") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return fail(super::call::NO_SDP),
    };
    let target = calls.table.calls.get_mut(call_id.as_str()).filter(|e| Arc::ptr_eq(&e.ctx, &ctx)).map(|mut e| {
        let was = e.ringing_in;
        e.ringing_in = false;
        (was, e.sip, e.peer, e.sip_sdp.clone())
    });
    let (sip, peer, sip_answer) = match target {
        None => return fail(super::call::CALL_NOT_FOUND),
        Some((false, ..)) | Some((_, None, ..)) => return fail(NOT_RINGING),
        Some((true, Some(sip), peer, sdp)) => (sip, peer, sdp),
    };
    if let Err(e) = calls.media.bridge_answer(peer, sdp).await {
        tracing::info!(session = &*ctx.id, call = &*call_id, error = %e, "the browser's answer was refused");
        if let Some(handle) = calls.endpoint.get().and_then(|r| r.as_ref().ok()).cloned() {
            let _ = handle.with(move |ua, now| ua.reject(now, sip, 488, Some("Not Acceptable Here"))).await;
        }
        return end(calls, &call_id, FAILED, media_info(&e), None);
    }
    let Some(Ok(handle)) = calls.endpoint.get().cloned() else { return fail(super::call::CALL_NOT_FOUND) };
    set_status(&calls.table, &call_id, callgate_proto::status::call::PENDING);
    match handle.with(move |ua, now| ua.answer(now, sip, sip_answer)).await {
        Ok(Ok(())) => tracing::info!(session = &*ctx.id, call = &*call_id, "incoming call answered (200 OK)"),
        // The caller cancelled meanwhile: its `Cancelled` event ends the call.
        other => tracing::info!(session = &*ctx.id, call = &*call_id, result = ?other, "200 OK not sent"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_parts() {
        assert_eq!(super::user_of("sip:alice@example.com;transport=udp"), "alice");
        assert_eq!(super::user_of("sips:3000;x=y@h"), "3000");
        assert_eq!(super::user_of("sip:example.com"), "sip:example.com");
        assert_eq!(super::user_of("tel:+123"), "tel:+123");
    }
}

//! Incoming calls: INVITE -> `OnCallEvent` hook -> media leg with a server-made WebRTC offer
//! -> `180 Ringing` -> `setRemoteSDP [callId, offer, false]`, `notifyIncomingCall`, `ring` (in
//! exactly that order, spec/client-protocol.md §6.3) -> `answer` hook -> `200 OK` -> ACK ->
//! `talk ESTABLISHED`.

use std::sync::Arc;

use callgate_hooks::{HookMethod, Origin};
use callgate_media::MediaError;
use callgate_proto::ServerFrame;
use callgate_sip::ua::IncomingCall;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::call::{media_info, FAILED, RING};
use super::ports::SipPort;
use super::task::Input;
use crate::party::Party;
use crate::sip_side::CallEvents;

pub use callgate_proto::info::LATE_OFFER;

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

/// Refuses the incoming INVITE `c` with `status`; its events are dropped from now on.
pub(super) async fn reject(port: &SipPort, c: &IncomingCall, status: u16, reason: &'static str) {
    tracing::info!(from = %c.from_uri, to = %c.request_uri, status, "incoming SIP call rejected");
    let _ = port.side.reject(c.call, status, reason).await;
    port.side.unroute(c.call);
}

/// Refuses the incoming INVITE `c` with `503` and `Retry-After` (`[limits] max_calls`).
async fn reject_busy(port: &SipPort, c: &IncomingCall, retry_after_s: u32) {
    tracing::debug!(from = %c.from_uri, to = %c.request_uri, "incoming SIP call refused: too many calls");
    let _ = port.side.reject_busy(c.call, retry_after_s).await;
    port.side.unroute(c.call);
}

/// An incoming INVITE. Without a registered session: `480 Temporarily Unavailable`. The
/// session's `OnCallEvent` hook decides first: a refusal (FAIL and a non-200) gets the caller
/// `403 Forbidden` and the client a `fail {apiMethod:"CallStatusEvent"}`. Then a media leg,
/// `180 Ringing`, the offer to the client, and the call's task (`CallTask::run_ringing`).
pub(super) async fn incoming(
    ctx: Option<Arc<Party>>,
    c: IncomingCall,
    events: CallEvents,
    port: SipPort,
    calls: Arc<super::Calls>,
) {
    let Some(ctx) = ctx else { return reject(&port, &c, 480, "Temporarily Unavailable").await };
    let calls = &calls;
    // `[limits] max_calls`: refused before the hook and the media leg cost anything.
    if let Err(r) = calls.table.room() {
        r.record();
        return reject_busy(&port, &c, calls.table.retry_after_s).await;
    }
    // The SIP Call-ID is the client's callId (as WCS does); a second INVITE with the same
    // Call-ID for this node (a loop, a fork) gets its own id.
    let call_id: Arc<str> = if calls.table.calls.contains_key(c.sip_call_id.as_str()) {
        format!("{}-{}", c.sip_call_id, c.call.0).into()
    } else {
        c.sip_call_id.as_str().into()
    };
    let caller = user_of(&c.from_uri).to_string();
    let mut data = ctx.with_context(Map::new());
    data.insert("callId".into(), Value::from(&*call_id));
    data.insert("incoming".into(), true.into());
    data.insert("status".into(), callgate_proto::status::call::PENDING.into());
    data.insert("caller".into(), caller.clone().into());
    data.insert("callee".into(), user_of(&c.request_uri).into());
    data.insert("visibleName".into(), c.display_name.clone().unwrap_or(caller).into());
    data.insert("hasAudio".into(), true.into());
    // Until the media leg is made: then whether the SIP offer's video is carried.
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
        return reject(&port, &c, 403, "Forbidden").await;
    }
    let Some(sip_offer) = c.sdp.as_ref().filter(|b| !b.is_empty()) else {
        tell_backend(&ctx, &data, LATE_OFFER);
        return reject(&port, &c, 488, "Not Acceptable Here").await;
    };
    let peer = calls.media.next_peer_id();
    let (tx, media_rx) = tokio::sync::mpsc::unbounded_channel();
    let sip_offer = String::from_utf8_lossy(sip_offer).into_owned();
    let leg = match calls.media.incoming_bridge(peer, sip_offer, tx).await {
        Ok(leg) => leg,
        Err(e) => {
            tracing::info!(session = &*ctx.id, call = &*call_id, error = %e, "incoming call: no media leg");
            tell_backend(&ctx, &data, media_info(&e));
            return match e {
                MediaError::TranscodingRequired | MediaError::NoCommonCodecs | MediaError::Negotiation(_) => {
                    reject(&port, &c, 488, "Not Acceptable Here").await
                }
                _ => reject(&port, &c, 500, "Server Internal Error").await,
            };
        }
    };
    data.insert("hasVideo".into(), leg.video.is_some().into());
    if port.side.provisional(c.call, 180).await.is_err() {
        // The caller cancelled before we got here (its CANCEL found no call of ours yet).
        tracing::info!(session = &*ctx.id, call = &*call_id, "incoming call gone before ringing");
        calls.media.close(peer);
        port.side.unroute(c.call);
        return tell_backend(&ctx, &data, super::call::NORMAL_CALL_CLEARING);
    }
    data.insert("status".into(), RING.into());
    // Recorded only while the session lives (see `call::admit`): one that closed during the
    // hook or the media setup must not be rung; the caller hears 480.
    let task = match super::call::record(calls, &ctx, &call_id, &data, true) {
        Ok(r) => r.task(calls, port.clone(), &ctx, &call_id, data.clone(), peer),
        Err(super::call::NotRecorded::TooMany(r)) => {
            calls.media.close(peer);
            tell_backend(&ctx, &data, &r.info());
            return reject_busy(&port, &c, calls.table.retry_after_s).await;
        }
        Err(_) => {
            tracing::info!(session = &*ctx.id, call = &*call_id, "incoming call dropped: the session closed");
            calls.media.close(peer);
            return reject(&port, &c, 480, "Temporarily Unavailable").await;
        }
    };
    tracing::info!(session = &*ctx.id, call = &*call_id, from = %c.from_uri, "incoming call offered to the client");
    ctx.send(&ServerFrame::new(
        callgate_proto::messages::SET_REMOTE_SDP,
        vec![Value::from(&*call_id), Value::from(leg.webrtc_offer), Value::Bool(false)],
    ));
    let exclude = &ctx.rcc.method(HookMethod::OnCallEvent).client_exclude;
    ctx.send_object(callgate_proto::messages::NOTIFY_INCOMING_CALL, &data, exclude);
    task.run_ringing(c.call, events, media_rx, bytes::Bytes::from(leg.sip_answer)).await;
}

/// `answer {callId, sdp}`: the `answer` hook (a refusal tells the client with `fail` and the
/// call keeps ringing: the caller may give up, the user may hang up), then the call's task
/// gives the browser's answer to the media leg and the caller gets `200 OK`; its ACK makes the
/// call ESTABLISHED.
pub(super) async fn answer(calls: Arc<super::Calls>, ctx: Arc<Party>, obj: Map<String, Value>) {
    let calls = &calls;
    let call_id = obj.get("callId").and_then(Value::as_str).unwrap_or("").to_string();
    let fail = |info: &str| ctx.send(&ServerFrame::fail("CallStatusEvent", info, Some(&call_id)));
    let mut data = ctx.with_context(obj);
    if let Err(why) = ctx.direct(HookMethod::Answer, &mut data).await {
        return fail(&why);
    }
    let sdp = match data.get("sdp") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return fail(super::call::NO_SDP),
    };
    let inbox = calls.table.calls.get(call_id.as_str()).filter(|e| Arc::ptr_eq(&e.ctx, &ctx)).map(|e| e.inbox.clone());
    let Some(inbox) = inbox else { return fail(super::call::CALL_NOT_FOUND) };
    let (reply, rx) = oneshot::channel();
    if inbox.send(Input::Answer { sdp, reply }).is_err() {
        return fail(super::call::CALL_NOT_FOUND);
    }
    match rx.await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => fail(&why),
        Err(_) => fail(super::call::CALL_NOT_FOUND),
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

//! What the SIP peer does inside a call (issue 10 item 3), as thin reactions to the user
//! agent's events: its re-INVITE or UPDATE with a new offer (hold, unhold, a new address or
//! codec) goes through the media bridge and is answered; its answer in an ACK updates the
//! bridge; a hold or unhold is reported `HOLD` / `ESTABLISHED`; DTMF by SIP INFO is delivered as
//! `OnDataEvent`; a session timer that expired ends the call `FAILED`.
//!
//! The protocol (mirroring the direction, 491/500, session timers) is the user agent's
//! (docs/sip-ua.md); here only the media and the reports.

use std::sync::Arc;

use bytes::Bytes;
use callgate_hooks::{HookMethod, Origin};
use callgate_media::PeerId;
use callgate_sip::ua::CallId as SipCallId;
use serde_json::{Map, Value};

use super::call::{raise, set_status, ESTABLISHED, HOLD};
use super::Calls;
use crate::party::Party;

/// The `info` of a call ended because the peer, the session refresher, did not refresh it.
pub use callgate_proto::info::SESSION_EXPIRED;

/// The peer's new offer (re-INVITE or UPDATE): the bridge takes its address and checks its
/// codec, then the user agent answers 200 with our SDP (its direction mirrored by the user
/// agent); a refused SDP gets `488` and the call goes on as it was.
pub(super) fn offer(
    calls: Arc<Calls>,
    ctx: Arc<Party>,
    call_id: Arc<str>,
    sip: SipCallId,
    peer: PeerId,
    sdp: Option<Bytes>,
    hold: bool,
) {
    tokio::spawn(async move {
        let Some(Ok(handle)) = calls.endpoint.get().cloned() else { return };
        if let Some(sdp) = sdp {
            let text = String::from_utf8_lossy(&sdp).into_owned();
            if let Err(e) = calls.media.bridge_remote(peer, text).await {
                tracing::info!(session = &*ctx.id, call = &*call_id, error = %e, "peer's re-offer refused: 488");
                let _ = handle.with(move |ua, now| ua.reject(now, sip, 488, Some("Not Acceptable Here"))).await;
                return;
            }
        }
        let Some(ours) = calls.table.calls.get(&call_id).map(|e| e.sip_sdp.clone()) else { return };
        match handle.with(move |ua, now| ua.answer(now, sip, ours)).await {
            Ok(Ok(())) => report_hold(&calls, &ctx, &call_id, hold),
            other => tracing::info!(session = &*ctx.id, call = &*call_id, result = ?other, "re-offer not answered"),
        }
    });
}

/// The peer's answer in its ACK (to the offer of our 2xx to its offer-less re-INVITE).
pub(super) fn answer(calls: Arc<Calls>, ctx: Arc<Party>, call_id: Arc<str>, peer: PeerId, sdp: Bytes, hold: bool) {
    tokio::spawn(async move {
        let text = String::from_utf8_lossy(&sdp).into_owned();
        match calls.media.bridge_remote(peer, text).await {
            Ok(()) => report_hold(&calls, &ctx, &call_id, hold),
            Err(e) => tracing::info!(session = &*ctx.id, call = &*call_id, error = %e, "peer's answer in ACK refused"),
        }
    });
}

/// The peer put the call on hold (`HOLD`) or took it off (`ESTABLISHED`): client (`hold` /
/// `talk`) and backend (`CallStatusEvent`), only when that changes whether the call is held
/// (the peer's unhold while the browser holds changes nothing).
fn report_hold(calls: &Calls, ctx: &Arc<Party>, call_id: &str, hold: bool) {
    let table = &calls.table;
    let obj = match table.calls.get_mut(call_id) {
        Some(mut e) if e.holds.peer != hold => {
            let held_before = e.holds.local || e.holds.peer;
            e.holds.peer = hold;
            if held_before == (e.holds.local || hold) {
                return;
            }
            e.obj.clone()
        }
        _ => return,
    };
    let status = if hold { HOLD } else { ESTABLISHED };
    tracing::info!(session = &*ctx.id, call = call_id, status, "SIP peer hold state");
    set_status(table, call_id, status);
    raise(ctx, &obj, status, "", None);
}

/// A DTMF digit from the peer (SIP INFO `application/dtmf-relay` or `application/dtmf`,
/// already answered 200). The SDK has no call event for it: the client gets `OnDataEvent`
/// (SDK `APP_DATA`) and the backend the `OnDataEvent` hook, both with
/// `payload: {type:"DTMF", callId, dtmf, duration, method:"INFO"}` (docs/hooks.md §12).
pub(super) fn dtmf(ctx: &Arc<Party>, call_id: &str, digit: char, duration_ms: u32) {
    let mut payload = Map::new();
    payload.insert("type".into(), "DTMF".into());
    payload.insert("callId".into(), call_id.into());
    payload.insert("dtmf".into(), digit.to_string().into());
    payload.insert("duration".into(), duration_ms.into());
    payload.insert("method".into(), "INFO".into());
    let mut ev = super::call::with_context(ctx, Map::new());
    ev.insert("operationId".into(), uuid::Uuid::new_v4().to_string().into());
    ev.insert("payload".into(), Value::Object(payload));
    tracing::info!(session = &*ctx.id, call = call_id, %digit, "DTMF from the SIP peer");
    ctx.raise_event(HookMethod::OnDataEvent, Origin::Sip, ev, Some(callgate_proto::messages::ON_DATA_EVENT));
}

/// The peer, refresher of the session timer, let it expire: the user agent sends BYE; its
/// `Ended` then reports `FAILED` [`SESSION_EXPIRED`].
pub(super) fn session_expired(table: &super::CallTable, call_id: &str) {
    if let Some(mut e) = table.calls.get_mut(call_id) {
        tracing::info!(session = &*e.ctx.id, call = call_id, "session timer expired: BYE");
        e.hangup_refused = Some(SESSION_EXPIRED.to_string());
    }
}

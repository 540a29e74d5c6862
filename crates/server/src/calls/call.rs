//! Outgoing calls: `call` -> `call` hook -> media bridge -> INVITE -> statuses; `hangup`.

use std::sync::Arc;

use callgate_errmap::{map_failure, FailureEvent, SipOperation};
use callgate_hooks::{HookMethod, Origin};
use callgate_media::{MediaError, MediaEvent, PeerId};
use callgate_proto::{messages, ServerFrame};
use callgate_sip::ua::{CallEvent, CallId as SipCallId, Failure};
use serde_json::{Map, Value};

use super::Calls;
use crate::party::{Party, SipCredentials};

// The client-visible strings live in callgate-proto; named here for the calls module.
pub use callgate_proto::info::{
    CALL_ID_IN_USE, CALL_NOT_ESTABLISHED, CALL_NOT_FOUND, CALL_WITHOUT_SIP_ACCOUNT, FAILED_BY_DTLS_ERROR,
    FAILED_BY_ERROR, FAILED_BY_ICE_ERROR, NORMAL_CALL_CLEARING, NO_CALL_ID, NO_DTMF, NO_SDP, TRANSCODING_REQUIRED,
};
pub use callgate_proto::status::call::{ESTABLISHED, FAILED, FINISH, HOLD, RING, RING_MEDIA, SESSION_PROGRESS, TRYING};
use callgate_proto::status::transfer;

/// A live call.
pub(super) struct CallEntry {
    pub ctx: Arc<Party>,
    /// The call object (the client's fields after the hook, without `sdp`).
    pub obj: Map<String, Value>,
    pub sip: Option<SipCallId>,
    pub peer: PeerId,
    /// The call ends FAILED with this info (a refused `hangup`, a media failure).
    pub hangup_refused: Option<String>,
    /// The bridge's SDP for the SIP side (base of hold/unhold re-INVITEs).
    pub sip_sdp: bytes::Bytes,
    /// An incoming call not answered yet: rejecting it (486) ends it without a SIP event.
    pub ringing_in: bool,
    /// DTMF digits waiting to go out as SIP INFO, one transaction at a time.
    pub dtmf: DtmfQueue,
    /// Who holds the call (`peer.rs`).
    pub holds: Holds,
}

/// Who holds the call: the browser (its hold re-INVITE succeeded) and the SIP peer (its last
/// offer was sendonly or inactive). The peer's hold and unhold are reported only when they
/// change whether the call is held at all.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Holds {
    pub local: bool,
    pub peer: bool,
}

/// The SIP INFO digits of a call: at most one INFO in flight (RFC 6086 §4.2.1 keeps INFOs of a
/// dialog ordered; a burst would also be one transaction per digit at once), the rest queued,
/// never more than `[sip] max_dtmf_digits` in all.
#[derive(Default)]
pub(super) struct DtmfQueue {
    waiting: std::collections::VecDeque<char>,
    in_flight: bool,
}

pub(super) fn with_context(ctx: &Party, obj: Map<String, Value>) -> Map<String, Value> {
    ctx.with_context(obj)
}

/// The client message that carries a status (spec/client-protocol.md §6.1).
fn client_message(status: &str) -> &'static str {
    match status {
        TRYING => messages::NOTIFY_TRYING_RESPONSE,
        RING | RING_MEDIA | SESSION_PROGRESS => messages::RING,
        ESTABLISHED => messages::TALK,
        HOLD => messages::HOLD,
        _ => messages::FINISH,
    }
}

/// Records the call's current status (for the REST API's view).
pub(super) fn set_status(table: &super::CallTable, call_id: &str, status: &str) {
    if let Some(mut e) = table.calls.get_mut(call_id) {
        e.obj.insert("status".into(), status.into());
    }
}

/// The REST API's view: call objects matching every field of `filter`.
pub(super) fn find(table: &super::CallTable, filter: &Map<String, Value>) -> Vec<Map<String, Value>> {
    table.calls.iter().filter(|e| filter.iter().all(|(k, v)| e.obj.get(k) == Some(v))).map(|e| e.obj.clone()).collect()
}

/// `CallStatusEvent` to the backend and the status message to the client.
pub(super) fn raise(
    ctx: &Arc<Party>,
    obj: &Map<String, Value>,
    status: &str,
    info: &str,
    failure: Option<&FailureEvent>,
) {
    let mut ev = obj.clone();
    ev.insert("status".into(), status.into());
    ev.insert("info".into(), info.into());
    if let Some(f) = failure {
        crate::party::insert_sip_failure(&mut ev, f);
    }
    tracing::info!(session = &*ctx.id, call = ?obj.get("callId"), status, info, "call status");
    metrics::counter!("callgate_call_statuses_total", "status" => status.to_string()).increment(1);
    ctx.raise_event(HookMethod::CallStatusEvent, Origin::Client, ev, Some(client_message(status)));
}

pub(super) fn media_info(e: &MediaError) -> &'static str {
    match e {
        MediaError::TranscodingRequired | MediaError::NoCommonCodecs => TRANSCODING_REQUIRED,
        _ => FAILED_BY_ERROR,
    }
}

/// The request URI for `callee`: as is when it is a SIP URI, else `sip:{callee}@{domain}`.
pub fn target_uri(callee: &str, domain: &str) -> String {
    if callee.starts_with("sip:") || callee.starts_with("sips:") {
        callee.to_string()
    } else if callee.contains('@') {
        format!("sip:{callee}")
    } else {
        format!("sip:{callee}@{domain}")
    }
}

/// Removes the call and reports its last status.
pub(super) fn end(calls: &Calls, call_id: &str, status: &str, info: &str, failure: Option<&FailureEvent>) {
    let Some((_, e)) = calls.table.calls.remove(call_id) else { return };
    if let Some(sip) = e.sip {
        calls.table.by_sip.remove(&sip);
    }
    calls.media.close(e.peer);
    raise(&e.ctx, &e.obj, status, info, failure);
}

/// `call`: the whole outgoing setup.
pub(super) async fn outgoing(calls: Arc<Calls>, ctx: Arc<Party>, obj: Map<String, Value>) {
    let calls = &calls;
    let mut data = with_context(&ctx, obj);
    let call_id: Arc<str> = match data.get("callId") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str().into(),
        _ => return raise(&ctx, &data, FAILED, NO_CALL_ID, None),
    };
    let result = ctx.direct(HookMethod::Call, &mut data).await;
    // The call id and the direction are ours, whatever the backend answered.
    data.insert("callId".into(), Value::from(&*call_id));
    data.insert("incoming".into(), false.into());
    let sdp = match data.remove("sdp") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => String::new(),
    };
    if let Err(why) = result {
        return raise(&ctx, &data, FAILED, &why, None);
    }
    if sdp.is_empty() {
        return raise(&ctx, &data, FAILED, NO_SDP, None);
    }
    let creds = SipCredentials::from_connection(&ctx.data_ref()).filter(|c| !c.domain.is_empty());
    let Some(creds) = creds else { return raise(&ctx, &data, FAILED, CALL_WITHOUT_SIP_ACCOUNT, None) };
    let callee = data.get("callee").and_then(Value::as_str).unwrap_or("").to_string();
    let peer = calls.media.next_peer_id();
    {
        use dashmap::mapref::entry::Entry;
        // The session may have closed during the hook: its cleanup has run (or waits for this
        // lock and will see the call), so a call recorded now would place an INVITE nobody
        // will ever hang up. Like a stream, it is dropped; the backend had DISCONNECTED.
        let _admission = calls.table.admission.lock();
        if !super::register::session_alive(calls, &ctx) {
            tracing::info!(
                session = &*ctx.id,
                call = &*call_id,
                "call dropped: the session closed during the call hook"
            );
            return;
        }
        match calls.table.calls.entry(call_id.clone()) {
            Entry::Occupied(_) => return raise(&ctx, &data, FAILED, CALL_ID_IN_USE, None),
            Entry::Vacant(v) => {
                v.insert(CallEntry {
                    ctx: ctx.clone(),
                    obj: data.clone(),
                    sip: None,
                    peer,
                    hangup_refused: None,
                    sip_sdp: bytes::Bytes::new(),
                    ringing_in: false,
                    dtmf: Default::default(),
                    holds: Holds::default(),
                });
            }
        }
    }
    // TRYING at once: it is what lets a later `hangup` reach us (spec §6.1).
    set_status(&calls.table, &call_id, TRYING);
    raise(&ctx, &data, TRYING, "", None);

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let answer = match calls.media.bridge(peer, sdp, tx).await {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(session = &*ctx.id, call = &*call_id, error = %e, "call bridge refused");
            return end(calls, &call_id, FAILED, media_info(&e), None);
        }
    };
    watch_media(calls, &call_id, rx);
    if !calls.table.calls.contains_key(&call_id) {
        return; // hung up meanwhile
    }
    ctx.send(&ServerFrame::new(
        messages::SET_REMOTE_SDP,
        vec![Value::from(&*call_id), Value::from(answer.webrtc_answer), Value::Bool(true)],
    ));
    send_invite(calls, &ctx, &call_id, &creds, &callee, bytes::Bytes::from(answer.sip_sdp)).await;
}

/// Sends the INVITE of the recorded call `call_id` with our SDP `offer`, to `callee` through
/// the account's next hop; a failure before anything was sent ends the call FAILED.
pub(super) async fn send_invite(
    calls: &Arc<Calls>,
    ctx: &Arc<Party>,
    call_id: &Arc<str>,
    creds: &SipCredentials,
    callee: &str,
    offer: bytes::Bytes,
) {
    let call_id = call_id.clone();
    let next_hop = match super::next_hop(calls, ctx, creds).await {
        Ok(a) => a,
        Err(info) => return end(calls, &call_id, FAILED, &info, None),
    };
    let handle = match calls.endpoint().await {
        Ok(h) => h,
        Err(info) => return end(calls, &call_id, FAILED, &info, None),
    };
    let account = creds.account(next_hop, calls.cfg.register_expires);
    let to = target_uri(callee, &creds.domain);
    if let Some(mut e) = calls.table.calls.get_mut(&call_id) {
        e.sip_sdp = offer.clone();
    }
    let (map, by_sip, cid) = (calls.table.calls.clone(), calls.table.by_sip.clone(), call_id.clone());
    tracing::info!(session = &*ctx.id, call = &*call_id, to, %next_hop, "SIP INVITE");
    let r = handle
        .with(move |ua, now| {
            // Recorded in the driver, before any response can be handled.
            let Some(mut e) = map.get_mut(&cid) else { return Ok(()) };
            let id = ua.invite(now, &account, &to, offer, &[])?;
            e.sip = Some(id);
            by_sip.insert(id, cid.clone());
            Ok::<_, callgate_sip::ua::UaError>(())
        })
        .await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => end(calls, &call_id, FAILED, &format!("{FAILED_BY_ERROR}: {e}"), None),
        Err(gone) => end(calls, &call_id, FAILED, &gone.to_string(), None),
    }
}

/// Ends the call when its WebRTC leg fails (ICE or DTLS timeout, a lost browser).
pub(super) fn watch_media(
    calls: &Arc<Calls>,
    call_id: &Arc<str>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<MediaEvent>,
) {
    let (cid, calls) = (call_id.clone(), calls.clone());
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if let MediaEvent::Failed(reason) = ev {
                tracing::info!(call = &*cid, %reason, "call media failed");
                let info = match reason {
                    callgate_media::FailReason::IceTimeout | callgate_media::FailReason::IceKeepAlive => {
                        FAILED_BY_ICE_ERROR
                    }
                    callgate_media::FailReason::DtlsTimeout | callgate_media::FailReason::Dtls(_) => {
                        FAILED_BY_DTLS_ERROR
                    }
                    callgate_media::FailReason::Error(_) => FAILED_BY_ERROR,
                };
                if let Some(mut e) = calls.table.calls.get_mut(&cid) {
                    e.hangup_refused = Some(info.to_string());
                }
                hang_up_or_end(&calls, &cid, info).await;
                return;
            }
        }
    });
}

/// Ends the SIP side (BYE/CANCEL) when there is one; the `Ended` event reports FINISH. Without
/// a SIP side yet, the call ends here with `status`/`info`.
pub(super) async fn hang_up_or_end(calls: &Calls, call_id: &str, info: &str) {
    let (sip, refused, ringing_in) = match calls.table.calls.get(call_id) {
        Some(e) => (e.sip, e.hangup_refused.is_some(), e.ringing_in),
        None => return,
    };
    let status = if refused { FAILED } else { FINISH };
    let handle = calls.endpoint.get().and_then(|r| r.as_ref().ok()).cloned();
    match (sip, handle) {
        (Some(sip), Some(handle)) => {
            // An unanswered incoming call gets 486 Busy Here, which ends it with no SIP event.
            let ok = handle.with(move |ua, now| ua.hangup(now, sip)).await;
            if ringing_in || !matches!(ok, Ok(Ok(()))) {
                end(calls, call_id, status, info, None);
            }
        }
        _ => end(calls, call_id, status, info, None),
    }
}

/// `hangup {callId}`: the `hangup` hook, then BYE/CANCEL; the client gets FINISH too. A refusal
/// still ends the call (the SDK has closed its side), reported FAILED with the backend's reason.
pub(super) async fn hangup(calls: Arc<Calls>, ctx: Arc<Party>, obj: Map<String, Value>) {
    let calls = &calls;
    let call_id = obj.get("callId").and_then(Value::as_str).unwrap_or("").to_string();
    let mut data = with_context(&ctx, obj);
    let refused = ctx.direct(HookMethod::Hangup, &mut data).await.err();
    let owned = calls.table.calls.get(call_id.as_str()).is_some_and(|e| Arc::ptr_eq(&e.ctx, &ctx));
    if !owned {
        ctx.send(&ServerFrame::fail("CallStatusEvent", CALL_NOT_FOUND, Some(&call_id)));
        return;
    }
    match refused {
        None => hang_up_or_end(calls, &call_id, NORMAL_CALL_CLEARING).await,
        Some(why) => {
            if let Some(mut e) = calls.table.calls.get_mut(call_id.as_str()) {
                e.hangup_refused = Some(why.clone());
            }
            hang_up_or_end(calls, &call_id, &why).await
        }
    }
}

/// REST `/call/terminate {callId}`: hangs the call up (BYE/CANCEL); false when unknown.
pub(super) async fn terminate(calls: &Calls, call_id: &str) -> bool {
    if !calls.table.calls.contains_key(call_id) {
        return false;
    }
    hang_up_or_end(calls, call_id, NORMAL_CALL_CLEARING).await;
    true
}

/// A SIP event of a call.
pub(super) fn on_event(calls: &Arc<Calls>, sip: SipCallId, event: CallEvent) {
    let Some(call_id) = calls.table.by_sip.get(&sip).map(|c| c.clone()) else { return };
    let peer_ctx =
        calls.table.calls.get(&call_id).map(|e| (e.peer, e.ctx.clone(), e.obj.clone(), e.hangup_refused.clone()));
    let Some((peer, ctx, obj, refused)) = peer_ctx else { return };
    let remote_sdp = |sdp: &Option<bytes::Bytes>| {
        if let Some(sdp) = sdp {
            let media = calls.media.clone();
            let s = String::from_utf8_lossy(sdp).into_owned();
            tokio::spawn(async move {
                if let Err(e) = media.bridge_remote(peer, s).await {
                    tracing::info!(error = %e, "SIP SDP refused by the bridge");
                }
            });
        }
    };
    match event {
        CallEvent::Trying => {}
        CallEvent::Ringing { sdp } => {
            remote_sdp(&sdp);
            let st = if sdp.is_some() { RING_MEDIA } else { RING };
            set_status(&calls.table, &call_id, st);
            raise(&ctx, &obj, st, "", None);
        }
        CallEvent::SessionProgress { sdp } => {
            remote_sdp(&sdp);
            set_status(&calls.table, &call_id, SESSION_PROGRESS);
            raise(&ctx, &obj, SESSION_PROGRESS, "", None);
        }
        CallEvent::Established { sdp } => {
            remote_sdp(&sdp);
            let mut o = obj;
            o.insert("sipStatus".into(), 200.into());
            if let Some(mut e) = calls.table.calls.get_mut(&call_id) {
                e.obj.insert("sipStatus".into(), 200.into());
                e.obj.insert("status".into(), ESTABLISHED.into());
            }
            raise(&ctx, &o, ESTABLISHED, "", None);
        }
        CallEvent::Failed(f) => {
            let fe = map_failure(SipOperation::Invite, &f);
            end(calls, &call_id, FAILED, &fe.info.clone(), Some(&fe));
        }
        CallEvent::Ended { .. } | CallEvent::Cancelled => match refused {
            Some(why) => end(calls, &call_id, FAILED, &why, None),
            None => end(calls, &call_id, FINISH, NORMAL_CALL_CLEARING, None),
        },
        CallEvent::HoldResult { hold, result } => match result {
            Ok(sdp) => {
                remote_sdp(&sdp);
                if let Some(mut e) = calls.table.calls.get_mut(&call_id) {
                    e.holds.local = hold;
                }
                let st = if hold { HOLD } else { ESTABLISHED };
                set_status(&calls.table, &call_id, st);
                raise(&ctx, &obj, st, "", None);
            }
            Err(f) => {
                let fe = map_failure(SipOperation::ReInvite, &f);
                let mut sip = Map::new();
                crate::party::insert_sip_failure(&mut sip, &fe);
                ctx.send(&ServerFrame::fail_with("CallStatusEvent", &fe.info, Some(&call_id), sip));
                ctx.sip_error_event(&fe, Origin::Client);
            }
        },
        CallEvent::TransferAccepted => transfer_status(&ctx, &obj, transfer::ACCEPTED, "", None),
        CallEvent::TransferProgress { status, reason, raw, .. } => {
            if status >= 300 {
                transfer_failed(
                    &ctx,
                    &obj,
                    &map_failure(SipOperation::Refer, &Failure::Status { status, reason, raw }),
                );
            } else {
                let st = if status >= 200 { transfer::COMPLETED } else { transfer::TRYING };
                transfer_status(&ctx, &obj, st, &callgate_errmap::sip_info(status, &reason), Some(status));
            }
        }
        CallEvent::TransferFailed(f) => transfer_failed(&ctx, &obj, &map_failure(SipOperation::Refer, &f)),
        CallEvent::DtmfResult(Ok(())) => next_info_dtmf(&ctx, calls, &call_id, sip, true),
        CallEvent::DtmfResult(Err(f)) => {
            ctx.sip_error_event(&map_failure(SipOperation::InfoDtmf, &f), Origin::Client);
            next_info_dtmf(&ctx, calls, &call_id, sip, false);
        }
        CallEvent::IncomingRefer { req, target, referred_by } => {
            tokio::spawn(super::transfer_in::incoming_refer(calls.clone(), ctx, obj, sip, req, target, referred_by));
        }
        CallEvent::IncomingReInvite { sdp, hold, .. } => {
            super::peer::offer(calls.clone(), ctx, call_id, sip, peer, sdp, hold)
        }
        CallEvent::PeerAnswer { sdp, hold, .. } => super::peer::answer(calls.clone(), ctx, call_id, peer, sdp, hold),
        CallEvent::Dtmf { digit, duration_ms } => super::peer::dtmf(&ctx, &call_id, digit, duration_ms),
        CallEvent::SessionExpired => super::peer::session_expired(&calls.table, &call_id),
    }
}

/// The session is gone: hang up its calls.
pub(super) fn session_closed(calls: &Arc<Calls>, ctx: &Arc<Party>) {
    let table = &calls.table;
    let ids: Vec<Arc<str>> = {
        let _admission = table.admission.lock();
        table.calls.iter().filter(|e| Arc::ptr_eq(&e.ctx, ctx)).map(|e| e.key().clone()).collect()
    };
    for id in ids {
        let c = calls.clone();
        tokio::spawn(async move { hang_up_or_end(&c, &id, NORMAL_CALL_CLEARING).await });
    }
}

/// `notifyTransferEvent {callId, status, info}` to the client and `TransferStatusEvent` to the
/// backend. Statuses: ACCEPTED (202), TRYING (NOTIFY 1xx), COMPLETED (NOTIFY 2xx), FAILED.
fn transfer_status(ctx: &Arc<Party>, obj: &Map<String, Value>, status: &str, info: &str, sip_status: Option<u16>) {
    let mut ev = obj.clone();
    ev.insert("status".into(), status.into());
    ev.insert("info".into(), info.into());
    if let Some(code) = sip_status {
        ev.insert("sipStatus".into(), code.into());
    }
    tracing::info!(session = &*ctx.id, call = ?obj.get("callId"), status, info, "transfer status");
    ctx.raise_event(HookMethod::TransferStatusEvent, Origin::Client, ev, Some(messages::NOTIFY_TRANSFER_EVENT));
}

/// The transfer failed (the REFER's final response, its timeout, or a NOTIFY whose sipfrag is
/// 3xx-6xx): `FAILED` with errmap's `info`, `sipStatus` and `sipMessageRaw` (docs/errmap.md).
fn transfer_failed(ctx: &Arc<Party>, obj: &Map<String, Value>, fe: &FailureEvent) {
    let mut o = obj.clone();
    crate::party::insert_sip_failure(&mut o, fe);
    transfer_status(ctx, &o, transfer::FAILED, &fe.info, fe.sip_status);
}

/// A `dtmf` string we send: 1 to `max` keys of 0-9, *, #, A-D.
pub(super) fn check_dtmf(digits: &str, max: usize) -> Result<(), ActError> {
    if digits.is_empty() {
        return Err(ActError::BadRequest(NO_DTMF.to_string()));
    }
    // Counted in bytes first: a huge string is refused without walking it.
    if digits.len() > max * 4 || digits.chars().count() > max {
        return Err(ActError::BadRequest(callgate_proto::info::too_many_dtmf(digits.chars().count(), max)));
    }
    if let Some(bad) = digits.chars().find(|c| callgate_media::rtp::dtmf_event(*c).is_none()) {
        return Err(ActError::BadRequest(callgate_proto::info::not_a_dtmf_key(bad)));
    }
    Ok(())
}

/// Sends one INFO digit of the call's queue; a failure to start it drops the rest of the queue.
async fn send_info_dtmf(
    handle: &callgate_sip::transport::UaHandle,
    table: &super::CallTable,
    call_id: &str,
    sip: SipCallId,
    digit: char,
) -> Result<(), String> {
    let r = handle
        .with(move |ua, now| ua.info_dtmf(now, sip, digit))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    if r.is_err() {
        if let Some(mut e) = table.calls.get_mut(call_id) {
            e.dtmf = DtmfQueue::default();
        }
    }
    r
}

/// The outcome of the call's INFO digit arrived: the next one goes, or the sequence is over (a
/// failure drops the digits still waiting; the owner got an `ErrorEvent`).
fn next_info_dtmf(ctx: &Arc<Party>, calls: &Calls, call_id: &Arc<str>, sip: SipCallId, ok: bool) {
    let next = match calls.table.calls.get_mut(call_id) {
        Some(mut e) if ok => {
            let next = e.dtmf.waiting.pop_front();
            e.dtmf.in_flight = next.is_some();
            next
        }
        Some(mut e) => {
            e.dtmf = DtmfQueue::default();
            None
        }
        None => None,
    };
    let (Some(d), Some(Ok(handle))) = (next, calls.endpoint.get().cloned()) else { return };
    let (table, cid, c2) = (calls.table.clone(), call_id.clone(), ctx.clone());
    tokio::spawn(async move {
        if let Err(why) = send_info_dtmf(&handle, &table, &cid, sip, d).await {
            let fe = callgate_errmap::map_local_failure(
                SipOperation::InfoDtmf,
                &callgate_errmap::LocalFailure::NotSent(why),
            );
            c2.sip_error_event(&fe, Origin::Client);
        }
    });
}

/// The established SIP call of this session named by `callId`, or the reason it is not there.
fn own_call(calls: &Calls, ctx: &Arc<Party>, call_id: &str) -> Result<(SipCallId, PeerId, bytes::Bytes), &'static str> {
    let e = calls.table.calls.get(call_id).filter(|e| Arc::ptr_eq(&e.ctx, ctx)).ok_or(CALL_NOT_FOUND)?;
    let established = e.obj.get("sipStatus").is_some();
    match (e.sip, established) {
        (Some(sip), true) => Ok((sip, e.peer, e.sip_sdp.clone())),
        _ => Err(CALL_NOT_ESTABLISHED),
    }
}

/// Why an in-call action did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ActError {
    /// The hook refused it (client-originated only).
    Refused(String),
    /// No such call (or not this session's).
    NotFound,
    /// The call has no established dialog yet.
    NotEstablished,
    /// The request lacks something (`dtmf`, `target`) or has a bad value.
    BadRequest(String),
    /// The SIP or media operation could not be started.
    Failed(String),
}

impl ActError {
    /// The `info` a client gets in `fail {apiMethod:"CallStatusEvent"}`.
    pub(super) fn info(&self) -> String {
        match self {
            ActError::Refused(why) | ActError::BadRequest(why) | ActError::Failed(why) => why.clone(),
            ActError::NotFound => CALL_NOT_FOUND.to_string(),
            ActError::NotEstablished => CALL_NOT_ESTABLISHED.to_string(),
        }
    }
}

/// `hold`/`unhold`/`sendDtmf`/`transfer` from the client: [`act`] with origin `Client`; what
/// did not happen is told with `fail {apiMethod:"CallStatusEvent"}`.
pub(super) async fn in_call(calls: Arc<Calls>, ctx: Arc<Party>, method: HookMethod, obj: Map<String, Value>) {
    let call_id = obj.get("callId").and_then(Value::as_str).unwrap_or("").to_string();
    let data = with_context(&ctx, obj);
    if let Err(e) = act(&calls, &ctx, method, Origin::Client, data).await {
        ctx.send(&ServerFrame::fail("CallStatusEvent", &e.info(), Some(&call_id)));
    }
}

/// One in-call action of the call `data.callId` owned by `ctx`, for the client (origin
/// `Client`) and the REST API (origin `RestApi`, whose hook cannot refuse): the hook, then the
/// SIP or media operation. Its result reaches the owner later as `hold`/`talk`
/// (HOLD/ESTABLISHED), `notifyTransferEvent`, or on failure a `fail` + `ErrorEvent`.
pub(super) async fn act(
    calls: &Calls,
    ctx: &Arc<Party>,
    method: HookMethod,
    origin: Origin,
    mut data: Map<String, Value>,
) -> Result<(), ActError> {
    let call_id = data.get("callId").and_then(Value::as_str).unwrap_or("").to_string();
    let max_dtmf = calls.cfg.max_dtmf_digits;
    if method == HookMethod::SendDtmf {
        // Refused before the backend is asked (and again after its answer, which may rewrite it).
        check_dtmf(data.get("dtmf").and_then(Value::as_str).unwrap_or(""), max_dtmf)?;
    }
    ctx.direct_from(method, origin, &mut data).await.map_err(ActError::Refused)?;
    let (sip, peer, sdp) = own_call(calls, ctx, &call_id).map_err(|why| match why {
        CALL_NOT_FOUND => ActError::NotFound,
        _ => ActError::NotEstablished,
    })?;
    let Some(Ok(handle)) = calls.endpoint.get().cloned() else { return Err(ActError::NotFound) };
    let failed = ActError::Failed;
    match method {
        HookMethod::Hold => handle
            .with(move |ua, now| ua.reinvite_hold(now, sip, &sdp))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(failed),
        HookMethod::Unhold => handle
            .with(move |ua, now| ua.reinvite_unhold(now, sip, &sdp))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(failed),
        HookMethod::SendDtmf => {
            let digits = data.get("dtmf").and_then(Value::as_str).unwrap_or("").to_string();
            let kind = data.get("type").and_then(Value::as_str).unwrap_or("RFC2833").to_string();
            check_dtmf(&digits, max_dtmf)?;
            if kind == "INFO" || kind == "INFO_RELAY" {
                let first = {
                    let Some(mut e) = calls.table.calls.get_mut(call_id.as_str()) else {
                        return Err(ActError::NotFound);
                    };
                    let q = &mut e.dtmf;
                    if q.waiting.len() + digits.chars().count() > max_dtmf {
                        return Err(ActError::BadRequest(callgate_proto::info::too_many_dtmf_queued(
                            q.waiting.len(),
                            max_dtmf,
                        )));
                    }
                    q.waiting.extend(digits.chars());
                    if q.in_flight {
                        return Ok(()); // the running sequence sends them (`next_info_dtmf`)
                    }
                    q.in_flight = true;
                    q.waiting.pop_front()
                };
                match first {
                    Some(d) => send_info_dtmf(&handle, &calls.table, &call_id, sip, d).await.map_err(failed),
                    None => Ok(()),
                }
            } else {
                calls.media.send_dtmf(peer, digits).await.map_err(|e| ActError::Failed(e.to_string()))
            }
        }
        HookMethod::Transfer => {
            let target = data.get("target").and_then(Value::as_str).unwrap_or("").to_string();
            let domain = SipCredentials::from_connection(&ctx.data_ref()).map(|c| c.domain).unwrap_or_default();
            if target.is_empty() {
                return Err(ActError::BadRequest(callgate_proto::info::NO_TRANSFER_TARGET.to_string()));
            }
            let uri = target_uri(&target, &domain);
            handle
                .with(move |ua, now| ua.refer(now, sip, &uri))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
                .map_err(failed)
        }
        _ => Ok(()),
    }
}

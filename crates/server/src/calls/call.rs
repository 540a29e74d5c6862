//! The calls' entry points: `call`, `hangup`, in-call actions from the client and the REST
//! API, and the index of live calls. Each call is owned by its [`CallTask`] (`task.rs`); what
//! is here finds the call, runs the hook of what was asked, and hands it to the task.

use std::sync::Arc;

use callgate_errmap::FailureEvent;
use callgate_hooks::{HookMethod, Origin};
use callgate_media::MediaError;
use callgate_proto::{messages, ServerFrame};
use callgate_sip::ua::CallId as SipCallId;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use super::ports::{Dial, SipPort};
use super::task::{CallLimits, CallTask, Input, Leg, Listing, View};
use super::Calls;
use crate::party::Party;
use crate::party::SipCredentials;

// The client-visible strings live in callgate-proto; named here for the calls module.
pub use callgate_proto::info::{
    CALL_ID_IN_USE, CALL_NOT_ESTABLISHED, CALL_NOT_FOUND, CALL_WITHOUT_SIP_ACCOUNT, FAILED_BY_DTLS_ERROR,
    FAILED_BY_ERROR, FAILED_BY_ICE_ERROR, NORMAL_CALL_CLEARING, NO_CALL_ID, NO_DTMF, NO_SDP, TRANSCODING_REQUIRED,
};
pub use callgate_proto::status::call::{ESTABLISHED, FAILED, FINISH, HOLD, RING, RING_MEDIA, SESSION_PROGRESS, TRYING};

/// A live call on the index: who owns it, its task's inbox, its view for the REST API.
pub(super) struct CallHandle {
    pub ctx: Arc<Party>,
    pub inbox: mpsc::UnboundedSender<Input>,
    pub view: View,
}

impl CallHandle {
    /// Whether the call's dialog is established (in-call actions need it).
    pub fn established(&self) -> bool {
        self.view.lock().contains_key("sipStatus")
    }
}

/// A call's entry on [`super::CallTable`], kept by its task.
pub(super) struct TableListing {
    pub table: Arc<super::CallTable>,
    pub id: Arc<str>,
    pub view: View,
    pub sip: Option<SipCallId>,
}

impl Listing for TableListing {
    fn sip_known(&mut self, sip: SipCallId) {
        self.sip = Some(sip);
        self.table.by_sip.insert(sip, self.id.clone());
    }

    fn unlist(&mut self) {
        let view = &self.view;
        self.table.calls.remove_if(&self.id, |_, h| Arc::ptr_eq(&h.view, view));
        if let Some(sip) = self.sip.take() {
            self.table.by_sip.remove_if(&sip, |_, id| *id == self.id);
        }
        metrics::gauge!("callgate_calls").set(self.table.calls.len() as f64);
    }
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
    pub waiting: std::collections::VecDeque<char>,
    pub in_flight: bool,
}

/// The client message that carries a status (spec/client-protocol.md §6.1).
pub(super) fn client_message(status: &str) -> &'static str {
    match status {
        TRYING => messages::NOTIFY_TRYING_RESPONSE,
        RING | RING_MEDIA | SESSION_PROGRESS => messages::RING,
        ESTABLISHED => messages::TALK,
        HOLD => messages::HOLD,
        _ => messages::FINISH,
    }
}

/// The REST API's view: call objects matching every field of `filter`.
pub(super) fn find(table: &super::CallTable, filter: &Map<String, Value>) -> Vec<Map<String, Value>> {
    table
        .calls
        .iter()
        .map(|e| e.view.lock().clone())
        .filter(|obj| filter.iter().all(|(k, v)| obj.get(k) == Some(v)))
        .collect()
}

/// `CallStatusEvent` to the backend and the status message to the client, for a call that
/// never got a task (no `callId`, a `callId` in use).
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

/// Where the session's calls go: its SIP account and the destinations its backend allowed.
pub(super) fn dial_of(ctx: &Party, connection: &Map<String, Value>) -> Option<Dial> {
    let creds = SipCredentials::from_connection(connection).filter(|c| !c.domain.is_empty())?;
    Some(Dial { creds, session_destinations: super::policy::session_destinations(connection), session: ctx.id.clone() })
}

/// A call just recorded on the index; [`Recorded::task`] makes its owner.
pub(super) struct Recorded {
    inbox: mpsc::UnboundedReceiver<Input>,
    view: View,
    listing: TableListing,
}

/// Why a call was not recorded.
pub(super) enum NotRecorded {
    /// The session is gone (its cleanup has run: a call recorded now would never be hung up).
    SessionGone,
    /// The `callId` is taken.
    IdInUse,
    /// `[limits] max_calls` calls are live.
    TooMany(crate::admission::Refused),
}

/// Records the call `call_id` of `ctx` on the index. A WebSocket session's call only while
/// the session lives (`session_bound`): checked under the index's admission lock, which the
/// session's cleanup also takes, so a call is either seen by the cleanup or never recorded.
pub(super) fn record(
    calls: &Calls,
    ctx: &Arc<Party>,
    call_id: &Arc<str>,
    obj: &Map<String, Value>,
    session_bound: bool,
) -> Result<Recorded, NotRecorded> {
    use dashmap::mapref::entry::Entry;
    let view: View = Arc::new(parking_lot::Mutex::new(obj.clone()));
    let (tx, inbox) = mpsc::unbounded_channel();
    {
        let _admission = calls.table.admission.lock();
        if session_bound && !calls.sessions.holds(&ctx.id, ctx) {
            return Err(NotRecorded::SessionGone);
        }
        calls.table.room().map_err(|r| {
            r.record();
            NotRecorded::TooMany(r)
        })?;
        match calls.table.calls.entry(call_id.clone()) {
            Entry::Occupied(_) => return Err(NotRecorded::IdInUse),
            Entry::Vacant(v) => {
                v.insert(CallHandle { ctx: ctx.clone(), inbox: tx, view: view.clone() });
            }
        }
    }
    metrics::gauge!("callgate_calls").set(calls.table.calls.len() as f64);
    let listing = TableListing { table: calls.table.clone(), id: call_id.clone(), view: view.clone(), sip: None };
    Ok(Recorded { inbox, view, listing })
}

impl Recorded {
    /// The call's owner, with its ports.
    pub fn task(
        self,
        calls: &super::Calls,
        port: SipPort,
        ctx: &Arc<Party>,
        call_id: &Arc<str>,
        obj: Map<String, Value>,
        peer: callgate_media::PeerId,
    ) -> CallTask<Arc<Party>, SipPort, callgate_media::MediaEndpoint> {
        CallTask::new(
            ctx.clone(),
            port,
            calls.media.clone(),
            calls.limits(),
            call_id.clone(),
            obj,
            self.view,
            Box::new(self.listing),
            self.inbox,
            peer,
        )
    }

    /// The call ends before it had an owner.
    pub fn abandon(mut self) {
        self.listing.unlist();
    }
}

/// `call`: recorded at once (so a `hangup` during its hook finds it), then its task runs the
/// setup and the call's life.
pub(super) async fn outgoing(calls: Arc<Calls>, ctx: Arc<Party>, obj: Map<String, Value>) {
    let calls = &calls;
    let mut data = ctx.with_context(obj);
    let call_id: Arc<str> = match data.get("callId") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str().into(),
        _ => return raise(&ctx, &data, FAILED, NO_CALL_ID, None),
    };
    data.insert("incoming".into(), false.into());
    let mut view = data.clone();
    view.remove("sdp");
    view.insert("status".into(), callgate_proto::status::call::PENDING.into());
    let port = match calls.sip_port().await {
        Ok(p) => p,
        Err(info) => return raise(&ctx, &view, FAILED, &info, None),
    };
    let peer = calls.media.next_peer_id();
    let task = match record(calls, &ctx, &call_id, &view, true) {
        Ok(r) => r.task(calls, port, &ctx, &call_id, view, peer),
        Err(NotRecorded::IdInUse) => return raise(&ctx, &data, FAILED, CALL_ID_IN_USE, None),
        Err(NotRecorded::TooMany(r)) => return raise(&ctx, &data, FAILED, &r.info(), None),
        Err(NotRecorded::SessionGone) => {
            tracing::info!(session = &*ctx.id, call = &*call_id, "call dropped: the session is closing");
            return;
        }
    };
    let dial = dial_of(&ctx, &ctx.data_ref());
    task.run_outgoing(Origin::Client, Leg::WebRtc, data, dial).await;
}

/// `hangup {callId}`: the `hangup` hook, then the call's task hangs up (BYE/CANCEL); the
/// client gets FINISH too. A refusal still ends the call (the SDK has closed its side),
/// reported FAILED with the backend's reason.
pub(super) async fn hangup(calls: Arc<Calls>, ctx: Arc<Party>, obj: Map<String, Value>) {
    let calls = &calls;
    let call_id = obj.get("callId").and_then(Value::as_str).unwrap_or("").to_string();
    let mut data = ctx.with_context(obj);
    let refused = ctx.direct(HookMethod::Hangup, &mut data).await.err();
    let inbox = calls.table.calls.get(call_id.as_str()).filter(|e| Arc::ptr_eq(&e.ctx, &ctx)).map(|e| e.inbox.clone());
    match inbox {
        Some(inbox) if inbox.send(Input::Hangup { refused }).is_ok() => {}
        _ => ctx.send(&ServerFrame::fail("CallStatusEvent", CALL_NOT_FOUND, Some(&call_id))),
    }
}

/// REST `/call/terminate {callId}`: hangs the call up (BYE/CANCEL); false when unknown.
pub(super) fn terminate(calls: &super::Calls, call_id: &str) -> bool {
    let Some(inbox) = calls.table.calls.get(call_id).map(|e| e.inbox.clone()) else { return false };
    inbox.send(Input::Hangup { refused: None }).is_ok()
}

/// The session is gone: hang up its calls.
pub(super) fn session_closed(calls: &Calls, ctx: &Arc<Party>) {
    let table = &calls.table;
    let _admission = table.admission.lock();
    for e in table.calls.iter().filter(|e| Arc::ptr_eq(&e.ctx, ctx)) {
        let _ = e.inbox.send(Input::SessionGone);
    }
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

/// Why an in-call action did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ActError {
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
    let data = ctx.with_context(obj);
    if let Err(e) = act(&calls, &ctx, method, Origin::Client, data).await {
        ctx.send(&ServerFrame::fail("CallStatusEvent", &e.info(), Some(&call_id)));
    }
}

/// One in-call action of the call `data.callId` owned by `ctx`, for the client (origin
/// `Client`) and the REST API (origin `RestApi`, whose hook cannot refuse): the hook, then the
/// call's task carries it out. Its result reaches the owner later as `hold`/`talk`
/// (HOLD/ESTABLISHED), `notifyTransferEvent`, or on failure a `fail` + `ErrorEvent`.
pub(super) async fn act(
    calls: &Calls,
    ctx: &Arc<Party>,
    method: HookMethod,
    origin: Origin,
    mut data: Map<String, Value>,
) -> Result<(), ActError> {
    let call_id = data.get("callId").and_then(Value::as_str).unwrap_or("").to_string();
    if method == HookMethod::SendDtmf {
        // Refused before the backend is asked (and again by the task after its answer, which
        // may rewrite it).
        check_dtmf(data.get("dtmf").and_then(Value::as_str).unwrap_or(""), calls.cfg.max_dtmf_digits)?;
    }
    ctx.direct_from(method, origin, &mut data).await.map_err(ActError::Refused)?;
    let inbox = calls
        .table
        .calls
        .get(call_id.as_str())
        .filter(|e| Arc::ptr_eq(&e.ctx, ctx))
        .map(|e| e.inbox.clone())
        .ok_or(ActError::NotFound)?;
    let (reply, rx) = oneshot::channel();
    inbox.send(Input::Act { method, data, reply }).map_err(|_| ActError::NotFound)?;
    rx.await.unwrap_or(Err(ActError::NotFound))
}

impl super::Calls {
    pub(super) fn limits(&self) -> CallLimits {
        CallLimits {
            max_dtmf: self.cfg.max_dtmf_digits,
            ring_timeout: std::time::Duration::from_millis(self.cfg.ring_timeout_ms),
        }
    }
}

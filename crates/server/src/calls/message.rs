//! Messaging over SIP (spec/rest-hooks.md §4.5): `sendMessage` -> `sendMessage` hook -> MESSAGE
//! (CPIM + IMDN request when `isImdnRequired`); incoming MESSAGE -> `OnMessageEvent`; RFC 5438
//! delivery notifications both ways (`sendIMDN` out, `IMDN_*` statuses in).
//!
//! | what | hook | client (`notifyMessage [message, {id}]`) |
//! |---|---|---|
//! | `sendMessage` refused | `sendMessage` (direct) | `FAILED`, the backend's reason; nothing is sent |
//! | MESSAGE handed to the transport | `MessageStatusEvent SENT` | `SENT` |
//! | 2xx / 4xx-6xx / timeout | `MessageStatusEvent ACCEPTED` / `FAILED` (errmap `info`, `sipStatus`, `sipMessageRaw`) | same |
//! | incoming MESSAGE | `OnMessageEvent` (incoming, origin SIP; may rewrite `body`) | `RECEIVED`, after the backend; refusal: SIP 403 and `fail {apiMethod:"MessageStatusEvent"}` |
//! | incoming IMDN for a message we sent | `MessageStatusEvent IMDN_DELIVERED`/`IMDN_FAILED`/`IMDN_FORBIDDEN`/`IMDN_ERROR` | same, on the sender's session |
//! | `sendIMDN {id, imdnStatus}` | `sendIMDN` (direct), then `MessageStatusEvent IMDN_NOTIFICATION_SENT` (2xx) or `FAILED` | same |
//!
//! The second argument of `notifyMessage` is the old API's `notificationResult` object (it sets
//! `status:"OK"` on it and sends it back as `notificationResult`, which is accepted and logged).

use std::collections::HashMap;
use std::sync::Arc;

use callgate_errmap::{map_failure, FailureEvent, SipOperation};
use callgate_hooks::{HookMethod, Origin};
use callgate_proto::ServerFrame;
use callgate_sip::transport::UaHandle;
use callgate_sip::ua::{Account, Failure, ImdnStatus, IncomingMessage, MsgId};
use serde_json::{Map, Value};

use super::Calls;
use crate::party::Party;
use crate::party::SipCredentials;

pub use callgate_proto::info::{MESSAGE_WITHOUT_SIP_ACCOUNT as NO_SIP_ACCOUNT, NO_IMDN_REQUEST, NO_RECIPIENT};
pub use callgate_proto::messages::NOTIFY_MESSAGE as CLIENT_MESSAGE;
pub use callgate_proto::status::message::{ACCEPTED, FAILED, IMDN_NOTIFICATION_SENT, RECEIVED, SENT};

/// Sent messages whose IMDNs we keep waiting for, node-wide; beyond this no more are tracked
/// (their notifications then arrive as ordinary messages).
const MAX_AWAITING_IMDN: usize = 100_000;

/// A MESSAGE in flight: whose it is, and what its 2xx means.
pub(super) struct Sent {
    ctx: Arc<Party>,
    obj: Map<String, Value>,
    ok_status: &'static str,
    imdn_id: Option<String>,
}

/// A received message that asked for a delivery notification.
pub(super) struct Received {
    from_uri: String,
    imdn_id: String,
    datetime: Option<String>,
}

/// What `sendIMDN` needs of a received message: its sender, its IMDN Message-ID, its
/// DateTime.
pub(crate) type ReceivedRef = (String, String, Option<String>);

/// The node's messaging state, owned by the SIP owner task (`super::pump`).
#[derive(Default)]
pub(super) struct MsgTables {
    sent: HashMap<MsgId, Sent>,
    /// `imdn.Message-ID` of a message we sent -> its sender and message object.
    awaiting_imdn: HashMap<String, (Arc<Party>, Map<String, Value>)>,
    /// (session id, client message id) -> what `sendIMDN` needs.
    received: HashMap<(Arc<str>, String), Received>,
}

impl MsgTables {
    /// `SipCmd::Received`: an incoming message that asked for a delivery notification.
    pub(super) fn received(&mut self, key: (Arc<str>, String), r: ReceivedRef) {
        let (from_uri, imdn_id, datetime) = r;
        self.received.insert(key, Received { from_uri, imdn_id, datetime });
    }

    /// `SipCmd::ReceivedLookup`.
    pub(super) fn lookup(&self, key: &(Arc<str>, String)) -> Option<ReceivedRef> {
        self.received.get(key).map(|r| (r.from_uri.clone(), r.imdn_id.clone(), r.datetime.clone()))
    }

    /// The sender of the message an incoming IMDN notification `n` is about, when it is ours
    /// to report (delivery notifications of a message we sent).
    pub(super) fn imdn_sender(
        &mut self,
        n: &callgate_sip::ua::ImdnNotification,
    ) -> Option<(Arc<Party>, Map<String, Value>)> {
        match n.status {
            ImdnStatus::Displayed | ImdnStatus::Processed => None,
            _ => self.awaiting_imdn.remove(&n.message_id),
        }
    }

    /// The session is gone: forget what only it could use.
    pub(super) fn session_closed(&mut self, ctx: &Arc<Party>) {
        self.awaiting_imdn.retain(|_, (c, _)| !Arc::ptr_eq(c, ctx));
        self.received.retain(|(sid, _), _| *sid != ctx.id);
    }
}

pub(super) fn text(obj: &Map<String, Value>, k: &str) -> Option<String> {
    match obj.get(k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn flag(obj: &Map<String, Value>, k: &str) -> bool {
    match obj.get(k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The session's SIP account, resolved, once the SIP side runs (its owner task carries out
/// what is sent from it).
pub(super) async fn session_account(calls: &Arc<Calls>, ctx: &Arc<Party>) -> Result<(Account, SipCredentials), String> {
    let creds = SipCredentials::from_connection(&ctx.data_ref())
        .filter(|c| !c.domain.is_empty())
        .ok_or_else(|| NO_SIP_ACCOUNT.to_string())?;
    let next_hop = super::next_hop(calls, ctx, &creds).await?;
    calls.endpoint().await?;
    let account = creds.account(next_hop, calls.cfg.register_expires);
    Ok((account, creds))
}

/// `MessageStatusEvent` to the backend and `notifyMessage [message, {id}]` to the client.
fn raise(ctx: &Arc<Party>, obj: &Map<String, Value>, status: &str, info: &str, failure: Option<&FailureEvent>) {
    let mut ev = obj.clone();
    ev.insert("status".into(), status.into());
    ev.insert("info".into(), info.into());
    if let Some(f) = failure {
        crate::party::insert_sip_failure(&mut ev, f);
    }
    tracing::info!(session = &*ctx.id, id = ?obj.get("id"), status, info, "message status");
    metrics::counter!("callgate_message_statuses_total", "status" => status.to_string()).increment(1);
    let mut result = Map::new();
    result.insert("id".into(), obj.get("id").cloned().unwrap_or(Value::Null));
    ctx.raise_event_with(
        HookMethod::MessageStatusEvent,
        Origin::Client,
        ev,
        Some(CLIENT_MESSAGE),
        vec![Value::Object(result)],
    );
}

/// `sendMessage {id, from, to, visibleName, body, contentType, isImdnRequired}`.
pub(super) async fn send(calls: Arc<Calls>, ctx: Arc<Party>, obj: Map<String, Value>) {
    let mut data = ctx.with_context(obj);
    let id = text(&data, "id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    data.insert("id".into(), id.as_str().into());
    data.remove("status");
    if !data.contains_key("from") {
        if let Some(c) = SipCredentials::from_connection(&ctx.data_ref()) {
            data.insert("from".into(), c.login.into());
        }
    }
    let result = ctx.direct(HookMethod::SendMessage, &mut data).await;
    data.insert("id".into(), id.as_str().into()); // ours, whatever the backend answered
    let content_type = text(&data, "contentType").unwrap_or_else(|| "text/plain".to_string());
    data.insert("contentType".into(), content_type.as_str().into());
    if let Err(why) = result {
        return raise(&ctx, &data, FAILED, &why, None);
    }
    let Some(to) = text(&data, "to") else { return raise(&ctx, &data, FAILED, NO_RECIPIENT, None) };
    let body = match data.get("body") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let imdn = flag(&data, "isImdnRequired");
    let (account, creds) = match session_account(&calls, &ctx).await {
        Ok(x) => x,
        Err(info) => return raise(&ctx, &data, FAILED, &info, None),
    };
    let to_uri = super::call::target_uri(&to, &creds.domain);
    let imdn_id = imdn.then(|| uuid::Uuid::new_v4().simple().to_string());
    tracing::info!(session = &*ctx.id, id, to = to_uri, imdn, "SIP MESSAGE");
    let cmd = super::SipCmd::Message {
        ctx: ctx.clone(),
        obj: data.clone(),
        account: Box::new(account),
        to: to_uri,
        content_type,
        body: bytes::Bytes::from(body),
        imdn_id,
    };
    if let Err(gone) = calls.sip_cmd(cmd) {
        raise(&ctx, &data, FAILED, &gone, None);
    }
}

/// `SipCmd::Message`, on the SIP owner task: the MESSAGE goes, is recorded and reported SENT
/// before the owner handles its outcome.
#[allow(clippy::too_many_arguments)]
pub(super) async fn on_send(
    tables: &mut MsgTables,
    side: &crate::sip_side::SipSide,
    ctx: Arc<Party>,
    obj: Map<String, Value>,
    account: Account,
    to: String,
    content_type: String,
    body: bytes::Bytes,
    imdn_id: Option<String>,
) {
    match side.message(account, to, content_type, body, imdn_id.clone()).await {
        Ok(msg) => {
            if let Some(mid) = &imdn_id {
                if tables.awaiting_imdn.len() < MAX_AWAITING_IMDN {
                    tables.awaiting_imdn.insert(mid.clone(), (ctx.clone(), obj.clone()));
                }
            }
            tables.sent.insert(msg, Sent { ctx: ctx.clone(), obj: obj.clone(), ok_status: ACCEPTED, imdn_id });
            raise(&ctx, &obj, SENT, "", None);
        }
        Err(e) => raise(&ctx, &obj, FAILED, &callgate_proto::info::failed_by_error(e), None),
    }
}

/// `SipCmd::Imdn`, on the SIP owner task: the notification goes and is recorded before its
/// outcome is handled; the received message it answers is forgotten.
#[allow(clippy::too_many_arguments)]
pub(super) async fn on_send_imdn(
    tables: &mut MsgTables,
    side: &crate::sip_side::SipSide,
    ctx: Arc<Party>,
    obj: Map<String, Value>,
    account: Account,
    rec: (String, String, Option<String>),
    disposition: ImdnStatus,
    key: (Arc<str>, String),
) {
    let (to, original, datetime) = rec;
    match side.send_imdn(account, to, original, datetime, disposition).await {
        Ok(msg) => {
            tables.received.remove(&key);
            tables.sent.insert(msg, Sent { ctx, obj, ok_status: IMDN_NOTIFICATION_SENT, imdn_id: None });
        }
        Err(e) => raise(&ctx, &obj, FAILED, &callgate_proto::info::failed_by_error(e), None),
    }
}

/// The final outcome of a MESSAGE we sent.
pub(super) fn on_result(tables: &mut MsgTables, msg: MsgId, result: Result<u16, Failure>) {
    let Some(s) = tables.sent.remove(&msg) else { return };
    match result {
        Ok(code) => {
            let mut o = s.obj;
            o.insert("sipStatus".into(), code.into());
            raise(&s.ctx, &o, s.ok_status, "", None);
        }
        Err(f) => {
            if let Some(mid) = &s.imdn_id {
                tables.awaiting_imdn.remove(mid);
            }
            let fe = map_failure(SipOperation::Message, &f);
            raise(&s.ctx, &s.obj, FAILED, &fe.info, Some(&fe));
        }
    }
}

fn imdn_client_status(s: ImdnStatus) -> &'static str {
    match s {
        ImdnStatus::Delivered => "IMDN_DELIVERED",
        ImdnStatus::Failed => "IMDN_FAILED",
        ImdnStatus::Forbidden => "IMDN_FORBIDDEN",
        // Display/processing notifications never get here (`incoming` passes them on as
        // ordinary messages: the client's enum has no status for them).
        ImdnStatus::Error | ImdnStatus::Displayed | ImdnStatus::Processed => "IMDN_ERROR",
    }
}

pub(super) async fn respond(handle: &UaHandle, req: callgate_sip::ua::ReqId, status: u16, reason: &'static str) {
    let r = handle.with(move |ua, now| ua.respond(now, req, status, Some(reason))).await;
    if !matches!(r, Ok(Ok(()))) {
        tracing::debug!(?r, status, "response to an incoming MESSAGE not sent");
    }
}

/// An incoming delivery notification for a message we sent (`sender`, found by the SIP
/// owner): 200, and the IMDN status on the sender's session.
pub(super) async fn incoming_imdn(
    sender: (Arc<Party>, Map<String, Value>),
    status: ImdnStatus,
    req: callgate_sip::ua::ReqId,
    handle: UaHandle,
) {
    respond(&handle, req, 200, "OK").await;
    raise(&sender.0, &sender.1, imdn_client_status(status), "", None);
}

/// An incoming MESSAGE. `ctx` is the registered session it is addressed to (or the session of
/// the call it arrived in).
pub(super) async fn incoming(ctx: Option<Arc<Party>>, m: IncomingMessage, handle: UaHandle, calls: Arc<Calls>) {
    let Some(ctx) = ctx else {
        tracing::info!(from = %m.from_uri, "incoming MESSAGE for no registered session");
        respond(&handle, m.req, 480, "Temporarily Unavailable").await;
        return;
    };
    let cpim = m.cpim.clone().unwrap_or_default();
    let id = cpim.message_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let imdn_asked =
        cpim.disposition_notification.as_deref().is_some_and(|d| d.to_ascii_lowercase().contains("delivery"))
            && cpim.message_id.is_some();
    let from = callgate_sip::NameAddr::parse(&m.from).ok();
    let to_uri =
        callgate_sip::NameAddr::parse(&m.to).map(|a| a.uri.as_str().to_owned()).unwrap_or_else(|_| m.to.clone());
    let mut data = ctx.with_context(Map::new());
    data.insert("id".into(), id.as_str().into());
    data.insert("from".into(), m.from_uri.as_str().into());
    data.insert("to".into(), to_uri.into());
    data.insert(
        "visibleName".into(),
        from.and_then(|f| f.display_name.map(|d| d.to_string())).unwrap_or_default().into(),
    );
    data.insert("body".into(), String::from_utf8_lossy(&m.body).into_owned().into());
    data.insert("contentType".into(), m.content_type.as_str().into());
    data.insert("isImdnRequired".into(), imdn_asked.into());
    data.insert("status".into(), RECEIVED.into());
    data.insert("sipMessageRaw".into(), String::from_utf8_lossy(&m.raw).into_owned().into());
    let inv =
        ctx.node.engine.invoke(&ctx.app, &ctx.rcc, HookMethod::OnMessageEvent, Origin::Sip, &mut data, &ctx.id).await;
    if inv.verdict.aborts() {
        let why = inv.client_info();
        tracing::info!(session = &*ctx.id, from = %m.from_uri, reason = %why, "incoming MESSAGE refused by OnMessageEvent");
        respond(&handle, m.req, 403, "Forbidden").await;
        ctx.send(&ServerFrame::fail(
            "MessageStatusEvent",
            &callgate_proto::info::incoming_message_refused(&m.from_uri, &why),
            Some(&id),
        ));
        return;
    }
    respond(&handle, m.req, 200, "OK").await;
    // The id and status are ours whatever the backend answered; the raw request is the
    // backend's only.
    data.insert("id".into(), id.as_str().into());
    data.insert("status".into(), RECEIVED.into());
    data.remove("sipMessageRaw");
    if imdn_asked {
        let r = (m.from_uri.clone(), id.clone(), cpim.datetime.clone());
        let _ = calls.sip_cmd(super::SipCmd::Received { key: (ctx.id.clone(), id.clone()), r });
    }
    tracing::info!(session = &*ctx.id, from = %m.from_uri, id, "incoming MESSAGE delivered");
    let mc = ctx.rcc.method(HookMethod::OnMessageEvent);
    let obj = serde_json::to_value(callgate_hooks::rules::Excluding { data: &data, exclude: &mc.client_exclude })
        .expect("JSON values always serialise");
    let mut result = Map::new();
    result.insert("id".into(), id.into());
    ctx.send(&ServerFrame::new(CLIENT_MESSAGE, vec![obj, Value::Object(result)]));
}

/// `sendIMDN {id, imdnStatus}`: a delivery notification for the received message `id`
/// (`imdnStatus` `DELIVERED` (default), `FAILED`, `FORBIDDEN`, `ERROR`; also with the `IMDN_`
/// prefix, or in `status`).
pub(super) async fn send_imdn(calls: Arc<Calls>, ctx: Arc<Party>, obj: Map<String, Value>) {
    let mut data = ctx.with_context(obj);
    let id = text(&data, "id").unwrap_or_default();
    let asked = text(&data, "imdnStatus").or_else(|| text(&data, "status")).unwrap_or_else(|| "DELIVERED".into());
    data.remove("status");
    let disposition = match asked.to_ascii_uppercase().trim_start_matches("IMDN_") {
        "DELIVERED" => Some(ImdnStatus::Delivered),
        "FAILED" => Some(ImdnStatus::Failed),
        "FORBIDDEN" => Some(ImdnStatus::Forbidden),
        "ERROR" => Some(ImdnStatus::Error),
        _ => None,
    };
    data.insert("imdnStatus".into(), asked.to_ascii_uppercase().into());
    let key = (ctx.id.clone(), id.clone());
    let (reply, rx) = tokio::sync::oneshot::channel();
    let asked_owner = calls.sip_cmd(super::SipCmd::ReceivedLookup { key: key.clone(), reply });
    let Some(rec) = (match asked_owner {
        Ok(()) => rx.await.ok().flatten(),
        Err(_) => None,
    }) else {
        return raise(&ctx, &data, FAILED, NO_IMDN_REQUEST, None);
    };
    data.insert("to".into(), rec.0.as_str().into());
    let result = ctx.direct(HookMethod::SendImdn, &mut data).await;
    data.insert("id".into(), id.as_str().into());
    if let Err(why) = result {
        return raise(&ctx, &data, FAILED, &why, None);
    }
    let Some(disposition) = disposition else {
        return raise(&ctx, &data, FAILED, &callgate_proto::info::unknown_imdn_status(&asked), None);
    };
    let (account, _) = match session_account(&calls, &ctx).await {
        Ok(x) => x,
        Err(info) => return raise(&ctx, &data, FAILED, &info, None),
    };
    let cmd =
        super::SipCmd::Imdn { ctx: ctx.clone(), obj: data.clone(), account: Box::new(account), rec, disposition, key };
    if let Err(gone) = calls.sip_cmd(cmd) {
        raise(&ctx, &data, FAILED, &gone, None);
    }
}

/// `notificationResult` (the old API's answer to `notifyMessage`): nothing to do.
pub(super) fn notification_result(ctx: &Party, obj: &Map<String, Value>) {
    tracing::debug!(session = &*ctx.id, result = ?obj, "notificationResult");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imdn_statuses_map_to_the_clients_enum() {
        assert_eq!(imdn_client_status(ImdnStatus::Delivered), "IMDN_DELIVERED");
        assert_eq!(imdn_client_status(ImdnStatus::Failed), "IMDN_FAILED");
        assert_eq!(imdn_client_status(ImdnStatus::Forbidden), "IMDN_FORBIDDEN");
        assert_eq!(imdn_client_status(ImdnStatus::Error), "IMDN_ERROR");
    }
}

//! Incoming REFER in a call (RFC 3515): the `OnTransferEvent` hook (incoming invocation,
//! origin SIP) decides.
//!
//! - Refused (a non-200 under `restOnError: FAIL`): `403 Forbidden` to the referrer, and
//!   `TransferStatusEvent FAILED` (backend + `notifyTransferEvent` to the client) with
//!   `info: "Incoming transfer to <target> refused: <reason>"`.
//! - Accepted: `202 Accepted`, and the client gets `notifyTransferEvent {callId, target,
//!   referredBy, status:"PENDING"}` (spec §4.4; the old API's `OnTransferEvent`).
//!
//! What accepting means: callgate cannot place the new call itself (the browser owns the
//! media and only it can send a new `call`), so it does not pretend to. Right after the 202 it
//! ends the REFER's implicit subscription with `NOTIFY` `SIP/2.0 503 Service Unavailable`
//! (the referrer learns the transfer was not carried out and keeps or ends its call as it
//! likes), and raises `TransferStatusEvent FAILED` with `info: "Transfer to <target> not
//! carried out: the server cannot place the new call; the client may call the target
//! itself"`. The call itself goes on.

use std::sync::Arc;

use callgate_hooks::{HookMethod, Origin};
use callgate_sip::ua::{CallId as SipCallId, ReqId};
use serde_json::{Map, Value};

use super::Calls;
use crate::party::Party;

use callgate_proto::messages::NOTIFY_TRANSFER_EVENT as CLIENT_MESSAGE;
pub use callgate_proto::status::transfer::{FAILED, PENDING};

fn status_event(ctx: &Arc<Party>, data: &Map<String, Value>, status: &str, info: &str) {
    let mut ev = data.clone();
    ev.insert("status".into(), status.into());
    ev.insert("info".into(), info.into());
    tracing::info!(session = &*ctx.id, call = ?data.get("callId"), status, info, "incoming transfer status");
    ctx.raise_event(HookMethod::TransferStatusEvent, Origin::Sip, ev, Some(CLIENT_MESSAGE));
}

/// Handles `CallEvent::IncomingRefer` of the call `obj` (the call object of the session `ctx`).
pub(super) async fn incoming_refer(
    calls: Arc<Calls>,
    ctx: Arc<Party>,
    mut data: Map<String, Value>,
    sip: SipCallId,
    req: ReqId,
    target: String,
    referred_by: Option<String>,
) {
    let Some(Ok(handle)) = calls.endpoint.get().cloned() else { return };
    data.insert("nodeId".into(), Value::from(&*ctx.node.id));
    data.insert("appKey".into(), Value::from(&*ctx.app.key));
    data.insert("sessionId".into(), Value::from(&*ctx.id));
    data.insert("target".into(), target.as_str().into());
    data.insert("referredBy".into(), referred_by.unwrap_or_default().into());
    data.insert("status".into(), PENDING.into());
    let call_id = data.get("callId").cloned().unwrap_or(Value::Null);
    let inv =
        ctx.node.engine.invoke(&ctx.app, &ctx.rcc, HookMethod::OnTransferEvent, Origin::Sip, &mut data, &ctx.id).await;
    // The call and the target are what SIP said, whatever the backend answered.
    data.insert("callId".into(), call_id);
    data.insert("target".into(), target.as_str().into());
    if inv.verdict.aborts() {
        let why = inv.client_info();
        let _ = handle.with(move |ua, now| ua.respond(now, req, 403, Some("Forbidden"))).await;
        return status_event(&ctx, &data, FAILED, &callgate_proto::info::incoming_transfer_refused(&target, &why));
    }
    let accepted = handle.with(move |ua, now| ua.respond(now, req, 202, Some("Accepted"))).await;
    if !matches!(accepted, Ok(Ok(()))) {
        tracing::info!(?accepted, "incoming REFER could not be answered (gone or timed out)");
        return;
    }
    data.insert("status".into(), PENDING.into());
    let mc = ctx.rcc.method(HookMethod::OnTransferEvent);
    ctx.send_object(CLIENT_MESSAGE, &data, &mc.client_exclude);
    let notified = handle.with(move |ua, now| ua.notify_transfer(now, sip, 503, "Service Unavailable")).await;
    if !matches!(notified, Ok(Ok(()))) {
        tracing::info!(?notified, "final NOTIFY of an incoming transfer not sent");
    }
    status_event(&ctx, &data, FAILED, &callgate_proto::info::transfer_not_carried_out(&target));
}

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

use callgate_hooks::{HookMethod, Origin};
use callgate_sip::ua::{CallId as SipCallId, ReqId};
use serde_json::{Map, Value};

use super::task::{CallParty, CallSip};

use callgate_proto::messages::NOTIFY_TRANSFER_EVENT as CLIENT_MESSAGE;
pub use callgate_proto::status::transfer::{FAILED, PENDING};

fn status_event<P: CallParty>(party: &P, data: &Map<String, Value>, status: &str, info: &str) {
    let mut ev = data.clone();
    ev.insert("status".into(), status.into());
    ev.insert("info".into(), info.into());
    tracing::info!(session = party.id(), call = ?data.get("callId"), status, info, "incoming transfer status");
    party.raise(HookMethod::TransferStatusEvent, Origin::Sip, ev, Some(CLIENT_MESSAGE));
}

/// Handles `CallEvent::IncomingRefer` of the call `data` (the call object of `party`'s call).
pub(super) async fn incoming_refer<P: CallParty, S: CallSip>(
    party: P,
    sip_port: S,
    data: Map<String, Value>,
    sip: SipCallId,
    req: ReqId,
    target: String,
    referred_by: Option<String>,
) {
    let mut data = party.with_context(data);
    data.insert("target".into(), target.as_str().into());
    data.insert("referredBy".into(), referred_by.unwrap_or_default().into());
    data.insert("status".into(), PENDING.into());
    let call_id = data.get("callId").cloned().unwrap_or(Value::Null);
    let refused = party.direct(HookMethod::OnTransferEvent, Origin::Sip, &mut data).await.err();
    // The call and the target are what SIP said, whatever the backend answered.
    data.insert("callId".into(), call_id);
    data.insert("target".into(), target.as_str().into());
    if let Some(why) = refused {
        let _ = sip_port.respond(req, 403, "Forbidden").await;
        return status_event(&party, &data, FAILED, &callgate_proto::info::incoming_transfer_refused(&target, &why));
    }
    if let Err(e) = sip_port.respond(req, 202, "Accepted").await {
        tracing::info!(error = %e, "incoming REFER could not be answered (gone or timed out)");
        return;
    }
    data.insert("status".into(), PENDING.into());
    party.send_object(CLIENT_MESSAGE, &data, HookMethod::OnTransferEvent);
    if let Err(e) = sip_port.notify_transfer(sip, 503, "Service Unavailable").await {
        tracing::info!(error = %e, "final NOTIFY of an incoming transfer not sent");
    }
    status_event(&party, &data, FAILED, &callgate_proto::info::transfer_not_carried_out(&target));
}

//! Client messages of an established session, each with its hook and its answer.
//!
//! | message | hook (kind) | answer to the client |
//! |---|---|---|
//! | `sendData` | `OnDataEvent` (direct) | exactly one `DataStatusEvent` ACCEPTED/FAILED (+ `DataStatusEvent` event hook) |
//! | `submitBugReport` | `submitBugReport` (direct) | nothing on success; `fail {apiMethod:"BugReportStatusEvent"}` on refusal (+ `BugReportStatusEvent` event hook) |
//! | `sessionDebug` | `sessionDebug` (direct) | `notifySessionDebugEvent {status}` (+ `SessionDebugStatusEvent` event hook) |
//! | `pushLogs` | `pushLogs` (direct) | nothing; the lines go to the server log |
//!
//! Stream messages (`publishStream`, `playStream`, …) are handled in [`crate::streams`];
//! `call`, `answer`, `hangup`, `hold`, `unhold`, `sendDtmf`, `transfer`, `sendMessage`,
//! `sendIMDN`, `notificationResult`, `subscribe` in [`crate::calls`]; `sendXcapRequest` in
//! [`crate::xcap`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use callgate_hooks::{FieldList, HookMethod, Origin};
use callgate_proto::{messages, status, ClientFrame, FrameError, ServerFrame};
use serde_json::{Map, Value};

use crate::session::SessionCtx;

/// Handles one client frame of an established session. Work that waits on a backend runs in its
/// own task.
pub fn dispatch(ctx: Arc<SessionCtx>, frame: ClientFrame) -> Result<(), FrameError> {
    let message = frame.message.clone();
    let obj = frame.into_object()?;
    if crate::streams::handles(&message) {
        crate::streams::dispatch(ctx, &message, obj);
        return Ok(());
    }
    match message.as_str() {
        messages::SEND_DATA => {
            let Some(op) = obj.get("operationId").cloned().filter(|v| !v.is_null()) else {
                return Err(FrameError::MissingField { message, field: "operationId" });
            };
            tokio::spawn(send_data(ctx, op, obj));
        }
        messages::SUBMIT_BUG_REPORT => {
            tokio::spawn(bug_report(ctx, obj));
        }
        messages::SESSION_DEBUG => {
            tokio::spawn(session_debug(ctx, obj));
        }
        messages::PUSH_LOGS => {
            tokio::spawn(push_logs(ctx, obj));
        }
        "call" => crate::calls::call(ctx, obj),
        "hangup" => crate::calls::hangup(ctx, obj),
        "hold" => crate::calls::in_call(ctx, HookMethod::Hold, obj),
        "unhold" => crate::calls::in_call(ctx, HookMethod::Unhold, obj),
        "sendDtmf" => crate::calls::in_call(ctx, HookMethod::SendDtmf, obj),
        "transfer" => crate::calls::in_call(ctx, HookMethod::Transfer, obj),
        "answer" => crate::calls::answer(ctx, obj),
        "sendMessage" => crate::calls::send_message(ctx, obj),
        "sendIMDN" => crate::calls::send_imdn(ctx, obj),
        "notificationResult" => crate::calls::notification_result(&ctx, &obj),
        "subscribe" => crate::calls::subscribe(ctx, obj),
        "sendXcapRequest" => crate::xcap::send(ctx, obj),
        _ => return Err(FrameError::Unknown(message)),
    }
    Ok(())
}

fn with_context(ctx: &SessionCtx, mut obj: Map<String, Value>) -> Map<String, Value> {
    obj.insert("nodeId".into(), Value::from(&*ctx.shared.node_id));
    obj.insert("appKey".into(), Value::from(&*ctx.app.key));
    obj.insert("sessionId".into(), Value::from(&*ctx.id));
    obj
}

/// `sendData` -> `OnDataEvent` hook -> `DataStatusEvent` (event hook + client), exactly once.
async fn send_data(ctx: Arc<SessionCtx>, operation_id: Value, obj: Map<String, Value>) {
    let mut data = with_context(&ctx, obj);
    let result = ctx.direct(HookMethod::OnDataEvent, &mut data).await;
    let mut ev = with_context(&ctx, Map::new());
    ev.insert("operationId".into(), operation_id);
    match result {
        Ok(()) => {
            ev.insert("status".into(), status::data::ACCEPTED.into());
        }
        Err(why) => {
            ev.insert("status".into(), status::data::FAILED.into());
            ev.insert("info".into(), why.into());
        }
    }
    ctx.raise_event(HookMethod::DataStatusEvent, Origin::Client, ev, Some(messages::DATA_STATUS_EVENT));
}

async fn bug_report(ctx: Arc<SessionCtx>, obj: Map<String, Value>) {
    let mut data = with_context(&ctx, obj);
    let result = ctx.direct(HookMethod::SubmitBugReport, &mut data).await;
    let mut ev = with_context(&ctx, Map::new());
    match result {
        Ok(()) => {
            let report = Value::Object(data).to_string();
            tracing::info!(session = &*ctx.id, report, "bug report");
            ev.insert("status".into(), status::bug_report::ACCEPTED.into());
            ctx.raise_event(HookMethod::BugReportStatusEvent, Origin::Client, ev, None);
        }
        Err(why) => {
            ctx.out.send(&ServerFrame::fail("BugReportStatusEvent", &why, None));
            ev.insert("status".into(), status::bug_report::FAILED.into());
            ev.insert("info".into(), why.into());
            ctx.raise_event(HookMethod::BugReportStatusEvent, Origin::Client, ev, None);
        }
    }
}

/// `sessionDebug {command:"start"|"stop"}`: while on, every client frame of the session is
/// logged at info level.
async fn session_debug(ctx: Arc<SessionCtx>, obj: Map<String, Value>) {
    let command = obj.get("command").and_then(Value::as_str).unwrap_or("").to_string();
    let mut data = with_context(&ctx, obj);
    let mut ev = with_context(&ctx, Map::new());
    let outcome = match command.as_str() {
        "start" | "stop" => ctx.direct(HookMethod::SessionDebug, &mut data).await,
        other => Err(callgate_proto::info::unknown_session_debug_command(other)),
    };
    match outcome {
        Ok(()) => {
            let on = command == "start";
            ctx.debug.store(on, Ordering::Relaxed);
            let st = if on { status::session_debug::STARTED } else { status::session_debug::STOPPED };
            ev.insert("status".into(), st.into());
        }
        Err(why) => {
            ev.insert("status".into(), status::session_debug::FAILED.into());
            ev.insert("info".into(), why.into());
        }
    }
    ctx.raise_event(
        HookMethod::SessionDebugStatusEvent,
        Origin::Client,
        ev,
        Some(messages::NOTIFY_SESSION_DEBUG_EVENT),
    );
}

async fn push_logs(ctx: Arc<SessionCtx>, obj: Map<String, Value>) {
    let mut data = with_context(&ctx, obj);
    if ctx.direct(HookMethod::PushLogs, &mut data).await.is_ok() {
        if let Some(Value::String(lines)) = data.get("logs") {
            for line in lines.lines() {
                tracing::info!(target: "callgate::client_log", session = &*ctx.id, "{line}");
            }
        }
    }
}

/// Frame text for the REST API's `/data/send`.
pub fn on_data_event(obj: &Map<String, Value>) -> String {
    crate::session::frame_text(messages::ON_DATA_EVENT, obj, &FieldList::default())
}

//! Client messages of an established session, each with its hook and its answer.
//!
//! | message | hook (kind) | answer to the client |
//! |---|---|---|
//! | `sendData` | `OnDataEvent` (direct) | exactly one `DataStatusEvent` ACCEPTED/FAILED (+ `DataStatusEvent` event hook); for a room app session (`[rooms]`) the accepted payload is a room command run by [`crate::rooms`] and its outcome decides the status |
//! | `submitBugReport` | `submitBugReport` (direct) | nothing on success; `fail {apiMethod:"BugReportStatusEvent"}` on refusal (+ `BugReportStatusEvent` event hook) |
//! | `sessionDebug` | `sessionDebug` (direct) | `notifySessionDebugEvent {status}` (+ `SessionDebugStatusEvent` event hook) |
//! | `pushLogs` | `pushLogs` (direct) | nothing; the lines go to the server log |
//!
//! Every client message of an established session is routed here, by ONE exhaustive match over
//! [`Msg`] (a new kind of message cannot be forgotten): the session-level ones above are handled
//! in this file; stream messages (`publishStream`, `playStream`, …) in [`crate::streams`];
//! `call`, `answer`, `hangup`, `hold`, `unhold`, `sendDtmf`, `transfer`, `sendMessage`,
//! `sendIMDN`, `notificationResult`, `subscribe` in [`crate::calls`]; `sendXcapRequest` in
//! [`crate::xcap`]. Each gets the part of the node it uses, never the node.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use callgate_hooks::{FieldList, HookMethod, Origin};
use callgate_proto::{messages, status, ClientFrame, FrameError, ServerFrame};
use serde_json::{Map, Value};

use crate::calls::Calls;
use crate::party::Party;
use crate::rooms::Rooms;
use crate::streams::Streams;
use crate::{calls, streams, xcap};

/// The client messages of an established session (`connection`, `ping` and `pong` are the
/// session task's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    SendData,
    SubmitBugReport,
    SessionDebug,
    PushLogs,
    PublishStream,
    PlayStream,
    UnPublishStream,
    StopStream,
    AvailableStream,
    SendStreamEvent,
    Snapshot,
    PlayHls,
    PlayRtsp,
    Call,
    Answer,
    Hangup,
    Hold,
    Unhold,
    SendDtmf,
    Transfer,
    SendMessage,
    SendImdn,
    NotificationResult,
    Subscribe,
    SendXcapRequest,
}

impl Msg {
    /// The kind of the message named `name`; `None` for a message this server does not know.
    pub fn from_name(name: &str) -> Option<Msg> {
        Some(match name {
            messages::SEND_DATA => Msg::SendData,
            messages::SUBMIT_BUG_REPORT => Msg::SubmitBugReport,
            messages::SESSION_DEBUG => Msg::SessionDebug,
            messages::PUSH_LOGS => Msg::PushLogs,
            "publishStream" => Msg::PublishStream,
            "playStream" => Msg::PlayStream,
            "unPublishStream" => Msg::UnPublishStream,
            "stopStream" => Msg::StopStream,
            "availableStream" => Msg::AvailableStream,
            "sendStreamEvent" => Msg::SendStreamEvent,
            "snapshot" => Msg::Snapshot,
            "playHLS" => Msg::PlayHls,
            "playRTSP" => Msg::PlayRtsp,
            "call" => Msg::Call,
            "answer" => Msg::Answer,
            "hangup" => Msg::Hangup,
            "hold" => Msg::Hold,
            "unhold" => Msg::Unhold,
            "sendDtmf" => Msg::SendDtmf,
            "transfer" => Msg::Transfer,
            "sendMessage" => Msg::SendMessage,
            "sendIMDN" => Msg::SendImdn,
            "notificationResult" => Msg::NotificationResult,
            "subscribe" => Msg::Subscribe,
            "sendXcapRequest" => Msg::SendXcapRequest,
            _ => return None,
        })
    }
}

/// The parts of the node the client messages reach.
pub struct Features<'a> {
    pub streams: &'a Arc<Streams>,
    pub calls: &'a Arc<Calls>,
    pub xcap: &'a Arc<xcap::Xcap>,
    pub rooms: &'a Arc<Rooms>,
}

/// Handles one client frame of the established session `ctx`. Work that waits on a backend
/// runs in its own task.
pub fn dispatch(to: Features<'_>, ctx: Arc<Party>, frame: ClientFrame) -> Result<(), FrameError> {
    let message = frame.message.clone();
    let obj = frame.into_object()?;
    let Some(msg) = Msg::from_name(&message) else { return Err(FrameError::Unknown(message)) };
    let (st, calls) = (to.streams, to.calls);
    match msg {
        Msg::SendData => {
            let Some(op) = obj.get("operationId").cloned().filter(|v| !v.is_null()) else {
                return Err(FrameError::MissingField { message, field: "operationId" });
            };
            let rooms = to.rooms.serves(&ctx.app.key).then(|| to.rooms.clone());
            tokio::spawn(send_data(ctx, op, obj, rooms));
        }
        Msg::SubmitBugReport => drop(tokio::spawn(bug_report(ctx, obj))),
        Msg::SessionDebug => drop(tokio::spawn(session_debug(ctx, obj))),
        Msg::PushLogs => drop(tokio::spawn(push_logs(ctx, obj))),
        Msg::PublishStream => streams::publish(st, ctx, obj),
        Msg::PlayStream => streams::play(st, ctx, obj),
        Msg::UnPublishStream => streams::stop(st, ctx, obj, HookMethod::UnPublishStream),
        Msg::StopStream => streams::stop(st, ctx, obj, HookMethod::StopStream),
        Msg::AvailableStream => streams::available(st, &ctx, &obj),
        Msg::SendStreamEvent => streams::send_stream_event(st, &ctx, obj),
        Msg::Snapshot => streams::snapshot(st, ctx, obj),
        Msg::PlayHls => streams::play_hls_refused(&ctx, obj),
        Msg::PlayRtsp => streams::pull_refused(&ctx, obj),
        Msg::Call => calls::call(calls, ctx, obj),
        Msg::Answer => calls::answer(calls, ctx, obj),
        Msg::Hangup => calls::hangup(calls, ctx, obj),
        Msg::Hold => calls::in_call(calls, ctx, HookMethod::Hold, obj),
        Msg::Unhold => calls::in_call(calls, ctx, HookMethod::Unhold, obj),
        Msg::SendDtmf => calls::in_call(calls, ctx, HookMethod::SendDtmf, obj),
        Msg::Transfer => calls::in_call(calls, ctx, HookMethod::Transfer, obj),
        Msg::SendMessage => calls::send_message(calls, ctx, obj),
        Msg::SendImdn => calls::send_imdn(calls, ctx, obj),
        Msg::NotificationResult => calls::notification_result(&ctx, &obj),
        Msg::Subscribe => calls::subscribe(calls, ctx, obj),
        Msg::SendXcapRequest => xcap::send(to.xcap.clone(), ctx, obj),
    }
    Ok(())
}

/// `sendData` -> `OnDataEvent` hook -> (room app: the room command in the payload as the hook
/// left it) -> `DataStatusEvent` (event hook + client), exactly once.
async fn send_data(ctx: Arc<Party>, operation_id: Value, obj: Map<String, Value>, rooms: Option<Arc<Rooms>>) {
    let mut data = ctx.with_context(obj);
    let mut result = ctx.direct(HookMethod::OnDataEvent, &mut data).await;
    if let (Ok(()), Some(rooms)) = (&result, rooms) {
        result = rooms.command(&ctx, data.get("payload")).await;
    }
    let mut ev = ctx.with_context(Map::new());
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

async fn bug_report(ctx: Arc<Party>, obj: Map<String, Value>) {
    let mut data = ctx.with_context(obj);
    let result = ctx.direct(HookMethod::SubmitBugReport, &mut data).await;
    let mut ev = ctx.with_context(Map::new());
    match result {
        Ok(()) => {
            let mut report = Value::Object(data);
            crate::secrets::redact_value(&mut report);
            let report = report.to_string();
            tracing::info!(session = &*ctx.id, report, "bug report");
            ev.insert("status".into(), status::bug_report::ACCEPTED.into());
            ctx.raise_event(HookMethod::BugReportStatusEvent, Origin::Client, ev, None);
        }
        Err(why) => {
            ctx.send(&ServerFrame::fail("BugReportStatusEvent", &why, None));
            ev.insert("status".into(), status::bug_report::FAILED.into());
            ev.insert("info".into(), why.into());
            ctx.raise_event(HookMethod::BugReportStatusEvent, Origin::Client, ev, None);
        }
    }
}

/// `sessionDebug {command:"start"|"stop"}`: while on, every client frame of the session is
/// logged at info level.
async fn session_debug(ctx: Arc<Party>, obj: Map<String, Value>) {
    let command = obj.get("command").and_then(Value::as_str).unwrap_or("").to_string();
    let mut data = ctx.with_context(obj);
    let mut ev = ctx.with_context(Map::new());
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

async fn push_logs(ctx: Arc<Party>, obj: Map<String, Value>) {
    let mut data = ctx.with_context(obj);
    if ctx.direct(HookMethod::PushLogs, &mut data).await.is_ok() {
        if let Some(Value::String(lines)) = data.get("logs") {
            for line in lines.lines() {
                let line = crate::secrets::scrub_text(line);
                tracing::info!(target: "callgate::client_log", session = &*ctx.id, "{line}");
            }
        }
    }
}

/// Frame text for the REST API's `/data/send`.
pub fn on_data_event(obj: &Map<String, Value>) -> String {
    crate::party::frame_text(messages::ON_DATA_EVENT, obj, &FieldList::default())
}

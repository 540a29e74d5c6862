//! JSON Schemas (draft 2020-12) of the hook bodies callgate sends, one per method of the
//! [`crate::catalogue`], of the answers the contract allows, and a realistic example body per
//! method (`callgate hooks test` sends those).
//!
//! The server builds hook bodies as JSON objects, not typed structs: a body is what the client
//! sent (minus what callgate removes) plus the context fields and what callgate adds (`status`,
//! `info`, `sipStatus`, …). So these schemas are written from the catalogue and docs/hooks.md,
//! and `tests/tests/hooks_schema.rs` validates the bodies a real server sends to a recording
//! backend against them, so that the two cannot drift apart. What the schemas require is what
//! callgate always puts in; what the client sends is described but stays open
//! (`additionalProperties`): a mirroring backend must keep every field.

use serde_json::{json, Map, Value};

use crate::catalogue::{HookKind, HookMethod};

/// The JSON Schema dialect of every schema here.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

fn s(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn b(description: &str) -> Value {
    json!({"type": "boolean", "description": description})
}

fn any(description: &str) -> Value {
    json!({"description": description})
}

fn one_of(values: &[&str], description: &str) -> Value {
    json!({"type": "string", "enum": values, "description": description})
}

/// The fields every body carries (docs/hooks.md §1).
fn context() -> Vec<(&'static str, Value)> {
    vec![
        ("nodeId", s("This node: `<32 random characters>@<node ip>`")),
        ("appKey", s("The application (its `appKey`)")),
        ("sessionId", s("The session: `/<client ip:port>/<server ip:port>-<uuid>`; `rest-api:<callId>` for a call placed by the REST API")),
    ]
}

const CONNECTION: &[&str] = &["ESTABLISHED", "DISCONNECTED", "FAILED"];
const REGISTRATION: &[&str] = &["REGISTERED", "UNREGISTERED", "FAILED"];
const CALL: &[&str] =
    &["PENDING", "TRYING", "RING", "RING_MEDIA", "SESSION_PROGRESS", "ESTABLISHED", "HOLD", "FINISH", "FAILED"];
const TRANSFER: &[&str] = &["PENDING", "ACCEPTED", "TRYING", "COMPLETED", "FAILED"];
const MESSAGE: &[&str] = &[
    "SENT",
    "ACCEPTED",
    "FAILED",
    "RECEIVED",
    "IMDN_NOTIFICATION_SENT",
    "IMDN_DELIVERED",
    "IMDN_FAILED",
    "IMDN_FORBIDDEN",
    "IMDN_ERROR",
];
const SUBSCRIPTION: &[&str] = &["ACCEPTED", "NOTIFY", "TERMINATED", "FAILED"];
const ACCEPTED_FAILED: &[&str] = &["ACCEPTED", "FAILED"];
const STREAM: &[&str] = &["PENDING", "PUBLISHING", "PLAYING", "UNPUBLISHED", "STOPPED", "FAILED"];
const SESSION_DEBUG: &[&str] = &["STARTED", "STOPPED", "FAILED"];
const RECORDING: &[&str] = &["STARTED", "FINISHED", "FAILED"];

fn sip_account() -> Vec<(&'static str, Value)> {
    vec![
        ("sipLogin", s("SIP user")),
        ("sipAuthenticationName", s("SIP digest user name (default sipLogin)")),
        ("sipPassword", s("SIP digest password (hooks get it; clients and REST views never do)")),
        ("sipDomain", s("SIP domain")),
        ("sipOutboundProxy", s("SIP next hop")),
        ("sipPort", json!({"type": ["string", "integer"], "description": "SIP next-hop port"})),
        ("sipRegisterRequired", json!({"type": ["boolean", "string"], "description": "Register the account"})),
    ]
}

fn stream_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("mediaSessionId", s("The stream's id, chosen by the client")),
        ("name", s("The stream name")),
        ("published", b("true: publish; false: play")),
        ("hasAudio", b("")),
        ("hasVideo", b("")),
        ("record", b("")),
        ("recordName", s("With record: true, from the answer on: the recording's file (docs/hooks.md §10)")),
        ("mediaProvider", s("WebRTC, …")),
        ("custom", any("The client's free-form data")),
    ]
}

fn call_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("callId", s("The call: the client's UUID, or the SIP Call-ID of an incoming call")),
        ("incoming", b("true for a call that came in from SIP")),
        ("caller", s("")),
        ("callee", s("A user of the SIP domain, or a SIP URI")),
        ("visibleName", s("")),
        ("hasAudio", b("")),
        ("hasVideo", b("")),
        ("mediaProvider", s("")),
        ("custom", any("The client's free-form data")),
    ]
}

fn message_fields() -> Vec<(&'static str, Value)> {
    vec![
        ("id", s("The message id")),
        ("from", s("")),
        ("to", s("A user of the SIP domain, or a SIP URI")),
        ("visibleName", s("")),
        ("body", s("")),
        ("contentType", s("default text/plain")),
        ("isImdnRequired", b("ask for a delivery notification (RFC 5438)")),
    ]
}

fn sip_failure() -> Vec<(&'static str, Value)> {
    vec![
        ("info", s("Why: `SIP 486 BUSY HERE`, `Failed by request timeout`, the backend's reason, …")),
        ("sipStatus", json!({"type": "integer", "description": "The SIP status of a SIP failure"})),
        ("sipMessageRaw", s("The SIP message exactly as received")),
    ]
}

/// (description, required fields besides the context, properties) of `method`'s body.
fn shape(method: HookMethod) -> (&'static str, Vec<&'static str>, Vec<(&'static str, Value)>) {
    use HookMethod as M;
    let mut required = Vec::new();
    let mut p: Vec<(&'static str, Value)> = Vec::new();
    let description = match method {
        M::Connect => {
            p.extend([
                ("mediaProviders", json!({"type": "array", "items": {"type": "string"}})),
                ("clientVersion", s("")),
                ("clientOSVersion", s("")),
                ("clientBrowserVersion", s("")),
                ("keepAlive", b("")),
                ("custom", any("The client's free-form data (e.g. a token)")),
            ]);
            p.extend(sip_account());
            "A client connects (the `connection` message, without any `restClientConfig` or `sipAllowedDestinations` of its own). Answer 200 with the fields to keep (mirror the body), optionally `restClientConfig`, or refuse"
        }
        M::Call | M::Answer => {
            p.extend(call_fields());
            p.push(("sdp", s("The browser's SDP offer (call) or answer (answer)")));
            "A call placed (call) or an incoming call answered (answer) by the client"
        }
        M::Hangup | M::Hold | M::Unhold => {
            p.push(("callId", s("")));
            "A client action on one of its calls"
        }
        M::Transfer => {
            p.extend([("callId", s("")), ("target", s("Where to: a user of the SIP domain or a SIP URI"))]);
            "A blind transfer (REFER) of a call"
        }
        M::SendDtmf => {
            p.extend([
                ("callId", s("")),
                ("dtmf", s("Keys 0-9 * # A-D")),
                ("type", one_of(&["RFC2833", "INFO", "INFO_RELAY"], "default RFC2833")),
            ]);
            "DTMF in a call"
        }
        M::SendMessage => {
            p.extend(message_fields());
            "A SIP MESSAGE the client sends"
        }
        M::SendImdn => {
            p.extend([
                ("id", s("The received message's id")),
                ("imdnStatus", s("DELIVERED, FAILED, FORBIDDEN, ERROR")),
                ("to", s("The original sender")),
            ]);
            "A delivery notification (RFC 5438) the client sends for a message it received"
        }
        M::Subscribe => {
            p.extend([
                ("id", s("")),
                ("event", s("The SIP event package")),
                ("to", s("")),
                ("expires", json!({"type": ["integer", "string"]})),
            ]);
            "A SIP SUBSCRIBE the client asks for (`expires: 0` ends one)"
        }
        M::SendXcapRequest => {
            p.extend([
                ("id", s("")),
                ("url", s("")),
                ("method", one_of(&["GET", "PUT", "DELETE"], "default GET")),
                ("body", s("")),
            ]);
            "An XCAP request the client asks for (sent only to [xcap] allowed_base_urls)"
        }
        M::PublishStream | M::PlayStream | M::PlayHls | M::PlayRtsp => {
            p.extend(stream_fields());
            p.push(("sdp", s("The browser's SDP offer")));
            "A stream the client publishes or plays"
        }
        M::UnPublishStream | M::StopStream | M::PauseStream => {
            p.extend(stream_fields());
            "A client action on one of its streams"
        }
        M::Snapshot => {
            p.extend([
                ("mediaSessionId", s("The asking stream object's id (any of the client's, a never-played one too)")),
                ("name", s("The stream name to snapshot (OVERWRITE may rewrite it)")),
            ]);
            "A snapshot (PNG of the next keyframe) of the stream published as `name`; refused, the client gets snapshotFailed with the reason"
        }
        M::OnDataEvent => {
            p.extend([("operationId", s("The client's id of this message")), ("payload", any("What the client sent"))]);
            "Data the client sends (`sendData`); answered 200 the client gets DataStatusEvent ACCEPTED"
        }
        M::SubmitBugReport => "A bug report the client submits (its fields as sent)",
        M::PushLogs => {
            p.push(("logs", any("The client's log lines")));
            "Client logs (written to the server log)"
        }
        M::SessionDebug => {
            p.push(("command", one_of(&["start", "stop"], "")));
            "The client starts or stops the logging of its session's frames"
        }
        M::ConnectionStatusEvent => {
            required.push("status");
            p.push(("status", one_of(CONNECTION, "")));
            p.push(("info", s("Why, for FAILED")));
            p.push(("authToken", s("")));
            p.extend(sip_account());
            "The session's state: its connection object (as after connect) with `status`"
        }
        M::RegistrationStatusEvent => {
            required.extend(["status", "sipLogin", "sipDomain"]);
            p.push(("status", one_of(REGISTRATION, "")));
            p.extend([("sipLogin", s("")), ("sipDomain", s(""))]);
            p.extend(sip_failure());
            "The SIP registration's state"
        }
        M::CallStatusEvent => {
            required.extend(["status", "callId"]);
            p.push(("status", one_of(CALL, "")));
            p.extend(call_fields());
            p.extend(sip_failure());
            "A call's state: the call object (the client's call fields after the hook, without sdp)"
        }
        M::TransferStatusEvent => {
            required.extend(["status", "callId"]);
            p.extend([("status", one_of(TRANSFER, "")), ("callId", s("")), ("target", s(""))]);
            p.extend(sip_failure());
            "A transfer's progress"
        }
        M::MessageStatusEvent => {
            required.push("status");
            p.push(("status", one_of(MESSAGE, "")));
            p.extend(message_fields());
            p.extend(sip_failure());
            "A SIP MESSAGE's progress (and its delivery notifications)"
        }
        M::SubscriptionStatusEvent => {
            required.push("status");
            p.extend([
                ("status", one_of(SUBSCRIPTION, "")),
                ("id", s("")),
                ("event", s("")),
                ("subscriptionState", s("")),
                ("body", s("NOTIFY body")),
            ]);
            p.extend(sip_failure());
            "A subscription's state"
        }
        M::XcapStatusEvent => {
            required.push("status");
            p.extend([
                ("status", one_of(ACCEPTED_FAILED, "")),
                ("id", s("")),
                ("url", s("")),
                ("httpStatus", json!({"type": "integer"})),
                ("info", s("")),
                ("body", s("The answer's body")),
            ]);
            "An XCAP request's outcome"
        }
        M::StreamStatusEvent | M::StreamKeepAliveEvent => {
            required.extend(["status", "mediaSessionId"]);
            p.push(("status", one_of(STREAM, "")));
            p.push(("info", s("Why: `Stopped by user`, `Stream not found`, …")));
            p.extend(stream_fields());
            if method == M::StreamKeepAliveEvent {
                "A live stream, once per keep-alive interval; answering 403 ends it"
            } else {
                "A stream's state: the stream object (the client's fields after the hook, without sdp)"
            }
        }
        M::RecordingStatusEvent => {
            required.extend(["status", "mediaSessionId", "recordName"]);
            let n = |d: &str| json!({"type": "integer", "description": d});
            p.extend([
                ("status", one_of(RECORDING, "STARTED: the first frame is written; FINISHED: the file is complete")),
                ("info", s("Why it FAILED: `Recording failed: …`")),
                ("mediaSessionId", s("The published stream")),
                ("name", s("The stream's name")),
                ("recordName", s("The file, served at GET /client/records/{recordName}")),
                ("bytes", n("FINISHED: the file's size")),
                ("durationMs", n("FINISHED: media time from the first to the last frame")),
                ("videoFrames", n("FINISHED")),
                ("audioFrames", n("FINISHED")),
                ("droppedPackets", n("FINISHED: packets dropped because the writer fell behind")),
            ]);
            "A recording's state (publishStream with record: true)"
        }
        M::DataStatusEvent => {
            required.push("status");
            p.extend([("status", one_of(ACCEPTED_FAILED, "")), ("operationId", s("")), ("info", s(""))]);
            "The outcome of the client's sendData"
        }
        M::BugReportStatusEvent => {
            required.push("status");
            p.extend([("status", one_of(ACCEPTED_FAILED, "")), ("info", s(""))]);
            "The outcome of a bug report"
        }
        M::SendStreamEvent | M::StreamEvent => {
            required.extend(["mediaSessionId", "type"]);
            p.extend([
                ("mediaSessionId", s("")),
                ("name", s("")),
                ("type", s("audioMuted, audioUnmuted, videoMuted, videoUnmuted, data, …")),
                ("payload", any("")),
            ]);
            if method == M::StreamEvent {
                "A stream event, once per player of the publisher (on the player's session)"
            } else {
                "A stream event the client sends"
            }
        }
        M::SessionDebugStatusEvent => {
            required.push("status");
            p.extend([("status", one_of(SESSION_DEBUG, "")), ("info", s(""))]);
            "The outcome of sessionDebug"
        }
        M::ErrorEvent => {
            required.extend(["status", "info"]);
            p.extend([("status", one_of(&["FAILED"], "")), ("info", s("`<method>: <reason>`"))]);
            "An error that fits no other event (e.g. an event hook failed under restOnError FAIL)"
        }
        M::OnCallEvent => {
            required.extend(["callId", "status"]);
            p.extend(call_fields());
            p.extend([("status", one_of(&["PENDING"], "")), ("sipMessageRaw", s("The INVITE as received"))]);
            "A SIP call for the session's user comes in; refusing answers the caller 403"
        }
        M::OnMessageEvent => {
            required.extend(["id", "status"]);
            p.extend(message_fields());
            p.extend([("status", one_of(&["RECEIVED"], "")), ("sipMessageRaw", s("The MESSAGE as received"))]);
            "A SIP MESSAGE for the session's user comes in; refusing answers the sender 403"
        }
        M::OnTransferEvent => {
            required.extend(["callId", "target", "status"]);
            p.extend(call_fields());
            p.extend([("target", s("")), ("referredBy", s("")), ("status", one_of(&["PENDING"], ""))]);
            "A SIP REFER in one of the session's calls; refusing answers 403"
        }
    };
    (description, required, p)
}

/// The JSON Schema of the body callgate POSTs to `{url}/{method}`.
pub fn request_schema(method: HookMethod) -> Value {
    let (description, extra, fields) = shape(method);
    let mut properties = Map::new();
    for (k, v) in context().into_iter().chain(fields) {
        properties.insert(k.into(), v);
    }
    let mut required: Vec<&str> = context().iter().map(|(k, _)| *k).collect();
    required.extend(extra);
    if method.kind() == crate::HookKind::Event {
        // At-least-once delivery (crate::delivery): the same eventId on every retry.
        properties.insert(
            "sequence".into(),
            json!({"type": "integer", "minimum": 1, "description": "Per session, from 1, without gaps"}),
        );
        properties.insert("eventId".into(), s("Idempotency id: the same on every retry (= webhook-id)"));
        required.extend(["sequence", "eventId"]);
    }
    json!({
        "$schema": DIALECT,
        "title": format!("{} request", method.url_name()),
        "description": format!("POST {{url}}/{}: {description}.", method.url_name()),
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": true,
    })
}

/// `restClientConfig` as a `connect` answer may carry it (docs/hooks.md §4).
fn rest_client_config_schema() -> Value {
    let list = json!({"type": "string", "description": "Comma-separated field names"});
    json!({
        "type": "object",
        "description": "Per method name (either spelling): how its hooks behave for this session",
        "additionalProperties": {
            "type": "object",
            "properties": {
                "restExclude": list,
                "clientExclude": list,
                "restOverwrite": list,
                "restOnError": {"type": "string", "enum": ["FAIL", "LOG"]},
                "restPolicy": {"type": "string", "enum": ["NOTIFY", "OVERWRITE", "DISABLE", "DISABLED"]},
            },
            "additionalProperties": false,
        },
    })
}

/// The answers the contract allows for a hook of `kind`: `200` with a JSON object (or an empty
/// body), or a refusal with a non-200 status, best with the body `{status, reason}`.
pub fn answer_schema(kind: HookKind) -> Value {
    let ok = match kind {
        HookKind::Connect => json!({
            "type": "object",
            "description": "200: let the client in. Every field overrides the connection's but nodeId, sessionId and appKey",
            "properties": {"restClientConfig": rest_client_config_schema()},
        }),
        HookKind::Event => json!({
            "type": "object",
            "description": "200 (events cannot be refused). Under restPolicy OVERWRITE, the restOverwrite fields present are copied",
        }),
        _ => json!({
            "type": "object",
            "description": "200: go on. Under restPolicy OVERWRITE, the restOverwrite fields present are copied (never the context fields)",
        }),
    };
    json!({
        "$schema": DIALECT,
        "ok": ok,
        "refusal": {
            "type": "object",
            "description": "Any non-200 status refuses (under restOnError FAIL; connect always). With exactly this body the client gets `reason` as info, else the HTTP reason phrase",
            "required": ["status", "reason"],
            "properties": {"status": {"type": "integer"}, "reason": {"type": "string"}},
            "additionalProperties": false,
        },
    })
}

fn kind_key(kind: HookKind) -> &'static str {
    match kind {
        HookKind::Connect => "connect",
        HookKind::DirectInvocation => "directInvocations",
        HookKind::Event => "events",
        HookKind::IncomingInvocation => "incomingInvocations",
    }
}

/// Every request schema by kind and method, and the answers by kind: what
/// `callgate hooks schema` prints.
pub fn document() -> Value {
    let mut out = Map::new();
    out.insert("$schema".into(), DIALECT.into());
    out.insert(
        "description".into(),
        "JSON Schemas of the hook bodies callgate POSTs to {url}/{method}, by kind and method, and of the answers"
            .into(),
    );
    for kind in HookKind::ALL {
        let methods: Map<String, Value> = HookMethod::ALL
            .iter()
            .filter(|m| m.kind() == kind)
            .map(|m| (m.url_name().to_string(), request_schema(*m)))
            .collect();
        out.insert(kind_key(kind).into(), Value::Object(methods));
    }
    let answers: Map<String, Value> =
        HookKind::ALL.iter().map(|k| (kind_key(*k).to_string(), answer_schema(*k))).collect();
    out.insert("answers".into(), Value::Object(answers));
    Value::Object(out)
}

/// The context of an example body.
#[derive(Debug, Clone)]
pub struct ExampleContext {
    pub node_id: String,
    pub app_key: String,
    pub session_id: String,
}

impl ExampleContext {
    /// A context shaped like the server's: `nodeId` `<32 characters>@<ip>`, `sessionId`
    /// `/<client>/<server>-<uuid>`.
    pub fn new(app_key: &str) -> ExampleContext {
        let node = uuid::Uuid::new_v4().simple().to_string();
        ExampleContext {
            node_id: format!("{node}@127.0.0.1"),
            app_key: app_key.into(),
            session_id: format!("/127.0.0.1:50000/127.0.0.1:8080-{}", uuid::Uuid::new_v4()),
        }
    }
}

const SDP: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n";

/// A realistic body for `method`: what a WebSDK client's action (or the SIP side) makes
/// callgate send, with `ctx` as its context.
pub fn example(method: HookMethod, ctx: &ExampleContext) -> Map<String, Value> {
    use HookMethod as M;
    let call_id = "6b0f3a4e-8c9d-4e2a-9f10-3a5b7c9d1e2f";
    let stream = |published: bool, status: Option<&str>| {
        let mut v = json!({
            "mediaSessionId": "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e", "name": "stream1", "published": published,
            "hasVideo": true, "hasAudio": true, "record": false, "mediaProvider": "WebRTC", "custom": {},
        });
        if let Some(st) = status {
            v["status"] = st.into();
            v["info"] = "".into();
        }
        v
    };
    let call = json!({
        "callId": call_id, "incoming": false, "caller": "1001", "callee": "1002", "visibleName": "Alice",
        "hasAudio": true, "hasVideo": false, "mediaProvider": "WebRTC", "custom": {},
    });
    let message = json!({
        "id": "3e0c5a7b-1d2f-4a6b-8c9d-0e1f2a3b4c5d", "from": "1001", "to": "1002", "visibleName": "Alice",
        "body": "hello", "contentType": "text/plain", "isImdnRequired": false,
    });
    let merge = |mut base: Value, extra: Value| {
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        base
    };
    let body = match method {
        M::Connect => json!({
            "mediaProviders": ["WebRTC"], "clientVersion": "2.0", "clientOSVersion": "5.0 (X11)",
            "clientBrowserVersion": "Mozilla/5.0 (X11; Linux x86_64)", "keepAlive": false,
            "msePacketizationVersion": 2, "custom": {"token": "example"}, "sipLogin": "1001",
            "sipAuthenticationName": "1001", "sipPassword": "example-password", "sipDomain": "pbx.example.com",
            "sipOutboundProxy": "pbx.example.com", "sipPort": 5060, "sipRegisterRequired": true,
        }),
        M::Call => merge(call.clone(), json!({"status": "PENDING", "sdp": SDP})),
        M::Answer => merge(call.clone(), json!({"incoming": true, "status": "PENDING", "sdp": SDP})),
        M::Hangup | M::Hold | M::Unhold => json!({"callId": call_id}),
        M::Transfer => json!({"callId": call_id, "target": "1003"}),
        M::SendDtmf => json!({"callId": call_id, "dtmf": "1#", "type": "RFC2833"}),
        M::SendMessage => message.clone(),
        M::SendImdn => json!({"id": message["id"], "imdnStatus": "DELIVERED", "to": "sip:1002@pbx.example.com"}),
        M::Subscribe => json!({"id": "sub-1", "event": "presence", "to": "1002", "expires": 3600}),
        M::SendXcapRequest => {
            json!({"id": "xcap-1", "url": "https://xcap.example.com/xcap-root/pres-rules/users/1001/index", "method": "GET"})
        }
        M::PublishStream => merge(stream(true, None), json!({"status": "PENDING", "sdp": SDP})),
        M::PlayStream | M::PlayHls | M::PlayRtsp => {
            merge(stream(false, None), json!({"status": "PENDING", "sdp": SDP}))
        }
        M::UnPublishStream | M::PauseStream => stream(true, None),
        M::Snapshot => json!({"mediaSessionId": "5f4a3c2e-9b1d-4e8f-a7c6-2d1e0f9a8b7c", "name": "stream1"}),
        M::StopStream => stream(false, None),
        M::OnDataEvent => {
            json!({"operationId": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "payload": {"message": "hello"}})
        }
        M::SubmitBugReport => json!({"text": "audio cuts out", "type": "no_audio"}),
        M::PushLogs => json!({"logs": "INFO core - example log line"}),
        M::SessionDebug => json!({"command": "start"}),
        M::ConnectionStatusEvent => json!({
            "mediaProviders": ["WebRTC"], "clientVersion": "2.0", "custom": {"token": "example"},
            "sipLogin": "1001", "sipDomain": "pbx.example.com", "status": "ESTABLISHED", "authToken": ctx.session_id,
        }),
        M::RegistrationStatusEvent => {
            json!({"sipLogin": "1001", "sipDomain": "pbx.example.com", "status": "REGISTERED", "info": ""})
        }
        M::CallStatusEvent => merge(call.clone(), json!({"status": "ESTABLISHED", "info": "", "sipStatus": 200})),
        M::TransferStatusEvent => json!({"callId": call_id, "target": "1003", "status": "ACCEPTED", "info": ""}),
        M::MessageStatusEvent => merge(message.clone(), json!({"status": "ACCEPTED", "info": "", "sipStatus": 200})),
        M::SubscriptionStatusEvent => {
            json!({"id": "sub-1", "event": "presence", "to": "1002", "status": "ACCEPTED", "expires": 3600})
        }
        M::XcapStatusEvent => json!({
            "id": "xcap-1", "url": "https://xcap.example.com/xcap-root/pres-rules/users/1001/index", "method": "GET",
            "status": "ACCEPTED", "info": "", "httpStatus": 200, "contentType": "application/xml", "body": "<ruleset/>",
        }),
        M::StreamStatusEvent => stream(true, Some("PUBLISHING")),
        M::StreamKeepAliveEvent => stream(false, Some("PLAYING")),
        M::DataStatusEvent => {
            json!({"operationId": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "status": "ACCEPTED", "info": ""})
        }
        M::BugReportStatusEvent => json!({"status": "ACCEPTED", "info": ""}),
        M::RecordingStatusEvent => json!({
            "mediaSessionId": "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e", "name": "stream1",
            "recordName": "stream1-20261205093005-123.webm", "status": "FINISHED", "info": "",
            "bytes": 1_234_567, "durationMs": 61_020, "videoFrames": 1830, "audioFrames": 3051, "droppedPackets": 0,
        }),
        M::SendStreamEvent => json!({"mediaSessionId": "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e", "type": "audioMuted"}),
        M::StreamEvent => json!({
            "mediaSessionId": "5f6e7d8c-9b0a-4c1d-8e2f-3a4b5c6d7e8f", "name": "stream1", "type": "data", "payload": {"count": 1},
        }),
        M::SessionDebugStatusEvent => json!({"status": "STARTED", "info": ""}),
        M::ErrorEvent => json!({"status": "FAILED", "info": "DataStatusEvent: Internal Server Error"}),
        M::OnCallEvent => merge(
            call.clone(),
            json!({"callId": "a84b4c76e66710@pbx.example.com", "incoming": true, "caller": "1002", "callee": "1001", "status": "PENDING",
                   "sipMessageRaw": "INVITE sip:1001@127.0.0.1 SIP/2.0\r\n…"}),
        ),
        M::OnMessageEvent => merge(
            message,
            json!({"from": "sip:1002@pbx.example.com", "to": "sip:1001@pbx.example.com", "status": "RECEIVED",
                   "sipMessageRaw": "MESSAGE sip:1001@127.0.0.1 SIP/2.0\r\n…"}),
        ),
        M::OnTransferEvent => {
            merge(call, json!({"target": "1003", "referredBy": "sip:1002@pbx.example.com", "status": "PENDING"}))
        }
    };
    let mut out = Map::new();
    out.insert("nodeId".into(), ctx.node_id.clone().into());
    out.insert("appKey".into(), ctx.app_key.clone().into());
    out.insert("sessionId".into(), ctx.session_id.clone().into());
    if let Value::Object(m) = body {
        out.extend(m);
    }
    if method.kind() == crate::HookKind::Event {
        out.insert("sequence".into(), 1.into());
        out.insert("eventId".into(), "evt_5f0c2d9e8b7a41c3a6e4d2b1f0e9c8a7".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_has_a_schema_and_an_example_with_its_required_fields() {
        let doc = document();
        let ctx = ExampleContext::new("defaultApp");
        for m in HookMethod::ALL {
            let schema = &doc[kind_key(m.kind())][m.url_name()];
            assert_eq!(schema["type"], "object", "{m}");
            let ex = example(*m, &ctx);
            for r in schema["required"].as_array().unwrap() {
                assert!(ex.contains_key(r.as_str().unwrap()), "{m}: the example lacks {r}");
            }
            // An enumerated field of the example is one of its values.
            for (k, v) in schema["properties"].as_object().unwrap() {
                if let (Some(allowed), Some(got)) = (v.get("enum").and_then(Value::as_array), ex.get(k)) {
                    assert!(allowed.contains(got), "{m}: {k} = {got} not in {allowed:?}");
                }
            }
        }
        let counted: usize = HookKind::ALL.iter().map(|k| doc[kind_key(*k)].as_object().unwrap().len()).sum();
        assert_eq!(counted, HookMethod::COUNT);
    }

    #[test]
    fn context_fields_are_required_everywhere() {
        for m in HookMethod::ALL {
            let req = request_schema(*m)["required"].clone();
            for k in crate::rules::CONTEXT_FIELDS {
                assert!(req.as_array().unwrap().contains(&Value::from(k)), "{m} {k}");
            }
        }
    }
}

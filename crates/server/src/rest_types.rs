//! The REST API's request and answer shapes, as OpenAPI schemas (`crate::openapi`).
//!
//! The handlers in `rest_api.rs` read their bodies as JSON objects (a filter may name any
//! field, and `/call/startup` reports each bad field in its own words), so these types are the
//! documented shape, not the parser: each names the fields the handler reads, with the same
//! required ones, and leaves the object open (`additionalProperties`) where the handler does.
//! `tests/tests/openapi.rs` checks real answers of a running server against them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A `find` filter: any fields of the object searched for; an object matches when every
/// field given is equal (booleans also as `"true"`/`"false"`). `{}` or no body matches all.
/// `sipPassword` cannot be used (`400`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"appKey": "defaultApp"}))]
pub struct Filter(pub Map<String, Value>);

/// A connected client as the REST API shows it: the `connection` message after the `connect`
/// hook, plus the context fields. `sipPassword` is never shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionObject {
    /// `<32 random characters>@<node ip>`.
    pub node_id: String,
    /// `/<client ip:port>/<server ip:port>-<uuid>`.
    pub session_id: String,
    pub app_key: String,
    /// The SIP account, when the client (or the backend's `connect` answer) gave one.
    #[serde(default)]
    pub sip_login: Option<String>,
    #[serde(default)]
    pub sip_domain: Option<String>,
    /// The client's free-form data.
    #[serde(default)]
    pub custom: Option<Value>,
    /// Any other fields.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A live node of the cluster as `/cluster/nodes` shows it (`[cluster]`, docs/cluster.md): its
/// directory entry, renewed every `heartbeat_ms`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNode {
    pub node_id: String,
    /// The node's REST API, `http://host:port`.
    pub rest_url: String,
    /// The node's client WebSocket, `ws://host:port`.
    pub ws_url: String,
    /// When the node started, ms since the Unix epoch.
    pub started_at: u64,
    /// Its last heartbeat, ms since the Unix epoch (the node's clock).
    pub heartbeat_at: u64,
    /// `[cluster] lease_ms`: the entry is gone this long after a heartbeat that is not followed by another.
    pub lease_ms: u64,
    /// Its load at that heartbeat: live sessions, calls and streams.
    pub sessions: u64,
    pub calls: u64,
    pub streams: u64,
}

/// A stream as `/stream/find` shows it: what the client sent in `publishStream`/`playStream`
/// (after the hook) without `sdp`, plus the context fields and the status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamObject {
    pub media_session_id: String,
    pub name: String,
    /// `true` for a publisher, `false` for a player.
    pub published: bool,
    pub status: StreamStatus,
    pub session_id: String,
    pub node_id: String,
    pub app_key: String,
    /// Any other fields.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The status of a live stream.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum StreamStatus {
    Pending,
    Publishing,
    Playing,
}

/// A call as `/call/find` shows it: the client's `call` fields (or the `/call/startup` body)
/// after the hook, without `sdp` and `sipPassword`, plus the context fields and the status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallObject {
    pub call_id: String,
    pub callee: String,
    /// `PENDING`, `TRYING`, `RING`, `RING_MEDIA`, `SESSION_PROGRESS`, `ESTABLISHED`, `HOLD`, …
    pub status: String,
    /// The owning session; `rest-api:<callId>` for a call placed by `/call/startup`.
    pub session_id: String,
    pub node_id: String,
    pub app_key: String,
    /// `true` for a call that came in from SIP.
    #[serde(default)]
    pub incoming: Option<bool>,
    /// Any other fields.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `{sessionId}`: the session to act on.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionIdRequest {
    pub session_id: String,
}

/// `/data/send`: the client gets `OnDataEvent {nodeId, operationId, sessionId, payload}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSendRequest {
    pub session_id: String,
    /// Any JSON value, handed to the client as it is.
    pub payload: Value,
    /// A new UUID when absent.
    #[serde(default)]
    pub operation_id: Option<Value>,
    /// Accepted and ignored: the event carries this node's id.
    #[serde(default)]
    pub node_id: Option<String>,
}

/// `/stream/terminate`: a filter as for `/stream/find`, or `{mediaSessionIds: […]}`; `{}` ends
/// every stream.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamTerminateRequest {
    #[serde(default)]
    pub media_session_ids: Option<Vec<String>>,
    /// Any other fields.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `/stream/snapshot`: the published stream's name.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamSnapshotRequest {
    pub stream_name: String,
}

/// `/stream/snapshot`'s answer: the PNG, base64.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamSnapshotAnswer {
    pub data: String,
}

/// `{callId}`: the call to act on.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallIdRequest {
    pub call_id: String,
}

/// `/call/transfer`: a REFER to `target` (a user of the call's domain or a SIP URI).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallTransferRequest {
    pub call_id: String,
    pub target: String,
}

/// How DTMF is sent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub enum DtmfType {
    /// RFC 4733 events in the media (the default).
    #[serde(rename = "RFC2833")]
    Rfc2833,
    /// One SIP INFO `application/dtmf-relay` per digit.
    #[serde(rename = "INFO")]
    Info,
    #[serde(rename = "INFO_RELAY")]
    InfoRelay,
}

/// `/call/send_dtmf`: keys 0-9 `*` `#` A-D, at most `[sip] max_dtmf_digits`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallDtmfRequest {
    pub call_id: String,
    pub dtmf: String,
    #[serde(default, rename = "type")]
    pub kind: Option<DtmfType>,
}

/// A boolean that may also be written as the string `"true"` or `"false"`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum LooseBool {
    Bool(bool),
    Text(String),
}

/// `/call/startup`: a SIP call placed by the server with no browser (docs/hooks.md §12).
/// `rtmpUrl`, `rtmpStream`, `hasVideo: true`, `hasAudio: false` and
/// `sipRegisterRequired: true` are refused with `400` and the reason.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallStartupRequest {
    /// Unique among live calls (`409` otherwise).
    pub call_id: String,
    /// A user of `sipDomain`, or a SIP URI.
    pub callee: String,
    pub sip_login: String,
    pub sip_domain: String,
    #[serde(default)]
    pub sip_password: Option<String>,
    #[serde(default)]
    pub sip_authentication_name: Option<String>,
    #[serde(default)]
    pub sip_outbound_proxy: Option<String>,
    /// A number or a string; default 5060.
    #[serde(default)]
    pub sip_port: Option<Value>,
    /// The application whose backend gets the call's hooks (default `defaultApp`).
    #[serde(default)]
    pub app_key: Option<String>,
    #[serde(default)]
    pub visible_name: Option<String>,
    /// The call's audio (what the SIP side sends, G.711) becomes the stream of this name, for
    /// `playStream`, until the call ends (`409` when the name is published already).
    #[serde(default)]
    pub to_stream: Option<String>,
    #[serde(default)]
    pub has_audio: Option<LooseBool>,
    #[serde(default)]
    pub has_video: Option<LooseBool>,
    #[serde(default)]
    pub sip_register_required: Option<LooseBool>,
    /// The call's hook configuration (a callgate extension: no `connect` answer carries one).
    #[serde(default)]
    pub rest_client_config: Option<Map<String, Value>>,
}

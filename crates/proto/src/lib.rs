//! callgate-proto: the Flashphoner WCS client WebSocket protocol (`spec/client-protocol.md`).
//!
//! Every frame, both ways, is one JSON object `{"message": <name>, "data": [ ... ]}`. The official
//! SDK always sends `data: [obj]` (or `[null]`) and unconditionally reads `data[0]` of what it
//! receives, so every server frame carries a `data` array ([`ServerFrame`] guarantees it).
//!
//! ```
//! use callgate_proto::{ClientFrame, ServerFrame};
//! let f = ClientFrame::parse(r#"{"message":"sendData","data":[{"operationId":"1","payload":{}}]}"#).unwrap();
//! assert_eq!(f.message, "sendData");
//! let out = ServerFrame::new("ping", vec![]).to_text();
//! assert_eq!(out, r#"{"message":"ping","data":[]}"#);
//! ```

pub mod info;
pub mod status;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClientFrame {
    pub message: String,
    #[serde(default)]
    pub data: Vec<Value>,
}

/// Why a client frame could not be used. The text is what the client gets in `fail.info`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("Malformed message: {0}")]
    BadJson(String),
    #[error("Malformed message: expected {{\"message\": <name>, \"data\": [...]}}")]
    BadShape,
    #[error("Malformed message: binary frames are not supported")]
    Binary,
    #[error("Malformed message {message}: data[0] must be an object")]
    NotAnObject { message: String },
    #[error("Malformed message {message}: missing field {field}")]
    MissingField { message: String, field: &'static str },
    #[error("Unknown message: {0}")]
    Unknown(String),
}

impl ClientFrame {
    /// Parses one text frame.
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => FrameError::BadShape,
            _ => FrameError::BadJson(e.to_string()),
        })
    }

    /// `data[0]` as an object; a missing or `null` first element gives an empty object.
    pub fn object(&self) -> Result<Map<String, Value>, FrameError> {
        match self.data.first() {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(_) => Err(FrameError::NotAnObject { message: self.message.clone() }),
        }
    }

    /// Takes `data[0]` as an object, without copying.
    pub fn into_object(mut self) -> Result<Map<String, Value>, FrameError> {
        if self.data.is_empty() {
            return Ok(Map::new());
        }
        match self.data.swap_remove(0) {
            Value::Null => Ok(Map::new()),
            Value::Object(m) => Ok(m),
            _ => Err(FrameError::NotAnObject { message: self.message }),
        }
    }
}

/// A frame to the client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerFrame {
    pub message: &'static str,
    pub data: Vec<Value>,
}

impl ServerFrame {
    pub fn new(message: &'static str, data: Vec<Value>) -> ServerFrame {
        ServerFrame { message, data }
    }

    /// A frame with one object argument, the common shape.
    pub fn object(message: &'static str, obj: Map<String, Value>) -> ServerFrame {
        ServerFrame { message, data: vec![Value::Object(obj)] }
    }

    /// `fail {status:"FAILED", info, apiMethod}` (+ `id` for stream and call failures).
    pub fn fail(api_method: &str, info: &str, id: Option<&str>) -> ServerFrame {
        ServerFrame::fail_with(api_method, info, id, Map::new())
    }

    /// [`ServerFrame::fail`] with more fields (`sipStatus`, `sipMessageRaw` of a SIP failure).
    pub fn fail_with(api_method: &str, info: &str, id: Option<&str>, extra: Map<String, Value>) -> ServerFrame {
        let mut m = Map::new();
        m.insert("status".into(), "FAILED".into());
        m.insert("info".into(), info.into());
        m.insert("apiMethod".into(), api_method.into());
        if let Some(id) = id {
            m.insert("id".into(), id.into());
        }
        m.extend(extra);
        ServerFrame::object(messages::FAIL, m)
    }

    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("JSON values always serialise")
    }
}

/// Wire names of messages (spec/client-protocol.md §3, §4).
pub mod messages {
    // client -> server
    pub const CONNECTION: &str = "connection";
    pub const PING: &str = "ping";
    pub const PONG: &str = "pong";
    pub const SEND_DATA: &str = "sendData";
    pub const SUBMIT_BUG_REPORT: &str = "submitBugReport";
    pub const SESSION_DEBUG: &str = "sessionDebug";
    pub const PUSH_LOGS: &str = "pushLogs";
    // server -> client
    pub const GET_USER_DATA: &str = "getUserData";
    pub const FAIL: &str = "fail";
    pub const DATA_STATUS_EVENT: &str = "DataStatusEvent";
    pub const ON_DATA_EVENT: &str = "OnDataEvent";
    pub const NOTIFY_SESSION_DEBUG_EVENT: &str = "notifySessionDebugEvent";
    pub const REGISTERED: &str = "registered";
    // server -> client: streams (spec/client-protocol.md §7)
    pub const NOTIFY_STREAM_STATUS_EVENT: &str = "notifyStreamStatusEvent";
    pub const NOTIFY_STREAM_EVENT: &str = "notifyStreamEvent";
    pub const SET_REMOTE_SDP: &str = "setRemoteSDP";
    pub const AVAILABLE_STREAM: &str = "availableStream";
    // server -> client: calls (§6); the status decides which of the five carries it
    pub const NOTIFY_TRYING_RESPONSE: &str = "notifyTryingResponse";
    pub const RING: &str = "ring";
    pub const TALK: &str = "talk";
    pub const HOLD: &str = "hold";
    pub const FINISH: &str = "finish";
    pub const NOTIFY_INCOMING_CALL: &str = "notifyIncomingCall";
    pub const NOTIFY_TRANSFER_EVENT: &str = "notifyTransferEvent";
    // server -> client: SIP messages, subscriptions, XCAP
    pub const NOTIFY_MESSAGE: &str = "notifyMessage";
    pub const NOTIFY_SUBSCRIPTION: &str = "notifySubscription";
    pub const NOTIFY_XCAP_RESPONSE: &str = "notifyXcapResponse";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sdk_frames() {
        let f = ClientFrame::parse(r#"{"message":"pong","data":[null]}"#).unwrap();
        assert_eq!(f.message, "pong");
        assert!(f.object().unwrap().is_empty());
        let f = ClientFrame::parse(r#"{"message":"connection","data":[{"appKey":"defaultApp"}]}"#).unwrap();
        assert_eq!(f.into_object().unwrap()["appKey"], "defaultApp");
    }

    #[test]
    fn rejects_bad_frames_with_clear_errors() {
        assert!(matches!(ClientFrame::parse("{"), Err(FrameError::BadJson(_))));
        assert_eq!(ClientFrame::parse("[1]"), Err(FrameError::BadShape));
        assert_eq!(ClientFrame::parse(r#"{"data":[]}"#), Err(FrameError::BadShape));
        assert_eq!(ClientFrame::parse(r#"{"message":5}"#), Err(FrameError::BadShape));
        let f = ClientFrame::parse(r#"{"message":"sendData","data":[3]}"#).unwrap();
        assert_eq!(f.object().unwrap_err().to_string(), "Malformed message sendData: data[0] must be an object");
    }

    #[test]
    fn server_frames_always_carry_data() {
        assert_eq!(ServerFrame::new("ping", vec![]).to_text(), r#"{"message":"ping","data":[]}"#);
        assert_eq!(
            ServerFrame::fail("ConnectionStatusEvent", "Forbidden", None).to_text(),
            r#"{"message":"fail","data":[{"status":"FAILED","info":"Forbidden","apiMethod":"ConnectionStatusEvent"}]}"#
        );
        let mut sip = Map::new();
        sip.insert("sipStatus".into(), 488.into());
        assert_eq!(
            ServerFrame::fail_with("CallStatusEvent", "x", Some("c1"), sip).to_text(),
            r#"{"message":"fail","data":[{"status":"FAILED","info":"x","apiMethod":"CallStatusEvent","id":"c1","sipStatus":488}]}"#
        );
    }
}

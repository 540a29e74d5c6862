//! Calls driven by the REST API: `/call/startup` (a SIP call with no browser, its media an
//! RTP-only leg of the media endpoint) and `/call/hold`, `/unhold`, `/transfer`, `/send_dtmf` on
//! any call (a WebSocket client's or a REST one).
//!
//! The seed: an action started through the REST API still calls its hook, but the backend
//! cannot reject it (origin `RestApi` in the decision table); an OVERWRITE answer still applies.
//!
//! A REST call belongs to no WebSocket session. It gets a detached [`Party`] of its own:
//! - `sessionId` = `rest-api:<callId>` (unique while the call lives; `/call/find` filters on it),
//!   `nodeId` = this node's id, `appKey` = the body's `appKey` (default `defaultApp`), whose
//!   application receives the hooks;
//! - `restClientConfig` = the body's optional `restClientConfig` object (a callgate extension:
//!   there is no `connect` answer to carry one), else the WCS defaults (NOTIFY, LOG);
//! - its events (`CallStatusEvent`, `TransferStatusEvent`, `ErrorEvent`) go through its own
//!   ordered queue; client frames are dropped (there is no client).
//!
//! | step | what happens |
//! |---|---|
//! | `/call/startup` | checked (400/409), recorded (visible to `/call/find`), `200` |
//! | then | `call` hook (origin RestApi: a refusal is logged, the call goes on; OVERWRITE may rewrite `callee`) -> `TRYING` -> RTP leg (PCMU + telephone-event) -> INVITE -> RING/ESTABLISHED/FAILED/FINISH as for a client's call |

use std::sync::Arc;

use callgate_hooks::{HookMethod, Origin, RestClientConfig};
use callgate_media::PeerId;
use serde_json::{Map, Value};

use super::call::{self, ActError, FAILED};
use super::ports::Dial;
use super::task::Leg;
use super::Calls;
use crate::party::{NodeInfo, Party, SipCredentials};

/// Why a REST call request was not carried out (the REST API maps it to an HTTP status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestCallError {
    /// `400`: the request is incomplete or asks for what this server does not do.
    BadRequest(String),
    /// `404`: no such call.
    NotFound(String),
    /// `409`: the `callId` is taken, or the call is not in a state for the action.
    Conflict(String),
    /// `500`: the SIP or media operation could not be started.
    Failed(String),
    /// `503` with `Retry-After`: `[limits] max_calls` calls are live.
    Overloaded(String),
}

pub const NO_RTMP: &str = "rtmpUrl and rtmpStream are not supported by this server: a call's audio is \
     G.711, which RTMP servers and their players do not take (they want AAC, and this server does not \
     transcode); use toStream to play the call's audio as a stream";
pub const TO_STREAM_NOT_A_NAME: &str = "toStream must be a stream name, not a URL";

/// A REST call's audio as a stream (`toStream`): the stream directory is in `streams`, a module
/// of the same floor, so the node gives [`startup`] this port (`node::CallStreamPort`).
pub trait CallStreams: Send + Sync {
    /// Reserves the stream `name` (its `mediaSessionId` = `call_id`) for the call's party
    /// `ctx`, fed by the media source `source` once it exists; the backend hears PENDING.
    /// `Err`: the name or id is in use (`409`), `[limits] max_streams` (`503`).
    fn reserve(&self, ctx: &Arc<Party>, call_id: &str, name: &str, source: PeerId) -> Result<(), RestCallError>;
    /// The source exists and the call's audio feeds it: `PUBLISHING`.
    fn live(&self, call_id: &str, source: PeerId);
    /// The call is over: the stream ends (`UNPUBLISHED` with `info`), its players get `STOPPED`.
    fn ended(&self, call_id: &str, source: PeerId, info: &str);
}
pub const NO_VIDEO: &str = "hasVideo: calls started through the REST API are audio only";
pub const NO_AUDIO: &str = "hasAudio: a call without audio is not supported";
pub const NO_REGISTER: &str = "sipRegisterRequired: calls started through the REST API do not REGISTER \
     (the INVITE answers a digest challenge with sipLogin/sipAuthenticationName/sipPassword); \
     omit it or set it to false";
pub const NO_ACCOUNT: &str = "sipLogin and sipDomain are required (the SIP account the call is placed from)";

fn bad(why: impl Into<String>) -> RestCallError {
    RestCallError::BadRequest(why.into())
}

fn text<'a>(obj: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    match obj.get(k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim()),
        _ => None,
    }
}

/// A boolean that may arrive as a JSON string (`"hasAudio":"true"`, spec §8.2); `None` when
/// absent or null.
fn flag(obj: &Map<String, Value>, k: &str) -> Result<Option<bool>, RestCallError> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(bad(format!("{k} must be true or false, not {other}"))),
    }
}

/// The `sessionId` of a REST call's hooks.
pub fn session_id(call_id: &str) -> String {
    format!("rest-api:{call_id}")
}

/// `/call/startup`: checks and records the call, then places it in a task. `Ok` = accepted
/// (its progress reaches the backend as `CallStatusEvent`s).
pub(super) fn startup(
    calls: &Arc<Calls>,
    node: &Arc<NodeInfo>,
    apps: &callgate_hooks::AppRegistry,
    body: Map<String, Value>,
    streams: &Arc<dyn CallStreams>,
) -> Result<(), RestCallError> {
    let call_id: Arc<str> = text(&body, "callId").ok_or_else(|| bad("callId is required"))?.into();
    let callee = text(&body, "callee").ok_or_else(|| bad("callee is required"))?.to_string();
    for k in ["rtmpUrl", "rtmpStream"] {
        if text(&body, k).is_some() {
            return Err(bad(NO_RTMP));
        }
    }
    let to_stream = text(&body, "toStream").map(str::to_string);
    if to_stream.as_deref().is_some_and(|n| n.contains("://")) {
        return Err(bad(TO_STREAM_NOT_A_NAME));
    }
    if flag(&body, "hasVideo")? == Some(true) {
        return Err(bad(NO_VIDEO));
    }
    if flag(&body, "hasAudio")? == Some(false) {
        return Err(bad(NO_AUDIO));
    }
    if flag(&body, "sipRegisterRequired")? == Some(true) {
        return Err(bad(NO_REGISTER));
    }
    let creds =
        SipCredentials::from_connection(&body).filter(|c| !c.domain.is_empty()).ok_or_else(|| bad(NO_ACCOUNT))?;
    // `[sip] allowed_destinations` only (a REST body cannot widen it). What the name alone
    // decides is refused here; a host name is checked again once resolved, before the INVITE.
    let port = creds.next_hop_target().rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(creds.port);
    // An account of the embedded registrar's domain goes to it (part of this node, ports::next_hop).
    let embedded = calls.registrar().is_some_and(|r| r.serves(&creds));
    if !embedded && calls.policy.destination_allowed_unresolved(&[], creds.next_hop_name(), port) == Some(false) {
        return Err(bad(format!("{}: {}", super::policy::NOT_ALLOWED, creds.next_hop_target())));
    }
    let app_key = text(&body, "appKey").unwrap_or("defaultApp");
    let app = apps.get(app_key).cloned().ok_or_else(|| bad(format!("unknown appKey: {app_key}")))?;
    let rcc = match body.get("restClientConfig") {
        None | Some(Value::Null) => RestClientConfig::default(),
        Some(v) => {
            let (rcc, warnings) = RestClientConfig::parse(Some(v));
            if let Some(w) = warnings.first() {
                return Err(bad(format!("restClientConfig: {w}")));
            }
            rcc
        }
    };
    calls.table.room().map_err(|r| {
        r.record();
        RestCallError::Overloaded(r.info())
    })?;
    if calls.table.calls.contains_key(&call_id) {
        return Err(RestCallError::Conflict(format!("callId {call_id} is already in use")));
    }

    let sid: Arc<str> = session_id(&call_id).into();
    let rcc = Arc::new(rcc);
    let mut obj = Map::new();
    obj.insert("nodeId".into(), Value::from(&*node.id));
    obj.insert("appKey".into(), Value::from(&*app.key));
    obj.insert("sessionId".into(), Value::from(&*sid));
    obj.insert("callId".into(), Value::from(&*call_id));
    obj.insert("incoming".into(), false.into());
    obj.insert("caller".into(), creds.login.clone().into());
    obj.insert("callee".into(), callee.into());
    obj.insert("visibleName".into(), text(&body, "visibleName").unwrap_or(&creds.login).into());
    obj.insert("hasAudio".into(), true.into());
    obj.insert("hasVideo".into(), false.into());
    obj.insert("status".into(), callgate_proto::status::call::PENDING.into());
    // The connection object of the REST leg: the SIP account (for the INVITE and the domain
    // of a transfer target). It is never shown: no registry entry, no client.
    let mut account = Map::new();
    for k in ["sipLogin", "sipAuthenticationName", "sipPassword", "sipDomain", "sipOutboundProxy", "sipPort"] {
        if let Some(v) = body.get(k) {
            account.insert(k.into(), v.clone());
        }
    }
    let ctx = Arc::new(Party::new(node.clone(), sid, app, rcc, account, None));
    let peer = calls.media.next_peer_id();
    let recorded = match super::call::record(calls, &ctx, &call_id, &obj, false) {
        Ok(r) => r,
        Err(super::call::NotRecorded::TooMany(r)) => return Err(RestCallError::Overloaded(r.info())),
        Err(_) => return Err(RestCallError::Conflict(format!("callId {call_id} is already in use"))),
    };
    // `toStream`: the name is taken now (a name in use is this request's 409), the stream
    // lives as long as the call.
    let stream = match &to_stream {
        Some(name) => {
            let source = calls.media.next_peer_id();
            if let Err(e) = streams.reserve(&ctx, &call_id, name, source) {
                recorded.abandon();
                return Err(e);
            }
            Some((streams.clone(), source))
        }
        None => None,
    };
    metrics::counter!("callgate_rest_calls_total").increment(1);
    let calls = calls.clone();
    tokio::spawn(async move {
        let calls = &calls;
        if let Some((streams, source)) = &stream {
            // Created before the leg, so no packet of the call's audio is missed.
            match calls.media.add_leg_source(*source, peer, super::ports::RTP_LEG_CODEC).await {
                Ok(()) => streams.live(&call_id, *source),
                Err(e) => {
                    tracing::warn!(call = &*call_id, error = %e, "toStream: the media source could not be made");
                    streams.ended(&call_id, *source, callgate_proto::info::FAILED_BY_ERROR);
                }
            }
        }
        let end_stream = || {
            if let Some((streams, source)) = &stream {
                streams.ended(&call_id, *source, callgate_proto::info::STOPPED_BY_CALL_END);
            }
        };
        let port = match calls.sip_port().await {
            Ok(p) => p,
            Err(info) => {
                recorded.abandon();
                end_stream();
                return call::raise(&ctx, &obj, FAILED, &info, None);
            }
        };
        let dial = Dial { creds, session_destinations: Vec::new(), session: ctx.id.clone() };
        let task = recorded.task(calls, port, &ctx, &call_id, obj.clone(), peer);
        task.run_outgoing(Origin::RestApi, Leg::Rtp, obj, Some(dial)).await;
        end_stream();
    });
    Ok(())
}

/// `/call/hold`, `/call/unhold`, `/call/transfer {target}`, `/call/send_dtmf {dtmf, type}` on
/// any established call: the owner's hook with origin RestApi (never refused), then the same
/// operation as the client's message ([`call::act`]); the owner (a client, if any) gets the
/// same `hold`/`talk`/`notifyTransferEvent` as if it had asked. `Ok` = the operation started.
pub(super) async fn action(
    calls: &super::Calls,
    method: HookMethod,
    body: Map<String, Value>,
) -> Result<(), RestCallError> {
    let call_id = text(&body, "callId").ok_or_else(|| bad("callId is required"))?.to_string();
    let mut req = Map::new();
    req.insert("callId".into(), Value::from(call_id.as_str()));
    match method {
        HookMethod::Transfer => {
            let target = text(&body, "target").ok_or_else(|| bad("target is required"))?;
            req.insert("target".into(), target.into());
        }
        HookMethod::SendDtmf => {
            let dtmf = match body.get("dtmf") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err(bad("dtmf is required")),
            };
            if let Some(k) = dtmf.chars().find(|c| callgate_media::rtp::dtmf_event(*c).is_none()) {
                return Err(bad(format!("dtmf: not a DTMF key: {k:?} (0-9, *, #, A-D)")));
            }
            let kind = text(&body, "type").unwrap_or("RFC2833");
            if !matches!(kind, "RFC2833" | "INFO" | "INFO_RELAY") {
                return Err(bad(format!("type must be RFC2833, INFO or INFO_RELAY, not {kind:?}")));
            }
            req.insert("dtmf".into(), dtmf.into());
            req.insert("type".into(), kind.into());
        }
        _ => {}
    }
    let ctx = {
        let e =
            calls.table.calls.get(call_id.as_str()).ok_or_else(|| RestCallError::NotFound("call not found".into()))?;
        if !e.established() {
            return Err(RestCallError::Conflict(call::CALL_NOT_ESTABLISHED.into()));
        }
        e.ctx.clone()
    };
    let data = ctx.with_context(req);
    call::act(calls, &ctx, method, Origin::RestApi, data).await.map_err(|e| match e {
        ActError::NotFound => RestCallError::NotFound("call not found".into()),
        ActError::NotEstablished => RestCallError::Conflict(e.info()),
        ActError::BadRequest(why) => RestCallError::BadRequest(why),
        ActError::Refused(why) | ActError::Failed(why) => RestCallError::Failed(why),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_accept_json_strings_and_refuse_other_values() {
        let o = json!({"a": "true", "b": "FALSE", "c": true, "d": "", "e": 1, "f": null});
        let o = o.as_object().unwrap();
        assert_eq!(flag(o, "a"), Ok(Some(true)));
        assert_eq!(flag(o, "b"), Ok(Some(false)));
        assert_eq!(flag(o, "c"), Ok(Some(true)));
        assert_eq!(flag(o, "d"), Ok(None));
        assert_eq!(flag(o, "f"), Ok(None));
        assert_eq!(flag(o, "missing"), Ok(None));
        assert!(matches!(flag(o, "e"), Err(RestCallError::BadRequest(m)) if m.contains("true or false")));
    }
}

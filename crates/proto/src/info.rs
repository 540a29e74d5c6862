//! `info` strings the client sees (spec/client-protocol.md §6.5, §7.5), as constants or functions,
//! so a grep for a client-visible text finds its one home; the server names them from here. The
//! `info` of a SIP failure (`SIP 403 FORBIDDEN`, `re-INVITE: ...`, `Failed by transport error:
//! ...`) is built by callgate-errmap, the one table of those (docs/errmap.md).

pub const NORMAL_CALL_CLEARING: &str = "Normal call clearing";
pub const STREAM_NOT_FOUND: &str = "Stream not found";
pub const STREAM_NAME_ALREADY_IN_USE: &str = "Stream name is already in use";
pub const STOPPED_BY_SESSION_DISCONNECT: &str = "Stopped by session disconnect";
pub const STOPPED_BY_REST_TERMINATE: &str = "Stopped by rest /terminate";
/// The end event a surviving cluster node sends for the objects of a node that died
/// (docs/cluster.md).
pub const NODE_LOST: &str = "Node lost";
pub const STOPPED_BY_PUBLISHER_STOP: &str = "Stopped by publisher stop";
/// The stream of a call's audio (`toStream` on `/rest-api/call/startup`) ended with its call.
pub const STOPPED_BY_CALL_END: &str = "Stopped by call end";
/// Connection refused because the client named an application that does not exist.
pub const UNKNOWN_APP_KEY: &str = "Unknown appKey";
/// A message other than `connection` arrived before the session was established.
pub const SESSION_NOT_READY: &str = "Session not ready";
/// Connection closed by the REST API `/connection/terminate`.
pub const TERMINATED_BY_REST: &str = "Terminated by rest /terminate";
/// Connection closed because the client stopped answering pings.
pub const PING_TIMEOUT: &str = "Ping timeout";

// ---- The SDK's `CALL_STATUS_INFO` and media failures (spec/client-protocol.md §6.5, §7.5) ----

pub const FAILED_BY_ERROR: &str = "Failed by error";
pub const FAILED_BY_ICE_ERROR: &str = "Failed by ICE error";
pub const FAILED_BY_ICE_TIMEOUT: &str = "Failed by ICE timeout";
pub const FAILED_BY_KEEP_ALIVE: &str = "Failed by ICE keep alive";
pub const FAILED_BY_DTLS_ERROR: &str = "Failed by DTLS error";
/// No final SIP response came (timer B or F; docs/errmap.md).
pub const FAILED_BY_REQUEST_TIMEOUT: &str = "Failed by request timeout";
pub const NO_COMMON_CODECS: &str = "No common codecs";
pub const TRANSCODING_REQUIRED: &str = "Transcoding required, but disabled";

/// `Failed by error: <detail>`: a request the server could not carry out, with the reason.
pub fn failed_by_error(detail: impl std::fmt::Display) -> String {
    format!("{FAILED_BY_ERROR}: {detail}")
}

// ---- Streams (spec/client-protocol.md §7.5) ----

pub const MEDIASESSION_ID_NULL: &str = "MediaSessionId is null";
pub const MEDIASESSION_ID_ALREADY_IN_USE: &str = "MediaSessionId is already in use";
pub const STOPPED_BY_USER: &str = "Stopped by user";
pub const TERMINATED_BY_KEEP_ALIVE: &str = "Terminated by keep-alive";
pub const PUBLISH_STREAM_IS_NOT_READY: &str = "Publish stream is not ready";
pub const AVAILABLE: &str = "Available";
/// A publish, play or call without an SDP offer.
pub const NO_SDP: &str = "Failed by error: no SDP offer";
pub const NO_STREAM_NAME: &str = "Failed by error: no stream name";
/// `playHLS`, `playRTSP` messages and RTMP/HTTP stream names are not implemented (`playStream`
/// of an `rtsp://` name is: docs/hooks.md §10).
pub const PULL_NOT_SUPPORTED: &str = "Playing RTSP, RTMP or HLS sources is not supported by this server";
/// The `playHLS` WebSocket message: HLS is served over HTTP (docs/media.md "HLS output").
pub const PLAY_HLS_OVER_HTTP: &str =
    "HLS is not played over the WebSocket: fetch http://<server>:<http port>/<stream>/index.m3u8 with an HLS player";

// ---- Pulled RTSP sources (`playStream` of an rtsp:// name; never the URL: it may hold credentials) ----

/// The camera answered 401 to the credentials in the URL (or asked for some and there were none).
pub const RTSP_UNAUTHORIZED: &str = "RTSP source refused the credentials (401 Unauthorized)";
/// No TCP connection to the camera (refused, no route, name not resolved, or no answer in time).
pub const RTSP_UNREACHABLE: &str = "RTSP source unreachable";
/// The URL is not a valid `rtsp://` URL.
pub const RTSP_BAD_URL: &str = "RTSP source URL is not valid";
/// The camera was up and is gone, and reconnecting failed for too long.
pub const RTSP_SOURCE_LOST: &str = "RTSP source lost";
/// The camera answered an RTSP request with another error status.
pub fn rtsp_status(status: u16) -> String {
    format!("RTSP source answered {status}")
}
/// The camera has no stream this server forwards without transcoding; `found` lists its codecs.
pub fn rtsp_unsupported_codecs(found: &str) -> String {
    format!("RTSP source has no supported codec (H.264 video, PCMU/PCMA or AAC-LC audio); it offers {found}")
}
/// The camera's address is refused by the SSRF guard (`[security] allowed_private_ranges`).
pub fn rtsp_refused_address(why: impl std::fmt::Display) -> String {
    format!("RTSP source address refused: {why}")
}
/// Any other failure of the RTSP session (a protocol error of the camera).
pub fn rtsp_failed(why: impl std::fmt::Display) -> String {
    format!("RTSP source failed: {why}")
}

/// `snapshotFailed` while the node already takes as many snapshots as it allows at once.
pub const SNAPSHOT_BUSY: &str = "Snapshot failed: too many snapshots in progress";
/// `snapshotFailed`: why a stream snapshot could not be taken (`why` from
/// `callgate_media::snapshot::SnapshotError`: no video, no decoder for H.264, no keyframe in
/// time, the stream ended, a decoding error).
pub fn snapshot_failed(why: impl std::fmt::Display) -> String {
    format!("Snapshot failed: {why}")
}

// ---- Calls (spec/client-protocol.md §6) ----

pub const CALL_NOT_FOUND: &str = "Call not found";
pub const CALL_NOT_ESTABLISHED: &str = "Call is not established";
pub const CALL_NOT_RINGING: &str = "Call is not ringing";
/// An incoming call the client did not answer in time (`[sip] ring_timeout`).
pub const NOT_ANSWERED: &str = "Not answered";

/// `Not answered within 90 s` (whole seconds; `1.5 s` otherwise): a call nobody answered in time,
/// incoming (`[sip] ring_timeout_ms`) or outgoing (`[sip] outgoing_ring_timeout_ms`).
pub fn not_answered_within(after: std::time::Duration) -> String {
    if after.subsec_millis() == 0 {
        format!("{NOT_ANSWERED} within {} s", after.as_secs())
    } else {
        format!("{NOT_ANSWERED} within {:.1} s", after.as_secs_f64())
    }
}
pub const CALL_WITHOUT_SIP_ACCOUNT: &str =
    "Failed by session creation: the session has no SIP account (sipLogin and sipDomain)";
pub const CALL_ID_IN_USE: &str = "Failed by error: callId is already in use";
pub const NO_CALL_ID: &str = "Failed by error: no callId";
pub const NO_DTMF: &str = "Failed by error: no dtmf";
pub const TOO_MANY_DTMF: &str = "Failed by error: too many DTMF digits";
pub const NO_TRANSFER_TARGET: &str = "Failed by error: no transfer target";
pub const LATE_OFFER: &str = "Failed by error: an INVITE without SDP (late offer) is not supported";
/// Where SIP may not go (`[sip] allowed_destinations`); followed by `: <target>`.
pub const SIP_DESTINATION_NOT_ALLOWED: &str = "SIP destination not allowed";

/// `Failed by error: too many DTMF digits (<count>; at most <max>)`.
pub fn too_many_dtmf(count: usize, max: usize) -> String {
    format!("{TOO_MANY_DTMF} ({count}; at most {max})")
}

/// `Failed by error: not a DTMF key: '<key>'`.
pub fn not_a_dtmf_key(key: char) -> String {
    failed_by_error(format_args!("not a DTMF key: {key:?}"))
}

/// DTMF digits refused because the call's INFO queue is full.
pub fn too_many_dtmf_queued(waiting: usize, max: usize) -> String {
    format!("{TOO_MANY_DTMF}: {waiting} still to send, at most {max} in all")
}

/// A call ended because the SIP peer, the session refresher, did not refresh it (RFC 4028).
pub const SESSION_EXPIRED: &str = "Failed by session timer: the SIP peer did not refresh the session (RFC 4028)";
/// A registration (or a call's account) without `sipDomain`.
pub const REGISTRATION_NEEDS_DOMAIN: &str = "SIP registration needs sipDomain";

/// The node's SIP user agent could not start (or the server is shutting down).
pub fn sip_endpoint_unavailable(why: impl std::fmt::Display) -> String {
    format!("SIP endpoint unavailable: {why}")
}

/// A REST-started call whose `call` hook answer removed the callee.
pub const CALL_HOOK_REMOVED_CALLEE: &str = "Failed by error: the call hook removed the callee";

/// An incoming INVITE the backend refused (`OnCallEvent`).
pub fn incoming_call_refused(from: &str, why: &str) -> String {
    format!("Incoming call from {from} refused: {why}")
}

/// An incoming REFER the backend refused (`OnTransferEvent`).
pub fn incoming_transfer_refused(target: &str, why: &str) -> String {
    format!("Incoming transfer to {target} refused: {why}")
}

/// An accepted incoming REFER: the server cannot place the new call for the browser.
pub fn transfer_not_carried_out(target: &str) -> String {
    format!(
        "Transfer to {target} not carried out: the server cannot place the new call; the client may call the target \
         itself"
    )
}

// ---- Messages and subscriptions (SIP MESSAGE, IMDN, SUBSCRIBE) ----

pub const MESSAGE_WITHOUT_SIP_ACCOUNT: &str = "The session has no SIP account (sipLogin and sipDomain)";
pub const NO_RECIPIENT: &str = "Failed by error: no recipient (to)";
pub const NO_IMDN_REQUEST: &str = "No received message with this id asked for a delivery notification";
pub const NO_EVENT_PACKAGE: &str = "Failed by error: no event package (event)";
pub const NO_SUBSCRIPTION_TARGET: &str = "Failed by error: no subscription target (to)";
pub const SUBSCRIPTION_NOT_FOUND: &str = "Subscription not found";
pub const SUBSCRIPTION_ID_IN_USE: &str = "Failed by error: subscription id is already in use";
pub const BAD_EXPIRES: &str = "Failed by error: expires must be a number of seconds";

/// An incoming MESSAGE the backend refused (`OnMessageEvent`).
pub fn incoming_message_refused(from: &str, why: &str) -> String {
    format!("Incoming message from {from} refused: {why}")
}

/// A limit of `[limits]` refused a new session, call, stream or REST request: "Too many calls
/// (limit 5000, limits.max_calls); try again later". The client sees it as `info`, the REST API
/// as its 503 body.
pub fn too_many(what: &str, limit: usize, key: &str) -> String {
    format!("Too many {what} (limit {limit}, {key}); try again later")
}

/// `sendIMDN` with a status the server does not know.
pub fn unknown_imdn_status(asked: &str) -> String {
    failed_by_error(format_args!("unknown imdnStatus {asked:?} (DELIVERED, FAILED, FORBIDDEN, ERROR)"))
}

// ---- XCAP ----

pub const XCAP_URL_NOT_ALLOWED: &str = "XCAP URL not allowed";
pub const XCAP_TIMEOUT: &str = "XCAP request timed out";
pub const NO_URL: &str = "Failed by error: no url";

/// The XCAP server could not be reached.
pub fn xcap_request_failed(why: impl std::fmt::Display) -> String {
    format!("XCAP request failed: {why}")
}

/// The XCAP answer could not be read, or was over `max` bytes.
pub fn xcap_answer_unreadable(max: usize, why: impl std::fmt::Display) -> String {
    format!("XCAP answer unreadable or over {max} bytes: {why}")
}

/// The XCAP server's non-2xx answer.
pub fn xcap_http_status(status: u16, reason: &str) -> String {
    format!("HTTP {status} {reason}")
}

/// `sendXcapRequest` with a method other than GET, PUT or DELETE.
pub fn xcap_method_not_supported(method: &str) -> String {
    failed_by_error(format_args!("XCAP method {method:?} (GET, PUT or DELETE)"))
}

// ---- Sessions ----

/// No `connection` message within `[server] login_timeout_ms`; also the close frame's reason.
pub const LOGIN_TIMEOUT: &str = "Login timeout";
/// A direct invocation refused: the session has `[hooks] max_in_flight_per_session` waiting.
pub const TOO_MANY_IN_FLIGHT: &str = "Too many requests in flight";
/// Every session when the server shuts down (`fail`, and the reason of the 1001 close frame).
pub const SERVER_SHUTDOWN: &str = "Server shutdown";
/// A session whose client does not read what the server sends (its outbox is full).
pub const CLIENT_TOO_SLOW: &str = "Client too slow";
/// A second `connection` message on an established session.
pub const ALREADY_CONNECTED: &str = "Already connected";
/// `fail` (ConnectionStatusEvent) to a `connection` whose `authToken` names no session kept
/// alive on this node (never kept, its grace over, resumed already, or another appKey).
pub const NO_KEPT_SESSION: &str = "No session to resume for this authToken";
/// Close reason of a `keepAlive` session's connection when a new connection resumes the
/// session while the old one still looked alive (docs/hooks.md §8).
pub const SESSION_RESUMED_ELSEWHERE: &str = "Session resumed by another connection";

/// The reason of the 1009 close frame of a message over `[server] max_message_size`.
pub fn message_too_big(limit: impl std::fmt::Display) -> String {
    format!("Message too big: limit {limit} bytes")
}

/// `sessionDebug` with a command other than start or stop.
pub fn unknown_session_debug_command(command: &str) -> String {
    format!("Unknown sessionDebug command {command:?} (start or stop)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings the SDK compares with (constants.js `CALL_STATUS_INFO`, spec §6.5).
    #[test]
    fn sdk_constants() {
        assert_eq!(NORMAL_CALL_CLEARING, "Normal call clearing");
        assert_eq!(FAILED_BY_ICE_ERROR, "Failed by ICE error");
        assert_eq!(FAILED_BY_DTLS_ERROR, "Failed by DTLS error");
        assert_eq!(FAILED_BY_ERROR, "Failed by error");
        assert_eq!(FAILED_BY_REQUEST_TIMEOUT, "Failed by request timeout");
        assert_eq!(NO_COMMON_CODECS, "No common codecs");
        assert_eq!(TRANSCODING_REQUIRED, "Transcoding required, but disabled");
        assert!(CALL_WITHOUT_SIP_ACCOUNT.starts_with("Failed by session creation"));
    }

    #[test]
    fn formatted_infos() {
        assert_eq!(failed_by_error("x"), "Failed by error: x");
        assert_eq!(too_many_dtmf(40, 32), "Failed by error: too many DTMF digits (40; at most 32)");
        assert_eq!(not_a_dtmf_key('x'), "Failed by error: not a DTMF key: 'x'");
        assert_eq!(
            transfer_not_carried_out("sip:4000@pbx"),
            "Transfer to sip:4000@pbx not carried out: the server cannot place the new call; the client may call \
             the target itself"
        );
        assert_eq!(
            too_many("calls", 5, "limits.max_calls"),
            "Too many calls (limit 5, limits.max_calls); try again later"
        );
        assert_eq!(xcap_method_not_supported("POST"), "Failed by error: XCAP method \"POST\" (GET, PUT or DELETE)");
    }
}

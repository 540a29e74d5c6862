//! callgate-errmap: the one place where SIP and local failures become client-protocol events.
//!
//! The seed: "on SIP 4xx, 5xx, 6xx and on other errors not related to REST, the corresponding
//! event is raised with status `FAILED` and a description in `info`; it goes to the backend, then
//! to the client per `restClientConfig`. If the error fits no existing event, an `ErrorEvent` is
//! raised with the description in `info`." Example: an outgoing call answered `403 Forbidden`
//! gives `CallStatusEvent {status:"FAILED", info:"SIP 403 FORBIDDEN", sipMessageRaw:"<raw>"}`.
//!
//! ```
//! use callgate_errmap::{map_sip_failure, SipOperation, EventKind};
//! let raw = b"SIP/2.0 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
//! let ev = map_sip_failure(SipOperation::Invite, 403, "Forbidden", raw).unwrap();
//! assert_eq!(ev.event, EventKind::CallStatusEvent);
//! assert_eq!(ev.info, "SIP 403 FORBIDDEN");
//! assert_eq!(ev.sip_message_raw.as_deref(), Some(std::str::from_utf8(raw).unwrap()));
//! ```
//!
//! The whole mapping is the table in `docs/errmap.md`; [`event_for`] is that table in code, and
//! [`map_failure`] is the one adapter from the user agent's [`Failure`] to an event: every SIP
//! operation of the server goes through it. This crate is pure: no I/O, no SIP parsing (callers
//! pass the user agent's failure, or code, phrase and the raw bytes). Reason phrases come from
//! the one table of the SIP crate, [`StatusCode::canonical_reason`].

pub use callgate_sip::ua::Failure;
use callgate_sip::StatusCode;

/// The registered phrase of `code` (the SIP crate's table), else its class name.
fn default_phrase(code: u16) -> &'static str {
    match StatusCode::new(code) {
        Some(s) => s.canonical_reason().unwrap_or_else(|| s.class_name()),
        None => "Unknown",
    }
}

/// What the SIP side was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SipOperation {
    Register,
    /// The initial INVITE of an outgoing call.
    Invite,
    /// A re-INVITE inside an established call (hold/unhold): its failure does not end the call.
    ReInvite,
    Refer,
    Message,
    Subscribe,
    Bye,
    Cancel,
    /// INFO carrying DTMF.
    InfoDtmf,
    Notify,
    Options,
    /// Any other method.
    Other,
}

impl SipOperation {
    pub const ALL: [SipOperation; 12] = [
        SipOperation::Register,
        SipOperation::Invite,
        SipOperation::ReInvite,
        SipOperation::Refer,
        SipOperation::Message,
        SipOperation::Subscribe,
        SipOperation::Bye,
        SipOperation::Cancel,
        SipOperation::InfoDtmf,
        SipOperation::Notify,
        SipOperation::Options,
        SipOperation::Other,
    ];
}

/// The event a failure becomes; wire names as the protocol spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    RegistrationStatusEvent,
    CallStatusEvent,
    TransferStatusEvent,
    MessageStatusEvent,
    SubscriptionStatusEvent,
    ErrorEvent,
}

impl EventKind {
    pub fn wire_name(self) -> &'static str {
        match self {
            EventKind::RegistrationStatusEvent => "RegistrationStatusEvent",
            EventKind::CallStatusEvent => "CallStatusEvent",
            EventKind::TransferStatusEvent => "TransferStatusEvent",
            EventKind::MessageStatusEvent => "MessageStatusEvent",
            EventKind::SubscriptionStatusEvent => "SubscriptionStatusEvent",
            EventKind::ErrorEvent => "ErrorEvent",
        }
    }
}

/// Which event an operation's failure becomes (the table of `docs/errmap.md`).
pub fn event_for(op: SipOperation) -> EventKind {
    match op {
        SipOperation::Register => EventKind::RegistrationStatusEvent,
        SipOperation::Invite => EventKind::CallStatusEvent,
        SipOperation::Refer => EventKind::TransferStatusEvent,
        SipOperation::Message => EventKind::MessageStatusEvent,
        SipOperation::Subscribe => EventKind::SubscriptionStatusEvent,
        // These fit no status event: a failed hold, BYE, CANCEL, DTMF INFO, NOTIFY or OPTIONS
        // does not change the state the other events describe.
        SipOperation::ReInvite
        | SipOperation::Bye
        | SipOperation::Cancel
        | SipOperation::InfoDtmf
        | SipOperation::Notify
        | SipOperation::Options
        | SipOperation::Other => EventKind::ErrorEvent,
    }
}

/// A failure turned into an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureEvent {
    pub event: EventKind,
    /// Always `"FAILED"`.
    pub status: &'static str,
    pub info: String,
    /// The SIP status code, when a SIP response caused it.
    pub sip_status: Option<u16>,
    /// The received SIP message exactly as text, when a SIP response caused it.
    pub sip_message_raw: Option<String>,
}

pub const FAILED: &str = "FAILED";

/// `info` for a SIP final response: `SIP <code> <REASON IN UPPER CASE>` — the peer's phrase, or
/// the registered one when the peer sent none. Control characters are dropped.
pub fn sip_info(code: u16, peer_reason: &str) -> String {
    let phrase: String = peer_reason.chars().filter(|c| !c.is_control()).collect();
    let phrase = phrase.trim();
    let phrase = if phrase.is_empty() { default_phrase(code) } else { phrase };
    format!("SIP {code} {}", phrase.to_uppercase())
}

/// Maps a final SIP response to its `FAILED` event; `None` for codes below 400 (not a failure).
///
/// `raw` is the received message; it is carried as text (invalid UTF-8 is replaced, never dropped).
pub fn map_sip_failure(op: SipOperation, code: u16, peer_reason: &str, raw: &[u8]) -> Option<FailureEvent> {
    if !(400..=699).contains(&code) {
        return None;
    }
    Some(response_event(op, code, peer_reason, raw))
}

/// The one adapter from a failed SIP operation of the user agent to its event: a final response
/// (`info` `SIP <code> <REASON>`, `sipStatus`, `sipMessageRaw`), a timeout or a transport error.
/// A final 3xx is a failure here too (redirects are not followed), mapped like a 4xx.
pub fn map_failure(op: SipOperation, failure: &Failure) -> FailureEvent {
    match failure {
        Failure::Status { status, reason, raw } => response_event(op, *status, reason, raw),
        Failure::Timeout => map_local_failure(op, &LocalFailure::Timeout),
        Failure::Transport(why) => map_local_failure(op, &LocalFailure::Transport(why.clone())),
        Failure::NoAnswer(after) => map_local_failure(op, &LocalFailure::NoAnswer(*after)),
    }
}

fn response_event(op: SipOperation, code: u16, peer_reason: &str, raw: &[u8]) -> FailureEvent {
    let event = event_for(op);
    let mut info = sip_info(code, peer_reason);
    if event == EventKind::ErrorEvent {
        info = format!("{}: {info}", operation_name(op));
    }
    FailureEvent {
        event,
        status: FAILED,
        info,
        sip_status: Some(code),
        sip_message_raw: Some(String::from_utf8_lossy(raw).into_owned()),
    }
}

/// Failures that no SIP response describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalFailure {
    /// Timer B (INVITE) or F (non-INVITE) fired: no final response.
    Timeout,
    /// The transport could not send (connection refused, reset, unreachable).
    Transport(String),
    /// Our INVITE got no final response in this time and was cancelled
    /// (`[sip] outgoing_ring_timeout_ms`).
    NoAnswer(std::time::Duration),
    /// The destination host name did not resolve.
    Unresolvable(String),
    /// The SIP response could not be parsed.
    BadResponse(String),
    /// Media could not be set up for the call (no common codec, ICE/DTLS failure...).
    Media(String),
    /// The user agent did not send the request (the call or registration is gone, the SIP
    /// endpoint stopped).
    NotSent(String),
}

/// `CALL_STATUS_INFO.FAILED_BY_REQUEST_TIMEOUT` of the SDK's constants.
pub use callgate_proto::info::FAILED_BY_REQUEST_TIMEOUT;

/// Maps a local failure to its `FAILED` event with a clear `info`.
pub fn map_local_failure(op: SipOperation, failure: &LocalFailure) -> FailureEvent {
    let event = event_for(op);
    let mut info = match failure {
        LocalFailure::Timeout => FAILED_BY_REQUEST_TIMEOUT.to_string(),
        LocalFailure::Transport(why) => format!("Failed by transport error: {why}"),
        LocalFailure::NoAnswer(after) => callgate_proto::info::not_answered_within(*after),
        LocalFailure::Unresolvable(host) => format!("Failed to resolve SIP host {host}"),
        LocalFailure::BadResponse(why) => format!("Failed by malformed SIP response: {why}"),
        LocalFailure::Media(why) => why.clone(),
        LocalFailure::NotSent(why) => callgate_proto::info::failed_by_error(why),
    };
    if event == EventKind::ErrorEvent {
        info = format!("{}: {info}", operation_name(op));
    }
    FailureEvent { event, status: FAILED, info, sip_status: None, sip_message_raw: None }
}

/// An error with no event of its own: an `ErrorEvent` with the description.
pub fn error_event(info: impl Into<String>) -> FailureEvent {
    FailureEvent {
        event: EventKind::ErrorEvent,
        status: FAILED,
        info: info.into(),
        sip_status: None,
        sip_message_raw: None,
    }
}

fn operation_name(op: SipOperation) -> &'static str {
    match op {
        SipOperation::Register => "REGISTER",
        SipOperation::Invite => "INVITE",
        SipOperation::ReInvite => "re-INVITE",
        SipOperation::Refer => "REFER",
        SipOperation::Message => "MESSAGE",
        SipOperation::Subscribe => "SUBSCRIBE",
        SipOperation::Bye => "BYE",
        SipOperation::Cancel => "CANCEL",
        SipOperation::InfoDtmf => "INFO",
        SipOperation::Notify => "NOTIFY",
        SipOperation::Options => "OPTIONS",
        SipOperation::Other => "SIP request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_example() {
        let raw =
            "SIP/2.0 403 Forbidden\r\nVia: SIP/2.0/UDP 127.0.0.1:30000;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";
        let ev = map_sip_failure(SipOperation::Invite, 403, "Forbidden", raw.as_bytes()).unwrap();
        assert_eq!(ev.event.wire_name(), "CallStatusEvent");
        assert_eq!(ev.status, "FAILED");
        assert_eq!(ev.info, "SIP 403 FORBIDDEN");
        assert_eq!(ev.sip_status, Some(403));
        assert_eq!(ev.sip_message_raw.as_deref(), Some(raw));
    }

    #[test]
    fn each_operation_maps_to_its_event() {
        let cases = [
            (SipOperation::Register, 401, "Unauthorized", "RegistrationStatusEvent", "SIP 401 UNAUTHORIZED"),
            (SipOperation::Invite, 486, "Busy Here", "CallStatusEvent", "SIP 486 BUSY HERE"),
            (SipOperation::Invite, 603, "Decline", "CallStatusEvent", "SIP 603 DECLINE"),
            (SipOperation::Invite, 503, "Service Unavailable", "CallStatusEvent", "SIP 503 SERVICE UNAVAILABLE"),
            (SipOperation::Refer, 405, "Method Not Allowed", "TransferStatusEvent", "SIP 405 METHOD NOT ALLOWED"),
            (SipOperation::Message, 404, "Not Found", "MessageStatusEvent", "SIP 404 NOT FOUND"),
            (SipOperation::Subscribe, 489, "Bad Event", "SubscriptionStatusEvent", "SIP 489 BAD EVENT"),
            (SipOperation::ReInvite, 491, "Request Pending", "ErrorEvent", "re-INVITE: SIP 491 REQUEST PENDING"),
            (
                SipOperation::InfoDtmf,
                415,
                "Unsupported Media Type",
                "ErrorEvent",
                "INFO: SIP 415 UNSUPPORTED MEDIA TYPE",
            ),
        ];
        for (op, code, phrase, event, info) in cases {
            let ev = map_sip_failure(op, code, phrase, b"x").unwrap();
            assert_eq!((ev.event.wire_name(), ev.info.as_str()), (event, info), "{op:?} {code}");
        }
    }

    #[test]
    fn peer_phrase_wins_and_missing_phrase_uses_the_rfc_one() {
        assert_eq!(sip_info(403, "Go Away"), "SIP 403 GO AWAY");
        assert_eq!(sip_info(403, ""), "SIP 403 FORBIDDEN");
        assert_eq!(sip_info(603, "  "), "SIP 603 DECLINE");
        assert_eq!(sip_info(499, ""), "SIP 499 CLIENT ERROR");
        assert_eq!(sip_info(480, "Temporarily\r\nUnavailable"), "SIP 480 TEMPORARILYUNAVAILABLE");
        assert_eq!(sip_info(404, "Nicht gefunden ä"), "SIP 404 NICHT GEFUNDEN Ä");
    }

    #[test]
    fn only_final_failures_map() {
        assert!(map_sip_failure(SipOperation::Invite, 180, "Ringing", b"").is_none());
        assert!(map_sip_failure(SipOperation::Invite, 200, "OK", b"").is_none());
        assert!(map_sip_failure(SipOperation::Invite, 302, "Moved", b"").is_none());
        assert!(map_sip_failure(SipOperation::Invite, 700, "?", b"").is_none());
        assert!(map_sip_failure(SipOperation::Invite, 400, "", b"").is_some());
        assert!(map_sip_failure(SipOperation::Invite, 699, "", b"").is_some());
    }

    #[test]
    fn raw_message_survives_invalid_utf8() {
        let ev = map_sip_failure(SipOperation::Message, 488, "", b"SIP/2.0 488 \xff\r\n\r\n").unwrap();
        assert_eq!(ev.sip_message_raw.unwrap(), "SIP/2.0 488 \u{fffd}\r\n\r\n");
    }

    #[test]
    fn local_failures() {
        let ev = map_local_failure(SipOperation::Invite, &LocalFailure::Timeout);
        assert_eq!((ev.event, ev.info.as_str()), (EventKind::CallStatusEvent, "Failed by request timeout"));
        assert_eq!(ev.sip_message_raw, None);
        let ev = map_local_failure(SipOperation::Register, &LocalFailure::Unresolvable("pbx.invalid".into()));
        assert_eq!(ev.info, "Failed to resolve SIP host pbx.invalid");
        let ev = map_local_failure(SipOperation::Bye, &LocalFailure::Transport("connection refused".into()));
        assert_eq!(
            (ev.event, ev.info.as_str()),
            (EventKind::ErrorEvent, "BYE: Failed by transport error: connection refused")
        );
        assert_eq!(error_event("x").event, EventKind::ErrorEvent);
        let ev = map_local_failure(SipOperation::InfoDtmf, &LocalFailure::NotSent("no such call: 7".into()));
        assert_eq!((ev.event, ev.info.as_str()), (EventKind::ErrorEvent, "INFO: Failed by error: no such call: 7"));
    }

    #[test]
    fn every_registered_code_has_a_phrase_and_every_operation_an_event() {
        for code in 400..=699u16 {
            let info = sip_info(code, "");
            assert!(info.starts_with(&format!("SIP {code} ")) && info.len() > 8, "{info}");
        }
        for op in SipOperation::ALL {
            let _ = event_for(op);
        }
    }

    /// The phrases clients and backends read when a peer sends a status line with no phrase:
    /// the WCS contract's `SIP 403 FORBIDDEN` (spec/rest-hooks.md §5.2, the seed) and the
    /// failures calls commonly end with. They come from the SIP crate's one table.
    #[test]
    fn pinned_infos_from_the_one_table() {
        let pinned = [
            (400, "SIP 400 BAD REQUEST"),
            (401, "SIP 401 UNAUTHORIZED"),
            (403, "SIP 403 FORBIDDEN"),
            (404, "SIP 404 NOT FOUND"),
            (405, "SIP 405 METHOD NOT ALLOWED"),
            (407, "SIP 407 PROXY AUTHENTICATION REQUIRED"),
            (408, "SIP 408 REQUEST TIMEOUT"),
            (415, "SIP 415 UNSUPPORTED MEDIA TYPE"),
            (480, "SIP 480 TEMPORARILY UNAVAILABLE"),
            (481, "SIP 481 CALL/TRANSACTION DOES NOT EXIST"),
            (486, "SIP 486 BUSY HERE"),
            (487, "SIP 487 REQUEST TERMINATED"),
            (488, "SIP 488 NOT ACCEPTABLE HERE"),
            (489, "SIP 489 BAD EVENT"),
            (491, "SIP 491 REQUEST PENDING"),
            (500, "SIP 500 SERVER INTERNAL ERROR"),
            (501, "SIP 501 NOT IMPLEMENTED"),
            (503, "SIP 503 SERVICE UNAVAILABLE"),
            (504, "SIP 504 SERVER TIME-OUT"),
            (600, "SIP 600 BUSY EVERYWHERE"),
            (603, "SIP 603 DECLINE"),
            (607, "SIP 607 UNWANTED"),
            (608, "SIP 608 REJECTED"),
        ];
        for (code, info) in pinned {
            assert_eq!(sip_info(code, ""), info);
            let table = callgate_sip::StatusCode::new(code).unwrap().canonical_reason().unwrap();
            assert_eq!(sip_info(code, table), info, "the peer sending the table's phrase gives the same info");
        }
    }

    #[test]
    fn one_adapter_for_the_user_agents_failures() {
        let raw = bytes_of("SIP/2.0 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        let f = Failure::Status { status: 403, reason: "Forbidden".into(), raw: raw.clone() };
        for op in SipOperation::ALL {
            let ev = map_failure(op, &f);
            assert_eq!(ev, map_sip_failure(op, 403, "Forbidden", &raw).unwrap(), "{op:?}");
            assert_eq!(ev.event, event_for(op));
        }
        let ev = map_failure(SipOperation::ReInvite, &f);
        assert_eq!(ev.info, "re-INVITE: SIP 403 FORBIDDEN");
        assert_eq!(ev.sip_message_raw.as_deref(), Some("SIP/2.0 403 Forbidden\r\nContent-Length: 0\r\n\r\n"));
        // A final 3xx ends the operation too (redirects are not followed).
        let moved = Failure::Status { status: 302, reason: String::new(), raw: bytes_of("SIP/2.0 302 \r\n\r\n") };
        let ev = map_failure(SipOperation::Invite, &moved);
        assert_eq!(
            (ev.event, ev.info.as_str(), ev.sip_status),
            (EventKind::CallStatusEvent, "SIP 302 MOVED TEMPORARILY", Some(302))
        );
        assert!(ev.sip_message_raw.is_some());
        let ev = map_failure(SipOperation::InfoDtmf, &Failure::Timeout);
        assert_eq!((ev.info.as_str(), ev.sip_message_raw), ("INFO: Failed by request timeout", None));
        let ev = map_failure(SipOperation::Refer, &Failure::Transport("connection refused".into()));
        assert_eq!(
            (ev.event, ev.info.as_str()),
            (EventKind::TransferStatusEvent, "Failed by transport error: connection refused")
        );
    }

    fn bytes_of(s: &str) -> bytes::Bytes {
        s.as_bytes().to_vec().into()
    }
}

//! Request methods and response status codes.

use std::fmt;

use crate::lex;

/// A SIP request method. Method names are case-sensitive (RFC 3261 §7.1): `invite` is an
/// extension method, not INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Ack,
    Bye,
    Cancel,
    Info,
    Invite,
    Message,
    Notify,
    Options,
    Prack,
    Publish,
    Refer,
    Register,
    Subscribe,
    Update,
    /// Any other `token` (RFC 3261 §27.4 lets anyone define methods).
    Extension(Box<str>),
}

impl Method {
    /// Recognises a method name; `None` if it is not a `token`.
    pub fn from_bytes(name: &[u8]) -> Option<Method> {
        let known = match name {
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"INFO" => Method::Info,
            b"INVITE" => Method::Invite,
            b"MESSAGE" => Method::Message,
            b"NOTIFY" => Method::Notify,
            b"OPTIONS" => Method::Options,
            b"PRACK" => Method::Prack,
            b"PUBLISH" => Method::Publish,
            b"REFER" => Method::Refer,
            b"REGISTER" => Method::Register,
            b"SUBSCRIBE" => Method::Subscribe,
            b"UPDATE" => Method::Update,
            _ => {
                if name.is_empty() || lex::skip(name, 0, lex::TOKEN) != name.len() {
                    return None;
                }
                // Token characters are ASCII, so this cannot fail.
                let text = std::str::from_utf8(name).ok()?;
                Method::Extension(text.into())
            }
        };
        Some(known)
    }

    /// The method name as it goes on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Info => "INFO",
            Method::Invite => "INVITE",
            Method::Message => "MESSAGE",
            Method::Notify => "NOTIFY",
            Method::Options => "OPTIONS",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Refer => "REFER",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Update => "UPDATE",
            Method::Extension(name) => name,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A response status code, 100 to 699 (RFC 3261 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusCode(u16);

impl StatusCode {
    pub const TRYING: StatusCode = StatusCode(100);
    pub const RINGING: StatusCode = StatusCode(180);
    pub const SESSION_PROGRESS: StatusCode = StatusCode(183);
    pub const OK: StatusCode = StatusCode(200);
    pub const ACCEPTED: StatusCode = StatusCode(202);
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    pub const UNAUTHORIZED: StatusCode = StatusCode(401);
    pub const FORBIDDEN: StatusCode = StatusCode(403);
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    pub const PROXY_AUTHENTICATION_REQUIRED: StatusCode = StatusCode(407);
    pub const REQUEST_TIMEOUT: StatusCode = StatusCode(408);
    pub const BUSY_HERE: StatusCode = StatusCode(486);
    pub const REQUEST_TERMINATED: StatusCode = StatusCode(487);
    pub const SERVER_INTERNAL_ERROR: StatusCode = StatusCode(500);
    pub const SERVICE_UNAVAILABLE: StatusCode = StatusCode(503);
    pub const MESSAGE_TOO_LARGE: StatusCode = StatusCode(513);
    pub const DECLINE: StatusCode = StatusCode(603);

    /// `Some` for 100 to 699.
    pub const fn new(code: u16) -> Option<StatusCode> {
        if code >= 100 && code <= 699 {
            Some(StatusCode(code))
        } else {
            None
        }
    }

    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// 1xx.
    pub const fn is_provisional(self) -> bool {
        self.0 < 200
    }

    /// 2xx.
    pub const fn is_success(self) -> bool {
        self.0 >= 200 && self.0 < 300
    }

    /// 2xx to 6xx.
    pub const fn is_final(self) -> bool {
        self.0 >= 200
    }

    /// The phrase RFC 3261 §21 and the extension RFCs registered for the code (IANA "SIP
    /// Response Codes"), if it has one. The one reason-phrase table of callgate: the builder's
    /// default phrase and errmap's `info` for a response with an empty phrase both read it.
    pub fn canonical_reason(self) -> Option<&'static str> {
        Some(match self.0 {
            100 => "Trying",
            180 => "Ringing",
            181 => "Call Is Being Forwarded",
            182 => "Queued",
            183 => "Session Progress",
            199 => "Early Dialog Terminated",
            200 => "OK",
            202 => "Accepted",
            204 => "No Notification",
            300 => "Multiple Choices",
            301 => "Moved Permanently",
            302 => "Moved Temporarily",
            305 => "Use Proxy",
            380 => "Alternative Service",
            400 => "Bad Request",
            401 => "Unauthorized",
            402 => "Payment Required",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            407 => "Proxy Authentication Required",
            408 => "Request Timeout",
            410 => "Gone",
            412 => "Conditional Request Failed",
            413 => "Request Entity Too Large",
            414 => "Request-URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Unsupported URI Scheme",
            417 => "Unknown Resource-Priority",
            420 => "Bad Extension",
            421 => "Extension Required",
            422 => "Session Interval Too Small",
            423 => "Interval Too Brief",
            424 => "Bad Location Information",
            425 => "Bad Alert Message",
            428 => "Use Identity Header",
            429 => "Provide Referrer Identity",
            430 => "Flow Failed",
            433 => "Anonymity Disallowed",
            436 => "Bad Identity Info",
            437 => "Unsupported Credential",
            438 => "Invalid Identity Header",
            439 => "First Hop Lacks Outbound Support",
            440 => "Max-Breadth Exceeded",
            469 => "Bad Info Package",
            470 => "Consent Needed",
            480 => "Temporarily Unavailable",
            481 => "Call/Transaction Does Not Exist",
            482 => "Loop Detected",
            483 => "Too Many Hops",
            484 => "Address Incomplete",
            485 => "Ambiguous",
            486 => "Busy Here",
            487 => "Request Terminated",
            488 => "Not Acceptable Here",
            489 => "Bad Event",
            491 => "Request Pending",
            493 => "Undecipherable",
            494 => "Security Agreement Required",
            500 => "Server Internal Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Server Time-out",
            505 => "Version Not Supported",
            513 => "Message Too Large",
            555 => "Push Notification Service Not Supported",
            580 => "Precondition Failure",
            600 => "Busy Everywhere",
            603 => "Decline",
            604 => "Does Not Exist Anywhere",
            606 => "Not Acceptable",
            607 => "Unwanted",
            608 => "Rejected",
            _ => return None,
        })
    }

    /// The class name of RFC 3261 §21 (`Client Error` for 4xx...): the phrase of a code that
    /// has no registered one.
    pub fn class_name(self) -> &'static str {
        match self.0 / 100 {
            1 => "Provisional",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_case_sensitive_tokens() {
        assert_eq!(Method::from_bytes(b"INVITE"), Some(Method::Invite));
        assert_eq!(Method::from_bytes(b"invite"), Some(Method::Extension("invite".into())));
        assert_eq!(Method::from_bytes(b"RE%47IST%45R").map(|m| m.to_string()), Some("RE%47IST%45R".to_owned()));
        assert_eq!(Method::from_bytes(b""), None);
        assert_eq!(Method::from_bytes(b"<INVITE>"), None);
        assert_eq!(Method::from_bytes("ИНВАЙТ".as_bytes()), None);
    }

    #[test]
    fn status_codes() {
        assert_eq!(StatusCode::new(99), None);
        assert_eq!(StatusCode::new(700), None);
        let ok = StatusCode::new(200).unwrap();
        assert!(ok.is_success() && ok.is_final() && !ok.is_provisional());
        assert_eq!(StatusCode::BUSY_HERE.canonical_reason(), Some("Busy Here"));
    }

    #[test]
    fn one_reason_phrase_table() {
        let registered = (100..=699).filter_map(StatusCode::new).filter(|s| s.canonical_reason().is_some()).count();
        assert_eq!(registered, 75, "the IANA registry of SIP Response Codes (RFC 3261 to RFC 8688)");
        // Codes the extension RFCs registered (the second table that existed missed these).
        let code = |c| StatusCode::new(c).unwrap().canonical_reason();
        assert_eq!(code(417), Some("Unknown Resource-Priority"));
        assert_eq!(code(494), Some("Security Agreement Required"));
        assert_eq!(code(607), Some("Unwanted"));
        assert_eq!(code(608), Some("Rejected"));
        assert_eq!(code(499), None);
        assert_eq!(StatusCode::new(499).unwrap().class_name(), "Client Error");
        assert_eq!(StatusCode::new(580).unwrap().class_name(), "Server Error");
        assert_eq!(StatusCode::new(699).unwrap().class_name(), "Global Failure");
        // The builder's default phrase is the table's.
        let m = crate::MessageBuilder::response(StatusCode::new(608).unwrap(), None).build().unwrap();
        assert_eq!(m.reason_phrase(), Some(&b"Rejected"[..]));
    }
}

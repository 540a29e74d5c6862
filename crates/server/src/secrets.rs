//! Secrets in connection objects: where they may go and where they may not.
//!
//! The connection object keeps the client's `sipPassword` (the SIP user agent and XCAP answer
//! digest challenges with it) and the backend's hooks get it, as WCS sends it (spec
//! rest-hooks.md §4.1/§4.2). It never goes back to a client (`getUserData` and every other frame)
//! nor into a `/rest-api` view: a page that can read the REST API, or one client's frames, must
//! not learn a SIP password. A view is serialised without the fields here rather than copied.
//!
//! Nor does a secret reach the log: client data that is logged (session-debug frames, bug
//! reports, `pushLogs` lines) is masked first ([`redact_value`], [`redacted_frame`],
//! [`scrub_text`]), and [`no_raw_payloads`] keeps tungstenite's `trace` dump of every frame out
//! (docs/hooks.md §6 "Secrets"; `tests/tests/security_logs.rs`).

use callgate_hooks::FieldList;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// Top-level fields of client-visible objects that hold secrets.
pub const SECRET_FIELDS: [&str; 1] = ["sipPassword"];

pub fn is_secret(field: &str) -> bool {
    SECRET_FIELDS.contains(&field)
}

/// Top-level fields that never go into a `/rest-api` view, a find filter or the cluster
/// directory: the [`SECRET_FIELDS`], and `authToken`, which resumes a kept-alive session
/// (docs/hooks.md §8) and so must reach its own client (`getUserData`) and nobody else.
pub const VIEW_SECRET_FIELDS: [&str; 2] = ["sipPassword", "authToken"];

pub fn is_view_secret(field: &str) -> bool {
    VIEW_SECRET_FIELDS.contains(&field)
}

/// Serialises `data` without `exclude` (the session's `clientExclude`) and without the secrets.
pub struct Redacted<'a> {
    pub data: &'a Map<String, Value>,
    pub exclude: &'a FieldList,
    /// A view for others (REST API answers): also without the [`VIEW_SECRET_FIELDS`].
    pub view: bool,
}

impl<'a> Redacted<'a> {
    /// A frame to the object's own client: without `exclude` and the [`SECRET_FIELDS`].
    pub fn to_client(data: &'a Map<String, Value>, exclude: &'a FieldList) -> Redacted<'a> {
        Redacted { data, exclude, view: false }
    }

    /// A view with no other exclusion (REST API answers), without the [`VIEW_SECRET_FIELDS`].
    pub fn new(data: &'a Map<String, Value>) -> Redacted<'a> {
        static NONE: std::sync::LazyLock<FieldList> = std::sync::LazyLock::new(FieldList::default);
        Redacted { data, exclude: &NONE, view: true }
    }
}

/// Whether a field of client-supplied data is masked in the log: the [`SECRET_FIELDS`], and any
/// key that names a password, a token, a secret or an authorization (`authToken`,
/// `password`, `apiSecret`, ...), compared case-insensitively. Wider than [`SECRET_FIELDS`]:
/// masking a log line costs nothing, while `authToken` must reach the client (`getUserData`).
pub fn is_log_secret(field: &str) -> bool {
    is_secret(field) || {
        let k = field.to_ascii_lowercase();
        LOG_SECRET_WORDS.iter().any(|w| k.contains(w))
    }
}

/// What a key contains to be masked in the log ([`is_log_secret`]).
const LOG_SECRET_WORDS: [&str; 5] = ["password", "passwd", "token", "secret", "authorization"];

/// The text a masked value is replaced with.
pub const MASK: &str = "<redacted>";

/// Replaces, at any depth, the value of every key [`is_log_secret`] names by [`MASK`], and
/// masks secrets in the text of other strings ([`scrub_text`]: a client's log lines, a bug
/// report's text).
pub fn redact_value(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(t) = scrub_text(s) {
                *s = t;
            }
            if let std::borrow::Cow::Owned(t) = mask_url_credentials(s) {
                *s = t;
            }
        }
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if is_log_secret(k) {
                    *v = Value::String(MASK.into());
                } else {
                    redact_value(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_value),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `text` with the credentials of every URL in it (`scheme://user:password@host`, an RTSP
/// camera's stream name) replaced by `***`: `rtsp://***@host/path`. The userinfo is what lies
/// between `://` and the last `@` before the authority ends (`/`, `?`, `#`, a space, a quote).
pub fn mask_url_credentials(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace());
        let authority = &tail[..end.unwrap_or(tail.len())];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(MASK_USERINFO);
                out.push_str(&authority[at..]);
                changed = true;
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority.len()..];
    }
    out.push_str(rest);
    if changed {
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// What a URL's user and password are replaced with ([`mask_url_credentials`]).
pub const MASK_USERINFO: &str = "***";

/// A client's raw frame as it may be logged: every secret's value ([`is_log_secret`]), at any
/// depth, replaced by `<redacted>` (keys are compared after JSON unescaping, so
/// `sip\u0050assword` is caught). A frame that is not JSON is not logged at all.
pub fn redacted_frame(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(mut v) => {
            redact_value(&mut v);
            v.to_string()
        }
        Err(_) => format!("<{} bytes, not JSON>", text.len()),
    }
}

/// A line of free text from a client (`pushLogs`) as it may be logged: the value after each
/// secret-looking key ([`is_log_secret`]'s words, with `sipPassword`) followed by `:` or `=`
/// (JSON `"sipPassword":"x"`, `password=x`, `Authorization: Basic x`) replaced by
/// `<redacted>`. A quoted value is masked up to its closing quote, an `Authorization` to the
/// end of the line, any other up to a space, `,`, `;`, `&` or a closing bracket. Hand-written
/// (no regex crate in the server): one pass over the bytes, keys compared ASCII
/// case-insensitively.
pub fn scrub_text(line: &str) -> std::borrow::Cow<'_, str> {
    let lower = line.to_ascii_lowercase();
    let lower = lower.as_bytes();
    let b = line.as_bytes();
    let mut out = String::new();
    let mut copied = 0; // bytes of `line` already in `out`
    let mut i = 0;
    while i < b.len() {
        let Some(word) = LOG_SECRET_WORDS.iter().find(|w| lower[i..].starts_with(w.as_bytes())) else {
            i += 1;
            continue;
        };
        // The rest of the key (`password` in `sipPasswordHash`...), then `"`/`'`, spaces, `:`/`=`.
        let mut j = i + word.len();
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        while j < b.len() && matches!(b[j], b'"' | b'\'' | b'\\') {
            j += 1;
        }
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        if j >= b.len() || !matches!(b[j], b':' | b'=') {
            i += word.len();
            continue;
        }
        j += 1;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        let (start, end) = match b.get(j) {
            _ if *word == "authorization" => (j, b.len()),
            Some(q @ (b'"' | b'\'')) => {
                // Inside the quotes (a backslash escapes the next byte); unclosed: to the end.
                let mut k = j + 1;
                while k < b.len() && b[k] != *q {
                    k += if b[k] == b'\\' { 2 } else { 1 };
                }
                (j + 1, k.min(b.len()))
            }
            _ => {
                let mut k = j;
                while k < b.len() && !matches!(b[k], b' ' | b',' | b';' | b'&' | b'}' | b']' | b')') {
                    k += 1;
                }
                (j, k)
            }
        };
        if end > start {
            out.push_str(&line[copied..start]);
            out.push_str(MASK);
            copied = end;
        }
        i = end.max(i + 1);
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(line);
    }
    out.push_str(&line[copied..]);
    std::borrow::Cow::Owned(out)
}

/// Crates whose `trace` events print whole messages: tungstenite logs every WebSocket frame it
/// sends or receives (`Received message {...}`), a client's `connection` with its
/// `sipPassword` among them.
pub const RAW_PAYLOAD_TARGETS: [&str; 2] = ["tungstenite", "tokio_tungstenite"];

/// A global log filter, beside the configured one (`[log] filter`, `RUST_LOG`), that drops the
/// `trace` events of [`RAW_PAYLOAD_TARGETS`] whatever that filter says: their other levels stay
/// available, and `trace` on everything (`RUST_LOG=trace`) still cannot put a client's frames,
/// unmasked, in the log. The binary's subscriber and `tests/tests/security_logs.rs` use it.
pub fn no_raw_payloads() -> tracing_subscriber::filter::FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    tracing_subscriber::filter::filter_fn(|m| {
        *m.level() != tracing::Level::TRACE
            || !RAW_PAYLOAD_TARGETS
                .iter()
                .any(|t| m.target().strip_prefix(t).is_some_and(|rest| rest.is_empty() || rest.starts_with("::")))
    })
}

impl Serialize for Redacted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Most objects (stream and call events) hold no secret: the plain path, one lookup each.
        let secrets: &[&str] = if self.view { &VIEW_SECRET_FIELDS } else { &SECRET_FIELDS };
        if !secrets.iter().any(|f| self.data.contains_key(*f)) {
            return callgate_hooks::rules::Excluding { data: self.data, exclude: self.exclude }.serialize(serializer);
        }
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in self.data {
            if !secrets.contains(&k.as_str()) && !self.exclude.contains(k) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn url_credentials_are_masked_in_text_and_logged_values() {
        assert_eq!(mask_url_credentials("rtsp://admin:pw@cam:554/live"), "rtsp://***@cam:554/live");
        assert_eq!(
            mask_url_credentials("play rtsp://a:b@c/x and http://u@h?q=1 then rtsp://plain/y@z"),
            "play rtsp://***@c/x and http://***@h?q=1 then rtsp://plain/y@z"
        );
        assert!(matches!(mask_url_credentials("rtsp://cam/live"), std::borrow::Cow::Borrowed(_)));
        let mut v = json!({"name": "rtsp://u:secret@10.0.0.1/s", "sdp": "v=0"});
        redact_value(&mut v);
        assert_eq!(v["name"], "rtsp://***@10.0.0.1/s");
    }

    #[test]
    fn secrets_and_excluded_fields_are_left_out() {
        let Value::Object(data) = json!({"sipLogin": "3000", "sipPassword": "pw", "sipDomain": "d", "a": 1}) else {
            unreachable!()
        };
        let s = serde_json::to_string(&Redacted::new(&data)).unwrap();
        assert_eq!(s, r#"{"sipLogin":"3000","sipDomain":"d","a":1}"#);
        let ex = FieldList::parse("sipDomain");
        let s = serde_json::to_string(&Redacted::to_client(&data, &ex)).unwrap();
        assert_eq!(s, r#"{"sipLogin":"3000","a":1}"#);
        let Value::Object(plain) = json!({"a": 1, "sipDomain": "d"}) else { unreachable!() };
        assert_eq!(serde_json::to_string(&Redacted::to_client(&plain, &ex)).unwrap(), r#"{"a":1}"#);
    }

    /// Review of issue 14: with client debug logging on, raw frames were logged verbatim.
    #[test]
    fn raw_frames_are_logged_without_the_sip_password() {
        let frame = r#"{"message":"connection","data":[{"sipLogin":"3000","sipPassword":"pw-1","x":{"sip\u0050assword":"pw-2"}}]}"#;
        let logged = redacted_frame(frame);
        assert!(!logged.contains("pw-1") && !logged.contains("pw-2"), "{logged}");
        assert_eq!(
            logged,
            r#"{"message":"connection","data":[{"sipLogin":"3000","sipPassword":"<redacted>","x":{"sipPassword":"<redacted>"}}]}"#
        );
        assert_eq!(redacted_frame(r#"{"message":"ping"}"#), r#"{"message":"ping"}"#);
        assert_eq!(redacted_frame("sipPassword=pw-3"), "<16 bytes, not JSON>");
        let logged =
            redacted_frame(r#"{"message":"connection","data":[{"authToken":"t-1","custom":{"apiPassword":"p-4"}}]}"#);
        assert!(!logged.contains("t-1") && !logged.contains("p-4"), "{logged}");
        // Text in a string value (pushLogs lines) is scrubbed too.
        let logged = redacted_frame(r#"{"message":"pushLogs","data":[{"logs":"a\nGET /?password=p-5 HTTP/1.1\nb"}]}"#);
        assert_eq!(logged, r#"{"message":"pushLogs","data":[{"logs":"a\nGET /?password=<redacted> HTTP/1.1\nb"}]}"#);
    }

    #[test]
    fn log_secrets_are_wider_than_the_hidden_fields() {
        for k in ["sipPassword", "authToken", "password", "PASSWORD", "apiSecret", "Authorization", "token", "passwd"] {
            assert!(is_log_secret(k), "{k}");
        }
        for k in ["sipLogin", "sipDomain", "appKey", "payload", "sessionId"] {
            assert!(!is_log_secret(k), "{k}");
        }
        assert!(!is_secret("authToken"), "the client gets its authToken (getUserData)");
        let Value::Object(session) = json!({"sessionId": "s", "authToken": "t", "sipPassword": "pw"}) else {
            unreachable!()
        };
        assert_eq!(
            serde_json::to_string(&Redacted::new(&session)).unwrap(),
            r#"{"sessionId":"s"}"#,
            "a REST view carries neither the password nor the token that resumes the session"
        );
    }

    /// Client log lines (`pushLogs`) are free text: secrets in JSON, in query strings and in
    /// HTTP headers are masked; everything else is kept as it is.
    #[test]
    fn secrets_in_free_text_are_masked() {
        let cases = [
            (
                r#"Send: {"message":"connection","data":[{"sipLogin":"3000","sipPassword":"pw-1"}]}"#,
                r#"Send: {"message":"connection","data":[{"sipLogin":"3000","sipPassword":"<redacted>"}]}"#,
            ),
            (r#"{"sipPassword" : "p\"w-2", "x": 1}"#, r#"{"sipPassword" : "<redacted>", "x": 1}"#),
            ("url?user=3000&password=pw-3&x=1", "url?user=3000&password=<redacted>&x=1"),
            ("Authorization: Basic YWRtaW46cHc=", "Authorization: <redacted>"),
            ("authToken='t-4'; next", "authToken='<redacted>'; next"),
            ("password=\"unclosed", "password=\"<redacted>"),
            ("sipPassword=", "sipPassword="),
            ("a password is needed", "a password is needed"),
            ("tokens:", "tokens:"),
            ("no secret here", "no secret here"),
            ("mixed Pässword=1 ünïcode SECRET=é-5 end", "mixed Pässword=1 ünïcode SECRET=<redacted> end"),
        ];
        for (line, want) in cases {
            assert_eq!(scrub_text(line), want, "{line}");
        }
        assert!(matches!(scrub_text("plain"), std::borrow::Cow::Borrowed(_)));
    }
}

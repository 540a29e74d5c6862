//! Secrets in connection objects: where they may go and where they may not.
//!
//! The connection object keeps the client's `sipPassword` (the SIP user agent and XCAP answer
//! digest challenges with it) and the backend's hooks get it, as WCS sends it (spec
//! rest-hooks.md §4.1/§4.2). It never goes back to a client (`getUserData` and every other frame)
//! nor into a `/rest-api` view: a page that can read the REST API, or one client's frames, must
//! not learn a SIP password. A view is serialised without the fields here rather than copied.

use callgate_hooks::FieldList;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// Top-level fields of client-visible objects that hold secrets.
pub const SECRET_FIELDS: [&str; 1] = ["sipPassword"];

pub fn is_secret(field: &str) -> bool {
    SECRET_FIELDS.contains(&field)
}

/// Serialises `data` without `exclude` (the session's `clientExclude`) and without the secrets.
pub struct Redacted<'a> {
    pub data: &'a Map<String, Value>,
    pub exclude: &'a FieldList,
}

impl<'a> Redacted<'a> {
    /// A view with no other exclusion (REST API answers).
    pub fn new(data: &'a Map<String, Value>) -> Redacted<'a> {
        static NONE: std::sync::LazyLock<FieldList> = std::sync::LazyLock::new(FieldList::default);
        Redacted { data, exclude: &NONE }
    }
}

/// A client's raw frame as it may be logged: every `sipPassword` value, at any depth, replaced
/// by `<redacted>` (keys are compared after JSON unescaping, so `sip\u0050assword` is caught).
/// A frame that is not JSON is not logged at all.
pub fn redacted_frame(text: &str) -> String {
    fn mask(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    if is_secret(k) {
                        *v = Value::String("<redacted>".into());
                    } else {
                        mask(v);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(mask),
            _ => {}
        }
    }
    match serde_json::from_str::<Value>(text) {
        Ok(mut v) => {
            mask(&mut v);
            v.to_string()
        }
        Err(_) => format!("<{} bytes, not JSON>", text.len()),
    }
}

impl Serialize for Redacted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Most objects (stream and call events) hold no secret: the plain path, one lookup each.
        if !SECRET_FIELDS.iter().any(|f| self.data.contains_key(*f)) {
            return callgate_hooks::rules::Excluding { data: self.data, exclude: self.exclude }.serialize(serializer);
        }
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in self.data {
            if !is_secret(k) && !self.exclude.contains(k) {
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
    fn secrets_and_excluded_fields_are_left_out() {
        let Value::Object(data) = json!({"sipLogin": "3000", "sipPassword": "pw", "sipDomain": "d", "a": 1}) else {
            unreachable!()
        };
        let s = serde_json::to_string(&Redacted::new(&data)).unwrap();
        assert_eq!(s, r#"{"sipLogin":"3000","sipDomain":"d","a":1}"#);
        let ex = FieldList::parse("sipDomain");
        let s = serde_json::to_string(&Redacted { data: &data, exclude: &ex }).unwrap();
        assert_eq!(s, r#"{"sipLogin":"3000","a":1}"#);
        let Value::Object(plain) = json!({"a": 1, "sipDomain": "d"}) else { unreachable!() };
        assert_eq!(serde_json::to_string(&Redacted { data: &plain, exclude: &ex }).unwrap(), r#"{"a":1}"#);
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
    }
}

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
}

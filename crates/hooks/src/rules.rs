//! Data rules: what goes to the backend, what comes back from it, and what goes to the client.
//!
//! - `restExclude` strips fields before the body goes to the backend; `clientExclude` before the
//!   data goes to the client. Both are applied while serialising ([`Excluding`]), so the data is
//!   never copied just to drop a few keys.
//! - `connect`: answered fields override the connection's fields, except the context fields.
//! - `OVERWRITE`: only the `restOverwrite` fields are copied from the answer (a field the backend
//!   left out keeps its value). `NOTIFY` and `DISABLE` never change data.
//! - Context fields `nodeId`, `sessionId`, `appKey` are never taken from a backend.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::client_config::FieldList;
use crate::decision::DataEffect;

/// Fields a backend can never redefine (spec/rest-hooks.md §1, WCS4 "overriding parameters").
pub const CONTEXT_FIELDS: [&str; 3] = ["nodeId", "sessionId", "appKey"];

/// The connect answer's configuration key; it configures the session and is not session data.
pub const REST_CLIENT_CONFIG: &str = "restClientConfig";

fn is_context(field: &str) -> bool {
    CONTEXT_FIELDS.contains(&field)
}

/// Applies a backend answer to `data` as the decision's [`DataEffect`] says.
///
/// Returns the number of fields changed (for logs and metrics).
pub fn apply_answer(
    effect: DataEffect,
    data: &mut Map<String, Value>,
    answer: Map<String, Value>,
    overwrite: &FieldList,
) -> usize {
    match effect {
        DataEffect::Unchanged => 0,
        DataEffect::MergeConnect => {
            let mut n = 0;
            for (k, v) in answer {
                if is_context(&k) || k == REST_CLIENT_CONFIG {
                    continue;
                }
                data.insert(k, v);
                n += 1;
            }
            n
        }
        DataEffect::OverwriteListed => {
            let mut answer = answer;
            let mut n = 0;
            for field in overwrite.iter() {
                if is_context(field) {
                    continue;
                }
                if let Some(v) = answer.remove(field) {
                    data.insert(field.to_string(), v);
                    n += 1;
                }
            }
            n
        }
    }
}

/// Serialises a JSON object without the excluded fields, without copying it.
pub struct Excluding<'a> {
    pub data: &'a Map<String, Value>,
    pub exclude: &'a FieldList,
}

impl Serialize for Excluding<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.exclude.is_empty() {
            return self.data.serialize(serializer);
        }
        let mut map = serializer.serialize_map(None)?;
        for (k, v) in self.data {
            if !self.exclude.contains(k) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

/// Returns a copy of `data` without the excluded fields (for places that need a `Value`).
pub fn without(data: &Map<String, Value>, exclude: &FieldList) -> Map<String, Value> {
    data.iter().filter(|(k, _)| !exclude.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The backend's custom refusal reason: the body must be **exactly** `{"status":<n>,"reason":"…"}`
/// (WCS 5.2.968+, spec/rest-hooks.md §4.1). Anything else means "use the HTTP reason phrase".
pub fn custom_reason(body: &[u8]) -> Option<String> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    if obj.len() != 2 || !obj.get("status").is_some_and(Value::is_number) {
        return None;
    }
    match obj.get("reason") {
        Some(Value::String(r)) => Some(r.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn connect_merge_keeps_context_fields_and_drops_config() {
        let mut data = obj(json!({"nodeId":"n","sessionId":"s","appKey":"a","custom":{"t":1}}));
        let answer = obj(json!({"nodeId":"X","sessionId":"X","appKey":"X","sipLogin":"3000",
                                "custom":{"t":2},"restClientConfig":{}}));
        let n = apply_answer(DataEffect::MergeConnect, &mut data, answer, &FieldList::default());
        assert_eq!(n, 2);
        assert_eq!(
            Value::Object(data),
            json!({"nodeId":"n","sessionId":"s","appKey":"a","custom":{"t":2},"sipLogin":"3000"})
        );
    }

    #[test]
    fn overwrite_copies_only_listed_present_fields() {
        let mut data = obj(json!({"callee":"Alice","caller":"me","sessionId":"s"}));
        let answer = obj(json!({"callee":"Bob","caller":"evil","sessionId":"X"}));
        let list = FieldList::parse("callee, sessionId, missing");
        apply_answer(DataEffect::OverwriteListed, &mut data, answer, &list);
        assert_eq!(Value::Object(data), json!({"callee":"Bob","caller":"me","sessionId":"s"}));
    }

    #[test]
    fn unchanged_changes_nothing() {
        let mut data = obj(json!({"a":1}));
        apply_answer(DataEffect::Unchanged, &mut data, obj(json!({"a":2})), &FieldList::parse("a"));
        assert_eq!(Value::Object(data), json!({"a":1}));
    }

    #[test]
    fn excluding_serialises_without_fields() {
        let data = obj(json!({"a":1,"sdp":"v=0","b":[1,2]}));
        let list = FieldList::parse("sdp");
        let s = serde_json::to_string(&Excluding { data: &data, exclude: &list }).unwrap();
        assert_eq!(s, r#"{"a":1,"b":[1,2]}"#);
        let s = serde_json::to_string(&Excluding { data: &data, exclude: &FieldList::default() }).unwrap();
        assert_eq!(s, r#"{"a":1,"sdp":"v=0","b":[1,2]}"#);
        assert_eq!(Value::Object(without(&data, &list)), json!({"a":1,"b":[1,2]}));
    }

    #[test]
    fn custom_reason_only_for_the_exact_shape() {
        assert_eq!(
            custom_reason(br#"{"status":403,"reason":"Wrong credentials"}"#).as_deref(),
            Some("Wrong credentials")
        );
        assert_eq!(custom_reason(br#"{"reason":"x","status":401}"#).as_deref(), Some("x"));
        assert_eq!(custom_reason(br#"{"status":403,"reason":"x","extra":1}"#), None);
        assert_eq!(custom_reason(br#"{"status":"403","reason":"x"}"#), None);
        assert_eq!(custom_reason(br#"{"status":403}"#), None);
        assert_eq!(custom_reason(br#"{"status":403,"reason":5}"#), None);
        assert_eq!(custom_reason(b"Forbidden"), None);
    }
}

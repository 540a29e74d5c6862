//! Client WebSocket text frames (issue 14): `ClientFrame::parse` and what the server does with
//! a frame's data before any hook runs: `data[0]` as an object, the message name, the
//! `restClientConfig` of a connect answer, field lists, the data rules, a backend's custom
//! refusal reason.
//!
//! Besides "no panic, no hang", it checks:
//! - `object()` and `into_object()` agree;
//! - a frame's data written back as a server frame parses to the same data;
//! - serialising data without excluded fields gives exactly `without()`;
//! - `OVERWRITE` copies only listed fields and never a context field.
#![no_main]

use callgate_hooks::rules::{self, Excluding};
use callgate_hooks::{DataEffect, FieldList, HookMethod, RestClientConfig};
use callgate_proto::{ClientFrame, ServerFrame};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 (the server closes the connection otherwise).
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = rules::custom_reason(data);
    let frame = match ClientFrame::parse(text) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = HookMethod::from_name(&frame.message);
    let obj = frame.object();
    let owned = frame.clone().into_object();
    assert_eq!(obj, owned);

    let back = ClientFrame::parse(&ServerFrame::new("x", frame.data.clone()).to_text()).expect("our frame parses");
    assert_eq!(back.data.len(), frame.data.len());
    for (a, b) in back.data.iter().zip(&frame.data) {
        assert!(same(a, b), "{a:?} != {b:?}");
    }

    for v in &frame.data {
        config(Some(v));
    }
    let Ok(obj) = obj else { return };
    config(obj.get(rules::REST_CLIENT_CONFIG));
    for (k, v) in &obj {
        let list = FieldList::parse(k);
        data_rules(&obj, &list);
        if let Value::String(s) = v {
            data_rules(&obj, &FieldList::parse(s));
        }
    }
});

/// JSON equality, except that a float may move by an ulp or two: serde_json (without its
/// `float_roundtrip` feature) parses decimals of more than 17 digits up to an ulp off, so a
/// float written back and read again can differ in its last bit (found by this target; a
/// client's float reaches a backend with the same precision loss, docs/fuzzing.md).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn config(v: Option<&Value>) {
    let (cfg, warnings) = RestClientConfig::parse(v);
    for w in &warnings {
        let _ = w.to_string();
    }
    for m in HookMethod::ALL {
        let mc = cfg.method(*m);
        let _ = (mc.rest_exclude.iter().count(), mc.rest_overwrite.is_empty(), mc.rest_policy, mc.rest_on_error);
    }
}

fn data_rules(obj: &Map<String, Value>, list: &FieldList) {
    for f in list.iter() {
        assert!(!f.is_empty() && f == f.trim(), "{f:?}");
        assert!(list.contains(f));
    }
    let kept = rules::without(obj, list);
    let written = serde_json::to_value(Excluding { data: obj, exclude: list }).expect("serialises");
    assert_eq!(written, Value::Object(kept.clone()));
    for k in kept.keys() {
        assert!(!list.contains(k));
    }
    let mut data = Map::new();
    data.insert("nodeId".into(), "n".into());
    let n = rules::apply_answer(DataEffect::OverwriteListed, &mut data, obj.clone(), list);
    assert!(n <= list.iter().count());
    assert_eq!(data.get("nodeId"), Some(&Value::from("n")), "a context field is never taken from a backend");
    for k in data.keys() {
        assert!(k == "nodeId" || list.contains(k));
    }
    let mut merged = Map::new();
    rules::apply_answer(DataEffect::MergeConnect, &mut merged, obj.clone(), list);
    assert!(!merged.contains_key(rules::REST_CLIENT_CONFIG));
    for c in rules::CONTEXT_FIELDS {
        assert!(!merged.contains_key(c));
    }
}

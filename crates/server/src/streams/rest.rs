//! The REST API's view of streams: `/stream/find`, `/find_all`, `/terminate`.

use std::sync::Arc;

use callgate_hooks::Origin;
use callgate_proto::info as proto_info;
use serde_json::{Map, Value};

use super::directory::Kind;
use super::*;

/// WCS examples pass JSON values as strings (`"published":"false"`): accept both.
fn normalize_filter(filter: &mut Map<String, Value>) {
    for k in ["published", "hasAudio", "hasVideo", "record"] {
        if let Some(Value::String(s)) = filter.get(k) {
            let b = match s.as_str() {
                "true" => true,
                "false" => false,
                _ => continue,
            };
            filter.insert(k.into(), Value::Bool(b));
        }
    }
}

/// A `/stream/find` filter as [`find`] applies it (`display` ignored, `"true"` = `true`): for
/// the other nodes' streams too (`[cluster]`).
pub fn find_filter(mut filter: Map<String, Value>) -> Map<String, Value> {
    filter.remove("display");
    normalize_filter(&mut filter);
    filter
}

/// REST `/stream/find` and `/find_all`: the stream objects matching `filter` (every field equal;
/// `display` is ignored).
pub fn find(streams: &Streams, filter: Map<String, Value>) -> Vec<Map<String, Value>> {
    let filter = find_filter(filter);
    streams.dir.lock().find(&filter).into_iter().map(|e| e.obj.clone()).collect()
}

/// REST `/stream/terminate`: ends every stream matching `filter` (`{}` = all; `mediaSessionIds`
/// = any of these ids; other fields must be equal) with `Stopped by rest /terminate`. Returns
/// how many matched.
pub fn terminate(streams: &Streams, mut filter: Map<String, Value>) -> usize {
    normalize_filter(&mut filter);
    let ids_filter: Option<Vec<String>> = filter.remove("mediaSessionIds").map(|v| match v {
        Value::Array(a) => a.into_iter().filter_map(|x| x.as_str().map(String::from)).collect(),
        Value::String(s) => vec![s],
        _ => vec![],
    });
    let mut matched: Vec<(Kind, Arc<str>)> = streams
        .dir
        .lock()
        .find(&filter)
        .into_iter()
        .filter(|e| ids_filter.as_ref().is_none_or(|l| l.iter().any(|x| **x == *e.id)))
        .map(|e| (e.kind, e.id.clone()))
        .collect();
    // Players first: a matched player hears the REST reason, not "Stopped by publisher stop".
    matched.sort_by_key(|(k, _)| *k == Kind::Publish);
    for (_, id) in &matched {
        end_stream(streams, id, None, Ending::Terminated(proto_info::STOPPED_BY_REST_TERMINATE), Origin::RestApi);
    }
    matched.len()
}
